"""Retries with exponential backoff and jitter that honour ``Retry-After``.

A backend's attempt raises :class:`Retryable` (429, 5xx, timeouts, connection errors,
malformed or empty replies) or :class:`Fatal` (other 4xx); :meth:`RetryPolicy.call` retries
the first kind until the budget is spent and turns both into
:class:`~mmsim.errors.InfrastructureError` carrying the reason and the retries spent.
A backend on a hot path makes its first attempt itself and hands a failure to
:meth:`RetryPolicy.recover` (the same semantics, nothing allocated when the first try
succeeds).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from mmsim.errors import InfrastructureError

T = TypeVar("T")


class Retryable(Exception):
    """A transient failure; ``retry_after`` (seconds) when the server asked for a wait."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Fatal(Exception):
    """A failure that a retry would not fix (e.g. HTTP 400/401/404)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retryable_status(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; waits ``uniform(d/2, d)`` with
    ``d = min(backoff_max_s, backoff_base_s * 2**k)`` before retry k+1, or the server's
    ``Retry-After`` (capped at ``retry_after_max_s``) when it sent one."""

    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_s)
        d = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** retry)
        return random.uniform(d / 2, d)

    async def call(self, attempt: Callable[[], Awaitable[T]], what: str) -> tuple[T, int]:
        """Run ``attempt`` until it succeeds; returns (result, retries spent)."""
        try:
            return await attempt(), 0
        except (Retryable, Fatal) as exc:
            return await self.recover(attempt, what, exc)

    async def recover(self, attempt: Callable[[], Awaitable[T]], what: str,
                      failed: Retryable | Fatal) -> tuple[T, int]:
        """What :meth:`call` does once the first attempt has raised ``failed``: wait, retry
        until success or the budget is spent; returns (result, retries spent).

        Backends call their first attempt themselves and come here only when it fails, so
        the success path allocates nothing for retries (no closure, no message string)."""
        retries = 0
        exc = failed
        while True:
            if isinstance(exc, Fatal):
                raise InfrastructureError(f"{what}: {exc.reason}", retries=retries) from None
            if retries >= self.max_retries:
                raise InfrastructureError(
                    f"{what}: {exc.reason} (gave up after {retries} retries)",
                    retries=retries) from None
            await anyio.sleep(self.delay(retries, exc.retry_after))
            retries += 1
            try:
                return await attempt(), retries
            except (Retryable, Fatal) as e:
                exc = e
