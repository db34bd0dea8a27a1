"""The tiny random-weight LLaVA, built once per test session (shared by test modules)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def tiny_model_dir(factory: pytest.TempPathFactory) -> Path:
    """Build (once per session) and return the tiny LLaVA directory; skips without torch."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from mmsim.models.tiny import build_tiny_llava

    root = factory.getbasetemp() / "tiny-llava"
    if not (root / "config.json").is_file():
        tmp = factory.getbasetemp() / "tiny-llava.building"
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny_llava(tmp, seed=0, max_new_tokens=16)
        tmp.rename(root)
    return root
