"""The run store: SQLite (WAL), one database per run directory."""

from mmsim.store.cache import ResponseCache
from mmsim.store.sqlite import DB_NAME, EpisodeIdSet, EpisodeRecord, RunStore, run_dir_lock

__all__ = ["DB_NAME", "EpisodeIdSet", "EpisodeRecord", "ResponseCache", "RunStore",
           "run_dir_lock"]
