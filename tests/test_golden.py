"""No change in results: the four shipped scenarios' reports equal the ones recorded before
the kernel was rewritten (tests/golden/*.json, written by ``mmsim report RUN --format json``
on the code of commit a1f0772, ``manifest`` left out). The scenarios are deterministic run
to run, so any difference is a change in what mmsim computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden"


def _diff(a: object, b: object, path: str = "") -> list[str]:
    """Where two JSON values differ (dotted paths), at most a handful."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'new' if k in b else 'golden'}")
            else:
                out += _diff(a[k], b[k], f"{path}.{k}")
        return out[:10]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _diff(x, y, f"{path}[{i}]")][:10]
    return [] if a == b else [f"{path}: golden {a!r} != new {b!r}"]


@pytest.mark.parametrize("name", ["interfeedback", "classification", "dynamic_eval",
                                  "video_levels"])
def test_report_unchanged(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / name
    r = run_cli("run", f"scenarios/{name}.yaml", "--out", str(run_dir), "--no-progress",
                timeout=300)
    assert r.returncode == 0, r.stderr
    r = run_cli("report", str(run_dir), "--format", "json")
    assert r.returncode == 0, r.stderr
    new = json.loads(r.stdout)
    new.pop("manifest", None)
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    assert not _diff(golden, new), _diff(golden, new)
