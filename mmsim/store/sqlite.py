"""One SQLite database (WAL) per run directory: runs, episodes, messages.

An episode is written in one transaction with all its messages, so a crash loses at most
the episodes in flight, which a resumed run plays again (their seeds make them identical).

Observations are stored as deltas: the first observation of an episode is stored whole;
each later one stores only the turns added since the one before
(``{"conversation_from": k, "conversation": [...new turns]}``), so an episode's store
size grows linearly with its turns, not quadratically. :meth:`RunStore.messages` rebuilds
the whole conversation of every observation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel
from pydantic_core import to_json

from mmsim._version import __version__
from mmsim.errors import StoreError, UserError
from mmsim.redaction import register_env_params, scrub, scrub_known, scrub_obj
from mmsim.store.migrate import migrate_v1
from mmsim.store.schema import EPISODE_COLUMNS as _EPISODE_COLUMNS
from mmsim.store.schema import EPISODES_INDEX, EPISODES_TABLE, SCHEMA, SCHEMA_VERSION

DB_NAME = "mmsim.sqlite"
LOCK_NAME = "mmsim.lock"  # held (flock) by the one process writing the run
@dataclass(slots=True)
class EpisodeRecord:
    """A finished (or failed) episode with its messages, as it is stored.

    Every protocol fills the common fields with the same meaning: the agents by role
    (``model``: the agent that answers; ``provider``: who gives feedback; ``judge``: who
    scores), the ``condition`` the episode was played under (InterFeedback's policy,
    classification's protocol, a dynamic task family, a video phase...), the outcome
    (``first_correct``, ``solved``, ``reward``), tokens and retries by role, timings and
    the error of a failed episode. What only one protocol means goes in ``payload``
    (InterFeedback: ``rounds``, ``corrected_round``, ``n_feedback``, ``n_leaked``...).
    """

    episode_id: str
    run_id: str
    kind: str  # the protocol's episode kind ("screen", "feedback", "dyn_task", ...)
    sample_id: str
    category: str
    status: str  # "done" or "failed"
    protocol: str = ""  # the protocol's name (the scenario's kind)
    condition: str = ""
    model: str = ""
    provider: str = ""
    judge: str = ""
    error: str | None = None
    first_correct: bool | None = None
    first_unparsed: bool | None = None
    solved: bool | None = None
    reward: float | None = None
    n_responses: int = 0  # the model's replies
    n_unparsed: int = 0  # of them, with no answer extracted
    model_prompt_tokens: int = 0
    model_completion_tokens: int = 0
    model_retries: int = 0  # infrastructure faults retried on the model's calls
    provider_prompt_tokens: int = 0
    provider_completion_tokens: int = 0
    provider_retries: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    judge_retries: int = 0
    latency_s: float = 0.0
    simulated: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    messages: Sequence[BaseModel] = field(default_factory=tuple)

    def row(self, now: float) -> tuple[Any, ...]:
        return (self.episode_id, self.run_id, self.protocol, self.kind, self.sample_id,
                self.category, self.condition, self.status, self.error, self.model,
                self.provider, self.judge, self.first_correct, self.first_unparsed,
                self.solved, self.reward, self.n_responses, self.n_unparsed,
                self.model_prompt_tokens, self.model_completion_tokens, self.model_retries,
                self.provider_prompt_tokens, self.provider_completion_tokens,
                self.provider_retries, self.judge_prompt_tokens,
                self.judge_completion_tokens, self.judge_retries, self.latency_s,
                self.simulated, now, _dumps(self.payload))


@dataclass(frozen=True, slots=True)
class EncodedEpisode:
    """An episode as rows, in JSON: ``row`` is its ``episodes`` row (a JSON array) and
    ``messages`` its ``messages`` rows (``[episode_id, seq, message]`` JSON arrays joined
    by commas; each message is embedded as a JSON object with its envelope, which the
    store strips into columns).

    JSON because :meth:`RunStore.write_encoded` inserts a whole batch with one statement
    over ``json_each``: SQLite then does all the work with the GIL released, where
    ``executemany`` takes the GIL back for every row and starves against a busy event
    loop. One flat array of messages per batch, not one array per episode: a nested
    ``json_each`` re-renders and re-parses every episode (the writer thread spent about
    a third more per episode).
    """

    episode_id: str
    row: str
    messages: str


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _row_json(row: tuple[Any, ...]) -> str:
    """One ``episodes`` row as a JSON array; NaN/inf (not JSON) are stored as NULL."""
    return to_json(row, inf_nan_mode="null").decode()


def _message_rows(episode_id: str, messages: Sequence[BaseModel]) -> str:
    """The messages of one episode as ``[episode_id, seq, message]`` JSON arrays joined by
    commas, each message with its envelope (the store strips it into columns); observations
    after the first are deltas. One serialiser call per episode: pydantic-core writes the
    whole list (cheaper for the event loop than one call per message, or than leaving the
    envelope out here)."""
    if not messages:
        return ""
    items: list[tuple[str, int, Any]] = []
    seen = 0  # turns of the conversation already stored by an earlier observation
    for seq, m in enumerate(messages):
        d = m.__dict__
        if d["kind"] == "observation":
            conv = d["conversation"]
            if seen and len(conv) >= seen:
                items.append((episode_id, seq, {
                    "turn": d["turn"], "sender": d["sender"], "kind": "observation",
                    "conversation_from": seen, "conversation": conv[seen:]}))
                seen = len(conv)
                continue
            seen = len(conv)
        items.append((episode_id, seq, m))
    return to_json(items).decode()[1:-1]


#: A batch is written by one statement, ``INSERT INTO mmsim_batch VALUES(ids, rows,
#: messages)`` (JSON arrays), which a TEMP trigger (this connection's only) turns into the
#: three statements below. One statement is one transaction (all or none) and one call
#: into SQLite: the writer thread takes the GIL back once per batch instead of once per
#: statement, each time waiting up to a switch interval (5 ms) for a busy event loop.
_BATCH_WRITER = f"""
CREATE TEMP VIEW IF NOT EXISTS mmsim_batch(episode_ids, episodes, messages) AS
  SELECT NULL, NULL, NULL;
CREATE TEMP TRIGGER IF NOT EXISTS mmsim_batch_insert INSTEAD OF INSERT ON mmsim_batch BEGIN
  DELETE FROM messages WHERE episode_id IN (SELECT value FROM json_each(NEW.episode_ids));
  INSERT OR REPLACE INTO episodes({','.join(_EPISODE_COLUMNS)}) SELECT
    {",".join(f"json_extract(value,'$[{i}]')" for i in range(len(_EPISODE_COLUMNS)))}
    FROM json_each(NEW.episodes);
  INSERT INTO messages(episode_id,seq,turn,sender,kind,payload) SELECT
    json_extract(value,'$[0]'), json_extract(value,'$[1]'), json_extract(value,'$[2].turn'),
    json_extract(value,'$[2].sender'), json_extract(value,'$[2].kind'),
    json_remove(json_extract(value,'$[2]'),'$.run_id','$.episode_id','$.turn','$.sender',
                '$.kind')
    FROM json_each(NEW.messages);
END;
"""
_WRITE_BATCH = "INSERT INTO mmsim_batch VALUES(?,?,?)"


#: How long a write waits for a lock held by another connection before the run stops.
BUSY_TIMEOUT_S = 30.0


def _environmental(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return any(k in msg for k in ("locked", "busy", "full", "disk i/o", "readonly",
                                  "unable to open"))


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """A clear :class:`StoreError` for a failed write (locked store, full disk, I/O)."""
    msg = str(exc)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        why = f"the run store is locked by another process ({msg})"
    elif "full" in low:
        why = f"the disk (or the store's size limit) is full ({msg})"
    else:
        why = f"cannot write the run store ({msg})"
    return StoreError(f"{why}; the run stopped, committed episodes are kept: fix the cause and "
                      "rerun the same command to resume", where=str(path))


#: written into every run directory mmsim creates (or adopts: an empty one, or one holding
#: a store of an earlier mmsim); mmsim writes into no directory without it or such a store
MARKER_NAME = ".mmsim-run"
_MARKER_TEXT = ("This directory is an mmsim run directory: mmsim wrote it and writes into it "
                "again (resume). Do not put other files here.\n")
#: what mmsim itself puts in a run directory before its store exists
_OWN_BEFORE_STORE = {LOCK_NAME, MARKER_NAME, "assets", "servers"}


def inspect_store(path: Path) -> int:
    """The schema version of the run store ``path``, read without writing anything; a
    UserError when it is not an SQLite database or not mmsim's (a foreign SQLite file)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise UserError(f"cannot open the run store: {exc}", where=str(path)) from None
    row: tuple[Any, ...] | None = None
    try:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    except sqlite3.OperationalError as exc:
        if _environmental(exc):
            raise store_error(exc, path) from None
        raise UserError(f"cannot open the run store: {exc}", where=str(path)) from None
    except sqlite3.DatabaseError as exc:
        raise UserError(f"cannot open the run store: {exc}", where=str(path)) from None
    finally:
        conn.close()
    if not tables:  # an empty SQLite file (mmsim's, killed as it was created)
        return SCHEMA_VERSION
    if not {"runs", "episodes", "messages", "meta"} <= tables or \
            not {"run_id", "scenario_hash", "manifest"} <= cols or row is None or \
            not str(row[0]).isdigit():
        shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
        raise UserError(f"not an mmsim run store (an SQLite file with tables {shown}); "
                        "mmsim uses only run stores it created (for a run: choose another "
                        "--out)", where=str(path))
    return int(row[0])


def check_run_dir(run_dir: Path) -> None:
    """Refuse (UserError, nothing written) a run directory mmsim did not create: one that
    holds files but neither mmsim's marker nor an mmsim store, or whose ``mmsim.sqlite``
    is not mmsim's. A missing or empty directory is fine."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError("the run directory is a file, not a directory", where=str(run_dir))
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise UserError(f"cannot read the run directory ({exc.strerror or exc})",
                        where=str(run_dir)) from None
    db = run_dir / DB_NAME
    if DB_NAME in names:
        if not db.is_file():
            raise UserError(f"{DB_NAME} is not a file", where=str(db))
        version = inspect_store(db)
        if version > SCHEMA_VERSION:
            raise UserError(
                f"this run was written by a newer mmsim (store schema {version}); "
                f"mmsim {__version__} reads schema {SCHEMA_VERSION} and earlier",
                where=str(db))
        return
    if not names or set(names) <= {LOCK_NAME} or \
            (MARKER_NAME in names and set(names) <= _OWN_BEFORE_STORE):
        return
    foreign = [n for n in names if n not in _OWN_BEFORE_STORE] or names
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise UserError(f"this directory holds files mmsim did not write ({shown}); mmsim "
                    "writes only into a new or empty directory or one of its own runs: use "
                    "another --out", where=str(run_dir))


def _mark_run_dir(run_dir: Path) -> None:
    marker = run_dir / MARKER_NAME
    if not marker.exists():
        try:
            marker.write_text(_MARKER_TEXT, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write in the run directory ({exc.strerror or exc})",
                            where=str(run_dir)) from None


def _make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the run directory ({exc.strerror or exc})",
                        where=str(run_dir)) from None


def _flock_run_dir(run_dir: Path) -> IO[str] | None:
    """Take the run directory's writer lock (``flock`` on ``mmsim.lock``, released by the
    kernel when the process ends, however it ends) or raise a UserError naming the pid
    that holds it. Where ``fcntl`` does not exist (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    path = run_dir / LOCK_NAME
    while True:
        try:
            f = open(path, "a+", encoding="utf-8")  # held until released
        except OSError as exc:
            raise UserError(f"cannot create the run's lock file ({exc.strerror or exc})",
                            where=str(path)) from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise UserError("this run directory is being written by another mmsim "
                            f"process{who}; wait for it to end, or use another --out",
                            where=str(run_dir)) from None
        # The holder removes the file when it lets go: a lock taken on a file already
        # unlinked (or replaced) guards nothing, so take it again on the current one.
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


class _Held:
    __slots__ = ("count", "created", "file")

    def __init__(self, file: IO[str] | None, created: bool):
        self.file, self.created, self.count = file, created, 1


_HELD: dict[Path, _Held] = {}  # run directories this process writes, by resolved path


def acquire_run_dir(run_dir: str | Path) -> Path:
    """Make this process the only writer of ``run_dir`` (created if missing); returns the
    key for :func:`release_run_dir`. Re-entrant within a process (the runner takes it
    before starting servers or loading data, the store again when it opens); another
    process gets a UserError naming the pid that holds it."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    held = _HELD.get(key)
    if held is not None:
        held.count += 1
        return key
    created = not run_dir.exists()
    if not created:
        check_run_dir(run_dir)
    _make_run_dir(run_dir)
    try:
        _HELD[key] = _Held(_flock_run_dir(run_dir), created)
        _mark_run_dir(run_dir)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                (run_dir / MARKER_NAME).unlink(missing_ok=True)
                run_dir.rmdir()
        raise
    return key


def release_run_dir(key: Path) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held.count -= 1
    if held.count > 0:
        return
    del _HELD[key]
    if held.file is not None:
        with contextlib.suppress(OSError):  # removed while still held (see _flock_run_dir)
            (key / LOCK_NAME).unlink(missing_ok=True)
        held.file.close()  # releases the flock
    if held.created:  # a directory the lock created and nobody wrote into: removed
        with contextlib.suppress(OSError):
            if os.listdir(key) == [MARKER_NAME]:
                (key / MARKER_NAME).unlink()
            key.rmdir()


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """:func:`acquire_run_dir` for the duration of a ``with`` block."""
    key = acquire_run_dir(run_dir)
    try:
        yield
    finally:
        release_run_dir(key)


def _id_key(episode_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(episode_id.encode(), digest_size=16).digest(), "big")


_LOW64 = (1 << 64) - 1


class EpisodeIdSet:
    """A read-only set of episode ids for membership tests, in about 20 bytes per id.

    A resumed run asks "is this episode done?" for each of its episodes; a ``set[str]`` of
    100,000 ids takes about 13 MB (a string and a hash-table slot per id), this 2 MB: each
    id's 128-bit BLAKE2b digest, sorted, as two ``array('Q')`` halves, plus a table of
    where each value of the digest's top bits starts (one or two ids per bucket on
    average, so a test reads a few array items; nothing beyond the standard library). Two
    different ids share a digest with probability about n^2 / 2^129.
    """

    __slots__ = ("_hi", "_lo", "_n", "_shift", "_starts")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        keys = sorted({_id_key(i) for i in ids})
        self._n = n = len(keys)
        bits = max(1, n.bit_length())
        self._shift = 128 - bits
        starts = array("I", bytes(4 * ((1 << bits) + 1)))
        for k in keys:
            starts[(k >> self._shift) + 1] += 1
        for b in range(1, len(starts)):
            starts[b] += starts[b - 1]
        self._starts = starts
        self._hi = array("Q", [k >> 64 for k in keys])
        self._lo = array("Q", [k & _LOW64 for k in keys])

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __contains__(self, episode_id: object) -> bool:
        if not self._n or not isinstance(episode_id, str):
            return False
        key = _id_key(episode_id)
        b = key >> self._shift
        hi, lo = key >> 64, key & _LOW64
        his, los = self._hi, self._lo
        for i in range(self._starts[b], self._starts[b + 1]):
            if his[i] == hi and los[i] == lo:
                return True
        return False

    def __repr__(self) -> str:
        return f"EpisodeIdSet({self._n} ids)"


def _newer_store(version: object, path: Path) -> UserError:
    return UserError(f"this run was written by a newer mmsim (store schema {version}); "
                     f"mmsim {__version__} reads schema {SCHEMA_VERSION} and earlier",
                     where=str(path))


def _open_error(exc: sqlite3.DatabaseError, path: Path) -> Exception:
    """A store that cannot be opened: a StoreError when the machine is at fault (locked,
    disk full; OperationalError), else a UserError (not a store, corrupt)."""
    if isinstance(exc, sqlite3.OperationalError) and _environmental(exc):
        return store_error(exc, path)
    return UserError(f"cannot open the run store: {exc}", where=str(path))


class RunStore:
    """The store of one run directory. Use one instance per process; not thread-safe, but
    it may be handed to one worker thread at a time."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: Path | None = None):
        self.path = path
        self.conn = conn
        self._lock = lock  # the run directory's writer lock (acquire_run_dir), if held
        self._batch_writer = False  # the TEMP view and trigger of write_encoded exist

    @classmethod
    def open(cls, run_dir: str | Path, *, create: bool = True,
             lock: bool | None = None) -> RunStore:
        """Open (``create``: or start) the store of ``run_dir``. ``lock`` (default: when
        ``create``) makes this process the run's only writer: a second ``mmsim run`` on
        the same directory stops with a clear error instead of playing the same episodes
        twice into one store. Readers (reports, exports) take no lock."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if not create:  # a reader: read-only, never a write into the directory's files
            if not path.is_file():
                raise UserError(f"no mmsim run here (missing {DB_NAME})", where=str(run_dir))
            return cls(path, cls._connect_readonly(path))
        check_run_dir(run_dir)
        _make_run_dir(run_dir)
        held = acquire_run_dir(run_dir) if (create if lock is None else lock) else None
        try:
            return cls(path, cls._connect(path), held)
        except BaseException:
            if held is not None:
                release_run_dir(held)
            raise

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row is not None else None
            if version == 1:
                migrate_v1(conn)
            elif version is not None and version != SCHEMA_VERSION:
                raise _newer_store(version, path)
            conn.execute(EPISODES_TABLE)
            conn.execute(EPISODES_INDEX)
            if version is None:
                conn.execute("INSERT INTO meta VALUES('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise _open_error(exc, path) from None
        return conn

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        """A read-only connection to an mmsim store (a foreign SQLite file refused); a
        schema-1 store is migrated in a copy in memory, the file left as it is."""
        version = inspect_store(path)
        if version > SCHEMA_VERSION:
            raise _newer_store(version, path)
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
            if version == 1:
                mem = sqlite3.connect(":memory:", check_same_thread=False,
                                      isolation_level=None)
                conn.backup(mem)
                conn.close()
                migrate_v1(mem)
                mem.execute(EPISODES_INDEX)
                conn = mem
            conn.execute("PRAGMA query_only=1")
            # the variables the run's agents named (`*_env`, `env_from`) hold secrets here
            # too: what a store written before redaction holds of them is not shown
            for (scenario,) in conn.execute("SELECT scenario FROM runs"):
                with contextlib.suppress(ValueError):
                    register_env_params(json.loads(scenario))
        except sqlite3.DatabaseError as exc:
            raise _open_error(exc, path) from None
        return conn

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            if self._lock is not None:
                release_run_dir(self._lock)
                self._lock = None

    # -- runs ------------------------------------------------------------------------
    def run(self) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT run_id, name, scenario_hash, scenario, manifest, created_at, status, "
            "finished_at FROM runs ORDER BY created_at LIMIT 1").fetchone()
        if row is None:
            return None
        keys = ("run_id", "name", "scenario_hash", "scenario", "manifest", "created_at",
                "status", "finished_at")
        out = dict(zip(keys, row, strict=True))
        out["scenario"] = scrub_obj(json.loads(out["scenario"]))
        out["manifest"] = scrub_obj(json.loads(out["manifest"]))
        return out

    def begin_run(self, run_id: str, name: str, scenario_hash: str, scenario: dict[str, Any],
                  manifest: dict[str, Any]) -> bool:
        """Record the run, or check that this directory holds the same scenario.

        Returns True when the run resumes an earlier one.
        """
        existing = self.run()
        if existing is not None:
            if existing["scenario_hash"] != scenario_hash:
                raise UserError(
                    f"this run directory holds run {existing['run_id']!r} of a different "
                    "scenario (or different --set/--limit); use another --out to start a "
                    "new run", where=str(self.path.parent))
            try:
                self.conn.execute("UPDATE runs SET status='running' WHERE run_id=?",
                                  (existing["run_id"],))
            except sqlite3.OperationalError as exc:
                raise store_error(exc, self.path) from None
            return True
        try:
            self.conn.execute(
                "INSERT INTO runs VALUES(?,?,?,?,?,?,?,NULL)",
                (run_id, name, scenario_hash, scrub(json.dumps(scenario, sort_keys=True)),
                 scrub(json.dumps(manifest, sort_keys=True)), time.time(), "running"))
        except sqlite3.OperationalError as exc:
            raise store_error(exc, self.path) from None
        return False

    def finish_run(self, status: str = "finished") -> None:
        """Set the run's status: ``finished``, ``interrupted`` (a signal) or ``failed``."""
        try:
            self.conn.execute("UPDATE runs SET status=?, finished_at=?", (status, time.time()))
        except sqlite3.OperationalError as exc:
            raise store_error(exc, self.path) from None

    # -- episodes ----------------------------------------------------------------------
    def done_ids(self) -> EpisodeIdSet:
        """The finished episodes' ids as a compact :class:`EpisodeIdSet` (what a resumed
        run skips; a ``set`` of the strings takes 6x the memory)."""
        try:
            return EpisodeIdSet(r[0] for r in self.conn.execute(
                "SELECT episode_id FROM episodes WHERE status='done'"))
        except sqlite3.OperationalError as exc:
            raise store_error(exc, self.path) from None

    def done_with_prefix(self, prefix: str) -> Iterator[str]:
        """The finished episodes whose id starts with ``prefix`` (a range scan of the
        primary key, not a walk over every episode)."""
        if not prefix:
            raise ValueError("done_with_prefix needs a non-empty prefix")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        for (eid,) in self.conn.execute(
                "SELECT episode_id FROM episodes WHERE status='done' AND episode_id >= ? "
                "AND episode_id < ? ORDER BY episode_id", (prefix, upper)):
            yield eid

    @staticmethod
    def encode(record: EpisodeRecord, now: float | None = None) -> EncodedEpisode:
        """The rows of one episode, ready for :meth:`write_encoded` (any thread may call
        this; the runner does it when an episode ends, so the writer only runs SQL)."""
        # Secrets never reach the store: error text (an error body that echoes a key or a
        # header) gets the whole redaction pass; the rest (model replies, large, seldom a
        # secret) is checked for the known secrets (mmsim.redaction), a few substring tests
        row = _row_json(record.row(time.time() if now is None else now))
        msgs = _message_rows(record.episode_id, record.messages)
        if record.error is not None or '"error":"' in msgs:
            row, msgs = scrub(row), scrub(msgs)
        else:
            row, msgs = scrub_known(row), scrub_known(msgs)
        return EncodedEpisode(record.episode_id, row, msgs)

    def write_encoded(self, episodes: Sequence[EncodedEpisode]) -> None:
        """Write encoded episodes in one transaction (all or none): one SQL statement,
        which SQLite runs without the GIL; an episode written again (a failed one played
        again by a resumed run) replaces its earlier row and messages."""
        if not episodes:
            return
        c = self.conn
        try:
            if not self._batch_writer:
                c.executescript(_BATCH_WRITER)
                self._batch_writer = True
            c.execute(_WRITE_BATCH, (_dumps([e.episode_id for e in episodes]),
                                     "[" + ",".join(e.row for e in episodes) + "]",
                                     "[" + ",".join(e.messages for e in episodes
                                                    if e.messages) + "]"))
        except sqlite3.OperationalError as exc:
            raise store_error(exc, self.path) from None

    def write_episodes(self, records: Sequence[EpisodeRecord]) -> None:
        """Write finished episodes and their messages in one transaction."""
        now = time.time()
        self.write_encoded([self.encode(r, now) for r in records])

    def episodes(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored episodes (of one ``kind``), by id: every column (booleans as 0/1), and
        ``payload`` parsed (its keys are also given at the top level, for reading)."""
        q = f"SELECT {','.join(_EPISODE_COLUMNS)} FROM episodes"
        args: tuple[Any, ...] = ()
        if kind is not None:
            q += " WHERE kind=?"
            args = (kind,)
        q += " ORDER BY episode_id"
        for row in self.conn.execute(q, args):
            ep = dict(zip(_EPISODE_COLUMNS, row, strict=True))
            if ep["error"]:  # (a store written before redaction existed)
                ep["error"] = scrub(ep["error"])
            payload = json.loads(scrub(ep["payload"]))
            ep["payload"] = payload
            for k, v in payload.items():
                ep.setdefault(k, v)
            yield ep

    def messages(self, episode_id: str) -> list[dict[str, Any]]:
        """An episode's messages in order; every observation has its whole conversation."""
        out = []
        last_obs: dict[str, Any] | None = None
        for seq, turn, sender, kind, payload in self.conn.execute(
                "SELECT seq, turn, sender, kind, payload FROM messages WHERE episode_id=? "
                "ORDER BY seq", (episode_id,)):
            msg = {"seq": seq, "turn": turn, "sender": sender, "kind": kind,
                   **json.loads(scrub(payload))}
            if kind == "observation":
                start = msg.pop("conversation_from", None)
                if start is not None and last_obs is not None:
                    msg["conversation"] = last_obs["conversation"][:start] + msg["conversation"]
                    msg.setdefault("answer_format", last_obs.get("answer_format"))
                last_obs = msg
            out.append(msg)
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for kind, status, n in self.conn.execute(
                "SELECT kind, status, COUNT(*) FROM episodes GROUP BY kind, status"):
            out[f"{kind}.{status}"] = n
        return out
