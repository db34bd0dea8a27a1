"""Export a run's episodes (and messages) as JSONL, CSV or Parquet rows.

Episode rows are the ``episodes`` table (one row per episode, see docs/reports.md), the
protocol's own fields as one JSON ``payload`` column. Message
rows are flattened: envelope, the common text/answer/grade/feedback fields, and the stored
payload as a JSON string. Observations are exported as stored, i.e. as deltas: the first
observation of an episode holds the whole conversation, each later one only the turns
added since (``conversation_from`` says where they start), so an export grows linearly
with the turns. Parquet needs pyarrow (``pip install 'mmsim[parquet]'``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mmsim.errors import UserError
from mmsim.redaction import scrub
from mmsim.store.schema import EPISODE_COLUMNS as _EPISODE_COLUMNS
from mmsim.store.sqlite import RunStore

FORMATS = ("jsonl", "csv", "parquet")
EPISODE_COLUMNS: tuple[str, ...] = _EPISODE_COLUMNS
MESSAGE_COLUMNS: tuple[str, ...] = (
    "run_id", "episode_id", "seq", "turn", "sender", "kind", "text", "answer", "parse",
    "correct", "expected", "unparsed", "feedback_kind", "policy", "leaked", "reveals_answer",
    "prompt_tokens", "completion_tokens", "latency_s", "simulated", "error",
    "conversation_from", "images", "payload")
_BOOL = {"first_correct", "first_unparsed", "solved", "simulated", "correct", "unparsed",
         "leaked", "reveals_answer"}
_INT = {"n_responses", "n_unparsed", "model_prompt_tokens", "model_completion_tokens",
        "model_retries", "provider_prompt_tokens", "provider_completion_tokens",
        "provider_retries", "judge_prompt_tokens", "judge_completion_tokens", "judge_retries",
        "prompt_tokens", "completion_tokens", "seq", "turn", "conversation_from"}
_FLOAT = {"latency_s", "finished_at", "reward"}


def episode_rows(store: RunStore) -> Iterator[dict[str, Any]]:
    for ep in store.episodes():
        row = {k: ep[k] for k in EPISODE_COLUMNS}
        row["payload"] = json.dumps(ep["payload"], sort_keys=True)  # the protocol's own
        for k in _BOOL & row.keys():
            row[k] = None if row[k] is None else bool(row[k])
        yield row


def _message_row(run_id: str, eid: str, seq: int, turn: int, sender: str, kind: str,
                 payload: str) -> dict[str, Any]:
    p = json.loads(payload)
    usage = p.get("usage") or {}
    conv = p.get("conversation") or []
    text = p.get("text")
    images: list[str] = []
    if kind == "observation":
        text = "\n".join(part.get("text", "") for t in conv for part in t.get("parts", [])
                         if part.get("type") == "text")
        images = [part.get("sha256", "") for t in conv for part in t.get("parts", [])
                  if part.get("type") == "image"]
    elif kind == "verdict":
        text = p.get("reason")
    return {
        "run_id": run_id, "episode_id": eid, "seq": seq, "turn": turn, "sender": sender,
        "kind": kind, "text": text, "answer": p.get("answer"), "parse": p.get("parse"),
        "correct": p.get("correct"), "expected": p.get("expected"),
        "unparsed": p.get("unparsed"), "feedback_kind": p.get("feedback_kind"),
        "policy": p.get("policy"), "leaked": p.get("leaked"),
        "reveals_answer": p.get("reveals_answer"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "latency_s": p.get("latency_s"), "simulated": p.get("simulated"),
        "error": p.get("error"),
        "conversation_from": (p.get("conversation_from", 0) if kind == "observation"
                              else None),
        "images": json.dumps(images) if kind == "observation" else None,
        "payload": payload,
    }


def message_rows(store: RunStore) -> Iterator[dict[str, Any]]:
    run = store.run() or {}
    run_id = str(run.get("run_id", ""))
    for eid, seq, turn, sender, kind, payload in store.conn.execute(
            "SELECT episode_id, seq, turn, sender, kind, payload FROM messages "
            "ORDER BY episode_id, seq"):
        yield _message_row(run_id, eid, seq, turn, sender, kind, scrub(payload))


def _write_jsonl(rows: Iterable[dict[str, Any]], f: IO[str]) -> int:
    n = 0
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
        n += 1
    return n


def _write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], f: IO[str]) -> int:
    w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    n = 0
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        n += 1
    return n


def _arrow_type(col: str, sample: list[dict[str, Any]]) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    if col in _BOOL:
        return pa.bool_()
    if col in _INT:
        return pa.int64()
    if col in _FLOAT:
        return pa.float64()
    # a column this module does not know (added to the store later): infer it
    kinds = {type(r.get(col)) for r in sample} - {type(None)}
    if kinds == {bool}:
        return pa.bool_()
    if kinds and kinds <= {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _write_parquet(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], path: Path,
                   batch: int = 50_000) -> int:
    try:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise UserError("Parquet export needs pyarrow: pip install 'mmsim[parquet]'",
                        where="--format parquet") from None
    it = iter(rows)
    buf: list[dict[str, Any]] = []
    for r in it:
        buf.append(r)
        if len(buf) >= batch:
            break
    schema = pa.schema([(c, _arrow_type(c, buf)) for c in columns])
    strings = [c for c in columns if schema.field(c).type == pa.string()]

    def table(chunk: list[dict[str, Any]]) -> Any:
        for r in chunk:
            for c in strings:
                v = r.get(c)
                if v is not None and not isinstance(v, str):
                    r[c] = json.dumps(v) if isinstance(v, dict | list) else str(v)
        return pa.Table.from_pylist(chunk, schema=schema)

    n = 0
    with pq.ParquetWriter(str(path), schema) as w:
        w.write_table(table(buf))
        n += len(buf)
        buf = []
        for r in it:
            buf.append(r)
            if len(buf) >= batch:
                w.write_table(table(buf))
                n += len(buf)
                buf = []
        if buf:
            w.write_table(table(buf))
            n += len(buf)
    return n


def write_rows(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], fmt: str,
               path: Path | None) -> int:
    """Write ``rows`` to ``path`` (``None``: stdout, not for parquet); returns the count."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}",
                        where="--format")
    if fmt == "parquet":
        if path is None:
            raise UserError("Parquet cannot go to stdout; give -o PATH", where="-o")
        path.parent.mkdir(parents=True, exist_ok=True)
        return _write_parquet(rows, columns, path)
    if path is None:
        return (_write_jsonl(rows, sys.stdout) if fmt == "jsonl"
                else _write_csv(rows, columns, sys.stdout))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        return _write_jsonl(rows, f) if fmt == "jsonl" else _write_csv(rows, columns, f)


def messages_path(episodes_path: Path) -> Path:
    """Where ``--messages`` puts the messages next to the episodes file."""
    return episodes_path.with_name(f"{episodes_path.stem}.messages{episodes_path.suffix}")


def export_run(store: RunStore, fmt: str, out: Path | None, *,
               messages: bool = False) -> dict[str, Any]:
    """Export episodes to ``out`` (and messages next to it); returns paths and counts."""
    if messages and out is None:
        raise UserError("--messages needs -o PATH (two files are written)", where="-o")
    result: dict[str, Any] = {"episodes": {
        "path": str(out) if out else "-",
        "rows": write_rows(episode_rows(store), EPISODE_COLUMNS, fmt, out)}}
    if messages and out is not None:
        mpath = messages_path(out)
        result["messages"] = {"path": str(mpath), "rows": write_rows(
            message_rows(store), MESSAGE_COLUMNS, fmt, mpath)}
    return result


__all__ = ["EPISODE_COLUMNS", "FORMATS", "MESSAGE_COLUMNS", "episode_rows", "export_run",
           "message_rows", "messages_path", "write_rows"]
