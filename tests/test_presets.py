"""Presets: each benchmark's fixture is written in exactly its published columns (dataset
cards / publishers' loaders) and read by ``preset: NAME``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mmsim.data.fields import load_samples
from mmsim.data.presets import PRESETS
from mmsim.data.sample import Sample
from tests.readers_fixtures import png

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _img(colour: str) -> dict[str, Any]:
    return {"bytes": png(colour), "path": f"{colour}.png"}


def _write(path: Path, rows: list[dict[str, Any]], schema: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _load(tmp_path: Path, preset: str, path: Path, **extra: Any) -> list[Sample]:
    return load_samples({"path": str(path), "preset": preset, **extra}, base_dir=tmp_path,
                        cache_dir=tmp_path / "cache", limit=None)


def test_every_preset_is_tested() -> None:
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert set(PRESETS) <= tested


def test_mmbench(tmp_path: Path) -> None:
    b64 = base64.b64encode(png("red")).decode()
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category",
              "image", "source", "l2-category", "comment", "split"]
    rows = [["241", "What is the main colour?", "The picture is of a barn.", "red", "blue",
             "green", "", "A", "color_recognition", b64, "MMBench", "fine-grained "
             "perception (instance-level)", "", "dev"],
            ["1241", "What is the main colour?", "", "blue", "red", "green", "", "B",
             "color_recognition", "241", "MMBench", "fine-grained perception "
             "(instance-level)", "", "dev"]]
    p = tmp_path / "MMBench_DEV_EN.tsv"
    p.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    a, b = _load(tmp_path, "mmbench", p)
    assert a.question.startswith("Hint: The picture is of a barn.\nQuestion: What is")
    assert a.answer_format.letters == ("A", "B", "C") and a.answer == "A" and b.answer == "B"
    assert b.images == a.images and a.category == "color_recognition"
    assert a.meta["l2-category"].startswith("fine-grained") and "comment" in a.meta


def test_mmstar(tmp_path: Path) -> None:
    schema = pa.schema([("index", pa.int64()), ("question", pa.string()), ("image", IMG),
                        ("answer", pa.string()), ("category", pa.string()),
                        ("l2_category", pa.string()),
                        ("meta_info", pa.struct([("source", pa.string()),
                                                 ("split", pa.string()),
                                                 ("image_path", pa.string())]))])
    q = ("Which option describe the object relationship in the image correctly?\nOptions: "
         "A: The cup is on the table., B: The cup is under the table., C: The cup is in "
         "the box., D: The cup is next to the box.")
    rows = [{"index": 0, "question": q, "image": _img("red"), "answer": "A",
             "category": "coarse perception", "l2_category": "image scene and topic",
             "meta_info": {"source": "MMBench", "split": "val", "image_path": "0.png"}}]
    p = _write(tmp_path / "MMStar" / "mmstar.parquet", rows, schema)
    (s,) = _load(tmp_path, "mmstar", p)
    assert s.id == "0" and s.question == q and s.answer == "A"
    assert s.answer_format.letters == ("A", "B", "C", "D")
    assert s.meta["l2_category"] == "image scene and topic"


def test_scienceqa(tmp_path: Path) -> None:
    schema = pa.schema([("image", IMG), ("question", pa.string()),
                        ("choices", pa.list_(pa.string())), ("answer", pa.int8()),
                        ("hint", pa.string()), ("task", pa.string()), ("grade", pa.string()),
                        ("subject", pa.string()), ("topic", pa.string()),
                        ("category", pa.string()), ("skill", pa.string()),
                        ("lecture", pa.string()), ("solution", pa.string())])
    common = {"task": "closed choice", "grade": "grade2", "topic": "geography",
              "category": "Geography", "skill": "Read a map", "lecture": "", "solution": ""}
    rows = [{"image": _img("blue"), "question": "Which of these states is farthest north?",
             "choices": ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], "answer": 0,
             "hint": "", "subject": "social science", **common},
            {"image": None, "question": "Which tense does the sentence use?",
             "choices": ["past tense", "future tense"], "answer": 1,
             "hint": "Mona will print her name.", "subject": "language science", **common}]
    root = tmp_path / "ScienceQA"
    _write(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    _write(root / "data" / "train-00000-of-00001.parquet", rows[:1], schema)
    a, b = _load(tmp_path, "scienceqa", root, split="test")
    assert (a.id, b.id) == ("1", "2") and a.answer == "A" and b.answer == "B"
    assert len(a.images) == 1 and b.images == ()
    assert b.question.startswith("Hint: Mona will print her name.\nQuestion: Which tense")
    assert a.category == "social science"


def test_mathvista(tmp_path: Path) -> None:
    meta_t = pa.struct([("split", pa.string()), ("source", pa.string()),
                        ("task", pa.string()), ("context", pa.string()),
                        ("grade", pa.string()), ("language", pa.string()),
                        ("skills", pa.list_(pa.string()))])
    schema = pa.schema([("pid", pa.string()), ("question", pa.string()),
                        ("image", pa.string()), ("decoded_image", IMG),
                        ("choices", pa.list_(pa.string())), ("unit", pa.string()),
                        ("precision", pa.float64()), ("answer", pa.string()),
                        ("question_type", pa.string()), ("answer_type", pa.string()),
                        ("metadata", meta_t), ("query", pa.string())])
    meta = {"split": "testmini", "source": "Geometry3K", "task": "geometry problem solving",
            "context": "geometry diagram", "grade": "high school", "language": "english",
            "skills": ["algebraic reasoning"]}
    rows = [{"pid": "1", "question": "Find x.", "image": "images/1.jpg",
             "decoded_image": _img("red"), "choices": ["3", "5", "7", "9"], "unit": None,
             "precision": None, "answer": "7", "question_type": "multi_choice",
             "answer_type": "text", "metadata": meta, "query": "..."},
            {"pid": "2", "question": "What is the length?", "image": "images/2.jpg",
             "decoded_image": _img("green"), "choices": None, "unit": "cm",
             "precision": 1.0, "answer": "2.5", "question_type": "free_form",
             "answer_type": "float", "metadata": {**meta, "task": "figure question "
                                                  "answering"}, "query": "..."},
            {"pid": "3", "question": "How many?", "image": "images/3.jpg",
             "decoded_image": _img("blue"), "choices": None, "unit": None,
             "precision": None, "answer": "4", "question_type": "free_form",
             "answer_type": "integer", "metadata": meta, "query": "..."}]
    p = _write(tmp_path / "MathVista" / "data" / "testmini-00000-of-00001-725687bf7a18d64b"
               ".parquet", rows, schema)
    test_rows = [{**r, "answer": ""} for r in rows]  # the test split has no answers
    _write(p.parent / "test-00000-of-00002-6b81bd7f7e2065e6.parquet", test_rows, schema)
    a, b, c = _load(tmp_path, "mathvista", p.parent.parent)  # testmini, as published
    assert a.answer == "C" and a.meta["answer_kind"] == "text"
    assert a.question == "Find x.\nA. 3\nB. 5\nC. 7\nD. 9"
    assert b.answer == "2.5" and b.answer_format.kind == "numeric"
    assert b.answer_format.abs_tol == pytest.approx(0.05)
    assert c.answer == "4" and c.answer_format.kind == "numeric"
    assert a.category == "geometry problem solving" and b.meta["unit"] == "cm"


def test_ai2d(tmp_path: Path) -> None:
    schema = pa.schema([("question", pa.string()), ("options", pa.list_(pa.string())),
                        ("answer", pa.string()), ("image", IMG)])
    rows = [{"question": "Which stage comes after the egg?",
             "options": ["larva", "adult", "pupa", "egg"], "answer": "0",
             "image": _img("yellow")},
            {"question": "How many legs?", "options": ["2", "4", "6", "8"], "answer": "2",
             "image": _img("yellow")}]
    root = tmp_path / "ai2d"
    _write(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    a, b = _load(tmp_path, "ai2d", root)
    assert a.answer == "A" and b.answer == "C"  # index "2" into ["2","4","6","8"] -> C
    assert a.question.endswith("D. egg")


def test_pope(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("question_id", pa.string()),
                        ("question", pa.string()), ("answer", pa.string()),
                        ("image_source", pa.string()), ("image", IMG),
                        ("category", pa.string())])
    rows = [{"id": "0", "question_id": "1", "question": "Is there a snowboard in the image?",
             "answer": "yes", "image_source": "COCO_val2014_000000310196", "image":
             _img("red"), "category": "adversarial"},
            {"id": "3000", "question_id": "1", "question": "Is there a dog in the image?",
             "answer": "no", "image_source": "COCO_val2014_000000310196", "image":
             _img("red"), "category": "popular"}]
    root = tmp_path / "POPE"
    _write(root / "Full" / "adversarial-00000-of-00001.parquet", rows[:1], schema)
    _write(root / "data" / "test-00000-of-00001.parquet", rows, schema)
    a, b = _load(tmp_path, "pope", root)
    assert (a.answer, b.answer) == ("Yes", "No") and a.meta["answer_kind"] == "yesno"
    assert (a.id, b.id) == ("adversarial-1", "popular-1")
    assert a.images == b.images


def test_hallusionbench(tmp_path: Path) -> None:
    cols = ["category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note",
            "question_id", "question", "gt_answer_details", "gt_answer", "filename"]
    schema = pa.schema([*[(c, pa.string()) for c in cols], ("image", IMG)])
    base = {"category": "VD", "subcategory": "illusion", "set_id": "0",
            "sample_note": "circle", "gt_answer_details": "", "filename": "./VD/0_0.png"}
    rows = [{**base, "visual_input": "1", "figure_id": "0", "question_id": "0",
             "question": "Is the left circle larger?", "gt_answer": "0",
             "image": _img("red")},
            {**base, "visual_input": "0", "figure_id": "0", "question_id": "1",
             "question": "Are the circles the same size in this illusion?",
             "gt_answer": "1", "image": None}]
    root = tmp_path / "HallusionBench"
    _write(root / "data" / "image-00000-of-00001.parquet", rows, schema)
    _write(root / "data" / "non_image-00000-of-00001.parquet", rows[1:], schema)
    a, b = _load(tmp_path, "hallusionbench", root)  # the image split unless told
    assert (a.answer, b.answer) == ("No", "Yes")
    assert a.id == "VD-illusion-0-0-0" and len(a.images) == 1 and b.images == ()


def test_mmmu(tmp_path: Path) -> None:
    cols = [("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
            ("explanation", pa.string()), *[(f"image_{n}", IMG) for n in range(1, 8)],
            ("img_type", pa.string()), ("answer", pa.string()),
            ("topic_difficulty", pa.string()), ("question_type", pa.string()),
            ("subfield", pa.string())]
    schema = pa.schema(cols)
    none = {f"image_{n}": None for n in range(1, 8)}

    def row(i: str, subject: str, **kw: Any) -> dict[str, Any]:
        return {"id": f"validation_{subject}_{i}", "question": "<image 1> Which is it?",
                "options": "['A cell', 'A tissue', 'An organ']", "explanation": "",
                **none, "image_1": _img("red"), "img_type": "['Diagrams']",
                "answer": "B", "topic_difficulty": "Easy",
                "question_type": "multiple-choice", "subfield": "Cell", **kw}

    root = tmp_path / "MMMU"
    _write(root / "Biology" / "validation-00000-of-00001.parquet", [row("1", "Biology")],
           schema)
    _write(root / "Biology" / "dev-00000-of-00001.parquet", [row("9", "Biology")], schema)
    _write(root / "Math" / "validation-00000-of-00001.parquet",
           [row("1", "Math", options="[]", answer="12", question_type="open",
                subfield="Algebra")], schema)
    bio, math_ = _load(tmp_path, "mmmu", root)  # every subject, validation, unless told
    assert bio.id == "validation_Biology_1" and bio.answer == "B"
    assert bio.question.endswith("C. An organ") and bio.category == "Cell"
    assert math_.answer == "12" and math_.answer_format.kind == "numeric"
    (only,) = _load(tmp_path, "mmmu", root, config="Math", split="validation")
    assert only == math_


def test_realworldqa(tmp_path: Path) -> None:
    schema = pa.schema([("image", IMG), ("question", pa.string()), ("answer", pa.string())])
    q = ("In which direction is the car turning?\nA. left\nB. right\nC. straight\n"
         "Please answer directly with only the letter of the correct option and nothing "
         "else.")
    rows = [{"image": _img("green"), "question": q, "answer": "B"},
            {"image": _img("green"), "question": "How many lanes are there? Please "
             "answer directly with a single word or number.", "answer": "3"}]
    root = tmp_path / "RealworldQA"
    _write(root / "data" / "test-00000-of-00002.parquet", rows[:1], schema)
    _write(root / "data" / "test-00001-of-00002.parquet", rows[1:], schema)
    a, b = _load(tmp_path, "realworldqa", root)
    assert a.question == q and a.answer == "B"
    assert a.answer_format.options == ("left", "right", "straight")
    assert b.answer == "3" and b.answer_format.kind == "numeric"


SCN = """
name: preset-run
seed: 2
dataset: {dataset}
receivers:
  - {{name: r1, backend: sim, params: {{skill: 0.5}}}}
providers:
  - {{name: p1, backend: sim, params: {{skill: 2.0}}}}
policies: [binary]
protocol: {{max_rounds: 2}}
run: {{concurrency: 8, bootstrap: 20}}
"""


@pytest.mark.parametrize("preset", ["mathvista", "pope", "mmmu"])
def test_preset_runs_through_interfeedback(tmp_path: Path, preset: str) -> None:
    import json

    from tests.conftest import report_json, run_cli

    globals()[f"test_{preset}"](tmp_path)  # writes the fixture (and checks it)
    root = {"mathvista": "MathVista", "pope": "POPE", "mmmu": "MMMU"}[preset]
    scn = tmp_path / "s.yaml"
    scn.write_text(SCN.format(dataset=f"{{name: parquet, path: {root}, preset: {preset}}}"))
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert '"r1"' in json.dumps(report_json(tmp_path / "run"))
