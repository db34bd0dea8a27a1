"""A protocol that is none of mmsim's four, loaded as a user loads it (``--plugin
examples/self_refine.py``): validated, run, resumed, played on Ray, reported (terminal, JSON,
HTML with its own section and the transcript viewer), exported and compared — with no
code of its own for any of that — and once against the real ``transformers serve`` tiny
model started by its ``servers:`` block.

Its metrics are checked against figures computed here independently, from the model
replies stored in the run and the dataset's answers."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, StopAfter, report_json, run_cli
from tiny_vlm import tiny_model_dir

from mmsim.registry import load_plugin_file
from mmsim.runtime import Kernel
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from mmsim.tasks.answers import check_answer

PLUGIN = ROOT / "examples" / "self_refine.py"
SCENARIO = ROOT / "examples" / "self_refine.yaml"


def _cli(*args: str, timeout: float = 180) -> Any:
    return run_cli(*args, "--plugin", str(PLUGIN), timeout=timeout)


def _independent(run_dir: Path, max_rev: int) -> dict[str, list[float]]:
    """Accuracy by revision per model, from the stored replies and the dataset: the answer
    extracted from each model reply, checked against the sample's answer; an episode that
    stopped early keeps its last answer."""
    from mmsim.data.synthetic import load_synthetic

    samples = {s.id: s for s in load_synthetic({"size": 60, "seed": 3},
                                               base_dir=ROOT, cache_dir=run_dir / "x",
                                               limit=None)}
    store = RunStore.open(run_dir, create=False)
    per_model: dict[str, list[list[bool]]] = {}
    try:
        for ep in store.episodes("self-refine"):
            s = samples[ep["sample_id"]]
            answers = [m["answer"] for m in store.messages(ep["episode_id"])
                       if m["kind"] == "response"]
            per_model.setdefault(ep["model"], []).append(
                [check_answer(a, s.answer, s.answer_format) for a in answers])
    finally:
        store.close()
    return {name: [sum(e[min(r, len(e) - 1)] for e in eps) / len(eps)
                   for r in range(max_rev + 1)] for name, eps in per_model.items()}


def test_validate_run_resume_report_export_compare(tmp_path: Path) -> None:
    r = _cli("validate", str(SCENARIO))
    assert r.returncode == 0 and "self-refine: 2 models, 1 judge" in r.stdout, r.stderr
    out = tmp_path / "run"
    r = _cli("run", str(SCENARIO), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "120 episodes played" in r.stderr and "acc@2" in r.stdout
    r = _cli("run", str(SCENARIO), "--out", str(out), "--no-progress")
    assert r.returncode == 0 and "0 episodes played, 120 already done" in r.stderr
    m = report_json(out, "--plugin", str(PLUGIN))
    assert m["kind"] == "self-refine" and m["max_revisions"] == 2
    want = _independent(out, 2)
    got = {x["name"]: x["accuracy_by_revision"] for x in m["models"]}
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name])
    # judge calibration: AUROC from the stored verdicts and step outcomes
    for x in m["models"]:
        j = x["judge"]
        assert j["n_scored"] > 0 and (j["auroc"] is None or 0.0 <= j["auroc"] <= 1.0)
    # HTML: the protocol's own section and its episodes in the transcript viewer
    html = tmp_path / "r.html"
    r = _cli("report", str(out), "--format", "html", "-o", str(html))
    assert r.returncode == 0, r.stderr
    page = html.read_text()
    assert "Self-refine: accuracy by revision" in page and "acc@2" in page
    data = json.loads(re.search(r'id="mmsim-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["episodes"]) == 120
    # export
    r = _cli("export", str(out), "--format", "jsonl", "-o", str(tmp_path / "eps.jsonl"),
             "--messages")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "eps.jsonl").read_text().splitlines()]
    assert len(rows) == 120 and {x["kind"] for x in rows} == {"self-refine"}
    # compare: one more revision allowed
    out2 = tmp_path / "run2"
    r = _cli("run", str(SCENARIO), "--out", str(out2), "--no-progress", "--set",
             "max_revisions=1")
    assert r.returncode == 0, r.stderr
    r = _cli("compare", str(out2), str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    cmp = json.loads(r.stdout)
    assert cmp["metrics"] == ["solved"] and len(cmp["cells"]) == 2
    assert all(c["solved"]["n_shared"] == 60 for c in cmp["cells"])


def test_interrupted_then_resumed_on_ray_equals_uninterrupted(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from mmsim.runtime.executors import RayExecutor

    load_plugin_file(PLUGIN)
    scn = load_scenario(SCENARIO, overrides=["dataset.size=20"])
    ref = Kernel(scn, tmp_path / "ref")
    anyio.run(ref.run)
    prog = StopAfter(10)
    part = Kernel(scn, tmp_path / "run", progress=prog)
    prog.kernel = part
    anyio.run(part.run)
    assert 0 < part.played < ref.played
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        rest = Kernel(scn, tmp_path / "run",
                      executor=RayExecutor(workers=2, batch_size=4, plugins=[PLUGIN]))
        anyio.run(rest.run)
    finally:
        ray.shutdown()
    assert rest.skipped == part.played and part.played + rest.played == ref.played
    plug = ("--plugin", str(PLUGIN))
    assert report_json(tmp_path / "run", *plug) == report_json(tmp_path / "ref", *plug)


def test_against_the_real_tiny_model_behind_transformers_serve(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    model = tiny_model_dir(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("self-refine-serve")
    (tmp / "hf-cache").mkdir()
    agent = "{server: tiny, max_tokens: 8, temperature: 0, timeout_s: 60, max_retries: 2}"
    scn = tmp / "serve.yaml"
    scn.write_text(textwrap.dedent(f"""
        kind: self-refine
        name: self-refine-serve
        dataset: {{name: synthetic, size: 3, seed: 2}}
        servers:
          - name: tiny
            command: transformers
            model: {model}
            args: [--device, cpu]
            env: {{HF_HUB_OFFLINE: "1", HF_HUB_CACHE: "{tmp / 'hf-cache'}",
                   OMP_NUM_THREADS: "1"}}
            startup_timeout_s: 180
        models:
          - {{name: tiny-model, backend: openai, params: {agent}}}
        judge: {{name: tiny-judge, backend: openai, params: {agent}}}
        max_revisions: 1
        run: {{concurrency: 4}}
    """))
    out = tmp / "run"
    r = _cli("run", str(scn), "--out", str(out), "--no-progress", timeout=400)
    assert r.returncode == 0, r.stderr
    store = RunStore.open(out, create=False)
    try:
        eps = list(store.episodes("self-refine"))
        msgs = [m for e in eps for m in store.messages(e["episode_id"])]
        run = store.run()
    finally:
        store.close()
    assert len(eps) == 3 and all(e["status"] == "done" for e in eps)
    replies = [m for m in msgs if m["kind"] == "response"]
    # the random-weight judge never writes "Score: N": every episode revises once
    assert len(replies) == 6 and not any(m["simulated"] for m in replies)
    assert all(m["usage"]["completion_tokens"] > 0 for m in replies)
    assert run is not None
    assert "transformers" in " ".join(run["manifest"]["servers"]["tiny"]["argv"])
    assert (out / "servers" / "tiny.log").is_file()
