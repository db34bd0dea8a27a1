"""Scenario files: YAML validated by the schema of the protocol that ``kind:`` names.

Errors name the file, the line and the dotted field (``scenario.yaml:12: providers.0.backend:
unknown backend 'simm' (did you mean 'sim'?)``). ``--set dotted.key=value`` overrides are
applied before validation and named as ``--set key`` in errors. The protocol is found
through the registry (:data:`mmsim.runtime.protocol.PROTOCOLS`): this module knows no
protocol by name; ``kind`` defaults to ``interfeedback``.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mmsim.data import safeio
from mmsim.errors import ScenarioError, UserError
from mmsim.redaction import register_env_params, register_secret_env
from mmsim.registry import did_you_mean
from mmsim.runtime.protocol import PROTOCOLS
from mmsim.spec import SECRET_PARAM, LoadedScenario, locate

DEFAULT_KIND = "interfeedback"

# -- YAML with line numbers --------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, parent: str):
        super().__init__(key)
        self.key, self.line, self.parent = key, line, parent


#: how deep a scenario's YAML may nest (mappings and lists): scenarios are a few levels
MAX_YAML_DEPTH = 64
#: how many nodes a scenario's YAML may hold once its aliases (``*name``) are expanded: an
#: alias "bomb" (a list of aliases of lists of aliases...) is refused before it is built
MAX_YAML_NODES = 100_000


def _check_bounds(text: str, where: str) -> None:
    """Refuse YAML nested deeper than :data:`MAX_YAML_DEPTH` or whose aliases expand to
    more than :data:`MAX_YAML_NODES` nodes, with the line: computed from the event stream
    (no recursion, no expansion: an alias adds the size its anchor was recorded with)."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, size] of each open collection
    total = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        line = ev.start_mark.line + 1 if ev.start_mark is not None else 1
        if isinstance(ev, yaml.CollectionStartEvent):
            if len(stack) > MAX_YAML_DEPTH:
                raise ScenarioError(f"YAML nested more than {MAX_YAML_DEPTH} levels deep",
                                    where=f"{where}:{line}")
            stack.append([ev.anchor, 1])
            continue
        if isinstance(ev, yaml.CollectionEndEvent):
            anchor, n = stack.pop()
        elif isinstance(ev, yaml.ScalarEvent):
            anchor, n = ev.anchor, 1
        elif isinstance(ev, yaml.AliasEvent):
            anchor, n = None, sizes.get(str(ev.anchor), 1)
        else:
            continue
        if anchor is not None:
            sizes[str(anchor)] = n
        stack[-1][1] += n
        total = stack[0][1]
        if total > MAX_YAML_NODES or n > MAX_YAML_NODES:
            raise ScenarioError(f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes "
                                "(an alias bomb?)", where=f"{where}:{line}")


def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if str(k.value) in seen:  # PyYAML keeps the last silently: refuse instead
                raise _DuplicateKey(str(k.value), k.start_mark.line + 1, ".".join(path))
            seen.add(str(k.value))
            key = (*path, str(k.value))
            out[key] = k.start_mark.line + 1
            _line_map(v, key, out)
            out[key] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, (*path, str(i)), out)


def _parse_yaml(text: str, where: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        _check_bounds(text, where)  # before anything is built from it
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"invalid YAML: {exc.problem or exc}", where=f"{where}{line}") from None
    except yaml.reader.ReaderError as exc:  # e.g. a NUL or control character
        at = text[:exc.position].count("\n") + 1
        raise ScenarioError(f"invalid YAML: unacceptable character #x{exc.character:04x}"
                            if isinstance(exc.character, int) else "invalid YAML: "
                            f"unacceptable character {exc.character!r}",
                            where=f"{where}:{at}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", where=where) from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        try:
            _line_map(node, (), lines)
        except _DuplicateKey as exc:
            field = f"{exc.parent}.{exc.key}" if exc.parent else exc.key
            raise ScenarioError(f"duplicate key {exc.key!r}", where=f"{where}:{exc.line}",
                                field=field) from None
        except RecursionError:
            raise ScenarioError("YAML nested too deeply", where=where) from None
    return data, lines


def shown_override(assignment: str) -> str:
    """``--set`` text as errors show it: the value of a credential-named key is hidden."""
    key, eq, _ = assignment.partition("=")
    return f"{key}=<redacted>" if eq and SECRET_PARAM.search(key.strip()) else assignment


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.key=value`` (value parsed as YAML) to ``data`` in place."""
    shown = shown_override(assignment)
    if "=" not in assignment:
        raise UserError("expected dotted.key=value", where=f"--set {shown}")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise UserError("empty key", where=f"--set {shown}")
    try:
        _check_bounds(raw, f"--set {shown}")
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"value is not valid YAML ({problem})",
                        where=f"--set {shown}") from None
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        nxt: Any
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise UserError(f"no list item {p!r} at {'.'.join(parts[:i]) or 'top level'}",
                                where=f"--set {shown}")
            nxt = node[int(p)]
        elif isinstance(node, dict):
            nxt = node.setdefault(p, {})
        else:
            raise UserError(f"{'.'.join(parts[:i])} is not a mapping or list",
                            where=f"--set {shown}")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"no list item {last!r}", where=f"--set {shown}")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"{'.'.join(parts[:-1])} is not a mapping or list",
                        where=f"--set {shown}")


_NAMED = re.compile(r"^(?:duplicate \w+ name|agent|model|judge) '([^']*)'")
_CREDENTIAL = re.compile(r"param '([^']+)' (?:holds a credential|must|is a probability)")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (itself, or inside a list/dict/optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def model_at(root: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel]:
    """The model of the section at ``loc`` (list indices skipped), as deep as it goes."""
    model = root
    for part in loc:
        if part.isdigit():
            continue
        f = model.model_fields.get(part)
        inner = _model_in(f.annotation) if f is not None else None
        if inner is None:
            break
        model = inner
    return model


def _named_item(data: Any, name: str, root: type[BaseModel]) -> tuple[str, ...]:
    """The location of the last listed item called ``name`` (the duplicate)."""
    found: tuple[str, ...] = ()
    for group, f in root.model_fields.items():
        inner = _model_in(f.annotation)
        if inner is None or "name" not in inner.model_fields:
            continue
        items = data.get(group) if isinstance(data, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if item == name or (isinstance(item, dict) and item.get("name") == name):
                found = (group, str(i))
    return found


def explain(err: Any, lines: dict[tuple[str, ...], int], where: str,
            overrides: dict[str, str], root: type[BaseModel],
            data: Any = None) -> ScenarioError:
    """One pydantic error of a scenario whose schema is ``root``, as a ``file:line: field:
    message`` error, with a did-you-mean for unknown keys. A model-level check may name its
    field with a message ``"@a.b rest"`` (``"@+b rest"``: ``b`` below the failing
    field); one about a named item (``duplicate model name
    'x'``) points at that item."""
    loc = tuple(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("@+"):  # a field below the one that failed: "@+key rest"
        path, _, msg = msg[2:].partition(" ")
        loc = (*loc, *path.split("."))
    elif msg.startswith("@"):
        path, _, msg = msg[1:].partition(" ")
        loc = tuple(path.split("."))
        msg = f"{loc[-1]} {msg}"
    m = _NAMED.match(msg)
    if not loc and m:  # a whole-scenario check about one named item: point at the item
        loc = _named_item(data, m.group(1), root)
    m = _CREDENTIAL.match(msg)
    if m and loc[-1:] == ("params",):  # point at the credential itself
        loc = (*loc, *m.group(1).split("."))
    if err["type"] == "extra_forbidden":
        model = model_at(root, loc[:-1])
        msg = f"unknown key{did_you_mean(loc[-1], list(model.model_fields))}; allowed: " \
              + ", ".join(model.model_fields)
    return ScenarioError(msg, where=locate(loc, lines, where, overrides),
                         field=".".join(loc) or "(top level)")


def read_scenario_data(path: str | Path, overrides: list[str] | None = None
                       ) -> tuple[Path, dict[str, Any], dict[tuple[str, ...], int], dict[str, str]]:
    """Read a scenario file and apply ``--set`` overrides, without validating it: the path,
    the data, the line of each field, and the overrides applied (key -> assignment)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("scenario file not found", where=str(p))
    try:
        raw = safeio.read_bytes(p, safeio.MAX_SCENARIO_BYTES, what="scenario file",
                                error=ScenarioError)
    except OSError as exc:
        raise ScenarioError(f"cannot read the scenario file ({exc.strerror or exc})",
                            where=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", where=f"{p}:{line}") from None
    data, lines = _parse_yaml(text, str(p))
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping (name:, dataset:, ...)",
                            where=f"{p}:{lines.get((), 1)}")
    applied: dict[str, str] = {}
    for o in overrides or []:
        apply_override(data, o)
        applied[o.partition("=")[0].strip()] = shown_override(o)
    return p, data, lines, applied


def load_scenario(path: str | Path, *, overrides: list[str] | None = None,
                  limit: int | None = None) -> LoadedScenario:
    """Read, override and validate a scenario file of any protocol (``kind:``, default
    ``interfeedback``) against its protocol's schema. Raises :class:`ScenarioError`."""
    p, data, lines, applied = read_scenario_data(path, overrides)
    kind = data.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or kind not in PROTOCOLS:
        names = PROTOCOLS.names()
        raise ScenarioError(f"unknown scenario kind {kind!r}"
                            f"{did_you_mean(str(kind), names)}; known: " + ", ".join(names),
                            field="kind", where=locate(("kind",), lines, str(p), applied))
    proto = PROTOCOLS.get(kind)
    if limit is not None:
        if limit < 1:
            raise UserError("must be >= 1", where="--limit")
        if not isinstance(data.get("dataset", {}), dict):
            raise ScenarioError("missing dataset", where=str(p), field="dataset")
    if not proto.kind_field:  # the schema has no ``kind`` key (InterFeedback's)
        data.pop("kind", None)
    try:
        scn = proto.scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()  # a typo (unknown key) explains a missing field: report it first
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise explain(first, lines, str(p), applied, proto.scenario, data) from None
    register_secret_env(again=True)
    register_env_params(data)  # the values of every `*_env` / `env_from` variable are
    # secrets from now on: redacted wherever text is stored or printed (mmsim.redaction)
    return LoadedScenario(scenario=scn, kind=kind, path=p.resolve(), limit=limit,
                          source=str(p), lines=lines, overrides=applied)


#: The same function (scenarios of every kind load through the protocol registry).
load_any_scenario = load_scenario

__all__ = ["DEFAULT_KIND", "LoadedScenario", "apply_override", "explain", "load_any_scenario",
           "load_scenario", "model_at", "read_scenario_data", "shown_override"]
