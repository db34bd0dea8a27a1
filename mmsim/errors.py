"""Error types. A :class:`UserError` is a mistake in the user's input (scenario,
dataset, plugin, CLI flags): the CLI prints its one-line message and exits 2."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


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
        return " ".join(f"{head}{self.message}".split())  # one line, whatever the message


class ScenarioError(UserError):
    """A scenario file that does not validate."""


class DataError(UserError):
    """A dataset file, row or image that cannot be used."""


class PluginError(UserError):
    """A plugin file or entry point that fails to load or register."""


class StoreError(MmsimError):
    """The run store cannot be written (locked by another process past the busy timeout,
    disk full, I/O error). The run stops: episodes already committed are kept, and rerunning
    the same command resumes once the cause is fixed. The CLI exits 3.

    Args:
        message: what failed and what to do about it.
        where: the store file.
    """

    def __init__(self, message: str, *, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InfrastructureError(MmsimError):
    """A backend/server failure (timeouts, HTTP errors, malformed replies) after retries.

    The episode it happens in is recorded as *failed* with this reason and is never scored
    as a wrong answer; a resumed run tries it again.

    Args:
        message: the reason.
        retries: how many retries were spent before giving up (shown in reports).
    """

    def __init__(self, message: str = "", *, retries: int = 0):
        super().__init__(message)
        self.retries = retries


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: dict[str, Any], *, label: str, field: str) -> M:
    """``model(**data)``, or a :class:`UserError` with the first validation error:
    ``label`` + its message, naming ``field`` + ``.`` + the offending key."""
    try:
        return model(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise UserError(f"{label}{err['msg']}", field=f"{field}.{loc}") from None
