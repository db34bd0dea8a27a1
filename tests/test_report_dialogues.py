"""Dynamic-evaluation and video transcripts read as dialogues in the HTML report: the
prompt with its images (a clip's frames), the model's reply, the judge's verdict, and a
closing line with what was scored (checked against the stored messages, and in headless
Chromium where it is installed)."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_report_html import _CLIP_PROBE, CHROMIUM
from test_report_html import _chromium as _chrome

from mmsim.report.html import build_html
from mmsim.runtime import run_scenario
from mmsim.scenario import load_any_scenario
from mmsim.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
LONG_DYN = "contaminated-model-with-a-really-long-descriptive-name-v2"
LONG_VIDEO = "post-trained-model-whose-name-goes-on-and-on-and-on-x"


def _play(tmp: Path, name: str, edit: dict[str, str]) -> Path:
    text = (ROOT / "scenarios" / f"{name}.yaml").read_text()
    for a, b in edit.items():
        assert a in text, a
        text = text.replace(a, b)
    scn = tmp / f"{name}.yaml"
    scn.write_text(text)
    out = tmp / name
    anyio.run(lambda: run_scenario(load_any_scenario(scn), out))
    return out


def _data(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="mmsim-data">(.*?)</script>', page,
                  re.S)
    assert m is not None
    return dict(json.loads(m.group(1)))


def _stored(run: Path) -> dict[str, list[dict[str, Any]]]:
    store = RunStore.open(run, create=False)
    try:
        return {e["episode_id"]: store.messages(e["episode_id"]) for e in store.episodes()}
    finally:
        store.close()


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("dyn-dialogue")
    run = _play(tmp, "dynamic_eval", {"size: 80": "size: 10", "bootstrap: 1000":
                                      "bootstrap: 100",
                                      "{name: contaminated,": f"{{name: {LONG_DYN},"})
    page, _ = build_html([run], max_episodes=400)
    (tmp / "dyn.html").write_text(page, encoding="utf-8")
    return run, page


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("video-dialogue")
    run = _play(tmp, "video_levels", {"items_per_level: 60": "items_per_level: 4",
                                      "training_items: 60": "training_items: 2",
                                      "bootstrap: 1000": "bootstrap: 100",
                                      "name: post-trained": f"name: {LONG_VIDEO}"})
    page, _ = build_html([run], max_episodes=400)
    (tmp / "video.html").write_text(page, encoding="utf-8")
    return run, page


def _kinds(ep: dict[str, Any]) -> list[str]:
    return [e["t"] if e["t"] != "turn" else f"turn:{e['role']}" for e in ep["events"]]


def test_dynamic_tasks_read_prompt_reply_verdict_score(dynamic: tuple[Path, str]) -> None:
    run, page = dynamic
    stored = _stored(run)
    eps = _data(page)["episodes"]
    judged = [e for e in eps if e["kind"] == "dyn_task" and any(
        ev["t"] == "verdict" for ev in e["events"])]
    exact = [e for e in eps if e["kind"] == "dyn_task" and e not in judged
             and e["status"] == "done"]
    assert judged and exact
    for ep in judged + exact:
        msgs = stored[ep["id"]]
        res = next(m for m in msgs if m["kind"] == "dyn_result")
        kinds = _kinds(ep)
        # the dialogue: the prompt, the model's reply, [the judge], the scored line
        assert kinds[0] == "turn:user" and kinds[1] == "response" and kinds[-1] == "result"
        assert ep["events"][0].get("images"), "the prompt shows the item's image"
        last = ep["events"][-1]
        assert last["gold"] == res["reference"] and last["gold"]
        if ep in judged:
            v = next(m for m in msgs if m["kind"] == "verdict")
            ev = next(x for x in ep["events"] if x["t"] == "verdict")
            assert kinds.index("verdict") == len(kinds) - 2
            assert ev["score"] == v["score"] and ev["text"] == v["reason"]
            assert last["score"] == res["score"] and last["correct"] is None
            assert ep["outcome"] == "scored"
        else:
            assert last["correct"] is (res["score"] >= 1.0)
            assert last["answer"] == res["answer"] and last["score"] is None
            assert ep["outcome"] == ("correct" if res["score"] >= 1.0 else "wrong")


def test_calibration_pairs_open_with_what_the_judge_saw(dynamic: tuple[Path, str]) -> None:
    run, page = dynamic
    stored = _stored(run)
    calib = [e for e in _data(page)["episodes"] if e["kind"] == "dyn_calibration"]
    assert calib
    labels = set()
    for ep in calib:
        res = next(m for m in stored[ep["id"]] if m["kind"] == "dyn_result")
        first, last = ep["events"][0], ep["events"][-1]
        assert first["t"] == "turn" and first["role"] == "judge input"
        assert f"OUTPUT: {res['output']}" in first["text"]
        assert f"REFERENCE: {res['reference']}" in first["text"]
        assert _kinds(ep)[1] == "verdict" and last["t"] == "result"
        assert last["label"] == res["label"] and last["perturbation"] == res["perturbation"]
        assert ep["outcome"] == "scored"
        labels.add(res["label"])
    assert labels == {0, 1}


def test_video_dialogue_has_frames_reply_and_reward(video: tuple[Path, str]) -> None:
    run, page = video
    stored = _stored(run)
    eps = [e for e in _data(page)["episodes"] if e["status"] == "done"]
    assert eps
    for ep in eps:
        msgs = stored[ep["id"]]
        res = next(m for m in msgs if m["kind"] == "video_result")
        assert _kinds(ep) == ["turn:user", "response", "result"]
        assert len(ep["events"][0]["images"]) == res["n_frames"] >= 1
        if res["with_video"]:
            assert res["n_frames"] > 1  # the clip's frames and the current view
        last = ep["events"][-1]
        assert last["reward"] == res["reward"] and last["rewards"] == res["rewards"]
        assert last["correct"] is (res["rewards"]["accuracy"] >= 1.0)
        assert last["gold"] == res["gold"] and last["answer"] == res["answer"]
        assert last["unparsed"] is (res["answer"] is None)
        assert ep["outcome"] == ("correct" if last["correct"] else "wrong")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
@pytest.mark.parametrize("width", [1400, 800])
def test_dynamic_and_video_charts_fit_and_read_at_two_widths(
        dynamic: tuple[Path, str], video: tuple[Path, str], tmp_path: Path, width: int) -> None:
    """The radar and the video charts, with long model names: no text outside its chart,
    none smaller than 8.5 px as laid out, no chart wider than the page."""
    import base64
    import hashlib

    probe = _CLIP_PROBE.removeprefix("<script>").removesuffix("</script>")
    digest = base64.b64encode(hashlib.sha256(probe.encode()).digest()).decode()
    for (_, page), name in ((dynamic, "dyn"), (video, "video")):
        assert LONG_DYN in page or LONG_VIDEO in page
        f = tmp_path / f"{name}.html"
        f.write_text(page.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
                     .replace("</body>", _CLIP_PROBE + "</body>"), encoding="utf-8")
        dom = _chrome(tmp_path, f"--window-size={width},1200", "--virtual-time-budget=3000",
                      "--dump-dom", f.resolve().as_uri())
        m = re.search(r'data-clipped="([^"]*)"', dom)
        assert m is not None, "the probe did not run"
        assert json.loads(htmllib.unescape(m.group(1))) == [], name
        assert dom.count("<svg") >= 1


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_dialogues_render_in_a_browser(dynamic: tuple[Path, str], video: tuple[Path, str],
                                       tmp_path: Path) -> None:
    for (run, _), name in ((dynamic, "dyn"), (video, "video")):
        url = (run.parent / f"{name}.html").resolve().as_uri() + "#view=transcripts"
        dom = htmllib.unescape(_chrome(tmp_path, "--window-size=1000,1400", "--dump-dom", url))
        assert '<pre id="js-errors" class="js-errors"></pre>' in dom
        lines = re.findall(r'<div class="verdict-line">([^<]*)</div>', dom)
        assert lines, "no scored line rendered"
        if name == "video":
            assert 'class="event user strip"' in dom and " frames</span>" in dom
            assert all("reward " in s and "(accuracy " in s for s in lines)
            assert any(s.startswith("\u2713 correct") for s in lines)
        else:
            assert 'class="event verdict"' in dom and ">judge input</span>" in dom
            assert any("judge score" in s for s in lines)
            assert any("paraphrase of the reference" in s for s in lines)
            assert any("corrupted reference" in s for s in lines)
