"""Digital twins: parameter recovery, reproduction, prediction and planning."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest

from mmsim.backends.sim import DEFAULT_UPTAKE, SimParams
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.twins import fit_and_check, read_run
from mmsim.twins.data import attach_difficulty, load_dataset_difficulty
from mmsim.twins.fit import fit_run
from tests.conftest import run_cli

RECOVERY = """
name: recovery
seed: 11
dataset: {name: synthetic, size: 400, seed: 5}
receivers:
  - name: good
    backend: sim
    params: {skill: 0.6, discrimination: 1.3, format_noise: 0.04, elimination: 0.7,
             uptake: {binary: 0.30, detailed: 0.50, reveal: 0.90, none: 0.08},
             uptake_decay: 0.85}
  - name: poor
    backend: sim
    params: {skill: -0.7, format_noise: 0.08, elimination: 0.3,
             uptake: {binary: 0.15, detailed: 0.25, reveal: 0.80}}
providers:
  - name: teacher
    backend: sim
    params: {skill: 2.0, feedback_quality: 0.7, leak_rate: 0.05}
policies:
  - binary
  - detailed
  - retry
  - {name: d-r, schedule: [detailed, reveal]}
protocol: {max_rounds: 3, test_set: all_wrong}
run: {concurrency: 64, bootstrap: 200}
"""


def _truth(text: str) -> dict[str, dict[str, float]]:
    import yaml

    scn = yaml.safe_load(text)
    out: dict[str, dict[str, float]] = {}
    for a in scn["receivers"] + scn["providers"]:
        p = SimParams(**a["params"])
        up = {**DEFAULT_UPTAKE, **p.uptake}
        out[a["name"]] = {"skill": p.skill, "discrimination": p.discrimination,
                          "format_noise": p.format_noise, "uptake_decay": p.uptake_decay,
                          "elimination": p.elimination, "feedback_quality": p.feedback_quality,
                          "leak_rate": p.leak_rate,
                          **{f"uptake.{k}": v for k, v in up.items()}}
    return out


def _run(path: Path, out: Path, *sets: str) -> Path:
    loaded = load_scenario(path, overrides=list(sets))
    anyio.run(lambda: run_scenario(loaded, out))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("twins")
    scn = d / "recovery.yaml"
    scn.write_text(RECOVERY)
    return {"scenario": scn, "r3": _run(scn, d / "r3"),
            "r5": _run(scn, d / "r5", "protocol.max_rounds=5", "seed=12")}


def test_parameter_recovery(runs: dict[str, Path]) -> None:
    data = read_run(runs["r3"])
    attach_difficulty(data, load_dataset_difficulty(data))
    fit = fit_run(data, difficulty="data")
    truth = _truth(RECOVERY)
    checked = covered = 0
    for name, af in fit.agents.items():
        for key, est in af.estimates.items():
            if est.fixed:
                continue
            checked += 1
            covered += est.covers(truth[name][key])
            # every estimate is near the truth (a few interval widths at most)
            width = (est.hi or 0) - (est.lo or 0)
            assert abs(est.value - truth[name][key]) <= 1.5 * width + 0.02, (name, key, est)
    assert checked >= 20
    assert covered / checked >= 0.85, (covered, checked)
    # kinds never fed back are not estimated, and say so
    assert fit.agents["good"].estimates["uptake.misleading"].fixed is False
    assert fit.agents["teacher"].estimates["feedback_quality"].n > 100


def test_difficulty_fit_mode(runs: dict[str, Path]) -> None:
    data = read_run(runs["r3"])
    attach_difficulty(data, load_dataset_difficulty(data))
    fit = fit_run(data, difficulty="fit")
    assert fit.irt.tau is not None and fit.irt.tau > 0.1
    ids = sorted(fit.difficulty)
    est = np.asarray([fit.difficulty[i].value for i in ids])
    true = np.asarray([data.items[i].difficulty for i in ids], dtype=float)
    assert np.corrcoef(est, true)[0, 1] > 0.3
    # ability order is kept and the feedback block does not depend on difficulty
    e = {n: a.estimates for n, a in fit.agents.items()}
    assert e["good"]["skill"].value > e["poor"]["skill"].value
    assert e["good"]["uptake.binary"].covers(0.30)


def test_twin_reproduces_source_run(runs: dict[str, Path], tmp_path: Path) -> None:
    fit, own, _ = fit_and_check(runs["r3"], difficulty="data", draws=150)
    assert own is not None
    for row in own.rows:
        if row["figure"].startswith(("accuracy/", "correction_rate/")):
            assert row["in95"], row
    cal = {c["figures"]: c for c in own.calibration}
    assert cal["all"]["in95"] >= 0.9
    # and an actual run of the twin lands inside the source run's figures' intervals
    from mmsim.twins import write_twin

    twin = tmp_path / "twin.yaml"
    write_twin(fit, twin)
    out = _run(twin, tmp_path / "twin-run")
    twin_data = read_run(out)
    from mmsim.twins.predict import observed_figures

    got = observed_figures(twin_data)
    inside = [own.row(k)["lo"] <= v <= own.row(k)["hi"] for k, v in got.items()
              if k.startswith(("accuracy/", "correction_rate/"))]
    assert sum(inside) / len(inside) >= 0.9


def test_prediction_check_calibration(runs: dict[str, Path]) -> None:
    _, _, pred = fit_and_check(runs["r3"], difficulty="data", check=False,
                               predict_run=runs["r5"], draws=150)
    assert pred is not None
    figures = {r["figure"] for r in pred.rows}
    assert "cumulative_r4/good/teacher/binary" in figures  # rounds the fit never saw
    cal = {c["figures"]: c for c in pred.calibration}
    assert set(cal) >= {"all", "accuracy", "correction_rate", "cumulative", "n_test"}
    assert cal["all"]["n"] >= 30
    assert cal["all"]["in95"] >= 0.85
    assert cal["all"]["in50"] <= cal["all"]["in80"] <= cal["all"]["in95"]


def test_cli_fit_then_plan(runs: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "twin.yaml"
    p = run_cli("fit", str(runs["r3"]), "-o", str(twin), "--draws", "60")
    assert p.returncode == 0, p.stderr
    assert "Twin parameters" in p.stdout and "Reproduction check" in p.stdout
    assert "Calibration" in p.stdout
    fit = json.loads(twin.with_name("twin.fit.json").read_text())
    assert fit["agents"]["good"]["estimates"]["skill"]["lo"] is not None
    assert "# 95% [" in twin.read_text()
    assert run_cli("validate", str(twin)).returncode == 0
    p = run_cli("plan", str(twin), "--target", "ci_width=0.25", "--items", "25,50,100,200",
                "--seeds", "1,2", "--reps", "30", "--max-rounds", "4")
    assert p.returncode == 0, p.stderr
    assert "Power curve" in p.stdout and "Recommendation:" in p.stdout
    assert any(ch in p.stdout for ch in "▁▂▃▄▅▆▇█")
    p = run_cli("plan", str(twin), "--target", "mdd=0.2", "--metric", "accuracy", "--json",
                "--items", "25,50,100,200", "--seeds", "1", "--reps", "30")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    powers = [r["power"] for r in res["rows"]]
    assert powers == sorted(powers) or powers[-1] > powers[0]
    assert res["recommendation"]["items"] >= 25 and res["compare"] == ["good", "poor"]


def test_plan_refuses_real_agents(tmp_path: Path) -> None:
    scn = tmp_path / "real.yaml"
    scn.write_text(RECOVERY.replace("name: poor\n    backend: sim",
                                    "name: poor\n    backend: openai")
                   .replace("params: {skill: -0.7, format_noise: 0.08, elimination: 0.3,\n"
                            "             uptake: {binary: 0.15, detailed: 0.25, reveal: "
                            "0.80}}", "params: {model: m, base_url: 'http://127.0.0.1:9'}"))
    p = run_cli("plan", str(scn))
    assert p.returncode == 2
    assert "not a sim agent" in p.stderr
