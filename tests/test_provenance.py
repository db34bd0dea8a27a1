"""Provenance: the commit a wheel is built from is recorded in it (hatch_build.py) and
reaches the manifest of a run made with the installed copy; the manifest also records
Python, the platform and package versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import ROOT, play

from mmsim.store import RunStore


def _head() -> str | None:
    if shutil.which("git") is None:
        return None
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() if r.returncode == 0 and Path(top) == ROOT else None


def test_manifest_records_code_and_environment(small_scenario: Path,
                                               tmp_path: Path) -> None:
    play(small_scenario, tmp_path / "run")
    store = RunStore.open(tmp_path / "run", create=False)
    try:
        m = store.run()["manifest"]  # type: ignore[index]
    finally:
        store.close()
    assert m["python"] == platform.python_version()
    assert m["platform"] == platform.platform() and m["machine"] == platform.machine()
    for pkg in ("pydantic", "numpy", "pillow"):
        assert m["packages"][pkg] == version(pkg)
    assert "torch" not in m["packages"] or "torch" in sys.modules
    head = _head()
    if head is not None:  # running from this checkout: its commit, read live
        assert m["git_commit"] == head and m["commit_source"] == "checkout"


@pytest.mark.slow
def test_wheel_records_the_commit_it_was_built_from(tmp_path: Path) -> None:
    head = _head()
    if head is None:
        pytest.skip("not a git checkout (e.g. an sdist): no commit to record")
    pytest.importorskip("hatchling")
    src = tmp_path / "src"
    # a copy of the checkout (with its git metadata), built without touching the tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "runs", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache",
        ".pytest_cache"))
    wheels = tmp_path / "w"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                        "--no-build-isolation", "-w", str(wheels), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    [whl] = wheels.glob("mmsim-*.whl")
    with zipfile.ZipFile(whl) as z:
        info = z.read("mmsim/_build_info.py").decode()
    assert f"GIT_COMMIT = {head!r}" in info
    assert not (src / "mmsim" / "_build_info.py").exists()  # nothing written in the tree
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                        "--target", str(target), str(whl)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    code = ("import json, mmsim; from mmsim.runtime.manifest import provenance; "
            "print(json.dumps([mmsim.__file__, provenance()]))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    where, prov = json.loads(r.stdout)
    assert where.startswith(str(target))
    assert prov["git_commit"] == head and prov["commit_source"] == "build"
    r = subprocess.run([sys.executable, "-m", "mmsim.cli", "--version"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and head[:12] in r.stdout, r.stderr
