"""The run store: SQLite (WAL), one database per run directory."""

from mmsim.store.cache import ResponseCache
from mmsim.store.sqlite import DB_NAME, EpisodeIdSet, EpisodeRecord, RunStore

__all__ = ["DB_NAME", "EpisodeIdSet", "EpisodeRecord", "ResponseCache", "RunStore"]
