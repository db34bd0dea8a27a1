"""Integration: a real ``transformers serve`` (the tiny random-weight LLaVA, CPU, offline)
started by the scenario's ``servers:`` section, driven over real HTTP with real images by
the ``openai`` backend through a whole interactive-feedback run.

Two server starts (~5-20 s each on 2 cores): the fault-free run of the module's fixture,
and the same run with the fault proxy between the backend and the server. The text is
gibberish (random weights), so the assertions are about the protocol and the plumbing
(and that greedy replies are the same with and without faults), not accuracy."""

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


def _scenario(tmp: Path, model: Path, agent: str, port: str = "auto") -> Path:
    """The scenario: the tiny server started by ``servers:`` and two agents with ``agent``
    as their params."""
    hub_cache = tmp / "hf-cache"
    hub_cache.mkdir(exist_ok=True)
    scn = tmp / "serve.yaml"
    scn.write_text(textwrap.dedent(f"""
        name: serve-integration
        dataset: {{name: synthetic, size: 4, seed: 2}}
        servers:
          - name: tiny
            command: transformers
            model: {model}
            port: {port}
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
    return scn


def _play(scn: Path, run_dir: Path) -> dict[str, Any]:
    from mmsim.runtime import run_scenario
    from mmsim.scenario import load_scenario
    from mmsim.store import RunStore

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


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the scenario once (server up, episodes, server down); tests inspect the result."""
    model = tiny_model_dir(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve")
    agent = "{server: tiny, max_tokens: 8, temperature: 0, timeout_s: 60, max_retries: 2}"
    return _play(_scenario(tmp, model, agent), tmp / "run")


def test_every_episode_is_done_or_failed_and_stored(served_run: dict[str, Any]) -> None:
    eps = served_run["episodes"]
    counts = served_run["counts"]
    assert all(e["status"] in ("done", "failed") for e in eps)
    # no faults were injected: every screening episode is done
    assert counts.get("screen.done", 0) == 2 * 4 and not counts.get("screen.failed")
    # test_set all_wrong: every item the receiver got wrong has one feedback episode per
    # policy (2), all done
    wrong = [e for e in eps if e["kind"] == "screen" and e["model"] == "tiny-receiver"
             and not e["first_correct"]]
    assert wrong  # gibberish is never an answer under the strict extractor
    assert counts.get("feedback.done", 0) == 2 * len(wrong)
    assert not counts.get("feedback.failed")
    assert served_run["result"].played == 2 * 4 + 2 * len(wrong)


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


def _replies(msgs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the models said in an episode: its responses and feedback, in order."""
    return [(m["kind"], m["sender"], m.get("text"), m.get("answer"), m.get("parse"))
            for m in msgs if m["kind"] in ("response", "feedback")]


def test_fault_proxy_between_the_backend_and_the_real_server(
        served_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The fault proxy (25%: 429 + Retry-After, 500, a hang past the timeout, truncated
    JSON, empty content, a reset connection) between the openai backend and a real
    ``transformers serve``: every episode ends done or failed with its reason, none is
    lost, every done episode holds exactly the replies of the fault-free run (greedy tiny
    model: the same requests get the same replies), and the retries are in the report."""
    from conftest import run_cli

    from mmsim.runtime.servers import free_port
    from mmsim.testing import FaultProxy

    model = tiny_model_dir(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve-faults")
    port = free_port()
    kinds = ["429_retry_after", "500", "hang", "truncated_json", "empty_content", "reset"]
    with FaultProxy(f"http://127.0.0.1:{port}", rate=0.25, kinds=kinds, seed=56,
                    retry_after_s=0.2, hang_s=4.0) as proxy:
        # the same agents and request bodies as served_run, through the proxy
        agent = (f'{{base_url: "{proxy.base_url}", model: "{model}", max_tokens: 8, '
                 "temperature: 0, timeout_s: 3, max_retries: 10, backoff_base_s: 0.05, "
                 "backoff_max_s: 0.2}")
        faulty = _play(_scenario(tmp, model, agent, port=str(port)), tmp / "run")
        faults = {k: v for k, v in proxy.counts.items() if k != "ok"}
    # seed 56 draws every kind within the first 30 requests (a run makes more than 30)
    assert set(faults) == set(kinds), proxy.counts

    clean = {e["episode_id"]: e for e in served_run["episodes"]}
    eps = {e["episode_id"]: e for e in faulty["episodes"]}
    assert all(e["status"] in ("done", "failed") for e in eps.values())
    for e in eps.values():  # a failed episode says which agent and endpoint failed, and why
        if e["status"] == "failed":
            assert e["error"] and "tiny-" in e["error"] and proxy.base_url in e["error"]
    assert set(eps) == set(clean)  # none lost, none invented
    compared = 0
    for k, e in eps.items():
        if e["status"] == "done" and clean[k]["status"] == "done":
            assert _replies(faulty["messages"][k]) == _replies(served_run["messages"][k]), k
            for c in ("first_correct", "solved", "corrected_round", "rounds", "n_responses",
                      "n_unparsed", "n_feedback"):
                assert e[c] == clean[k][c], (k, c)
            compared += 1
    assert compared >= len(eps) // 2
    assert faulty["result"].failed == sum(e["status"] == "failed" for e in eps.values())

    rep = run_cli("report", str(tmp / "run"), "--format", "json")
    assert rep.returncode == 0, rep.stderr
    m = json.loads(rep.stdout)
    assert m["retries"] >= sum(faults.values())  # one retry per fault (+ any real timeout)
    assert sum(a["retries"] for a in m["agents"]) == m["retries"]
    assert sum(c["retries"]["receiver"] + c["retries"]["provider"] for c in m["cells"]) > 0
