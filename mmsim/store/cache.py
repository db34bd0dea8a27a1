"""The response cache of a run: model replies keyed by a hash of the request (model,
endpoint, messages, sampling parameters), in the run's SQLite file.

Backends consult it for deterministic requests (see docs/backends.md), so a resumed or
re-played episode does not call the server again for a request it already made. Writes
are buffered and committed in small batches on the cache's own connection; losing the
last few entries in a crash only costs a repeated request.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """CREATE TABLE IF NOT EXISTS response_cache(
  key TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL NOT NULL) WITHOUT ROWID"""


class ResponseCache:
    """A ``key -> JSON object`` cache in the SQLite file ``path`` (the run store's).

    Not thread-safe; used from the event loop. ``hits``/``misses`` count lookups.
    """

    def __init__(self, path: str | Path, *, batch: int = 64):
        self.path = Path(path)
        self.batch = batch
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                    timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(_SCHEMA)
        self._pending: dict[str, str] = {}
        self.hits = self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._pending.get(key)
        if raw is None:
            row = self.conn.execute("SELECT value FROM response_cache WHERE key=?",
                                    (key,)).fetchone()
            raw = row[0] if row else None
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(raw)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._pending[key] = json.dumps(value, sort_keys=True)
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, now = list(self._pending.items()), time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT OR REPLACE INTO response_cache VALUES(?,?,?)",
                                  [(k, v, now) for k, v in rows])
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self._pending.clear()

    def __len__(self) -> int:
        self.flush()
        n: int = self.conn.execute("SELECT COUNT(*) FROM response_cache").fetchone()[0]
        return n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.conn.close()
