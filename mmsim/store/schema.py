"""The run store's schema (version 2): runs, episodes, messages."""

from __future__ import annotations

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY, name TEXT NOT NULL, scenario_hash TEXT NOT NULL,
  scenario TEXT NOT NULL, manifest TEXT NOT NULL, created_at REAL NOT NULL,
  status TEXT NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS messages(
  episode_id TEXT NOT NULL, seq INTEGER NOT NULL, turn INTEGER NOT NULL,
  sender TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
  PRIMARY KEY(episode_id, seq)) WITHOUT ROWID;
"""

#: The episodes table (schema 2): columns every protocol fills with the same meaning, and
#: one JSON ``payload`` for what is a protocol's own.
EPISODES_TABLE = """
CREATE TABLE IF NOT EXISTS episodes(
  episode_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, protocol TEXT NOT NULL,
  kind TEXT NOT NULL, sample_id TEXT NOT NULL, category TEXT NOT NULL,
  condition TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
  model TEXT NOT NULL, provider TEXT NOT NULL, judge TEXT NOT NULL,
  first_correct INTEGER, first_unparsed INTEGER, solved INTEGER, reward REAL,
  n_responses INTEGER NOT NULL, n_unparsed INTEGER NOT NULL,
  model_prompt_tokens INTEGER NOT NULL, model_completion_tokens INTEGER NOT NULL,
  model_retries INTEGER NOT NULL,
  provider_prompt_tokens INTEGER NOT NULL, provider_completion_tokens INTEGER NOT NULL,
  provider_retries INTEGER NOT NULL,
  judge_prompt_tokens INTEGER NOT NULL, judge_completion_tokens INTEGER NOT NULL,
  judge_retries INTEGER NOT NULL,
  latency_s REAL NOT NULL, simulated INTEGER NOT NULL, finished_at REAL NOT NULL,
  payload TEXT NOT NULL)"""
EPISODES_INDEX = ("CREATE INDEX IF NOT EXISTS episodes_cell "
                  "ON episodes(kind, model, provider, condition)")

EPISODE_COLUMNS = (
    "episode_id", "run_id", "protocol", "kind", "sample_id", "category", "condition",
    "status", "error", "model", "provider", "judge", "first_correct", "first_unparsed",
    "solved", "reward", "n_responses", "n_unparsed", "model_prompt_tokens",
    "model_completion_tokens", "model_retries", "provider_prompt_tokens",
    "provider_completion_tokens", "provider_retries", "judge_prompt_tokens",
    "judge_completion_tokens", "judge_retries", "latency_s", "simulated", "finished_at",
    "payload",
)


__all__ = ["EPISODES_INDEX", "EPISODES_TABLE", "EPISODE_COLUMNS", "SCHEMA", "SCHEMA_VERSION"]
