"""Rollouts as a file a TRL-style trainer reads (``rollouts.jsonl`` / ``rollouts.parquet``).

One row per sample (completion), grouped by prompt:

* ``group_id`` (``model/item``), ``prompt_id`` (the item), ``model``, ``level``,
  ``sample_index``, ``temperature``;
* ``prompt``: the conversation in the chat format trainers take — ``[{"role": "user",
  "content": [{"type": "video", "video": PATH}, {"type": "image", "image": PATH}, {"type":
  "text", "text": ...}]}]`` (one ``image`` entry per sampled frame when frames were sent
  as images) — with ``images`` / ``videos`` also listed as paths;
* ``completion``: ``[{"role": "assistant", "content": TEXT}]``;
* ``solution``: ``<answer>X.</answer>`` (the published target);
* ``rewards`` (``accuracy``, ``format``), ``reward`` (their configured sum), and the group's
  ``reward_mean``, ``reward_std`` and the GRPO ``advantage`` ``(r - mean) / (std + 1e-4)``.

Files are written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmsim.errors import UserError
from mmsim.protocols.video.metrics import EP_ROLLOUT, load_results, rollout_groups
from mmsim.protocols.video.rewards import advantages, group_stats
from mmsim.store import RunStore


def _content(obs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    content: list[dict[str, Any]] = []
    images: list[str] = []
    videos: list[str] = []
    for part in obs["conversation"][0]["parts"]:
        if part["type"] == "image":
            content.append({"type": "image", "image": part["uri"]})
            images.append(part["uri"])
        elif part["type"] == "video":
            content.append({"type": "video", "video": part["uri"]})
            videos.append(part["uri"])
        else:
            content.append({"type": "text", "text": part["text"]})
    return content, images, videos


def rollout_rows(store: RunStore) -> Iterator[dict[str, Any]]:
    """The export rows of a run's rollouts, group by group."""

    run = store.run() or {}
    ddof = int(((run.get("scenario") or {}).get("rollouts") or {}).get("ddof", 1))
    results, _ = load_results(store, EP_ROLLOUT)
    for gid, group in sorted(rollout_groups(results).items()):
        rewards = [float(r["reward"]) for r in group]
        mean, std = group_stats(rewards, ddof)
        advs = advantages(rewards, ddof)
        for r, adv in zip(group, advs, strict=True):
            msgs = store.messages(r["episode_id"])
            obs = next(m for m in msgs if m["kind"] == "observation")
            resp = next(m for m in msgs if m["kind"] == "response")
            content, images, videos = _content(obs)
            yield {
                "group_id": gid, "prompt_id": r["item_id"], "model": r["model"],
                "level": r["level"], "sample_index": r["sample_index"],
                "temperature": r["temperature"],
                "prompt": [{"role": "user", "content": content}],
                "images": images, "videos": videos,
                "completion": [{"role": "assistant", "content": resp["text"]}],
                "solution": f"<answer>{r['gold']}.</answer>",
                "rewards": r["rewards"], "reward": r["reward"],
                "reward_mean": mean, "reward_std": std, "advantage": adv,
            }


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_rollouts(run_dir: Path, path: Path, fmt: str) -> int:
    """Write the run's rollouts to ``path`` as ``jsonl`` or ``parquet``; the row count."""
    store = RunStore.open(run_dir, create=False)
    try:
        rows = list(rollout_rows(store))
    finally:
        store.close()
    if fmt == "jsonl":
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "parquet":
        try:
            import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise UserError("writing parquet needs pyarrow: pip install 'mmsim[parquet]'",
                            field="rollouts.export") from None

        def write(tmp: Path) -> None:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
    else:
        raise UserError(f"unknown rollout export format {fmt!r} (jsonl or parquet)",
                        field="rollouts.export")
    _atomic(path, write)
    return len(rows)


__all__ = ["export_rollouts", "rollout_rows"]
