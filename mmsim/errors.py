"""Error types. A :class:`UserError` is a mistake in the user's input (scenario,
dataset, plugin, CLI flags): the CLI prints its one-line message and exits 2."""

from __future__ import annotations


class MmsimError(Exception):
    """Base class of mmsim's own errors."""


class UserError(MmsimError):
    """Bad input from the user: printed as one line, exit code 2.

    Args:
        message: what is wrong and how to fix it.
        where: the file (and line) or the flag the mistake is in, if known.
        field: the dotted field path the mistake is in, if known.
    """

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None):
        self.message = message
        self.where = where
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        head = ""
        if self.where:
            head += f"{self.where}: "
        if self.field:
            head += f"{self.field}: "
        return f"{head}{self.message}"


class ScenarioError(UserError):
    """A scenario file that does not validate."""


class DataError(UserError):
    """A dataset file, row or image that cannot be used."""


class PluginError(UserError):
    """A plugin file or entry point that fails to load or register."""


class InfrastructureError(MmsimError):
    """A backend/server failure (timeouts, HTTP errors, malformed replies) after retries.

    The episode it happens in is recorded as *failed* with this reason and is never scored
    as a wrong answer; a resumed run tries it again.
    """
