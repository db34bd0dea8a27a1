"""What a run reports while it plays (progress) and when it ends (its result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class Progress:
    """What the kernel reports while it runs (a rich progress bar in the CLI)."""

    def phase(self, name: str, total: int) -> None:
        """A phase starts with ``total`` episodes to play (already-done ones excluded)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more episodes finished."""


@dataclass(slots=True)
class Tally:
    """A run's counters, kept by whoever plays its episodes."""

    progress: Progress = field(default_factory=Progress)
    played: int = 0
    skipped: int = 0
    failed: int = 0
    turns: int = 0


@dataclass(slots=True)
class RunResult:
    run_dir: Path
    run_id: str
    resumed: bool
    played: int
    skipped: int
    failed: int
    elapsed_s: float
    turns: int = 0
    play_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: int | None = None  # the signal that stopped the run early, if one did
    notes: list[str] = field(default_factory=list)  # what the protocol wrote besides the store
    # elapsed_s: the whole run (data loading included); play_s: playing episodes, store
    # writes included (what throughput benchmarks divide by)


__all__ = ["Progress", "RunResult", "Tally"]
