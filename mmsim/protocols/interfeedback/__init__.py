"""InterFeedback (the default ``kind``): a receiver answers; a provider (a stronger model,
a person or a rule) gives feedback under a policy (binary, detailed, ground-truth reveal,
or a user's own); repeat up to N rounds. Accuracy and correction rate per round, on test
sets built as in the paper (docs/scenarios.md, docs/metrics.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from mmsim.data import Sample
from mmsim.protocols.interfeedback.env import (
    EpisodeFailed,
    EpisodeState,
    InterFeedbackEnv,
    PolicyPlan,
    RoundPolicy,
    Step,
    first_turn,
)
from mmsim.protocols.interfeedback.run import InterFeedbackRun, build_plans
from mmsim.protocols.interfeedback.scenario import PolicySpec, ProtocolSpec, Scenario
from mmsim.runtime.protocol import EvalProtocol, Role, protocol
from mmsim.spec import LoadedScenario
from mmsim.store import RunStore

if TYPE_CHECKING:
    from rich.console import Console


@protocol
class InterFeedback(EvalProtocol[Scenario, list[Sample]]):
    """Interactive feedback: receivers x providers x feedback policies (InterFeedback)."""

    name = "interfeedback"
    title = "interactive feedback: receivers x providers x feedback policies, N rounds"
    scenario = Scenario
    kind_field = False
    agents: ClassVar[dict[str, tuple[Role, ...]]] = {
        "receivers": ("model",), "providers": ("model", "provider"),
        "extractors": ("model",)}
    run = InterFeedbackRun
    item_noun = "sample"
    generic_sections = True

    def actor_options(self, scn: Scenario, role: Role) -> dict[str, Any]:
        return {"max_rounds": scn.protocol.max_rounds} if role == "provider" else {}

    def summary(self, loaded: LoadedScenario) -> str:
        s = loaded.scenario
        return (f"{len(s.receivers)} receivers x {len(s.providers)} providers x "
                f"{len(s.policies)} policies on dataset {s.dataset.name!r}")

    def metrics(self, store: RunStore) -> dict[str, Any]:
        from mmsim.metrics import compute

        run = store.run()
        scenario = run["scenario"] if run else {}
        return compute(store, resamples=int(scenario.get("run", {}).get("bootstrap", 1000)),
                       seed=int(scenario.get("seed", 0)))

    def print_table(self, metrics: dict[str, Any], console: Console) -> None:
        from mmsim.report import print_table

        print_table(metrics, console)

    def tables(self, metrics: dict[str, Any]) -> Any:
        from mmsim.report.table import document

        return document(metrics)

    def compare(self, store_a: RunStore, store_b: RunStore, *, resamples: int, seed: int,
                run_dir_a: str = "", run_dir_b: str = "") -> dict[str, Any]:
        """Per receiver x provider x policy: accuracy, correction and parse-failure rates."""
        from mmsim.metrics.compare import compare

        return compare(store_a, store_b, resamples=resamples, seed=seed,
                       run_dir_a=run_dir_a, run_dir_b=run_dir_b)


__all__ = ["EpisodeFailed", "EpisodeState", "InterFeedback", "InterFeedbackEnv",
           "InterFeedbackRun", "PolicyPlan", "PolicySpec", "ProtocolSpec", "RoundPolicy",
           "Scenario", "Step", "build_plans", "first_turn"]
