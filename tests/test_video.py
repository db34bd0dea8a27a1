"""The video protocol (SEED-Bench-R1): rewards, pass@k and advantages, the published-format
adapter on generated fixtures (mp4 clips written with PyAV), the prompt and frame order,
levels and side-by-side, rollouts and their export, resume, a real HTTP model, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image as PILImage

from mmsim.data.video import write_video
from mmsim.errors import DataError
from mmsim.protocols.video import (
    accuracy_reward,
    advantages,
    compute,
    format_reward,
    pass_at_k,
)
from mmsim.protocols.video.data import load_seed_bench_r1
from mmsim.protocols.video.export import export_rollouts
from mmsim.protocols.video.scenario import PROMPT
from mmsim.runtime import Kernel, run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from mmsim.testing import EchoServer

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "video_levels.yaml"

av = pytest.importorskip("av")


# --------------------------------------------------------------------------- rewards
@pytest.mark.parametrize(("text", "acc", "fmt"), [
    ("<think>it rolls right</think><answer>B.</answer>", 1, 1),
    ("<think>x</think>\n  <answer>B. it reaches the right wall</answer>", 1, 1),
    ("<answer>B.</answer>", 1, 0),                       # no think: format 0
    ("<think>x</think><answer>C.</answer>", 0, 1),        # wrong letter
    ("The answer is B.", 0, 0),                          # no tag: the rule reads the tag
    ("<think>x</think><answer></answer>", 0, 1),          # empty answer
    ("preamble <think>x</think><answer>B</answer>", 1, 0),  # format must start the reply
    ("<think>a\nb</think><answer> B </answer> trailing", 1, 1),
])
def test_rewards_follow_the_published_rules(text: str, acc: int, fmt: int) -> None:
    assert accuracy_reward(text, "B") == acc
    assert format_reward(text) == fmt


def _pass_brute(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c right) holding at least one right sample."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_unbiased_estimator(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    assert math.isclose(pass_at_k(n, c, k), _pass_brute(n, c, k), abs_tol=1e-12)


def test_advantages_are_normalised_within_the_group() -> None:
    r = [2.0, 1.0, 0.0, 1.0]
    adv = advantages(r)
    assert math.isclose(sum(adv), 0.0, abs_tol=1e-9)
    std = math.sqrt(sum((x - 1.0) ** 2 for x in r) / 3)  # unbiased, as torch.std
    assert math.isclose(adv[0], 1.0 / (std + 1e-4))
    assert advantages([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]  # zero variance: no signal
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


# --------------------------------------------------------------------------- fixtures
def _frames(n: int, colour: str, row: int = 0) -> list[PILImage.Image]:
    out = []
    for t in range(n):
        img = PILImage.new("RGB", (64, 48), "white")
        img.paste(PILImage.new("RGB", (8, 8), colour), (4 + 2 * t, 4 + 4 * row))
        out.append(img)
    return out


def make_seed_bench(root: Path, *, n: int = 3, clip_frames: int = 24, fps: float = 8.0,
                    training: bool = True) -> Path:
    """A tiny copy of SEED-Bench-R1 in its published layout."""
    for level in ("L1", "L2", "L3"):
        rows = []
        for i in range(n):
            sid = f"{level}{i}"
            src = "EpicKitchens" if level != "L3" else "Ego4D"
            (root / "images" / src).mkdir(parents=True, exist_ok=True)
            _frames(1, "red")[0].save(root / "images" / src / f"{sid}.png")
            progress: list[dict[str, Any]] = []
            if i != 1:  # row 1 of each level: no progress metadata, so no video
                write_video(root / "videos" / src / f"{sid}.mp4",
                            _frames(clip_frames, "blue", 3 * "L1L2L3".index(level) // 2 + i), fps)
                progress = [{"narration_text": "take the knife"}]
            rows.append({"sample_id": sid, "question": f"What is the next action ({sid})?",
                         "answer": "cut the onion", "choice_a": "wash the pan",
                         "choice_b": "cut the onion", "choice_c": "open the fridge",
                         "choice_d": "put down the knife", "golden_choice_idx": "B",
                         "video_source": src, "video_basename": f"{sid}.mp4",
                         "current_observation_basename": f"{sid}.png",
                         "task_progress_metadata": progress, "task_goal": "make a salad"})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"validation_{level}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    if training:
        rows = []
        for i in range(n):
            sid = f"t{i}"
            _frames(1, "green")[0].save(root / "images" / "EpicKitchens" / f"{sid}.png")
            write_video(root / "videos" / "EpicKitchens" / f"{sid}.mp4",
                        _frames(clip_frames, "green", i), fps)
            rows.append({"sample_id": sid, "question": "What next?", "answer": "stir the soup",
                         "negative_answers": ["wash the pan", "open the fridge", "sit down",
                                              "turn off the light"],
                         "video_source": "EpicKitchens", "video_basename": f"{sid}.mp4",
                         "current_observation_basename": f"{sid}.png",
                         "task_progress_metadata": [{"narration_text": "boil water"}]})
        (root / "annotations" / "training_6k.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    return root


def _load(root: Path, **options: Any) -> list[Any]:
    return load_seed_bench_r1({"path": str(root), **options}, base_dir=root,
                              cache_dir=root / "cache", limit=None, seed=0)


def test_adapter_reads_the_published_layout(tmp_path: Path) -> None:
    root = make_seed_bench(tmp_path / "sbr1")
    items = _load(root, training="training_6k.jsonl")
    assert [it.category for it in items] == ["L1"] * 3 + ["L2"] * 3 + ["L3"] * 3 + ["train"] * 3
    l1 = items[0]
    assert l1.answer == "B" and l1.answer_format.options[1] == "cut the onion"
    assert l1.question == ("What is the next action (L10)?\nA. wash the pan\nB. cut the onion\n"
                           "C. open the fridge\nD. put down the knife\n")
    assert len(l1.images) == 1 and l1.images[0].uri.endswith("images/EpicKitchens/L10.png")
    assert len(l1.videos) == 1 and l1.videos[0].uri.endswith("videos/EpicKitchens/L10.mp4")
    assert items[1].videos == ()  # empty task_progress_metadata: the image only
    for t in items[-3:]:  # training rows: three negatives and the answer, shuffled
        opts = t.answer_format.options
        assert len(opts) == 4 and "stir the soup" in opts
        assert opts[t.answer_format.letters.index(t.answer)] == "stir the soup"
    again = _load(root, training="training_6k.jsonl")
    assert [it.answer_format.options for it in again] == [it.answer_format.options
                                                          for it in items]


@pytest.mark.parametrize(("mutate", "field", "text"), [
    (lambda r: r.pop("choice_c"), "choice_c", "missing"),
    (lambda r: r.update(golden_choice_idx="E"), "golden_choice_idx", "A, B, C, D"),
    (lambda r: r.update(video_basename="nope.mp4"), "video_basename", "not found"),
    (lambda r: r.update(task_progress_metadata="x"), "task_progress_metadata", "list"),
    (lambda r: r.update(current_observation_basename="nope.png"),
     "current_observation_basename", "not readable"),
])
def test_adapter_bad_rows_name_file_line_and_field(tmp_path: Path, mutate: Any, field: str,
                                                   text: str) -> None:
    root = make_seed_bench(tmp_path / "sbr1", training=False)
    f = root / "annotations" / "validation_L2.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    mutate(rows[2])
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        _load(root)
    assert e.value.field == field and text in e.value.message
    assert "validation_L2.jsonl:3" in (e.value.where or "")


def test_adapter_zero_byte_video_and_bad_json(tmp_path: Path) -> None:
    root = make_seed_bench(tmp_path / "sbr1", training=False)
    (root / "videos" / "EpicKitchens" / "L10.mp4").write_bytes(b"")
    with pytest.raises(DataError) as e:
        _load(root)
    assert "empty (0 bytes)" in e.value.message and e.value.field == "video_basename"
    root2 = make_seed_bench(tmp_path / "other", training=False)
    with (root2 / "annotations" / "validation_L3.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(DataError) as e:
        _load(root2)
    assert "validation_L3.jsonl:4" in (e.value.where or "")


# --------------------------------------------------------------------------- runs
def _scenario(tmp: Path, body: str) -> Path:
    p = tmp / "video.yaml"
    p.write_text(body)
    return p


SBR1_SCENARIO = """kind: video
name: sbr1
seed: 3
dataset: {{name: seed-bench-r1, path: {root}, training: training_6k.jsonl}}
frames: {{size: 56}}
models:
  - {{name: base, backend: sim, params: {{skill: 0.0}}}}
  - {{name: tuned, backend: sim, params: {{skill: 2.0, format_rate: 1.0}}}}
rollouts: {{samples: 4, k: [1, 4], export: [jsonl, parquet]}}
run: {{concurrency: 8, bootstrap: 200}}
"""


def test_run_on_the_published_layout_prompt_frames_rollouts_and_resume(tmp_path: Path
                                                                        ) -> None:
    root = make_seed_bench(tmp_path / "sbr1")
    scn = _scenario(tmp_path, SBR1_SCENARIO.format(root=root))
    out = tmp_path / "run"
    runner = Kernel(load_scenario(scn), out)
    res = anyio.run(runner.run)
    clips = 2 * 3 + 3  # two clips per level (row 1 has none) and three training clips
    assert runner.protocol_run.decodes == clips
    assert res.played == 2 * 9 + 2 * 3 * 4 and res.failed == 0
    store = RunStore.open(out, create=False)
    try:
        ep = next(e for e in store.episodes("video_eval") if e["sample_id"] == "L1/L10")
        msgs = store.messages(ep["episode_id"])
        m = compute(store)
    finally:
        store.close()
    parts = msgs[0]["conversation"][0]["parts"]
    # 24 frames at 8 fps = 3 s -> 6 frames at 2 fps; then the current observation, the text
    assert [p["type"] for p in parts] == ["image"] * 7 + ["text"]
    assert all(p["width"] == 56 for p in parts[:6]) and parts[6]["uri"].endswith("L10.png")
    assert parts[7]["text"] == PROMPT.format(problem=(
        "What is the next action (L10)?\nA. wash the pan\nB. cut the onion\n"
        "C. open the fridge\nD. put down the knife\n"))
    assert m["levels"]["tuned"]["L1"]["accuracy"]["n"] == 3
    assert set(m["rollouts"]) == {"base", "tuned"}
    assert m["rollouts"]["tuned"]["groups"] == 3 and m["rollouts"]["tuned"]["samples"] == 12
    assert m["side_by_side"][0]["base"] == "base"
    rows = [json.loads(x) for x in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 * 4
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_group.setdefault(r["group_id"], []).append(r)
    assert len(by_group) == 6
    for g in by_group.values():
        assert sorted(r["sample_index"] for r in g) == [0, 1, 2, 3]
        assert len({json.dumps(r["prompt"]) for r in g}) == 1  # one prompt per group
        assert math.isclose(sum(r["advantage"] for r in g), 0.0, abs_tol=1e-6)
        for r in g:
            assert r["reward"] == r["rewards"]["accuracy"] + r["rewards"]["format"]
            assert r["solution"].startswith("<answer>") and r["completion"][0]["role"] == \
                "assistant"
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(out / "rollouts.parquet")
    assert table.num_rows == len(rows) and {"advantage", "group_id", "prompt"} <= set(
        table.column_names)
    # a rerun plays nothing and decodes nothing: frames come from the cache
    runner2 = Kernel(load_scenario(scn), out)
    res2 = anyio.run(runner2.run)
    assert res2.played == 0 and res2.skipped == res.played and runner2.protocol_run.decodes == 0


def test_levels_concurrency_independent_and_sim_gap(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out, conc in ((a, "1"), (b, "64")):
        r = run_cli("run", str(SCENARIO), "--out", str(out), "--no-progress", "--limit", "12",
                    "--set", f"run.concurrency={conc}", "--set", "rollouts.samples=4",
                    "--set", "rollouts.k=[1,2,4]", "--wide")
        assert r.returncode == 0, r.stderr
    assert "Accuracy by level" in r.stdout and "L3 cross-env-task" in r.stdout
    assert "Rollouts: G=4" in r.stdout and "pass@4" in r.stdout and "SIMULATED" in r.stdout
    metrics = []
    for out in (a, b):
        store = RunStore.open(out, create=False)
        try:
            metrics.append(compute(store))
        finally:
            store.close()
    assert metrics[0]["levels"] == metrics[1]["levels"]
    assert metrics[0]["rollouts"] == metrics[1]["rollouts"]
    r = run_cli("report", str(a), "--format", "json")
    assert json.loads(r.stdout)["schema"] == "mmsim.video.v1"
    rows = (a / "rollouts.jsonl").read_text().splitlines()
    assert len(rows) == 2 * 12 * 4


def _tagged(messages: list[Any], digest: bytes) -> str:
    return f"<think>the ball moves on</think><answer>{'ABCD'[digest[0] % 4]}.</answer>"


def test_real_http_model_gets_frames_as_images(tmp_path: Path) -> None:
    root = make_seed_bench(tmp_path / "sbr1", n=2, training=False)
    with EchoServer(record=True, answer=_tagged) as srv:
        scn = _scenario(tmp_path, f"""kind: video
name: http
dataset: {{name: seed-bench-r1, path: {root}}}
frames: {{size: 56}}
models:
  - {{name: echo, backend: openai, params: {{base_url: "{srv.base_url}", model: tiny}}}}
rollouts: null
run: {{concurrency: 4, bootstrap: 0}}
""")
        res = anyio.run(lambda: run_scenario(load_scenario(scn), tmp_path / "run"))
        assert res.played == 6 and res.failed == 0 and srv.hits == 6
        bodies = [json.loads(b) for b in srv.bodies]
    with_video = [b for b in bodies if len(b["messages"][0]["content"]) == 8]
    assert len(with_video) == 3  # six frames + the current observation + the text
    content = with_video[0]["messages"][0]["content"]
    assert all(c["type"] == "image_url" and c["image_url"]["url"].startswith(
        "data:image/jpeg;base64,") for c in content[:6])
    assert bodies[0]["temperature"] == 0
    store = RunStore.open(tmp_path / "run", create=False)
    try:
        m = compute(store)
    finally:
        store.close()
    assert m["levels"]["echo"]["all"]["format"] == 1.0  # the server always uses the tags
    assert not m["simulated"]


@pytest.mark.parametrize(("body", "field"), [
    ("rollouts: {samples: 2, k: [1, 4]}", "rollouts"),
    ("prompt: 'no placeholder'", "prompt"),
    ("frames: {fps: 0}", "frames.fps"),
    ("models: [{name: m, backend: openai, params: {seed: 1, base_url: 'http://x/v1'}}]", ""),
    ("dataset: {name: seed-bench-r2}", "dataset.name"),
])
def test_bad_scenarios_exit_2_with_the_field(tmp_path: Path, body: str, field: str) -> None:
    base = {"kind": "video", "name": "bad", "models": [{"name": "m", "backend": "sim"}]}
    text = "\n".join(f"{k}: {json.dumps(v)}" for k, v in base.items()
                     if k not in body.split(":")[0]) + "\n" + body + "\n"
    scn = _scenario(tmp_path, text)
    r = run_cli("validate", str(scn))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and str(scn) in r.stderr
    if field:
        assert field in r.stderr
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 2 and not (tmp_path / "run" / "mmsim.sqlite").exists()


def test_export_to_a_new_file_is_atomic_and_counts_rows(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli("run", str(SCENARIO), "--out", str(out), "--no-progress", "--limit", "3",
                "--set", "rollouts.samples=2", "--set", "rollouts.k=[1,2]")
    assert r.returncode == 0, r.stderr
    n = export_rollouts(out, tmp_path / "x" / "r.jsonl", "jsonl")
    assert n == 2 * 3 * 2
    assert not [p for p in (tmp_path / "x").iterdir() if p.name.startswith(".")]
    r = run_cli("export", str(out), "--rollouts", "--format", "parquet")
    assert r.returncode == 0 and "12 rows" in r.stderr, r.stderr
    assert (out / "rollouts.parquet").is_file()
    r = run_cli("export", str(tmp_path / "nothing"), "--rollouts")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_send_video_passes_the_clip_as_video_url(tmp_path: Path) -> None:
    root = make_seed_bench(tmp_path / "sbr1", n=2, training=False)
    with EchoServer(record=True, answer=_tagged) as srv:
        scn = _scenario(tmp_path, f"""kind: video
name: http
dataset: {{name: seed-bench-r1, path: {root}, levels: [L1]}}
frames: {{send: video}}
models:
  - name: echo
    backend: openai
    params: {{base_url: "{srv.base_url}", model: tiny, video: video_url,
              image_transport: file_url}}
rollouts: null
run: {{concurrency: 4, bootstrap: 0}}
""")
        runner = Kernel(load_scenario(scn), tmp_path / "run")
        res = anyio.run(runner.run)
        assert res.played == 2 and runner.protocol_run.decodes == 0  # none decoded
        bodies = [json.loads(b) for b in srv.bodies]
    kinds = sorted(tuple(c["type"] for c in b["messages"][0]["content"]) for b in bodies)
    assert kinds == [("image_url", "text"), ("video_url", "image_url", "text")]


def test_default_scenario_runs_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """The core install has no PyAV: the synthetic clips are then GIFs, decoded by Pillow."""
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    loaded = load_scenario(SCENARIO, limit=4, overrides=["rollouts.samples=2",
                                                              "rollouts.k=[1,2]"])
    runner = Kernel(loaded, tmp_path / "run")
    res = anyio.run(runner.run)
    assert res.failed == 0 and res.played == 2 * 3 * 4 + 2 * 4 * 2
    clips = list((tmp_path / "run" / "assets").glob("synthetic-video-*/videos/*/*"))
    assert clips and all(p.suffix == ".gif" for p in clips)
    assert runner.protocol_run.decodes == len(clips)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage, not a video" * 10])
def test_cli_broken_clip_exit_2_names_it_and_writes_no_run(tmp_path: Path, content: bytes
                                                          ) -> None:
    root = make_seed_bench(tmp_path / "sbr1", training=False)
    (root / "videos" / "Ego4D" / "L32.mp4").write_bytes(content)
    scn = _scenario(tmp_path, SBR1_SCENARIO.format(root=root).replace(
        ", training: training_6k.jsonl", ""))
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 2, r.stderr
    assert "L32.mp4" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "mmsim.sqlite").exists()


def test_rollouts_without_training_rows_is_a_clear_error(tmp_path: Path) -> None:
    root = make_seed_bench(tmp_path / "sbr1", training=False)
    scn = _scenario(tmp_path, SBR1_SCENARIO.format(root=root).replace(
        ", training: training_6k.jsonl", ""))
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 2 and "rollouts.split" in r.stderr and "training_6k" in r.stderr
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress",
                "--set", "rollouts.split=validation")
    assert r.returncode == 0, r.stderr
