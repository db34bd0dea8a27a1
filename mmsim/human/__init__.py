"""Human proxies: people (``terminal``, ``web``), recorded people (``replay``) and
persona-simulated people (``persona``) as feedback providers.

A scenario agent with ``kind: human`` and ``channel: <name>`` becomes a
:class:`~mmsim.actors.human.HumanProxyActor` whose ``ctx.ask_provider`` reaches the
channel; the ``human`` policy turns the person's verdict into feedback. See docs/human.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmsim.errors import UserError, validated
from mmsim.human.base import (
    ANNOTATE_VERDICTS,
    DEFAULT_TEXT,
    FEEDBACK_VERDICTS,
    HumanClosed,
    HumanItem,
    HumanOptions,
    HumanReply,
    ReplayMiss,
)
from mmsim.human.channel import HumanBackend, HumanChannel

CHANNEL_NAMES = ("terminal", "web", "replay", "persona")


def parse_options(name: str, options: dict[str, Any]) -> HumanOptions:
    """Validate an agent's ``human:`` options (a :class:`UserError` names the field)."""
    return validated(HumanOptions, options, label="", field=f"{name}.human")


def build_channel(name: str, channel: str, options: dict[str, Any], *, backend: str = "sim",
                  params: dict[str, Any] | None = None) -> HumanChannel:
    """The channel of a ``kind: human`` agent (``backend``/``params``: the persona's model)."""
    opts = parse_options(name, options)
    if opts.on_miss != "fail":
        from mmsim.policies import POLICIES

        if opts.on_miss not in POLICIES or opts.on_miss == "human":
            raise UserError(f"on_miss must be 'fail' or a policy name other than 'human' "
                            f"(known: {', '.join(POLICIES.names())})",
                            field=f"{name}.human.on_miss")
    if channel == "terminal":
        from mmsim.human.terminal import TerminalChannel

        return TerminalChannel(name, opts)
    if channel == "web":
        from mmsim.human.web import WebChannel

        return WebChannel(name, opts)
    if channel == "replay":
        from mmsim.human.replay import ReplayChannel

        return ReplayChannel(name, opts)
    if channel == "persona":
        from mmsim.human.persona import PersonaChannel

        return PersonaChannel(name, opts, backend=backend, params=params)
    raise UserError(f"unknown channel {channel!r}; known: {', '.join(CHANNEL_NAMES)}",
                    field=f"{name}.channel")


def build_human_backend(name: str, channel: str, options: dict[str, Any], *,
                        backend: str = "sim", params: dict[str, Any] | None = None
                        ) -> HumanBackend:
    """The backend the runner holds for a ``kind: human`` agent."""
    return HumanBackend(name, build_channel(name, channel, options, backend=backend,
                                            params=params))




def backend_factory(channel: str, options: dict[str, Any], backend: str = "sim"
                    ) -> Callable[[str, dict[str, Any]], HumanBackend]:
    """A backend factory ``(name, params) -> HumanBackend`` for a ``kind: human`` agent
    (``params`` are the persona model's)."""

    def make(name: str, params: dict[str, Any]) -> HumanBackend:
        return build_human_backend(name, channel, options, backend=backend, params=params)

    return make


__all__ = ["ANNOTATE_VERDICTS", "CHANNEL_NAMES", "DEFAULT_TEXT", "FEEDBACK_VERDICTS",
           "HumanBackend", "HumanChannel", "HumanClosed", "HumanItem", "HumanOptions",
           "HumanReply", "ReplayMiss", "backend_factory", "build_channel",
           "build_human_backend", "parse_options"]
