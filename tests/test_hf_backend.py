"""The ``hf`` backend (in-process transformers, batched across episodes), the micro-batcher
it uses, and the clear errors of the optional backends when their extras are missing."""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, run_cli
from tiny_vlm import tiny_model_dir

from mmsim.backends.base import GenerateRequest
from mmsim.backends.batching import MicroBatcher
from mmsim.errors import UserError
from mmsim.messages import ChatTurn, Image, Text


# -- the micro-batcher (no torch needed) ---------------------------------------------------
def test_batcher_collects_concurrent_calls_and_keeps_order() -> None:
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int | BaseException]:
        seen.append(list(items))
        time.sleep(0.02)  # a model step: later calls queue up meanwhile
        return [x * 10 for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, max_wait_s=0.02)
    out: dict[int, int] = {}

    async def one(i: int) -> None:
        out[i] = await b.submit(i)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)

    anyio.run(main)
    assert out == {i: i * 10 for i in range(10)}
    assert sum(b.batch_sizes) == 10 and max(b.batch_sizes) == 4
    assert all(len(x) <= 4 for x in seen)


def test_batcher_separates_keys_and_delivers_errors() -> None:
    def run(items: list[int]) -> list[int | BaseException]:
        assert len({x % 2 for x in items}) == 1  # one key per batch
        return [ValueError("odd") if x == 3 else x for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, max_wait_s=0.01,
                                             key=lambda x: x % 2)
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        try:
            results[i] = await b.submit(i)
        except ValueError as exc:
            results[i] = exc

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)

    anyio.run(main)
    assert isinstance(results.pop(3), ValueError)
    assert results == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}
    assert len(b.batch_sizes) >= 2


def test_batcher_survives_a_cancelled_leader() -> None:
    started = threading.Event()

    def run(items: list[int]) -> list[int | BaseException]:
        started.set()
        return list(items)

    b: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, max_wait_s=0.2)
    got: list[int] = []

    async def main() -> None:
        with anyio.fail_after(5):
            await play()

    async def play() -> None:
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await b.submit(-1)  # leads, waits 0.2 s for company...

        async def follower(i: int) -> None:
            got.append(await b.submit(i))

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.sleep(0.01)
            for i in range(3):
                tg.start_soon(follower, i)
            await anyio.sleep(0.01)
            leader_scope.cancel()  # ...and is cancelled: a follower takes over

    anyio.run(main)
    assert sorted(got) == [0, 1, 2] and started.is_set()


# -- extras missing --------------------------------------------------------------------
def test_hf_backend_without_torch_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> Any:
        if name in ("torch", "transformers"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    from mmsim.backends.hf import HFBackend

    with pytest.raises(UserError, match=r"the hf backend needs: pip install 'mmsim\[hf\]'"):
        HFBackend("m", {"model": "/nonexistent"})


def test_vllm_backend_without_vllm_says_which_extra() -> None:
    try:
        importlib.import_module("vllm")
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    from mmsim.backends.vllm import VLLMBackend

    with pytest.raises(UserError,
                       match=r"the vllm backend needs vLLM: pip install 'mmsim\[vllm\]'"):
        VLLMBackend("v", {"model": "llava-hf/llava-1.5-7b-hf"})


def test_cli_reports_missing_hf_model_as_user_error(tmp_path: Path) -> None:
    r = run_cli("run", str(ROOT / "scenarios" / "interfeedback-hf.yaml"), "--out",
                str(tmp_path / "run"), "--no-progress", "--limit", "2")
    assert r.returncode == 2, r.stderr
    assert "receivers.0.params.model" in r.stderr
    assert ("is required" in r.stderr) or ("mmsim[hf]" in r.stderr)


# -- the hf backend on the tiny model ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    from PIL import Image as PILImage

    p = tmp_path_factory.mktemp("img") / "red.png"
    PILImage.new("RGB", (80, 60), (200, 30, 30)).save(p)
    return Image.from_path(p)


def _requests(image: Image) -> list[GenerateRequest]:
    def user(*parts: Any) -> ChatTurn:
        return ChatTurn(role="user", parts=tuple(parts))

    convs = [
        (user(image, Text(text="What is x? Answer with a letter.")),),
        (user(Text(text="How many circles are there in the picture, please count them")),),
        (user(image, Text(text="Count the bars.")),
         ChatTurn(role="assistant", parts=(Text(text="Answer: 3"),)),
         user(Text(text="Incorrect. Please answer again."))),
        (user(image, Text(text="Which angle is 60 degrees?")),),
        (user(Text(text="Hint: look again at the triangle.")),),
        (user(image, Text(text="Answer: 42?")),),
    ]
    return [GenerateRequest(messages=c, seed=0) for c in convs]


def _generate_all(backend: Any, reqs: list[GenerateRequest], concurrent: bool) -> list[Any]:
    out: list[Any] = [None] * len(reqs)

    async def one(i: int) -> None:
        out[i] = await backend.generate(reqs[i])

    async def main() -> None:
        if concurrent:
            async with anyio.create_task_group() as tg:
                for i in range(len(reqs)):
                    tg.start_soon(one, i)
        else:
            for i in range(len(reqs)):
                await one(i)

    anyio.run(main)
    return out


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_concurrent_requests_are_batched_and_match_alone(tiny_dir: Path, image: Image,
                                                         cache: str) -> None:
    from mmsim.backends.hf import HFBackend

    backend = HFBackend("tiny", {"model": str(tiny_dir), "device": "cpu", "max_new_tokens": 8,
                                 "max_wait_ms": 50, "max_batch_size": 4,
                                 "cache_implementation": cache})
    reqs = _requests(image)
    alone = _generate_all(backend, reqs, concurrent=False)
    assert backend.batcher.batch_sizes == [1] * len(reqs)
    together = _generate_all(backend, reqs, concurrent=True)
    sizes = backend.batcher.batch_sizes[len(reqs):]
    assert sum(sizes) == len(reqs) and max(sizes) > 1 and max(sizes) <= 4
    assert [c.text for c in together] == [c.text for c in alone]  # greedy: batch-invariant
    for a, t in zip(alone, together, strict=True):
        assert t.usage == a.usage
        assert t.usage.prompt_tokens > 16  # an image is 16 tokens in the tiny model
        assert 1 <= t.usage.completion_tokens <= 8
        assert t.meta["batch_size"] >= 1 and not t.simulated
    anyio.run(backend.aclose)


def test_scenario_runs_on_the_hf_backend(tiny_dir: Path, tmp_path: Path) -> None:
    from mmsim.runtime import run_scenario
    from mmsim.scenario import load_scenario
    from mmsim.store import RunStore

    loaded = load_scenario(ROOT / "scenarios" / "interfeedback-hf.yaml", limit=6, overrides=[
        f"receivers.0.params.model={tiny_dir}", "receivers.0.params.device=cpu",
        "receivers.0.params.max_new_tokens=8"])
    result = anyio.run(lambda: run_scenario(loaded, tmp_path / "run"))
    store = RunStore.open(tmp_path / "run", create=False)
    try:
        counts = store.counts()
        episodes = list(store.episodes())
    finally:
        store.close()
    assert counts.get("screen.done", 0) + counts.get("screen.failed", 0) == 2 * 6
    assert all(e["status"] in ("done", "failed") for e in episodes)
    assert result.turns >= 12 and not result.failed
    # test_set all_wrong: every item the receiver got wrong gets one feedback episode per
    # policy (binary, detailed)
    wrong = [e for e in episodes if e["kind"] == "screen" and e["model"] == "hf-receiver"
             and not e["first_correct"]]
    assert wrong  # gibberish is never an answer under the strict extractor
    assert counts.get("feedback.done", 0) == 2 * len(wrong)
    assert not counts.get("feedback.failed") and not counts.get("screen.failed")


def test_video_parts_reach_the_model_as_sampled_frames(tiny_dir: Path, image: Image,
                                                       tmp_path: Path) -> None:
    """A video part becomes its frames (the SEED-Bench-R1 recipe, cached by content hash):
    the prompt grows by one image's tokens per frame, and the clip is decoded once."""
    pytest.importorskip("av")
    from PIL import Image as PILImage

    from mmsim.backends.hf import HFBackend
    from mmsim.data.video import frame_cache, write_video

    clip = write_video(tmp_path / "clip.mp4", [PILImage.new("RGB", (64, 48), (10 * t, 0, 0))
                                               for t in range(24)], 8.0)  # 3 s -> 6 frames
    cache = tmp_path / "frames"
    backend = HFBackend("tiny", {"model": str(tiny_dir), "device": "cpu", "max_new_tokens": 4,
                                 "frame_cache_dir": str(cache),
                                 "video_frames": {"size": 56}})
    q = Text(text="What happens next?")
    with_video = GenerateRequest(messages=(ChatTurn(role="user", parts=(clip, image, q)),))
    image_only = GenerateRequest(messages=(ChatTurn(role="user", parts=(image, q)),))
    a, b, again = _generate_all(backend, [with_video, image_only, with_video], False)
    per_image = b.usage.prompt_tokens - _generate_all(backend, [GenerateRequest(
        messages=(ChatTurn(role="user", parts=(q,)),))], False)[0].usage.prompt_tokens
    assert a.usage.prompt_tokens - b.usage.prompt_tokens == 6 * per_image
    assert again.text == a.text
    fc = frame_cache(cache, backend._frame_spec)
    assert fc.decodes == 1
    with pytest.raises(UserError):
        HFBackend("tiny", {"model": str(tiny_dir), "device": "cpu",
                           "video_frames": {"fps": 0}})
