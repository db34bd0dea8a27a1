"""Output paths of ``report``, ``export`` and ``fit`` (``-o``): a directory, a folder that
does not exist, or a place that cannot be written gives one line on stderr and exit 2,
before any work, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SMALL
from test_badinput import check_error, invoke

GOOD = SMALL.replace("size: 40", "size: 6")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("outputs")
    scn = d / "s.yaml"
    scn.write_text(GOOD)
    r = invoke("run", str(scn), "--out", str(d / "run"), "--no-progress")
    assert r.exit_code == 0  # type: ignore[attr-defined]
    return d / "run"


def _commands(run: Path, target: Path) -> list[list[str]]:
    return [["report", str(run), "--format", "html", "-o", str(target)],
            ["report", str(run), "--format", "json", "-o", str(target)],
            ["export", str(run), "-o", str(target)],
            ["export", str(run), "--format", "csv", "-o", str(target)],
            ["fit", str(run), "-o", str(target), "--no-check"]]


@pytest.mark.parametrize("i", range(5))
def test_a_directory_target(run_dir: Path, tmp_path: Path, i: int) -> None:
    args = _commands(run_dir, tmp_path)[i]
    check_error(invoke(*args), [f"-o {tmp_path}", "is a directory"], None)


@pytest.mark.parametrize("i", [4])
def test_a_missing_folder(run_dir: Path, tmp_path: Path, i: int) -> None:
    """``fit`` writes into an existing folder (``report``, in every format, and ``export``
    make the folders they need: test_report_makes_its_folders)."""
    target = tmp_path / "no" / "such" / "out.file"
    check_error(invoke(*_commands(run_dir, target)[i]), [f"-o {target}", "does not exist"],
                None)
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("i", range(5))
def test_a_file_where_a_folder_should_be(run_dir: Path, tmp_path: Path, i: int) -> None:
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "sub" / "out.file"
    check_error(invoke(*_commands(run_dir, target)[i]), [f"-o {target}", "afile is a file"],
                None)
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
@pytest.mark.parametrize("i", range(5))
def test_a_read_only_folder(run_dir: Path, tmp_path: Path, i: int) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        check_error(invoke(*_commands(run_dir, ro / "out.file")[i]),
                    ["permission denied"], None)
    finally:
        ro.chmod(0o755)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("i", range(5))
def test_a_write_that_fails(run_dir: Path, i: int) -> None:
    """A target that accepts no byte (``/dev/full``: ENOSPC, also for root): one line."""
    check_error(invoke(*_commands(run_dir, Path("/dev/full"))[i]),
                ["-o /dev/full", "cannot write the output"], None)


def test_report_makes_its_folders(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out.json"
    r = invoke("report", str(run_dir), "--format", "json", "-o", str(target))
    assert r.exit_code == 0, r.output
    assert json.loads(target.read_text())["run_id"]
