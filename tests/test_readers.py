"""Field-map readers: VLMEvalKit TSV, Hugging Face parquet/arrow, JSONL/JSON/CSV."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from mmsim.data import DATASETS
from mmsim.data.fields import load_samples, render_question, scan_dataset
from mmsim.data.sample import Sample, dataset_fingerprint
from mmsim.errors import DataError
from mmsim.store import RunStore
from tests.conftest import report_json, run_cli
from tests.readers_fixtures import (
    ITEMS,
    JSONL_FIELDS,
    png,
    write_hf_parquet,
    write_jsonl,
    write_tsv,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _load(tmp_path: Path, options: dict[str, Any], fmt: str | None = None,
          limit: int | None = None) -> list[Sample]:
    return load_samples(options, base_dir=tmp_path, cache_dir=tmp_path / "cache",
                        limit=limit, fmt=fmt)


def _error(tmp_path: Path, options: dict[str, Any], fmt: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        _load(tmp_path, options, fmt)
    return str(info.value)


def test_readers_registered() -> None:
    assert {"table", "tsv", "csv", "jsonl", "json", "parquet", "arrow", "hf"} <= \
        set(DATASETS.names())


def test_tsv_as_vlmevalkit_reads_it(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    samples = _load(tmp_path, {"path": path.name}, "tsv")
    assert [s.id for s in samples] == [it[0] for it in ITEMS]
    s0, s1 = samples[0], samples[1]
    # hint before the question, options from the A..D columns, VLMEvalKit's prompt
    assert s0.question == ("Hint: Look closely.\nQuestion: What colour fills picture 0?\n"
                           "Options:\nA. red\nB. green\nC. blue\nD. yellow\n"
                           "Please select the correct answer from the options above.")
    assert s1.question.startswith("Question: What colour fills picture 1?")
    assert s0.answer == "A" and s0.answer_format.letters == ("A", "B", "C", "D")
    assert s0.answer_format.options == ("red", "green", "blue", "yellow")
    assert s0.category == "shade" and s0.meta["l2-category"] == "perception"
    # rows 4 and 8 reuse row 0's image by index: same file, same hash
    assert samples[4].images == samples[0].images
    assert samples[4].images[0].sha256 == samples[8].images[0].sha256
    assert len({s.images[0].sha256 for s in samples}) == 4
    # images are stored once by content hash under the assets folder
    stored = sorted((tmp_path / "cache" / "tables").iterdir())
    assert len(stored) == 4 and all(p.name.endswith(".png") for p in stored)


def test_same_items_same_fingerprint_in_three_formats(tmp_path: Path) -> None:
    tsv = _load(tmp_path, {"path": str(write_tsv(tmp_path / "a" / "b.tsv"))})
    hf = _load(tmp_path, {"path": str(write_hf_parquet(tmp_path / "hub"))})
    js = _load(tmp_path, {"path": str(write_jsonl(tmp_path / "j" / "d.jsonl")),
                          "fields": JSONL_FIELDS})
    assert dataset_fingerprint(tsv) == dataset_fingerprint(hf) == dataset_fingerprint(js)
    for a, b, c in zip(tsv, hf, js, strict=True):
        assert a.question == b.question == c.question
        assert a.answer == b.answer == c.answer
        assert a.answer_format == b.answer_format == c.answer_format
        assert a.category == b.category == c.category
    kinds = {s.meta["answer_kind"] for s in js}
    assert kinds == {"text"}
    assert {s.meta["answer_kind"] for s in hf} == {"index"}


SCN = """
name: byob
seed: 5
dataset: {dataset}
receivers:
  - {{name: r1, backend: sim, params: {{skill: 0.3}}}}
providers:
  - {{name: p1, backend: sim, params: {{skill: 2.0}}}}
policies: [binary, detailed]
protocol: {{max_rounds: 2}}
run: {{concurrency: 8, bootstrap: 50}}
"""


def test_three_formats_same_run_results(tmp_path: Path) -> None:
    write_tsv(tmp_path / "d.tsv")
    write_hf_parquet(tmp_path / "hub")
    write_jsonl(tmp_path / "d.jsonl")
    specs = {
        "tsv": "{name: tsv, path: d.tsv}",
        "hf": "{name: parquet, path: hub, split: test}",
        "jsonl": "{name: jsonl, path: d.jsonl, fields: " + json.dumps(JSONL_FIELDS) + "}",
    }
    reports = {}
    for key, spec in specs.items():
        scn = tmp_path / f"{key}.yaml"
        scn.write_text(SCN.format(dataset=spec))
        r = run_cli("run", str(scn), "--out", str(tmp_path / f"run-{key}"), "--no-progress")
        assert r.returncode == 0, r.stderr
        reports[key] = report_json(tmp_path / f"run-{key}")
        reports[key].pop("run_id")  # the scenario (its dataset spec) differs
    fps = set()
    for k in specs:
        store = RunStore.open(tmp_path / f"run-{k}", create=False)
        try:
            fps.add((store.run() or {})["manifest"]["dataset"]["fingerprint"])
        finally:
            store.close()
    assert len(fps) == 1
    assert reports["tsv"] == reports["hf"] == reports["jsonl"]
    assert '"r1"' in json.dumps(reports["tsv"])  # the receiver's figures are there


def test_bad_row_stops_run_with_file_row_column(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv")
    lines = path.read_text().splitlines()
    cells = lines[3].split("\t")
    cells[7] = "F"  # answer F with options A-D
    lines[3] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    scn = tmp_path / "s.yaml"
    scn.write_text(SCN.format(dataset="{name: tsv, path: d.tsv}"))
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 2
    assert f"{path}:4: answer: answer 'F' is not among the options (A-D" in r.stderr
    assert not out.exists()


def test_tsv_multi_image_and_bad_reference(tmp_path: Path) -> None:
    a, b = base64.b64encode(png("red")).decode(), base64.b64encode(png("blue")).decode()
    p = tmp_path / "m.tsv"
    p.write_text("index\tquestion\tA\tB\tanswer\timage\n"
                 f"1\tWhich is first?\tred\tblue\tA\t{[a, b]!s}\n"
                 "2\tAgain?\tred\tblue\tB\t1\n")
    s1, s2 = _load(tmp_path, {"path": str(p)})
    assert len(s1.images) == 2 and s2.images == s1.images
    # a reference to a later row (VLMEvalKit allows it)
    p.write_text("index\tquestion\tA\tB\tanswer\timage\n"
                 "2\tAgain?\tred\tblue\tB\t5\n"
                 f"5\tWhich?\tred\tblue\tA\t{a}\n")
    s2, s5 = _load(tmp_path, {"path": str(p)})
    assert s2.images == s5.images and len(s2.images) == 1
    p.write_text("index\tquestion\tA\tB\tanswer\timage\n2\tAgain?\tred\tblue\tB\t7\n")
    msg = _error(tmp_path, {"path": str(p)})
    assert f"{p}:2: image:" in msg and "'7'" in msg


def test_hf_parquet_classlabel_nested_and_image_lists(tmp_path: Path) -> None:
    feats = {"label": {"names": ["cat", "dog", "fox"], "_type": "ClassLabel"}}
    meta = {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("question", pa.string()), ("images", pa.list_(img_t)),
                        ("label", pa.int64()),
                        ("metadata", pa.struct([("task", pa.string()),
                                                ("grade", pa.int64())]))], metadata=meta)
    rows = [{"question": "Which animal?", "images": [{"bytes": png("red"), "path": None},
                                                      {"bytes": png("blue"), "path": None}],
             "label": 2, "metadata": {"task": "zoo", "grade": 3}}]
    (tmp_path / "ds" / "animals").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   tmp_path / "ds" / "animals" / "test-00000-of-00001.parquet")
    (s,) = _load(tmp_path, {"path": "ds", "config": "animals",
                            "fields": {"answer": "label", "category": "metadata.task",
                                       "image": "images"}})
    assert len(s.images) == 2 and s.category == "zoo"
    assert s.meta["metadata"] == {"task": "zoo", "grade": 3}
    # integer label with no ClassLabel mapping in answer -> numeric; as label -> names
    from mmsim.data.fields import load_mapped
    _, (m,) = load_mapped({"path": "ds", "fields": {"label": "label", "image": "images"}},
                          base_dir=tmp_path, cache_dir=tmp_path / "c", limit=None)
    assert m.label == "fox"


def test_arrow_save_to_disk_folder(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    feats = {"label": {"names": ["no", "yes"], "_type": "ClassLabel"}}
    schema = pa.schema([("question", pa.string()), ("answer", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("label", pa.int64())])
    table = pa.Table.from_pylist([{"question": "Is it red?", "answer": "yes",
                                   "image": {"bytes": png("red"), "path": None}, "label": 1},
                                  {"question": "Is it blue?", "answer": "no",
                                   "image": {"bytes": png("red"), "path": None}, "label": 0}],
                                 schema=schema)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (folder / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text(json.dumps({"features": feats}))
    s1, s2 = _load(tmp_path, {"path": "saved"})
    assert (s1.answer, s2.answer) == ("Yes", "No") and s1.meta["answer_kind"] == "yesno"
    assert s1.images == s2.images


def test_hf_uri_through_datasets_offline(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    root = write_hf_parquet(tmp_path / "local_ds")
    via_hf = _load(tmp_path, {"path": "hf://local_ds@test"})
    direct = _load(tmp_path, {"path": "local_ds"})
    assert dataset_fingerprint(via_hf) == dataset_fingerprint(direct)
    assert root.is_dir()


def test_answer_kinds_in_jsonl(tmp_path: Path) -> None:
    img = tmp_path / "i.png"
    img.write_bytes(png("red"))
    rows = [
        {"id": "a", "question": "Letter?", "choices": ["x", "y"], "answer": "b"},
        {"id": "b", "question": "Index?", "choices": ["x", "y"], "answer": 0},
        {"id": "c", "question": "Text?", "choices": ["x", "y"], "answer": "y"},
        {"id": "d", "question": "How many?", "answer": "3.50", "tol": 0.1},
        {"id": "e", "question": "Name it", "answer": "a red square"},
        {"id": "f", "question": "Is it?", "answer": "yes"},
        {"id": "g", "question": "Abs path?", "answer": "No", "image": str(img)},
        {"id": "h", "question": "b64?", "answer": "Yes",
         "image": "data:image/png;base64," + base64.b64encode(png("red")).decode()},
    ]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    out = _load(tmp_path, {"path": str(p), "fields": {"abs_tol": 0.01}})
    got = [(s.answer, s.meta["answer_kind"], s.answer_format.kind) for s in out]
    assert got == [("B", "choice", "choice"), ("A", "index", "choice"),
                   ("B", "text", "choice"), ("3.5", "numeric", "numeric"),
                   ("a red square", "exact", "exact"), ("Yes", "yesno", "exact"),
                   ("No", "yesno", "exact"), ("Yes", "yesno", "exact")]
    assert out[3].answer_format.abs_tol == 0.01
    assert out[6].images[0].sha256 == out[7].images[0].sha256


def test_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png("red"))
    c = tmp_path / "d.csv"
    c.write_text('id,question,A,B,answer,image\n1,"Pick, one",x,y,B,img/a.png\n')
    (s,) = _load(tmp_path, {"path": str(c)})
    assert s.answer == "B" and "Pick, one" in s.question and len(s.images) == 1
    j = tmp_path / "d.json"
    j.write_text(json.dumps([{"id": 1, "question": "q?", "answer": 4}]))
    (s,) = _load(tmp_path, {"path": str(j)})
    assert s.answer == "4" and s.answer_format.kind == "numeric"


@pytest.mark.parametrize(("mutate", "expect"), [
    (lambda r: r.update(answer="Z"), ":2: answer: answer 'Z' is not among the options"),
    (lambda r: r.update(question=""), ":2: question: question is empty"),
    (lambda r: r.update(image="img/none.png"), ":2: image: image file not found"),
    (lambda r: r.update(image="bm90IGFuIGltYWdlIGF0IGFsbCwgcmVhbGx5"),
     ":2: image: image file not found"),
])
def test_bad_rows_name_file_row_column(tmp_path: Path, mutate: Any, expect: str) -> None:
    rows = [{"id": "1", "question": "ok?", "A": "x", "B": "y", "answer": "A"},
            {"id": "2", "question": "bad?", "A": "x", "B": "y", "answer": "B"}]
    mutate(rows[1])
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    assert expect in _error(tmp_path, {"path": str(p)})


def test_undecodable_base64_image_and_duplicate_ids(tmp_path: Path) -> None:
    junk = base64.b64encode(b"not a png" * 20).decode()
    p = tmp_path / "d.tsv"
    p.write_text("index\tquestion\tanswer\timage\n1\tq?\tyes\t" + junk + "\n"
                 "1\tq2?\tno\t\n")
    msg = _error(tmp_path, {"path": str(p)})
    assert f"{p}:2: image: unreadable image bytes" in msg
    scan = scan_dataset({"path": str(p)}, base_dir=tmp_path, cache_dir=tmp_path / "c")
    assert len(scan.problems) == 1 and scan.problems[0].line().startswith(f"{p}:2: image:")
    assert [m.sample.id for m in scan.items] == ["1"]  # the scan goes on past a bad row
    p.write_text("index\tquestion\tanswer\n1\tq?\tyes\n1\tq2?\tno\n")
    assert f"{p}:3: index: duplicate id '1'" in _error(tmp_path, {"path": str(p)})


def test_refuses_devices_pipes_and_oversize(tmp_path: Path) -> None:
    msg = _error(tmp_path, {"path": "/dev/zero", "format": "tsv"})
    assert "/dev/zero: path: not a regular file" in msg
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(tmp_path, {"path": str(fifo)})
    big = tmp_path / "big.jsonl"
    big.write_text("x" * 3_000_000)
    assert "over the 1 MB limit" in _error(tmp_path, {"path": str(big), "max_file_mb": 1})


def test_option_errors(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "d.jsonl")
    assert "unknown option 'feilds'" in _error(tmp_path, {"path": str(p), "feilds": {}})
    assert "no column 'questoin'" in _error(tmp_path, {"path": str(p),
                                                       "fields": {"question": "questoin"}})
    assert "unknown preset 'mmbenc'" in _error(tmp_path, {"path": str(p),
                                                          "preset": "mmbenc"})
    assert "cannot tell the format" in _error(tmp_path, {"path": str(p.with_suffix(".x"))}
                                              if p.with_suffix(".x").write_text("a") else {})


def test_limit_keeps_first_items(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "d.tsv")
    assert _load(tmp_path, {"path": str(p)}, limit=3) == _load(tmp_path, {"path": str(p)})[:3]


def test_render_plain() -> None:
    assert render_question("Q?", "H", ("A", "B"), ("x", "y"), "plain") == "H\nQ?\nA. x\nB. y"
    assert render_question("Q?", None, (), (), "vlmeval") == "Q?"


# --------------------------------------------------------------------------- other protocols

CLS = """
kind: classification
name: byob-cls
seed: 1
dataset: {dataset}
models:
  - {{name: good, backend: sim, params: {{skill: 2.0}}}}
encoders: [string]
protocols:
  multiple_choice: {{k: 3}}
run: {{concurrency: 8}}
"""


def _cls_parquet(tmp_path: Path) -> Path:
    feats = {"label": {"names": ["red", "green", "blue", "yellow"], "_type": "ClassLabel"}}
    meta = {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("label", pa.int64())], metadata=meta)
    rows = [{"image": {"bytes": png(c, (8 + i, 8)), "path": None}, "label": k}
            for i in range(3) for k, c in enumerate(["red", "green", "blue", "yellow"])]
    root = tmp_path / "colours"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   root / "data" / "test-00000-of-00001.parquet")
    return root


def test_classification_from_classlabel_parquet(tmp_path: Path) -> None:
    from mmsim.protocols.classification.data import CLS_DATASETS, item_labels

    _cls_parquet(tmp_path)
    data = CLS_DATASETS.get("parquet")({"path": "colours"}, base_dir=tmp_path,
                                       cache_dir=tmp_path / "c", limit=None)
    assert data.classes == ("red", "green", "blue", "yellow")
    assert [it.answer for it in data.items[:4]] == ["red", "green", "blue", "yellow"]
    # multilabel lists in JSONL, the class list from the labels seen
    (tmp_path / "i.png").write_bytes(png("red"))
    p = tmp_path / "ml.jsonl"
    p.write_text("\n".join(json.dumps({"id": str(i), "image": "i.png", "tags": t})
                           for i, t in enumerate([["cat", "dog"], ["dog"], ["fox"]])))
    ml = CLS_DATASETS.get("jsonl")({"path": str(p), "fields": {"labels": "tags"}},
                                   base_dir=tmp_path, cache_dir=tmp_path / "c", limit=None)
    assert ml.classes == ("cat", "dog", "fox")
    assert item_labels(ml.items[0]) == ("cat", "dog") and ml.items[0].answer == "cat"
    scn = tmp_path / "cls.yaml"
    scn.write_text(CLS.format(dataset="{name: parquet, path: colours}"))
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    report = report_json(tmp_path / "run")
    assert '"good"' in json.dumps(report)


def test_classification_label_not_in_classes(tmp_path: Path) -> None:
    from mmsim.protocols.classification.data import CLS_DATASETS

    (tmp_path / "i.png").write_bytes(png("red"))
    p = tmp_path / "d.csv"
    p.write_text("id,image,label\n1,i.png,cat\n2,i.png,dog\n3,i.png,emu\n")
    with pytest.raises(DataError) as info:
        CLS_DATASETS.get("csv")({"path": str(p), "classes": ["cat", "dog"]},
                                base_dir=tmp_path, cache_dir=tmp_path / "c", limit=None)
    assert f"{p}:4: label: label 'emu' is not in the class list" in str(info.value)


DYN = """
kind: dynamic
name: byob-dyn
seed: 0
dataset: {dataset}
tasks: [qa, caption, verify]
models:
  - {{name: base, backend: sim, params: {{skill: 1.0}}}}
judges:
  - {{name: judge, backend: sim, params: {{noise: 0.1}}}}
judge:
  use: judge
  min_auroc: 0.5
  calibration: {{items: 6, paraphrases: 1, corruptions: 1, runs: 1}}
run: {{concurrency: 16, bootstrap: 50}}
"""


def test_dynamic_from_a_tsv(tmp_path: Path) -> None:
    from mmsim.protocols.dynamic.data import DYN_DATASETS

    write_tsv(tmp_path / "d.tsv")
    items = DYN_DATASETS.get("tsv")({"path": "d.tsv"}, base_dir=tmp_path,
                                    cache_dir=tmp_path / "c", limit=None)
    assert len(items) == len(ITEMS) and items[0].answer_format.kind == "choice"
    scn = tmp_path / "dyn.yaml"
    scn.write_text(DYN.format(dataset="{name: tsv, path: d.tsv}"))
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr


def test_video_path_column(tmp_path: Path) -> None:
    from mmsim.protocols.video.data import VIDEO_DATASETS

    (tmp_path / "clips").mkdir()
    frames = [__import__("PIL.Image", fromlist=["Image"]).new("RGB", (16, 16), c)
              for c in ("red", "blue", "green")]
    frames[0].save(tmp_path / "clips" / "a.gif", save_all=True, append_images=frames[1:],
                   duration=100)
    (tmp_path / "img.png").write_bytes(png("red"))
    p = tmp_path / "v.jsonl"
    p.write_text(json.dumps({"id": "v1", "question": "What happens next?",
                             "choices": ["a", "b", "c", "d"], "answer": "C",
                             "video": "clips/a.gif", "image": "img.png", "level": "L2"}))
    (s,) = VIDEO_DATASETS.get("jsonl")({"path": str(p), "fields": {"category": "level"}},
                                       base_dir=tmp_path, cache_dir=tmp_path / "c",
                                       limit=None, seed=0)
    assert s.videos[0].uri.endswith("a.gif") and s.category == "L2" and s.answer == "C"
    scn = tmp_path / "video.yaml"
    scn.write_text(VIDEO.format(dataset="{name: jsonl, path: v.jsonl, "
                                        "fields: {category: level}}"))
    r = run_cli("run", str(scn), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert '"base"' in json.dumps(report_json(tmp_path / "run"))


VIDEO = """
kind: video
name: byob-video
seed: 0
dataset: {dataset}
frames: {{fps: 2, min_frames: 2, max_frames: 4, size: 32, send: images}}
models:
  - {{name: base, backend: sim, params: {{skill: 0.5}}}}
eval: {{temperature: 0}}
rewards: [accuracy, format]
rollouts: null
run: {{concurrency: 8, bootstrap: 20}}
"""


def test_tsv_quoted_cells_across_lines(tmp_path: Path) -> None:
    p = tmp_path / "q.tsv"
    p.write_text('index\tquestion\tA\tB\tanswer\n1\t"Two\nlines, a ""quote"""\tx\ty\tA\n'
                 "2\tplain\tx\ty\tB\n")
    a, b = _load(tmp_path, {"path": str(p)})
    assert 'Two\nlines, a "quote"' in a.question and b.answer == "B"
    scan = scan_dataset({"path": str(p)}, base_dir=tmp_path, cache_dir=tmp_path / "c")
    assert [m.where for m in scan.items] == [f"{p}:2", f"{p}:4"]


def test_written_by_the_datasets_library(tmp_path: Path) -> None:
    """save_to_disk folders, DatasetDicts and to_parquet files as datasets writes them:
    Image features, ClassLabel names, Sequence(ClassLabel) multilabels."""
    datasets = pytest.importorskip("datasets")
    from mmsim.protocols.classification.data import CLS_DATASETS, item_labels

    (tmp_path / "a.png").write_bytes(png("red"))
    (tmp_path / "b.png").write_bytes(png("blue"))
    feats = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["red", "blue"]),
        "tags": datasets.Sequence(datasets.ClassLabel(names=["warm", "cold", "bright"]))})
    ds = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
         "question": ["Is it red?", "Is it red?"], "answer": ["yes", "no"],
         "label": [0, 1], "tags": [[0, 2], [1]]}, features=feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"test": ds, "train": ds}).save_to_disk(str(tmp_path / "dd"))
    ds.to_parquet(str(tmp_path / "x.parquet"))
    for path, extra in (("saved", {}), ("dd", {"split": "test"}), ("x.parquet", {})):
        a, b = _load(tmp_path, {"path": path, **extra})
        assert (a.answer, b.answer) == ("Yes", "No") and len(a.images) == 1
        assert a.images[0].sha256 != b.images[0].sha256
        data = CLS_DATASETS.get("table")({"path": path, **extra}, base_dir=tmp_path,
                                         cache_dir=tmp_path / "c", limit=None)
        assert data.classes == ("red", "blue") and data.items[1].answer == "blue"
        ml = CLS_DATASETS.get("table")({"path": path, "fields": {"labels": "tags"}, **extra},
                                       base_dir=tmp_path, cache_dir=tmp_path / "c",
                                       limit=None)
        assert ml.classes == ("warm", "cold", "bright")
        assert item_labels(ml.items[0]) == ("warm", "bright")


def test_optional_libraries_named_when_missing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_hf_parquet(tmp_path / "hub")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    assert "pip install 'mmsim[datasets]'" in _error(tmp_path, {"path": "hf://owner/name"})
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    assert "pip install 'mmsim[parquet]'" in _error(tmp_path, {"path": str(root)})


def test_format_that_contradicts_the_suffix(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "MMBench.tsv")
    msg = _error(tmp_path, {"path": str(p)}, "parquet")
    assert "a .tsv file read as parquet: use dataset.name tsv" in msg
