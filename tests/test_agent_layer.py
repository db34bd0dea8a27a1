"""The agent layer gives a user's plugin backend retries and the response cache without a
line of its own (mmsim/backends/managed.py): a backend that times out is retried with
backoff and its retries are recorded; one that fails for good fails its episodes (recorded
with the reason) instead of the run; with ``cache: true`` a replayed episode is answered from
the run's cache, with no call to the backend."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from mmsim.backends import Backend, Completion, GenerateRequest, backend
from mmsim.backends.retry import Fatal, RetryPolicy
from mmsim.runtime import Kernel
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

CALLS: Counter[str] = Counter()


class _Plugin(Backend):
    """A plugin backend as a user writes it: no retry, no cache of its own."""

    retry_policy = RetryPolicy(max_retries=3, backoff_base_s=0.001, backoff_max_s=0.002)

    async def generate(self, request: GenerateRequest) -> Completion:
        key = f"{self.name}:{request.messages[-1].parts[-1]}"
        CALLS[self.name] += 1
        CALLS[key] += 1
        mode = self.params.get("mode")
        if mode == "flaky" and CALLS[key] <= 2:
            raise TimeoutError("the server took too long")
        if mode == "broken":
            raise Fatal("HTTP 401 (bad key)")
        return Completion(text="Answer: A")


backend("agent-layer-test")(_Plugin)

SCENARIO = """
name: agent-layer
seed: 1
dataset: {name: synthetic, size: 12, seed: 4}
receivers:
  - {name: RECV, backend: agent-layer-test, CACHE params: {mode: MODE}}
providers:
  - {name: prov, backend: sim, params: {skill: 3.0}}
policies: [binary]
protocol: {max_rounds: 1}
run: {concurrency: 4, bootstrap: 0}
"""


def _scenario(tmp: Path, name: str, mode: str, cache: str = "") -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(SCENARIO.replace("RECV", name).replace("MODE", mode)
                 .replace("CACHE", cache))
    return p


def _episodes(run_dir: Path) -> list[dict[str, Any]]:
    store = RunStore.open(run_dir, create=False)
    try:
        return [e for e in store.episodes() if e["model"] != "prov"]
    finally:
        store.close()


def test_a_plugin_backend_is_retried_and_its_retries_are_recorded(tmp_path: Path) -> None:
    k = Kernel(load_scenario(_scenario(tmp_path, "flaky", "flaky")), tmp_path / "run")
    anyio.run(k.run)
    eps = _episodes(tmp_path / "run")
    screens = [e for e in eps if e["kind"] == "screen"]
    assert len(screens) == 12 and all(e["status"] == "done" for e in eps)
    assert all(e["model_retries"] == 2 for e in screens)  # two timeouts, then an answer


def test_a_plugin_backend_that_fails_for_good_fails_its_episodes_not_the_run(
        tmp_path: Path) -> None:
    k = Kernel(load_scenario(_scenario(tmp_path, "broken", "broken")), tmp_path / "run")
    result = anyio.run(k.run)
    eps = _episodes(tmp_path / "run")
    assert len(eps) == 12 and result.failed >= 12
    assert all(e["status"] == "failed" and "401" in e["error"] for e in eps)
    assert CALLS["broken"] == 12  # a Fatal error is not retried


def test_cache_true_replays_a_plugin_backend_without_calling_it(tmp_path: Path) -> None:
    scn = load_scenario(_scenario(tmp_path, "cached", "ok", "cache: true,"))
    anyio.run(Kernel(scn, tmp_path / "run").run)
    calls = CALLS["cached"]
    assert calls >= 12
    db = sqlite3.connect(tmp_path / "run" / "mmsim.sqlite")
    db.execute("DELETE FROM messages")
    db.execute("DELETE FROM episodes")
    db.commit()
    db.close()
    again = Kernel(scn, tmp_path / "run")
    anyio.run(again.run)
    assert again.played > 0 and CALLS["cached"] == calls
    # without cache: true a sampled request is not cached: a new run calls again
    scn2 = load_scenario(_scenario(tmp_path, "uncached", "ok"))
    anyio.run(Kernel(scn2, tmp_path / "run2").run)
    n = CALLS["uncached"]
    db = sqlite3.connect(tmp_path / "run2" / "mmsim.sqlite")
    db.execute("DELETE FROM messages")
    db.execute("DELETE FROM episodes")
    db.commit()
    db.close()
    anyio.run(Kernel(scn2, tmp_path / "run2").run)
    assert CALLS["uncached"] == 2 * n
