"""The worked policies of docs/policies.md, run as written on that page: each code block
becomes a plugin file, a scenario uses it, and the stored feedback is checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import ROOT, run_cli

from mmsim.data.sample import Sample
from mmsim.store import RunStore

DOC = ROOT / "docs" / "policies.md"


def _blocks() -> dict[str, str]:
    """The page's Python blocks, by the policy name each registers."""
    out = {}
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        [name] = re.findall(r'@policy\("([^"]+)"\)', code)
        out[name] = code
    return out


def _plugins(tmp: Path) -> list[str]:
    args = []
    for i, code in enumerate(_blocks().values()):
        p = tmp / f"policy_{i}.py"
        p.write_text(code, encoding="utf-8")
        args += ["--plugin", str(p)]
    return args


def _feedback(run_dir: Path) -> list[tuple[dict[str, Any], Sample, dict[str, Any]]]:
    """(episode, its sample, feedback message) for every feedback of the run."""
    from mmsim.data import DATASETS

    store = RunStore.open(run_dir, create=False)
    try:
        run = store.run()
        assert run is not None
        opts = {k: v for k, v in run["scenario"]["dataset"].items() if k != "name"}
        samples = {s.id: s for s in DATASETS.get("synthetic")(
            opts, base_dir=ROOT, cache_dir=run_dir, limit=None)}
        out = []
        for ep in store.episodes("feedback"):
            for m in store.messages(ep["episode_id"]):
                if m["kind"] == "feedback":
                    out.append((ep, samples[ep["sample_id"]], m))
    finally:
        store.close()
    return out


SIM = """
name: worked-policies
seed: 5
dataset: {name: synthetic, size: 40, seed: 2}
receivers:
  - {name: r, backend: sim, params: {skill: -0.5, uptake: {elimination: 0.35}}}
providers:
  - {name: p, backend: sim, params: {skill: 2.0}}
policies: [eliminate-one, rubric]
protocol: {max_rounds: 3}
run: {bootstrap: 50}
"""


def test_the_page_has_three_worked_policies() -> None:
    assert sorted(_blocks()) == ["eliminate-one", "human-then-reveal", "rubric"]


def test_elimination_and_rubric_policies_run(tmp_path: Path) -> None:
    scn = tmp_path / "s.yaml"
    scn.write_text(SIM)
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress",
                *_plugins(tmp_path))
    assert r.returncode == 0, r.stderr
    fb = _feedback(tmp_path / "run")
    by = {"eliminate-one": [x for x in fb if x[2]["policy"] == "eliminate-one"],
          "rubric": [x for x in fb if x[2]["policy"] == "rubric"]}
    assert by["eliminate-one"] and by["rubric"]
    n_choice = 0
    for _ep, sample, m in by["eliminate-one"]:
        assert not m["leaked"] and not m["reveals_answer"]
        fmt = sample.answer_format
        if fmt.kind != "choice":
            assert m["feedback_kind"] == "binary" and m["text"] == "Your answer is incorrect."
            continue
        n_choice += 1
        assert m["feedback_kind"] == "elimination"
        named = re.findall(r"\b([A-Z])\b", m["text"].split("incorrect.", 1)[1])
        assert sample.answer not in named  # never the answer
        assert set(named) <= set(fmt.letters)
    assert n_choice > 0
    for _, _, m in by["rubric"]:
        assert m["feedback_kind"] == "detailed" and m["text"].startswith("Rubric:\n")
        assert len(m["text"]) > len("Rubric:\n\n") + 10


def test_human_then_reveal_policy_runs(tmp_path: Path) -> None:
    scn = tmp_path / "h.yaml"
    scn.write_text((ROOT / "scenarios" / "interfeedback-human.yaml").read_text()
                   .replace("  - name: human-study\n    schedule: [human, human, reveal]\n",
                            "  - name: human-then-reveal\n    options: {reveal_at: 2}\n")
                   .replace("size: 120", "size: 30"))
    assert "human-then-reveal" in scn.read_text()
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress",
                *_plugins(tmp_path))
    assert r.returncode == 0, r.stderr
    fb = _feedback(tmp_path / "run")
    assert fb
    rounds: dict[str, int] = {}
    for ep, sample, m in sorted(fb, key=lambda x: (x[0]["episode_id"], x[2]["seq"])):
        k = rounds[ep["episode_id"]] = rounds.get(ep["episode_id"], 0) + 1
        if k >= 2:  # reveal_at: 2
            assert m["feedback_kind"] == "reveal" and m["reveals_answer"]
            assert sample.answer_text in m["text"] and not m["leaked"]
        else:  # the person (a persona here) gives the first feedback
            assert m["feedback_kind"] in ("detailed", "binary", "disputed")
            assert not m["reveals_answer"]
    # both branches ran; rounds stop at the scenario's budget (3)
    assert 1 in rounds.values() and max(rounds.values()) in (2, 3)
    assert sum(k >= 2 for k in rounds.values()) > 0
