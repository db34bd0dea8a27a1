"""``mmsim.metrics.compare.compare`` called in-process on small runs and on copies of them
edited with SQL (failed episodes, a receiver never screened, a cell without feedback, a
different set of cells), every figure checked against values recomputed from the stores'
SQLite tables as docs/metrics.md "Comparing two runs" defines them, and the JSON key set
checked against that section of the doc."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, SMALL

from mmsim.metrics.compare import compare
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

Key = tuple[str, str, str]
METRICS = ("accuracy", "correction_rate", "parse_failure_rate")
BASE = SMALL.replace("size: 40", "size: 24")


def _play(tmp: Path, name: str, text: str) -> Path:
    scn = tmp / f"{name}.yaml"
    scn.write_text(text)
    loaded = load_scenario(scn)
    anyio.run(lambda: run_scenario(loaded, tmp / name))
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """a: the small scenario; b: another seed and a much better r2."""
    tmp = tmp_path_factory.mktemp("cmpi")
    b = BASE.replace("seed: 3", "seed: 4").replace("skill: -0.5", "skill: 4.0")
    return {"a": _play(tmp, "a", BASE), "b": _play(tmp, "b", b), "tmp": tmp}


@pytest.fixture(scope="module")
def run_c(runs: dict[str, Path]) -> Path:
    """Other cells (r1 and a new r3, provider p1, policy detailed only) on a smaller
    dataset."""
    c = (BASE.replace("size: 24", "size: 12")
         .replace("  - {name: r2, backend: sim, params: {skill: -0.5, format_noise: 0.1}}",
                  "  - {name: r3, backend: sim, params: {skill: 1.0, format_noise: 0.2}}")
         .replace("  - {name: p2, backend: sim, params: {skill: 1.5}}\n", "")
         .replace("  - binary\n", "")
         .replace("  - {name: d-d-r, schedule: [detailed, detailed, reveal]}\n", ""))
    return _play(runs["tmp"], "c", c)


def _edited(src: Path, dst: Path, *sql: str) -> Path:
    """A copy of run ``src`` with ``sql`` applied to its store."""
    shutil.copytree(src, dst)
    db = sqlite3.connect(dst / "mmsim.sqlite")
    for q in sql:
        db.execute(q)
    db.commit()
    db.close()
    return dst


@contextmanager
def _stores(*dirs: Path) -> Iterator[list[RunStore]]:
    stores = [RunStore.open(d, create=False) for d in dirs]
    try:
        yield stores
    finally:
        for s in stores:
            s.close()


def _compare(a: Path, b: Path, **kw: Any) -> dict[str, Any]:
    with _stores(a, b) as (sa, sb):
        return compare(sa, sb, **kw)


# -- independent recomputation from SQLite -------------------------------------------------

class Raw:
    """One run read with plain SQL: the run row, the cells its scenario defines (receiver x
    provider x policy, in scenario order), finished screening episodes by (receiver,
    sample) and finished feedback episodes by (receiver, provider, policy, sample)."""

    def __init__(self, run_dir: Path):
        db = sqlite3.connect(run_dir / "mmsim.sqlite")
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM runs").fetchone()
        self.run = dict(row) if row is not None else None
        scn = json.loads(row["scenario"]) if row is not None else {}
        self.keys = [(r["name"], p["name"], q["name"]) for r in scn.get("receivers", [])
                     for p in scn.get("providers", []) for q in scn.get("policies", [])]
        self.screen: dict[tuple[str, str], Any] = {}
        self.fb: dict[tuple[str, str, str, str], Any] = {}
        for e in db.execute("SELECT * FROM episodes WHERE status = 'done'"):
            if e["kind"] == "screen":
                self.screen[(e["model"], e["sample_id"])] = e
            elif e["kind"] == "feedback":
                self.fb[(e["model"], e["provider"], e["condition"], e["sample_id"])] = e
        db.close()

    def accuracy(self, key: Key) -> dict[str, float]:
        # screened (successfully): outcome correct at the first try
        return {s: float(e["first_correct"] == 1) for (r, s), e in self.screen.items()
                if r == key[0]}

    def correction(self, key: Key) -> dict[str, float]:
        # in the cell's test set: outcome corrected within the budget
        return {k[3]: float(e["solved"] == 1) for k, e in self.fb.items() if k[:3] == key}

    def parse(self, key: Key) -> dict[str, tuple[int, int]]:
        # screened items: (unparsed replies, replies) over the screening reply and, when the
        # item is in the cell's test set, its feedback rounds (round 0 is the screening reply,
        # already counted)
        out = {}
        for (r, s), e in self.screen.items():
            if r != key[0]:
                continue
            unparsed, replies = int(e["first_unparsed"] == 1), 1
            f = self.fb.get((*key, s))
            if f is not None:
                unparsed += f["n_unparsed"] - int(f["first_unparsed"] == 1)
                replies += f["n_responses"] - 1
            out[s] = (unparsed, replies)
        return out


def _expected(ra: Raw, rb: Raw, key: Key, metric: str) -> dict[str, Any]:
    """a, b, n_a, n_b, n_shared and diff of one cell and metric, from the raw stores."""
    get = {"accuracy": Raw.accuracy, "correction_rate": Raw.correction,
           "parse_failure_rate": Raw.parse}[metric]
    xa, xb = get(ra, key), get(rb, key)
    shared = set(xa) & set(xb)

    def rate(x: dict[str, Any], ids: Any) -> float | None:
        if metric == "parse_failure_rate":  # a ratio of sums
            den = sum(x[s][1] for s in ids)
            return sum(x[s][0] for s in ids) / den if den else None
        return sum(x[s] for s in ids) / len(ids) if ids else None

    ea, eb = rate(xa, list(xa)), rate(xb, list(xb))
    diff = None
    if shared:
        sa, sb = rate(xa, shared), rate(xb, shared)
        assert sa is not None and sb is not None
        diff = sb - sa
    return {"a": ea, "b": eb, "n_a": len(xa), "n_b": len(xb), "n_shared": len(shared),
            "diff": diff}


def _check_figures(res: dict[str, Any], dir_a: Path, dir_b: Path) -> None:
    """Every documented figure of ``res`` against the raw stores; returns nothing."""
    ra, rb = Raw(dir_a), Raw(dir_b)
    keys_b = set(rb.keys)
    assert [(c["receiver"], c["provider"], c["policy"]) for c in res["cells"]] == \
        [k for k in ra.keys if k in keys_b]
    assert res["only_in_a"] == [list(k) for k in ra.keys if k not in keys_b]
    assert res["only_in_b"] == [list(k) for k in rb.keys if k not in set(ra.keys)]
    for c in res["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        for m in METRICS:
            got, exp = c[m], _expected(ra, rb, key, m)
            for f in ("n_a", "n_b", "n_shared"):
                assert got[f] == exp[f], (key, m, f)
            for f in ("a", "b", "diff"):
                if exp[f] is None:
                    assert got[f] is None, (key, m, f)
                else:
                    assert got[f] == pytest.approx(exp[f], abs=1e-12), (key, m, f)
            if exp["diff"] is None:  # no shared items: no interval
                assert got["lo"] is None and got["hi"] is None
            elif res["ci"]["resamples"] >= 100:  # enough draws for a real interval
                assert got["lo"] - 1e-12 <= got["diff"] <= got["hi"] + 1e-12, (key, m)


# -- the documented JSON object ------------------------------------------------------------

def _documented_keys() -> dict[str, Any]:
    """The key sets of docs/metrics.md "Comparing two runs" (its fenced block)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    block = text.split("## Comparing two runs", 1)[1].split("```", 2)[1]
    lines = block.strip("\n").splitlines()

    def names(field: str) -> set[str]:
        return {w.strip(" {}[]") for w in field.split(",") if w.strip(" {}[]")}

    top: set[str] = set()
    metric: set[str] = set()
    cell: set[str] = set()
    in_cells = False
    for line in lines:
        first = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if not line.startswith(" "):
            top |= names(first)
            in_cells = line.startswith("cells[]")
        elif in_cells:  # the per-metric object, one or two keys a line
            metric |= names(first)
    run_line = next(ln for ln in lines if ln.startswith("a, b "))
    run = names(run_line.split("{", 1)[1].split("}", 1)[0])
    ci_text = block.split("\nci", 1)[1].split("{", 1)[1].split("}", 1)[0]
    ci = {part.split(":")[0].strip() for part in re.sub(r'"[^"]*"', "", ci_text).split(",")}
    cell_line = next(ln for ln in lines if ln.startswith("cells[]"))
    cell = names(cell_line.split("cells[]", 1)[1].split("and per metric", 1)[0])
    metrics = set(re.findall(r'"(\w+)"', next(ln for ln in lines if ln.startswith("metrics"))))
    method = re.search(r'method: "([^"]*)"', block)
    assert method is not None
    return {"method": method.group(1), "top": top, "run": run, "ci": ci, "metric": metric,
            "cell": cell | metrics, "metrics": metrics}


def test_json_object_has_the_documented_keys_and_run_fields(runs: dict[str, Path]) -> None:
    """Top-level, run, ci, cell and per-metric keys as docs/metrics.md lists them; each
    run's id, name and status as the runs table holds them, its dataset fingerprint as its
    manifest records it; the run directories as passed."""
    doc = _documented_keys()
    # the parser read the block (as it stands in docs/metrics.md)
    assert doc["top"] == {"schema", "a", "b", "same_dataset", "ci", "metrics", "cells",
                          "only_in_a", "only_in_b"}
    assert doc["metric"] == {"a", "b", "n_a", "n_b", "n_shared", "diff", "lo", "hi"}
    assert len(doc["run"]) == 6 and doc["ci"] == {"method", "level", "resamples", "seed"}
    res = _compare(runs["a"], runs["b"], resamples=50, seed=3,
                   run_dir_a="dir/A", run_dir_b="dir/B")
    assert set(res) == doc["top"]
    assert set(res["ci"]) == doc["ci"] and set(res["metrics"]) == doc["metrics"]
    assert res["ci"]["method"] == doc["method"] and res["ci"]["level"] == 0.95
    assert res["ci"]["resamples"] == 50 and res["ci"]["seed"] == 3
    for side, d, given in (("a", runs["a"], "dir/A"), ("b", runs["b"], "dir/B")):
        info = res[side]
        assert set(info) == doc["run"]
        run = Raw(d).run
        assert run is not None
        manifest = json.loads(run["manifest"])
        assert info["run_dir"] == given
        assert (info["run_id"], info["name"], info["status"]) == \
            (run["run_id"], run["name"], run["status"])
        assert info["status"] == "finished" and info["name"] == "small"
        assert info["simulated"] is True
        fp = manifest["dataset"]["fingerprint"]
        assert isinstance(fp, str) and fp and info["dataset_fingerprint"] == fp
    assert res["a"]["run_id"] != res["b"]["run_id"]
    assert res["same_dataset"] is True
    assert res["cells"]
    for c in res["cells"]:
        assert set(c) == doc["cell"]
        for m in doc["metrics"]:
            assert set(c[m]) == doc["metric"]
    _check_figures(res, runs["a"], runs["b"])


def _hand_written(d: Path, run_id: str, fingerprint: str | None, simulated: bool) -> Path:
    """A store written directly: one cell (r1 x p1 x binary), no episodes."""
    scn = {"receivers": [{"name": "r1"}], "providers": [{"name": "p1"}],
           "policies": [{"name": "binary"}]}
    manifest: dict[str, Any] = {"simulated": simulated}
    if fingerprint is not None:
        manifest["dataset"] = {"fingerprint": fingerprint}
    store = RunStore.open(d)
    try:
        store.begin_run(run_id, f"name-{run_id}", "h", scn, manifest)
    finally:
        store.close()
    return d


def test_run_fields_and_defaults_of_hand_written_stores(tmp_path: Path) -> None:
    """Each run's fields (docs/metrics.md: run_dir, run_id, name, status, simulated,
    dataset_fingerprint) as its runs table and manifest hold them; same_dataset by the
    fingerprints; without options, 1000 resamples and seed 0 (the defaults docs/metrics.md
    gives for --resamples and --seed) and no run directory named."""
    doc = _documented_keys()
    x = _hand_written(tmp_path / "x", "run-x", "fp-1", True)
    y = _hand_written(tmp_path / "y", "run-y", "fp-1", False)
    z = _hand_written(tmp_path / "z", "run-z", "fp-2", True)
    w = _hand_written(tmp_path / "w", "run-w", None, True)
    res = _compare(x, y, resamples=20, seed=4, run_dir_a="dir/x", run_dir_b="dir/y")
    assert set(res) == doc["top"] and set(res["ci"]) == doc["ci"]
    for side, d, given in (("a", x, "dir/x"), ("b", y, "dir/y")):
        run = Raw(d).run
        assert run is not None
        manifest = json.loads(run["manifest"])
        assert set(res[side]) == doc["run"]
        assert res[side] == {"run_dir": given, "run_id": run["run_id"], "name": run["name"],
                             "status": run["status"], "simulated": manifest["simulated"],
                             "dataset_fingerprint": manifest["dataset"]["fingerprint"]}
    assert (res["a"]["run_id"], res["b"]["name"], res["b"]["status"]) == \
        ("run-x", "name-run-y", "running")
    assert res["a"]["simulated"] is True and res["b"]["simulated"] is False
    assert res["same_dataset"] is True
    assert res["only_in_a"] == [] and res["only_in_b"] == []
    (cell,) = res["cells"]
    assert (cell["receiver"], cell["provider"], cell["policy"]) == ("r1", "p1", "binary")
    for m in METRICS:  # no episodes: no items, no figures
        assert cell[m] == {"a": None, "b": None, "n_a": 0, "n_b": 0, "n_shared": 0,
                           "diff": None, "lo": None, "hi": None}
    other = _compare(x, z)
    assert other["same_dataset"] is False
    assert other["a"]["dataset_fingerprint"] == "fp-1"
    assert other["b"]["dataset_fingerprint"] == "fp-2"
    none = _compare(x, w)
    assert none["b"]["dataset_fingerprint"] is None and none["same_dataset"] is False
    # the defaults
    assert other["ci"]["resamples"] == 1000 and other["ci"]["seed"] == 0
    assert other["a"]["run_dir"] == "" and other["b"]["run_dir"] == ""


def test_runs_with_different_cells(runs: dict[str, Path], run_c: Path) -> None:
    """Only the cells both scenarios define are compared, in A's order; the others are
    listed per run; another dataset is not the same dataset."""
    res = _compare(runs["a"], run_c, resamples=100)
    assert [(c["receiver"], c["provider"], c["policy"]) for c in res["cells"]] == \
        [("r1", "p1", "detailed")]
    assert ["r1", "p1", "binary"] in res["only_in_a"] and len(res["only_in_a"]) == 11
    assert res["only_in_b"] == [["r3", "p1", "detailed"]]
    assert res["same_dataset"] is False
    assert res["a"]["dataset_fingerprint"] != res["b"]["dataset_fingerprint"]
    _check_figures(res, runs["a"], run_c)
    back = _compare(run_c, runs["a"], resamples=100)
    assert back["only_in_a"] == [["r3", "p1", "detailed"]]
    assert back["only_in_b"] == res["only_in_a"]
    _check_figures(back, run_c, runs["a"])


def test_failed_episodes_and_empty_metrics(runs: dict[str, Path]) -> None:
    """Episodes that did not finish are left out: r1 never screened in B (no accuracy or
    parse-failure rate there, nothing shared), r2 screened on one item only (one shared item:
    the interval is that item's difference), no feedback at all in cell r2/p1/binary of B,
    and B's first episode failed. Both directions."""
    one = "(SELECT min(sample_id) FROM episodes WHERE kind = 'screen' AND model = 'r2')"
    b = _edited(runs["b"], runs["tmp"] / "b_failed",
                "UPDATE episodes SET status = 'failed' WHERE kind = 'screen' AND model = 'r1'",
                "UPDATE episodes SET status = 'failed' WHERE kind = 'screen' AND model = 'r2' "
                f"AND sample_id <> {one}",
                "UPDATE episodes SET status = 'failed' WHERE kind = 'feedback' AND model = 'r2' "
                "AND provider = 'p1' AND condition = 'binary'",
                "UPDATE episodes SET status = 'failed' "
                "WHERE episode_id = (SELECT min(episode_id) FROM episodes)")
    for x, y in ((runs["a"], b), (b, runs["a"])):
        res = _compare(x, y, resamples=200, seed=1)
        _check_figures(res, x, y)
        cells = {(c["receiver"], c["provider"], c["policy"]): c for c in res["cells"]}
        side = "b" if y == b else "a"
        r1 = cells[("r1", "p2", "detailed")]
        for m in ("accuracy", "parse_failure_rate"):
            assert r1[m][side] is None and r1[m][f"n_{side}"] == 0
            assert r1[m]["n_shared"] == 0 and r1[m]["diff"] is None
        nofb = cells[("r2", "p1", "binary")]["correction_rate"]
        assert nofb[side] is None and nofb[f"n_{side}"] == 0 and nofb["lo"] is None
        for key, c in cells.items():
            if key[0] != "r2":
                continue
            for m in ("accuracy", "parse_failure_rate"):
                assert c[m]["n_shared"] == 1
                # one shared item: every resample draws it, the interval is a point
                assert c[m]["lo"] == pytest.approx(c[m]["diff"], abs=1e-12)
                assert c[m]["hi"] == pytest.approx(c[m]["diff"], abs=1e-12)


def test_interval_of_one_resample_and_of_none(runs: dict[str, Path]) -> None:
    """One resample: the 2.5th and 97.5th percentiles of one draw are that draw (an
    interval, of width 0); no resamples: no interval, the same differences."""
    one = _compare(runs["a"], runs["b"], resamples=1, seed=2)
    none = _compare(runs["a"], runs["b"], resamples=0, seed=2)
    _check_figures(one, runs["a"], runs["b"])
    _check_figures(none, runs["a"], runs["b"])
    drawn = 0
    for c1, c0 in zip(one["cells"], none["cells"], strict=True):
        for m in METRICS:
            x = c1[m]
            if x["n_shared"]:
                assert x["lo"] is not None and x["lo"] == x["hi"]
                drawn += 1
            assert c0[m]["lo"] is None and c0[m]["hi"] is None
            assert c0[m]["diff"] == x["diff"]
    assert drawn >= 30  # of 36 cell metrics


def test_intervals_have_width_where_items_differ(runs: dict[str, Path]) -> None:
    """Where the shared items do not all contribute alike, resampling them moves the
    difference: the interval has width; where they all do, it is the point diff."""
    res = _compare(runs["a"], runs["b"], resamples=1000, seed=0)
    ra, rb = Raw(runs["a"]), Raw(runs["b"])
    wide = 0
    for c in res["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        pa, pb = ra.parse(key), rb.parse(key)
        shared = sorted(set(pa) & set(pb))
        alike = len({(pa[s], pb[s]) for s in shared}) == 1
        x = c["parse_failure_rate"]
        if alike:
            assert x["lo"] == pytest.approx(x["diff"]) and x["hi"] == pytest.approx(x["diff"])
        else:
            assert x["lo"] < x["hi"], key
            wide += 1
    assert wide >= 6  # r2 (format noise) has unparsed replies in every cell


def test_one_interval_for_a_receivers_accuracy(runs: dict[str, Path]) -> None:
    """A receiver's accuracy is one quantity on the same items in all of its cells (issue
    19: one quantity on the same items has one interval wherever it appears): every row of
    that receiver shows the same difference and the same interval."""
    res = _compare(runs["a"], runs["b"], resamples=200, seed=0)
    ra, rb = Raw(runs["a"]), Raw(runs["b"])
    for r in ("r1", "r2"):
        cells = [c for c in res["cells"] if c["receiver"] == r]
        assert len(cells) == 6
        keys = [(c["receiver"], c["provider"], c["policy"]) for c in cells]
        for raw in (ra, rb):  # the same items and outcomes in every cell
            assert all(raw.accuracy(k) == raw.accuracy(keys[0]) for k in keys)
        assert len({json.dumps(c["accuracy"]) for c in cells}) == 1, r
    # and it is that receiver's own: another receiver's interval differs
    r1 = next(c for c in res["cells"] if c["receiver"] == "r1")["accuracy"]
    r2 = next(c for c in res["cells"] if c["receiver"] == "r2")["accuracy"]
    assert (r1["lo"], r1["hi"]) != (r2["lo"], r2["hi"])


def test_runs_without_cells(runs: dict[str, Path]) -> None:
    """A store whose run was never recorded (no run row), or whose recorded scenario lists
    receivers but no providers, or no policies, defines no cells: nothing is compared, every
    cell of the other run is listed as its own, and the missing run's fields are null."""
    tmp = runs["tmp"]
    empty = tmp / "empty"
    RunStore.open(empty).close()
    partial = []
    for name, scn in (("no_providers", {"receivers": [{"name": "r1"}]}),
                      ("no_policies", {"receivers": [{"name": "r1"}],
                                       "providers": [{"name": "p1"}]})):
        store = RunStore.open(tmp / name)
        try:
            store.begin_run(f"{name}-1", name, "h", scn, {"simulated": True})
        finally:
            store.close()
        partial.append(tmp / name)
    keys_a = [list(k) for k in Raw(runs["a"]).keys]
    assert len(keys_a) == 12
    for d in (empty, *partial):
        res = _compare(d, runs["a"], resamples=10)
        assert res["cells"] == [] and res["only_in_a"] == [] and res["only_in_b"] == keys_a
        assert res["same_dataset"] is False and res["a"]["dataset_fingerprint"] is None
        back = _compare(runs["a"], d, resamples=10)
        assert back["cells"] == [] and back["only_in_a"] == keys_a
        assert back["only_in_b"] == []
    info = _compare(empty, runs["a"])["a"]
    assert info == {"run_dir": "", "run_id": None, "name": None, "status": None,
                    "simulated": False, "dataset_fingerprint": None}
