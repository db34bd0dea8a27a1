"""Integration: a real ``transformers serve`` (the tiny random-weight LLaVA, CPU, offline)
started by the scenario's ``servers:`` section, driven over real HTTP with real images by
the ``openai`` backend through a whole interactive-feedback run.

One server start (~20 s on 2 cores) for the module; the text is gibberish (random
weights), so the assertions are about the protocol and the plumbing, not accuracy."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from tiny_vlm import tiny_model_dir

pytest.importorskip("fastapi")  # transformers[serving]
pytest.importorskip("uvicorn")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the scenario once (server up, episodes, server down); tests inspect the result."""
    model = tiny_model_dir(tmp_path_factory)
    from mmsim.runtime import run_scenario
    from mmsim.scenario import load_scenario
    from mmsim.store import RunStore

    tmp = tmp_path_factory.mktemp("serve")
    hub_cache = tmp / "hf-cache"
    hub_cache.mkdir()
    agent = "{server: tiny, max_tokens: 8, temperature: 0, timeout_s: 60, max_retries: 2}"
    scn = tmp / "serve.yaml"
    scn.write_text(textwrap.dedent(f"""
        name: serve-integration
        dataset: {{name: synthetic, size: 4, seed: 2}}
        servers:
          - name: tiny
            command: transformers
            model: {model}
            args: [--device, cpu, --log-level, info]
            env: {{HF_HUB_OFFLINE: "1", HF_HUB_CACHE: "{hub_cache}",
                   TRANSFORMERS_VERBOSITY: info, OMP_NUM_THREADS: "1"}}
            startup_timeout_s: 180
        receivers:
          - {{name: tiny-receiver, backend: openai, params: {agent}, concurrency: 8}}
        providers:
          - {{name: tiny-provider, backend: openai, params: {agent}, concurrency: 8}}
        policies: [binary, detailed]
        protocol: {{max_rounds: 2, test_set: all_wrong}}
        run: {{concurrency: 8, bootstrap: 0}}
    """))
    run_dir = tmp / "run"
    t0 = time.perf_counter()
    result = anyio.run(lambda: run_scenario(load_scenario(scn), run_dir))
    store = RunStore.open(run_dir, create=False)
    try:
        run = store.run()
        episodes = list(store.episodes())
        msgs = {e["episode_id"]: store.messages(e["episode_id"]) for e in episodes}
        counts = store.counts()
    finally:
        store.close()
    assert run is not None
    manifest = run.get("manifest") or {}
    if isinstance(manifest, str):
        manifest = json.loads(manifest)
    return {"result": result, "episodes": episodes, "messages": msgs, "counts": counts,
            "manifest": manifest, "run_dir": run_dir, "seconds": time.perf_counter() - t0}


def test_every_episode_is_done_or_failed_and_stored(served_run: dict[str, Any]) -> None:
    eps = served_run["episodes"]
    counts = served_run["counts"]
    assert all(e["status"] in ("done", "failed") for e in eps)
    assert counts.get("screen.done", 0) + counts.get("screen.failed", 0) == 2 * 4
    assert counts.get("screen.done", 0) >= 1
    # gibberish never parses, so every item is wrong: feedback episodes were played
    assert counts.get("feedback.done", 0) + counts.get("feedback.failed", 0) >= 1
    assert served_run["result"].played >= 1


def test_responses_came_from_the_real_model_over_http(served_run: dict[str, Any]) -> None:
    responses = [m for ms in served_run["messages"].values() for m in ms
                 if m["kind"] == "response" and m.get("parse") != "error"]
    assert responses
    assert not any(r.get("simulated") for r in responses)
    usage = [r.get("usage") or {} for r in responses]
    # the first turn carries the image: the prompt is far longer than the text alone
    assert max(u.get("prompt_tokens", 0) for u in usage) > 16
    assert all(0 < u.get("completion_tokens", 0) <= 8 for u in usage)
    fed = [m for ms in served_run["messages"].values() for m in ms if m["kind"] == "feedback"]
    assert {f["feedback_kind"] for f in fed} >= {"binary", "detailed"}


def test_server_log_exists_and_server_is_stopped(served_run: dict[str, Any]) -> None:
    log = served_run["run_dir"] / "servers" / "tiny.log"
    assert log.is_file() and "transformers" in log.read_text().splitlines()[0]
    srv = served_run["manifest"]["servers"]["tiny"]
    assert srv["base_url"].startswith("http://127.0.0.1:") and srv["base_url"].endswith("/v1")
    assert not _alive(int(srv["pid"]))
