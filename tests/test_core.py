"""Actors, environment, policies, store and runner semantics."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import pytest

from mmsim import Feedback, InfrastructureError
from mmsim.actors import Actor, ActorSystem
from mmsim.backends import Backend, Completion, GenerateRequest, backend
from mmsim.data.sample import Sample
from mmsim.messages import AnswerFormat, Image
from mmsim.metrics import compute
from mmsim.policies import detect_leak
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

CHOICE = AnswerFormat(kind="choice", letters=("A", "B", "C", "D"),
                      options=("40°", "60°", "80°", "100°"))


def _sample(**kw: Any) -> Sample:
    base = dict(id="s1", question="What is angle x?\nChoices:\nA: 40°\nB: 60°\nC: 80°\nD: 100°",
                answer="B", answer_format=CHOICE)
    base.update(kw)
    return Sample(**base)


class Echo(Actor[int, int]):
    def __init__(self, **kw: Any):
        super().__init__("echo", **kw)
        self.active = 0
        self.peak = 0

    async def handle(self, msg: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await anyio.sleep(0.01)
        self.active -= 1
        if msg < 0:
            raise ValueError("negative")
        return msg * 2


def test_actor_ask_concurrency_and_errors() -> None:
    async def main() -> tuple[list[int], int]:
        results: list[int] = []
        async with ActorSystem() as system:
            echo = system.spawn(Echo(concurrency=4, inbox_size=2))

            async def one(i: int) -> None:
                results.append(await echo.ask(i))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
            with pytest.raises(ValueError, match="negative"):
                await echo.ask(-1)
            return sorted(results), echo.peak

    results, peak = anyio.run(main)
    assert results == [2 * i for i in range(20)]
    assert peak == 4  # bounded by the worker count


def test_actor_system_cancels_on_error() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            echo = system.spawn(Echo(concurrency=2))
            await echo.ask(1)
            raise RuntimeError("caller failed")

    with pytest.raises(BaseException) as info:
        anyio.run(main)
    assert "caller failed" in repr(info.value) or "caller failed" in str(info.value.__context__)


def test_ask_before_spawn_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        anyio.run(Echo().ask, 1)


def test_leak_detector() -> None:
    s = _sample()
    assert detect_leak("The correct answer is B.", s)
    assert detect_leak("Hint: it is 60° actually", s)
    assert detect_leak("Option (B) fits", s)
    assert not detect_leak("Your answer A is not correct; check the angle sum.", s)
    n = _sample(answer="58", answer_format=AnswerFormat(kind="numeric"))
    assert detect_leak("it should be 58 units", n)
    assert not detect_leak("recount: 5 and 8 are not the same", n)


def test_image_reference_hash(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(b"\x89PNG fake")
    im = Image.from_path(p)
    assert im.uri == str(p) and len(im.sha256) == 64
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        im.uri = "x"  # frozen


def test_results_do_not_depend_on_concurrency(small_scenario: Path, tmp_path: Path) -> None:
    figs = []
    for conc in (1, 64):
        loaded = load_scenario(small_scenario, overrides=[f"run.concurrency={conc}"])
        out = tmp_path / f"c{conc}"
        anyio.run(run_scenario, loaded, out)
        store = RunStore.open(out, create=False)
        figs.append(compute(store, resamples=100)["cells"])
        store.close()
    assert figs[0] == figs[1]


class Flaky(Backend):
    """Fails (as an infrastructure error) on items whose id ends in 3, once per process."""

    failing = True

    async def generate(self, request: GenerateRequest) -> Completion:
        assert request.oracle is not None
        if Flaky.failing and request.oracle.sample.id.endswith("3"):
            raise InfrastructureError("HTTP 503 after 3 retries")
        return Completion(text="Answer: A")


backend("flaky-test")(lambda name, params: Flaky(name, params))


def test_infrastructure_failures_are_not_scored_and_resume(tmp_path: Path,
                                                          small_scenario: Path) -> None:
    text = small_scenario.read_text().replace("{name: r1, backend: sim, params: {skill: 0.0}}",
                                              "{name: r1, backend: flaky-test}")
    scn = tmp_path / "flaky.yaml"
    scn.write_text(text)
    loaded = load_scenario(scn)
    out = tmp_path / "run"
    Flaky.failing = True
    res = anyio.run(run_scenario, loaded, out)
    assert res.failed > 0
    store = RunStore.open(out, create=False)
    m = compute(store, resamples=0)
    r1 = next(a for a in m["agents"] if a["name"] == "r1")
    assert r1["failed"] == res.failed and r1["n"] == 40 - res.failed  # excluded, not wrong
    store.close()
    Flaky.failing = False
    res2 = anyio.run(run_scenario, loaded, out)
    assert res2.resumed and res2.failed == 0 and res2.played >= res.failed
    store = RunStore.open(out, create=False)
    r1 = next(a for a in compute(store, resamples=0)["agents"] if a["name"] == "r1")
    assert r1["n"] == 40 and r1["failed"] == 0
    assert store.counts().get("screen.failed", 0) == 0
    store.close()


def test_feedback_messages_are_stored(small_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    anyio.run(run_scenario, load_scenario(small_scenario), out)
    store = RunStore.open(out, create=False)
    ep = next(e for e in store.episodes("feedback") if e["rounds"] >= 2)
    msgs = store.messages(ep["episode_id"])
    kinds = [m["kind"] for m in msgs]
    assert kinds[:3] == ["observation", "response", "grade"] and "feedback" in kinds
    obs = [m for m in msgs if m["kind"] == "observation"]
    # the image is sent once, in the first user turn, in every observation
    last = obs[-1]["conversation"]
    images = [p for t in last for p in t["parts"] if p["type"] == "image"]
    assert len(images) == 1 and last[0]["parts"][0]["type"] == "image"
    assert [t["role"] for t in last][:3] == ["user", "assistant", "user"]
    fb = [Feedback.model_validate({**{k: v for k, v in m.items() if k != "seq"},
                                   "run_id": "r", "episode_id": "e"}) for m in msgs
          if m["kind"] == "feedback"]
    assert all(f.policy == ep["condition"] for f in fb)
    store.close()


@pytest.mark.parametrize("mode", ["shared", "all_wrong", "intersection"])
def test_test_set_modes(small_scenario: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / mode
    anyio.run(run_scenario, load_scenario(small_scenario,
                                          overrides=[f"protocol.test_set={mode}"]), out)
    store = RunStore.open(out, create=False)
    m = compute(store, resamples=0)
    store.close()
    for c in m["cells"]:
        assert c["n_test"] <= c["n_wrong"]
        if mode == "all_wrong":
            assert c["n_test"] == c["n_wrong"]
    if mode == "shared":
        for r in ("r1", "r2"):
            sizes = {c["n_test"] for c in m["cells"] if c["receiver"] == r}
            assert len(sizes) == 1  # one test set across providers


class Batchy(Echo):
    inline = False  # every request goes through the inbox and the (lazily started) workers


def test_non_inline_actor_workers_start_on_demand_and_stay_bounded() -> None:
    async def main() -> tuple[list[int], int, int]:
        async with ActorSystem() as system:
            actor = system.spawn(Batchy(concurrency=3, inbox_size=4))
            assert actor._workers == 0  # nothing started before the first request
            out: list[int] = []

            async def one(i: int) -> None:
                out.append(await actor.ask(i))

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(one, i)
            return sorted(out), actor.peak, actor._workers

    out, peak, workers = anyio.run(main)
    assert out == [2 * i for i in range(30)]
    assert peak == 3 and workers == 3


@pytest.mark.parametrize("latency", [0.0, 0.01])
def test_run_pool_bounds_in_flight_and_grows_when_jobs_wait(latency: float) -> None:
    from mmsim.runtime.pool import run_pool

    state = {"now": 0, "peak": 0, "done": 0}

    async def job(i: int) -> None:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        if latency:
            await anyio.sleep(latency)
        state["now"] -= 1
        state["done"] += 1

    anyio.run(run_pool, range(200), 16, job)
    assert state["done"] == 200
    if latency:
        assert state["peak"] == 16  # reaches the bound, never exceeds it
    else:
        assert state["peak"] == 1  # jobs that never wait do not fan out


def test_stored_observations_are_deltas_that_rebuild_the_conversation(
        small_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    anyio.run(run_scenario, load_scenario(small_scenario), out)
    store = RunStore.open(out, create=False)
    ep = next(e for e in store.episodes("feedback") if e["rounds"] >= 2)
    raw = [p for (p,) in store.conn.execute(
        "SELECT payload FROM messages WHERE episode_id=? AND kind='observation' ORDER BY seq",
        (ep["episode_id"],))]
    assert '"conversation_from"' not in raw[0] and all('"conversation_from"' in p
                                                       for p in raw[1:])
    obs = [m for m in store.messages(ep["episode_id"]) if m["kind"] == "observation"]
    # each observation extends the one before by an assistant turn and a user turn
    for before, after in itertools.pairwise(obs):
        assert after["conversation"][:len(before["conversation"])] == before["conversation"]
        assert [t["role"] for t in after["conversation"][len(before["conversation"]):]] == \
            ["assistant", "user"]
        assert after["answer_format"] == obs[0]["answer_format"]
    store.close()
