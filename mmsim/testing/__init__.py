"""Test infrastructure that ships with mmsim: a deterministic OpenAI-compatible server
(:mod:`mmsim.testing.echo_server`) and a fault-injecting HTTP proxy
(:mod:`mmsim.testing.faultproxy`). Both are real HTTP servers on 127.0.0.1.

The names are imported lazily so that ``python -m mmsim.testing.faultproxy`` and
``python -m mmsim.testing.echo_server`` run their modules cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsim.testing.echo_server import EchoServer
    from mmsim.testing.faultproxy import FAULT_KINDS, FaultProxy

__all__ = ["FAULT_KINDS", "EchoServer", "FaultProxy"]


def __getattr__(name: str) -> Any:
    if name == "EchoServer":
        from mmsim.testing.echo_server import EchoServer

        return EchoServer
    if name in ("FaultProxy", "FAULT_KINDS"):
        from mmsim.testing import faultproxy

        return getattr(faultproxy, name)
    raise AttributeError(name)
