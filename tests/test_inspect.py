"""``mmsim data inspect`` on good and broken copies of published layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.readers_fixtures import JSONL_FIELDS, write_hf_parquet, write_jsonl, write_tsv

pytest.importorskip("pyarrow")


def test_inspect_a_good_tsv(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    r = run_cli("data", "inspect", str(p), "--preset", "mmbench")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "12 rows, 12 items read" in out and "preset mmbench" in out
    assert "answer kinds: choice 12" in out and "options per item: 4: 12" in out
    assert "images: 12 in rows, 4 distinct, 8 shared" in out
    assert out.count("Please select the correct answer from the options above.") == 3
    assert "0 problem(s)" in out


def test_inspect_json_and_set(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "d.jsonl")
    sets = [f"--set={k}={v}" for k, v in JSONL_FIELDS.items()]
    r = run_cli("data", "inspect", str(p), *sets, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["mapping"]["answer"] == "gold" and info["answer_kinds"] == {"text": 12}
    assert len(info["shown"]) == 3 and info["shown"][0]["answer"] == "A (red)"
    assert info["problems"] == []


def test_inspect_broken_copy_lists_every_problem(tmp_path: Path) -> None:
    p = write_tsv(tmp_path / "d.tsv")
    lines = p.read_text().splitlines()
    cells = lines[3].split("\t")
    cells[7] = "F"  # an answer not among the options
    lines[3] = "\t".join(cells)
    cells = lines[5].split("\t")
    cells[1] = ""  # an empty question
    lines[5] = "\t".join(cells)
    cells = lines[6].split("\t")
    cells[-1] = "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYW4gaW1hZ2UgYXQgYWxsIGJ1dCB0ZXh0IHJlYWxseSEh"
    lines[6] = "\t".join(cells)  # an undecodable image
    lines.append(lines[2])  # a duplicate id
    lines.append("99\tshort row")
    p.write_text("\n".join(lines) + "\n")
    r = run_cli("data", "inspect", str(p))
    assert r.returncode == 2
    assert f"{p}:4: answer: answer 'F' is not among the options (A-D" in r.stdout
    assert f"{p}:6: question: question is empty" in r.stdout
    assert f"{p}:7: image: unreadable image bytes" in r.stdout
    assert f"{p}:14: index: duplicate id '1' (first at {p}:3)" in r.stdout
    assert f"{p}:15: 2 cells, the header has 12 columns" in r.stdout
    assert "5 problem(s)" in r.stdout


def test_inspect_missing_image_file_in_parquet_and_bad_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = write_hf_parquet(tmp_path / "hub")
    f = root / "data" / "test-00000-of-00001.parquet"
    t = pq.read_table(f).to_pylist()
    t[2]["image"] = {"bytes": None, "path": "gone.png"}
    pq.write_table(pa.Table.from_pylist(t, schema=pq.read_schema(f)), f)
    r = run_cli("data", "inspect", str(root))
    assert r.returncode == 2
    assert f"{f}:row 3: image: image file not found: {f.parent / 'gone.png'}" in r.stdout
    r = run_cli("data", "inspect", str(root), "--set", "answer=gold")
    assert r.returncode == 2 and "fields.answer: no column 'gold'" in r.stderr
    t = pq.read_table(f).drop(["answer"])
    pq.write_table(t, f)
    r = run_cli("data", "inspect", str(root))
    assert r.returncode == 2 and f"{f}: fields.answer: no answer column" in r.stderr
