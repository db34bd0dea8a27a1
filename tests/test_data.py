"""Dataset loaders: synthetic, MathVerse and MMMU-Pro (fixtures in the published formats).

The fixture writers below (``png_bytes``, ``mathverse_rows``, ``write_mathverse_parquet``,
``write_mathverse_json``, ``mmmu_standard_rows``, ``mmmu_vision_rows``,
``write_mmmu_pro``) are plain functions so other tests can import them.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from mmsim.data import DATASETS, Sample
from mmsim.data.mathverse import load_mathverse, parse_choices, parse_number
from mmsim.data.mmmu_pro import load_mmmu_pro
from mmsim.data.synthetic import FAMILIES, load_synthetic
from mmsim.errors import DataError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

# --------------------------------------------------------------------------- fixture writers


def png_bytes(colour: str = "red", size: tuple[int, int] = (8, 6)) -> bytes:
    """A tiny valid PNG."""
    buf = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MATHVERSE_SCHEMA = pa.schema([
    ("sample_index", pa.string()),
    ("problem_index", pa.string()),
    ("problem_version", pa.string()),
    ("question", pa.string()),
    ("image", IMAGE_STRUCT),
    ("answer", pa.string()),
    ("question_type", pa.string()),
    ("metadata", pa.struct([("split", pa.string()), ("source", pa.string()),
                            ("subject", pa.string()), ("subfield", pa.string())])),
    ("query_wo", pa.string()),
    ("query_cot", pa.string()),
    ("question_for_eval", pa.string()),
])


def _mv_row(sid: str, pid: str, version: str, question: str, answer: str, qtype: str,
            image: bytes | None, name: str = "image_1.png") -> dict[str, Any]:
    return {
        "sample_index": sid, "problem_index": pid, "problem_version": version,
        "question": question,
        "image": None if image is None else {"bytes": image, "path": name},
        "answer": answer, "question_type": qtype,
        "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry",
                     "subfield": "Angle"},
        "query_wo": "Please directly answer the question.\nQuestion: " + question,
        "query_cot": "Please first conduct reasoning.\nQuestion: " + question,
        "question_for_eval": question,
    }


def mathverse_rows() -> list[dict[str, Any]]:
    """Four MathVerse testmini rows: two multi-choice, a numeric and a non-numeric
    free-form, one Vision Only (empty ``question``, options in the image)."""
    q1 = ("As shown in the figure, angle A = 80.0, angle B = 60.0, DE parallel BC, then "
          "the size of angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°")
    return [
        _mv_row("1", "1", "Text Dominant", q1, "D", "multi-choice", png_bytes("red")),
        _mv_row("2", "1", "Vision Only", "", "D", "multi-choice", png_bytes("blue")),
        _mv_row("3", "2", "Text Lite", "Find the height h of the cone.", "$h=58$",
                "free-form", png_bytes("green")),
        _mv_row("4", "3", "Text Dominant", "Solve for y in terms of x.", "$y=2x+3$",
                "free-form", png_bytes("red")),
    ]


def write_mathverse_parquet(folder: Path, rows: list[dict[str, Any]] | None = None,
                            name: str = "testmini.parquet") -> Path:
    """``folder/testmini.parquet`` in the published schema (image = {bytes, path})."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    rows = mathverse_rows() if rows is None else rows
    pq.write_table(pa.Table.from_pylist(rows, schema=MATHVERSE_SCHEMA), path)
    return path


def write_mathverse_json(folder: Path) -> Path:
    """``folder/testmini.json`` (the JSON twin): ``image`` is a relative path
    (``images_version_5/image_2.png``) or ``""`` for a text-only row."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images_version_5").mkdir(exist_ok=True)
    (folder / "images_version_5" / "image_2.png").write_bytes(png_bytes("blue", (10, 7)))
    rows = mathverse_rows()[:3]
    rows[0]["image"] = "images_version_5/image_2.png"
    rows[1]["image"] = "images_version_5/image_2.png"
    rows[2]["image"] = ""
    rows[2]["problem_version"] = "Text Only"
    path = folder / "testmini.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def mmmu_standard_rows() -> list[dict[str, Any]]:
    """Two MMMU-Pro standard rows: one with <image 2> then <image 1>, one text-only."""
    return [
        {
            "id": "test_Art_1",
            "question": "Compare <image 2> with <image 1>. Which period is shown?",
            "options": str(["Baroque", "Rococo", "<image 1>", "Gothic", "Modern",
                            "Renaissance", "Byzantine", "Romanesque", "Cubist", "Dada"]),
            "explanation": "",
            "image_1": {"bytes": png_bytes("red"), "path": "a.png"},
            "image_2": {"bytes": png_bytes("green"), "path": "b.png"},
            **{f"image_{n}": None for n in range(3, 8)},
            "img_type": "['Paintings']",
            "answer": "F",
            "topic_difficulty": "Medium",
            "subject": "Art",
        },
        {
            "id": "test_Math_2",
            "question": "What is 2 + 2?",
            "options": "['3', '4', '5']",
            "explanation": "Add.",
            **{f"image_{n}": None for n in range(1, 8)},
            "img_type": "[]",
            "answer": "B",
            "topic_difficulty": "Easy",
            "subject": "Math",
        },
    ]


def mmmu_vision_rows() -> list[dict[str, Any]]:
    return [
        {"id": "test_Art_1", "image": {"bytes": png_bytes("purple", (20, 12)), "path": "v.png"},
         "options": "['Baroque', 'Rococo', 'Gothic', 'Renaissance']", "answer": "D",
         "subject": "Art"},
    ]


def _mmmu_standard_schema() -> Any:
    fields = [("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
              ("explanation", pa.string())]
    fields += [(f"image_{n}", IMAGE_STRUCT) for n in range(1, 8)]
    fields += [("img_type", pa.string()), ("answer", pa.string()),
               ("topic_difficulty", pa.string()), ("subject", pa.string())]
    return pa.schema(fields)


VISION_SCHEMA = pa.schema([("id", pa.string()), ("image", IMAGE_STRUCT),
                           ("options", pa.string()), ("answer", pa.string()),
                           ("subject", pa.string())])


def write_mmmu_pro(root: Path, standard: list[dict[str, Any]] | None = None,
                   vision: list[dict[str, Any]] | None = None,
                   config: str = "standard (10 options)") -> Path:
    """An MMMU-Pro root: ``<config>/test-00000-of-00001.parquet`` and
    ``vision/test-00000-of-00001.parquet``."""
    std = root / config
    vis = root / "vision"
    std.mkdir(parents=True, exist_ok=True)
    vis.mkdir(parents=True, exist_ok=True)
    rows = mmmu_standard_rows() if standard is None else standard
    pq.write_table(pa.Table.from_pylist(rows, schema=_mmmu_standard_schema()),
                   std / "test-00000-of-00001.parquet")
    vrows = mmmu_vision_rows() if vision is None else vision
    pq.write_table(pa.Table.from_pylist(vrows, schema=VISION_SCHEMA),
                   vis / "test-00000-of-00001.parquet")
    return root


def _load(loader: Any, options: dict[str, Any], tmp_path: Path,
          limit: int | None = None) -> list[Sample]:
    result: list[Sample] = loader(options, base_dir=tmp_path, cache_dir=tmp_path / "cache",
                                  limit=limit)
    return result


def _error(loader: Any, options: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        _load(loader, options, tmp_path)
    return str(info.value)


# --------------------------------------------------------------------------- registry


def test_loaders_are_registered() -> None:
    assert {"synthetic", "mathverse", "mmmu_pro"} <= set(DATASETS.names())
    assert DATASETS.get("mathverse") is load_mathverse


# --------------------------------------------------------------------------- MathVerse


def test_mathverse_parquet(tmp_path: Path) -> None:
    path = write_mathverse_parquet(tmp_path / "mv")
    samples = _load(load_mathverse, {"path": str(path)}, tmp_path)
    assert [s.id for s in samples] == ["1", "2", "3", "4"]
    mc, vision_only, num, exact = samples
    assert mc.answer == "D" and mc.answer_format.kind == "choice"
    assert mc.answer_format.letters == ("A", "B", "C", "D")
    assert mc.answer_format.options == ("40°", "60°", "120°", "140°")
    assert mc.answer_text == "D (140°)"
    assert mc.category == "Text Dominant"
    assert mc.meta["problem_index"] == "1" and mc.meta["question_type"] == "multi-choice"
    assert mc.meta["metadata"]["subject"] == "Plane Geometry"
    assert mc.question.startswith("As shown in the figure")
    img = mc.images[0]
    assert Path(img.uri).is_file() and Path(img.uri).parent == tmp_path / "cache" / "mathverse"
    assert (img.width, img.height) == (8, 6) and img.mime == "image/png"
    assert Path(img.uri).read_bytes() == png_bytes("red")
    assert exact.images[0].uri == img.uri  # same bytes -> one cached file
    # Vision Only: no Choices block, empty question -> query_wo, letters A-D, no texts.
    assert vision_only.answer_format.letters == ("A", "B", "C", "D")
    assert vision_only.answer_format.options == ()
    assert vision_only.meta["question_field"] == "query_wo"
    assert vision_only.question.startswith("Please directly answer")
    assert num.answer == "58" and num.answer_format.kind == "numeric"
    assert num.meta["raw_answer"] == "$h=58$"
    assert exact.answer == "y=2x+3" and exact.answer_format.kind == "exact"


def test_mathverse_options(tmp_path: Path) -> None:
    path = write_mathverse_parquet(tmp_path)
    only = _load(load_mathverse, {"path": str(path), "versions": ["Text Dominant"]}, tmp_path)
    assert [s.id for s in only] == ["1", "4"]
    cot = _load(load_mathverse, {"path": "testmini.parquet", "question_field": "query_cot"},
                tmp_path, limit=1)
    assert len(cot) == 1 and cot[0].question.startswith("Please first conduct reasoning")
    assert cot[0].answer_format.options == ("40°", "60°", "120°", "140°")
    by_folder = _load(load_mathverse, {"path": str(tmp_path)}, tmp_path, limit=2)
    assert [s.id for s in by_folder] == ["1", "2"]
    assert "did you mean 'Vision Only'" in _error(
        load_mathverse, {"path": str(path), "versions": "Vision only"}, tmp_path)
    assert "question_field" in _error(
        load_mathverse, {"path": str(path), "question_field": "prompt"}, tmp_path)
    assert "Text Only" in _error(
        load_mathverse, {"path": str(path), "versions": "Text Only"}, tmp_path)


def test_mathverse_json_twin(tmp_path: Path) -> None:
    path = write_mathverse_json(tmp_path / "MathVerse")
    samples = _load(load_mathverse, {"path": str(path)}, tmp_path)
    assert [s.id for s in samples] == ["1", "2", "3"]
    img = samples[0].images[0]
    assert img.uri == str(tmp_path / "MathVerse" / "images_version_5" / "image_2.png")
    assert (img.width, img.height) == (10, 7)
    assert samples[2].images == () and samples[2].category == "Text Only"


def test_mathverse_text_only_parquet(tmp_path: Path) -> None:
    rows = mathverse_rows()[2:]
    for row in rows:
        row["image"], row["problem_version"] = None, "Text Only"
    path = write_mathverse_parquet(tmp_path, rows, "testmini_text_only.parquet")
    samples = _load(load_mathverse, {"path": str(path)}, tmp_path)
    assert [s.images for s in samples] == [(), ()]


def test_mathverse_bad_answer_letter(tmp_path: Path) -> None:
    rows = mathverse_rows()
    rows[0]["answer"] = "E"
    path = write_mathverse_parquet(tmp_path, rows)
    msg = _error(load_mathverse, {"path": str(path)}, tmp_path)
    assert "testmini.parquet" in msg and "row 0" in msg and "'1'" in msg and "answer" in msg


def test_mathverse_corrupt_image(tmp_path: Path) -> None:
    rows = mathverse_rows()
    rows[2]["image"] = {"bytes": b"\x89PNG not really", "path": "x.png"}
    path = write_mathverse_parquet(tmp_path, rows)
    msg = _error(load_mathverse, {"path": str(path)}, tmp_path)
    assert "testmini.parquet, row 2 (id '3')" in msg and "image" in msg and "unreadable" in msg


def test_mathverse_truncated_png(tmp_path: Path) -> None:
    rows = mathverse_rows()
    rows[0]["image"] = {"bytes": png_bytes()[:-20], "path": "x.png"}
    path = write_mathverse_parquet(tmp_path, rows)
    assert "unreadable image bytes" in _error(load_mathverse, {"path": str(path)}, tmp_path)


def test_mathverse_json_missing_image_file(tmp_path: Path) -> None:
    path = write_mathverse_json(tmp_path)
    (tmp_path / "images_version_5" / "image_2.png").unlink()
    msg = _error(load_mathverse, {"path": str(path)}, tmp_path)
    assert "testmini.json, row 0 (id '1')" in msg and "image" in msg


def test_mathverse_duplicate_id(tmp_path: Path) -> None:
    rows = mathverse_rows()
    rows[3]["sample_index"] = "2"
    path = write_mathverse_parquet(tmp_path, rows)
    msg = _error(load_mathverse, {"path": str(path)}, tmp_path)
    assert "row 3 (id '2')" in msg and "sample_index" in msg and "duplicate" in msg


def test_mathverse_missing_and_empty(tmp_path: Path) -> None:
    msg = _error(load_mathverse, {"path": "nowhere/testmini.parquet"}, tmp_path)
    assert "nowhere/testmini.parquet" in msg and "not found" in msg
    assert "path" in _error(load_mathverse, {}, tmp_path)
    empty = write_mathverse_parquet(tmp_path, [])
    msg = _error(load_mathverse, {"path": str(empty)}, tmp_path)
    assert "testmini.parquet" in msg and "empty" in msg
    (tmp_path / "testmini.json").write_text("[]")
    assert "empty" in _error(load_mathverse, {"path": str(tmp_path / "testmini.json")},
                             tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    assert "parquet" in _error(load_mathverse, {"path": str(tmp_path / "bad.parquet")},
                               tmp_path)


def test_mathverse_missing_column(tmp_path: Path) -> None:
    (tmp_path / "testmini.json").write_text(json.dumps([{"sample_index": "1"}]))
    msg = _error(load_mathverse, {"path": str(tmp_path / "testmini.json")}, tmp_path)
    assert "missing column" in msg


def test_parquet_needs_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_mathverse_parquet(tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    msg = _error(load_mathverse, {"path": str(path)}, tmp_path)
    assert "pip install 'mmsim[parquet]'" in msg and str(path) in msg


@pytest.mark.parametrize(("text", "value"), [
    ("$h=58$", 58.0), ("60°", 60.0), ("$60^{\\circ}$", 60.0), ("\\frac{1}{2}", 0.5),
    ("-\\frac{3}{4}", -0.75), ("5/2", 2.5), ("1,000", 1000.0), ("58 cm", 58.0),
    ("12 cm^2", 12.0), ("0.5", 0.5), ("10%", 10.0),
    ("2\\sqrt{3}", None), ("y=2x+3", None), ("(2,3)", None), ("5x", None), ("3\\pi", None),
])
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_parse_choices() -> None:
    q = "Find x.\nChoices:\nA:40°\nB: 60°\nC:120°\n"
    assert parse_choices(q) == [("A", "40°"), ("B", "60°"), ("C", "120°")]
    assert parse_choices("no options here") == []
    assert parse_choices("Choices:\nA:1\nC:2") == [("A", "1")]


# --------------------------------------------------------------------------- MMMU-Pro


def test_mmmu_pro_standard(tmp_path: Path) -> None:
    root = write_mmmu_pro(tmp_path / "MMMU_Pro")
    samples = _load(load_mmmu_pro, {"path": str(root)}, tmp_path)
    art, math = samples
    assert art.id == "test_Art_1" and art.category == "Art"
    assert art.answer == "F" and art.answer_text == "F (Renaissance)"
    assert art.answer_format.letters == tuple("ABCDEFGHIJ")
    assert art.answer_format.options[2] == "<image 1>"
    assert "Compare <image 2> with <image 1>." in art.question
    assert "\nA. Baroque\n" in art.question and art.question.endswith("J. Dada")
    assert [Path(i.uri).read_bytes() for i in art.images] == [png_bytes("red"),
                                                               png_bytes("green")]
    assert art.meta["image_slots"] == [1, 2] and art.meta["img_type"] == ["Paintings"]
    assert art.meta["topic_difficulty"] == "Medium"
    assert math.images == () and math.answer_format.letters == ("A", "B", "C")
    assert _load(load_mmmu_pro, {"path": str(root)}, tmp_path, limit=1) == samples[:1]


def test_mmmu_pro_vision_and_four_options(tmp_path: Path) -> None:
    root = write_mmmu_pro(tmp_path, config="standard (4 options)",
                          standard=mmmu_standard_rows()[1:])
    (vision,) = _load(load_mmmu_pro, {"path": str(root), "config": "vision"}, tmp_path)
    assert vision.answer == "D" and vision.answer_format.options[3] == "Renaissance"
    assert vision.question.startswith("Answer the question shown in the image")
    assert "\nD. Renaissance" in vision.question
    assert (vision.images[0].width, vision.images[0].height) == (20, 12)
    (bare,) = _load(load_mmmu_pro, {"path": str(root), "config": "vision",
                                    "options_in_text": False}, tmp_path)
    assert "Renaissance" not in bare.question
    (four,) = _load(load_mmmu_pro, {"path": str(root), "config": "standard (4 options)"},
                    tmp_path)
    assert four.answer_format.letters == ("A", "B", "C")
    one_file = root / "vision" / "test-00000-of-00001.parquet"
    assert _load(load_mmmu_pro, {"path": str(one_file)}, tmp_path)[0].id == "test_Art_1"


def test_mmmu_pro_bad_answer_letter(tmp_path: Path) -> None:
    rows = mmmu_standard_rows()
    rows[1]["answer"] = "E"
    root = write_mmmu_pro(tmp_path, standard=rows)
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "standard (10 options)/test-00000-of-00001.parquet, row 1 (id 'test_Math_2')" in msg
    assert "answer" in msg and "A-C" in msg


def test_mmmu_pro_corrupt_image(tmp_path: Path) -> None:
    rows = mmmu_standard_rows()
    rows[0]["image_2"] = {"bytes": b"garbage", "path": "b.png"}
    root = write_mmmu_pro(tmp_path, standard=rows)
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "row 0 (id 'test_Art_1')" in msg and "image_2" in msg and "unreadable" in msg
    vrows = mmmu_vision_rows()
    vrows[0]["image"] = None
    root = write_mmmu_pro(tmp_path / "v", vision=vrows)
    msg = _error(load_mmmu_pro, {"path": str(root), "config": "vision"}, tmp_path)
    assert "vision/test-00000-of-00001.parquet, row 0" in msg and "image" in msg


def test_mmmu_pro_placeholder_without_image(tmp_path: Path) -> None:
    rows = mmmu_standard_rows()
    rows[0]["image_2"] = None
    root = write_mmmu_pro(tmp_path, standard=rows)
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "<image 2>" in msg and "image_2" in msg


def test_mmmu_pro_duplicate_id(tmp_path: Path) -> None:
    rows = mmmu_standard_rows()
    rows[1]["id"] = "test_Art_1"
    root = write_mmmu_pro(tmp_path, standard=rows)
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "row 1 (id 'test_Art_1')" in msg and "duplicate" in msg and "id" in msg


def test_mmmu_pro_bad_options(tmp_path: Path) -> None:
    rows = mmmu_standard_rows()
    rows[1]["options"] = "['3', '4'"
    root = write_mmmu_pro(tmp_path, standard=rows)
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "row 1 (id 'test_Math_2')" in msg and "options" in msg


def test_mmmu_pro_missing_and_empty(tmp_path: Path) -> None:
    msg = _error(load_mmmu_pro, {"path": "no/such/root"}, tmp_path)
    assert "no/such/root" in msg and "not found" in msg
    root = write_mmmu_pro(tmp_path / "r", standard=[])
    msg = _error(load_mmmu_pro, {"path": str(root)}, tmp_path)
    assert "empty" in msg and str(root) in msg
    msg = _error(load_mmmu_pro, {"path": str(root), "config": "standard (4 options)"},
                 tmp_path)
    assert "standard (4 options)" in msg and "config" in msg
    msg = _error(load_mmmu_pro, {"path": str(root), "config": "standard (10)"}, tmp_path)
    assert "unknown config" in msg
    assert "conifg" in _error(load_mmmu_pro, {"path": str(root), "conifg": "vision"},
                              tmp_path)


# --------------------------------------------------------------------------- synthetic


def _expected(sample: Sample) -> int | str:
    """Recompute the true answer from the generation parameters in ``meta``."""
    p, task = sample.meta["params"], sample.meta["task"]
    if task == "triangle_angle":
        angles = p["angles"]
        assert sum(angles) == 180
        return int(180 - sum(a for k, a in enumerate(angles) if k != p["unknown"]))
    if task == "rectangle_area":
        return int(p["width"] * p["height"])
    if task == "rectangle_perimeter":
        return int(2 * (p["width"] + p["height"]))
    if task == "sum":
        return int(sum(p["numbers"]))
    if task == "count":
        return sum(1 for o in p["objects"]
                   if o["shape"] == p["target_shape"] and o["colour"] == p["target_colour"])
    values = dict(zip(p["labels"], p["values"], strict=True))
    if task == "chart_value":
        return int(values[p["target"]])
    if task == "chart_difference":
        return int(values[p["target"]] - values[p["other"]])
    assert task == "chart_tallest"
    top = max(values.values())
    assert list(values.values()).count(top) == 1
    return str(next(k for k, v in values.items() if v == top))


def test_synthetic_answers_consistent(tmp_path: Path) -> None:
    samples = _load(load_synthetic, {"seed": 7, "size": 240}, tmp_path)
    assert len(samples) == 240 and len({s.id for s in samples}) == 240
    assert samples[42].id == "syn-00042"
    for s in samples:
        truth = _expected(s)
        assert s.meta["truth"] == truth
        assert s.category == s.meta["family"]
        if s.meta["format"] == "choice":
            fmt = s.answer_format
            assert fmt.kind == "choice" and len(fmt.options) in (4, 5)
            assert fmt.letters == tuple("ABCDE"[: len(fmt.options)])
            assert len(set(fmt.options)) == len(fmt.options)
            assert fmt.options[fmt.letters.index(s.answer)] == s.meta["truth_text"]
            assert s.meta["truth_text"].rstrip("°") == str(truth)
            block = "\n".join(f"{lt}: {o}" for lt, o in zip(fmt.letters, fmt.options,
                                                            strict=True))
            assert s.question.endswith("Choices:\n" + block)
        else:
            assert s.answer_format.kind == "numeric" and s.answer == str(truth)
        (img,) = s.images
        assert (img.width, img.height) == (320, 240)
        with PILImage.open(img.uri) as im:
            assert im.size == (320, 240)


def test_synthetic_mix_and_difficulty(tmp_path: Path) -> None:
    samples = _load(load_synthetic, {"size": 300}, tmp_path)
    for fam in FAMILIES:
        mine = [s for s in samples if s.category == fam]
        assert len(mine) == 100
        assert sum(s.meta["format"] == "choice" for s in mine) == 50
    diffs = [s.difficulty for s in samples]
    assert all(d is not None and -2.0 <= d <= 2.5 for d in diffs)
    assert min(d for d in diffs if d is not None) < -1.3
    assert max(d for d in diffs if d is not None) > 1.3
    # More objects and occlusion => harder counting items on average.
    count = [s for s in samples if s.category == "counting"]
    big = [s.difficulty or 0.0 for s in count if s.meta["params"]["total"] >= 14]
    small = [s.difficulty or 0.0 for s in count if s.meta["params"]["total"] <= 8]
    assert sum(big) / len(big) > sum(small) / len(small) + 0.5
    only = _load(load_synthetic, {"size": 10, "families": ["chart"]}, tmp_path)
    assert {s.category for s in only} == {"chart"}


def test_synthetic_deterministic(tmp_path: Path) -> None:
    a = _load(load_synthetic, {"seed": 3, "size": 60}, tmp_path)
    files = sorted((tmp_path / "cache" / "synthetic" / "seed3").iterdir())
    stamps = [f.stat().st_mtime_ns for f in files]
    b = _load(load_synthetic, {"seed": 3, "size": 60}, tmp_path)
    assert a == b
    assert [f.stat().st_mtime_ns for f in files] == stamps  # not rewritten
    other = load_synthetic({"seed": 3, "size": 60}, base_dir=tmp_path,
                           cache_dir=tmp_path / "elsewhere", limit=None)
    assert [s.images[0].sha256 for s in other] == [s.images[0].sha256 for s in a]
    assert [Path(s.images[0].uri).read_bytes() for s in other] == [
        Path(s.images[0].uri).read_bytes() for s in a]
    c = _load(load_synthetic, {"seed": 4, "size": 60}, tmp_path)
    assert [s.question for s in c] != [s.question for s in a]


def test_synthetic_limit_prefix(tmp_path: Path) -> None:
    full = _load(load_synthetic, {"seed": 1, "size": 50}, tmp_path)
    assert _load(load_synthetic, {"seed": 1, "size": 50}, tmp_path, limit=17) == full[:17]
    assert _load(load_synthetic, {"seed": 1, "size": 30}, tmp_path) == full[:30]
    assert _load(load_synthetic, {"seed": 1, "size": 5}, tmp_path, limit=100) == full[:5]


def test_synthetic_speed(tmp_path: Path) -> None:
    start = time.perf_counter()
    samples = _load(load_synthetic, {"seed": 11, "size": 300}, tmp_path)
    assert len(samples) == 300
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(("options", "field"), [
    ({"seed": -1}, "seed"), ({"seed": "x"}, "seed"), ({"size": 0}, "size"),
    ({"families": ["maths"]}, "families"), ({"families": []}, "families"),
    ({"sizes": 3}, "sizes"),
])
def test_synthetic_bad_options(tmp_path: Path, options: dict[str, Any], field: str) -> None:
    with pytest.raises(DataError) as info:
        _load(load_synthetic, options, tmp_path)
    assert info.value.field == field and "synthetic" in str(info.value)


def test_synthetic_index_reloads_identical_samples_and_redraws_missing(tmp_path: Path) -> None:
    from mmsim.data.synthetic import load_synthetic

    opts = {"size": 30, "seed": 3}
    t0 = time.perf_counter()
    first = load_synthetic(opts, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    draw_s = time.perf_counter() - t0
    assert list((tmp_path / "synthetic" / "seed3").glob("index-*.jsonl"))
    t0 = time.perf_counter()
    again = load_synthetic(opts, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    read_s = time.perf_counter() - t0
    assert again == first
    assert read_s < draw_s  # read from the index, not drawn
    # a missing image is drawn again, byte-identical
    victim = Path(first[4].images[0].uri)
    data = victim.read_bytes()
    victim.unlink()
    third = load_synthetic(opts, base_dir=tmp_path, cache_dir=tmp_path, limit=None)
    assert third == first and victim.read_bytes() == data
    # a larger size extends the index with the same prefix
    more = load_synthetic({"size": 40, "seed": 3}, base_dir=tmp_path, cache_dir=tmp_path,
                          limit=None)
    assert more[:30] == first and len(more) == 40
