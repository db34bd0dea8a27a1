"""Typed name -> object registries filled by decorators, plugins and entry points."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import FrameType
from typing import Any, Generic, TypeVar

import anyio

from mmsim.errors import PluginError, UserError

T = TypeVar("T")

ENTRY_POINT_GROUP = "mmsim.plugins"


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line (what ``mmsim list`` shows: a sentence
    that wraps onto a second docstring line is not cut)."""
    para = doc.strip().split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


class Registry(Generic[T]):
    """Name -> object. ``kind`` names what is registered, for error messages.

    ``builtins``: modules (dotted names) that register mmsim's own entries, imported the
    first time the registry is read, so that they register themselves without the code
    that reads the registry importing them (the protocol packages, for instance)."""

    def __init__(self, kind: str, *, builtins: tuple[str, ...] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}
        self._builtins = builtins

    def _load(self) -> None:
        load_entry_points()
        if self._builtins:
            todo, self._builtins = self._builtins, ()
            for module in todo:
                importlib.import_module(module)

    def register(self, name: str, obj: T, *, doc: str = "", replace: bool = False) -> T:
        if name in self._items and not replace and self._items[name] is not obj:
            raise PluginError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        self._docs[name] = doc or first_paragraph(getattr(obj, "__doc__", None) or "")
        return obj

    def decorator(self, name: str, *, doc: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.register(name, obj, doc=doc)

        return deco

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UserError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known: "
                + ", ".join(known)
            ) from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def describe(self) -> Iterator[tuple[str, str]]:
        for name in self.names():
            yield name, self._docs.get(name, "")


_entry_points_loaded = False


def load_entry_points() -> None:
    """Import every module named in the ``mmsim.plugins`` entry-point group, once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin is a user error, named
            raise PluginError(f"entry point {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc


def load_plugin_file(path: str | Path) -> None:
    """Import a user's Python file so its ``@policy``/``@backend``/... decorators run."""
    p = Path(path)
    if not p.is_file():
        raise PluginError("plugin file not found", where=str(p))
    # the same module name in every process (a Ray worker unpickles the plugin's objects)
    name = "mmsim_plugin_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:16]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise PluginError("not a Python file", where=str(p))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    seen = _Seen()
    try:
        with _sigint_seen(seen):
            spec.loader.exec_module(module)
    except KeyboardInterrupt as exc:
        del sys.modules[name]
        if seen:  # a real Ctrl-C while the plugin was importing: stop as a signal does
            raise
        raise PluginError("plugin raised KeyboardInterrupt while loading",
                          where=code_location(exc, str(p))) from None
    except UserError as exc:
        del sys.modules[name]
        if exc.where is None:  # e.g. a name already registered: say where in the plugin
            exc.where = code_location(exc, str(p))
            exc.args = (exc.one_line(),)
        raise
    except SyntaxError as exc:
        del sys.modules[name]
        where = f"{p}:{exc.lineno}" if exc.lineno else str(p)
        raise PluginError(f"plugin has a syntax error: {exc.msg}", where=where) from None
    except BaseException as exc:  # SystemExit, GeneratorExit, ...: a plugin bug, named
        del sys.modules[name]
        raise PluginError(f"plugin raised {describe_exception(exc)} while loading",
                          where=code_location(exc, str(p))) from None


class _Seen:
    def __init__(self) -> None:
        self.sigint = False

    def __bool__(self) -> bool:
        return self.sigint


@contextlib.contextmanager
def _sigint_seen(seen: _Seen) -> Iterator[None]:
    """Tells a real SIGINT (Ctrl-C) from a ``KeyboardInterrupt`` a plugin raises itself:
    while the block runs (main thread, default handler only) SIGINT is noted, then raised
    as usual."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def note(signum: int, frame: FrameType | None) -> Any:
        seen.sigint = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` (``SystemExit(3)`` as ``SystemExit: sys.exit(3)``)."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cancelled_for_real(exc: BaseException) -> bool:
    """Whether ``exc`` is the cancellation of the code that caught it (its cancel scope was
    cancelled: a stop, a signal, a sibling's error), not a ``CancelledError`` some user code
    raised itself. Call it in the task that caught ``exc``."""
    if not isinstance(exc, anyio.get_cancelled_exc_class()):
        return False
    try:
        if anyio.current_effective_deadline() == -math.inf:
            return True
    except Exception:  # no async library running here
        return False
    try:
        import asyncio

        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0
    except RuntimeError:
        return False


_MMSIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIB_DIRS = tuple({os.path.dirname(os.__file__) + os.sep,
                   os.path.dirname(os.path.dirname(anyio.__file__)) + os.sep})


def user_frame(exc: BaseException) -> tuple[str, int] | None:
    """``(file, line)`` of the deepest frame of ``exc``'s traceback that is neither mmsim's
    own code nor a library's (the plugin, policy, backend or data loader that raised)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        f = tb.tb_frame.f_code.co_filename
        if not f.startswith(_MMSIM_DIR) and not f.startswith(_LIB_DIRS) \
                and not f.startswith("<"):
            found = (f, tb.tb_lineno)
        tb = tb.tb_next
    return found


def user_code_error(exc: BaseException, what: str) -> BaseException:
    """What an exception from user code becomes at mmsim's boundary (an episode, a data
    loader): a real cancellation and mmsim's own errors unchanged; anything else (also
    ``CancelledError``, ``KeyboardInterrupt``, ``SystemExit`` raised by the code) a
    :class:`PluginError` naming the file and line of the user code and ``what`` was
    running. An exception raised by no user code is returned as it is (a ``BaseException``
    wrapped in a ``RuntimeError`` so that it is not mistaken for a cancellation)."""
    from mmsim.errors import MmsimError

    if cancelled_for_real(exc) or isinstance(exc, MmsimError):
        return exc
    at = user_frame(exc)
    if at is None:
        if isinstance(exc, Exception):
            return exc
        err = RuntimeError(f"{what}: {describe_exception(exc)} outside a cancelled scope")
        err.__cause__ = exc
        return err
    return PluginError(f"{what}: user code raised {describe_exception(exc)}",
                       where=f"{at[0]}:{at[1]}")


def code_location(exc: BaseException, filename: str, default_line: int | None = None) -> str:
    """``"file:line"`` of the deepest frame of ``exc``'s traceback in ``filename`` (the
    line of a plugin that raised), else ``file:default_line``, else ``file``."""
    line = default_line
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{filename}:{line}" if line else filename
