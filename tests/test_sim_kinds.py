"""Sim agents and custom feedback kinds (docs/sim.md): a kind's own uptake, the default
entry, and the logged fallback to binary."""

from __future__ import annotations

from structlog.testing import capture_logs

from mmsim.backends.sim import DEFAULT_UPTAKE, SimBackend


def test_custom_kind_uses_its_own_uptake_then_default_then_binary() -> None:
    own = SimBackend("r", {"uptake": {"hint": 0.55}})
    assert own._uptake_of("hint") == 0.55
    assert own._uptake_of("detailed") == DEFAULT_UPTAKE["detailed"]
    dflt = SimBackend("r", {"uptake": {"default": 0.33}})
    with capture_logs() as logs:
        assert dflt._uptake_of("hint") == 0.33
    assert logs == []
    bare = SimBackend("r", {})
    with capture_logs() as logs:
        assert bare._uptake_of("hint") == DEFAULT_UPTAKE["binary"]
        assert bare._uptake_of("hint") == DEFAULT_UPTAKE["binary"]
    warned = [e for e in logs if e["event"] == "sim.unknown_feedback_kind"]
    assert len(warned) == 1 and warned[0]["kind"] == "hint"  # once per agent and kind
    assert "uptake.hint" in warned[0]["fix"]
