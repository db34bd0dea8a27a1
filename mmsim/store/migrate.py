"""Run directories written by mmsim 0.1 (store schema 1) open through a migration.

Schema 1 had one episodes table shaped by InterFeedback: ``receiver``, ``provider``,
``policy``, ``rounds``, ``feedback_tokens``..., which the other protocols filled with
their own meanings (the dynamic protocol wrote a judge into ``receiver`` and judge tokens
into ``feedback_tokens``). Schema 2 (:mod:`mmsim.store.sqlite`) has columns every protocol
fills with one meaning and a JSON ``payload`` for each protocol's own fields. The migration
rewrites the table in one transaction, mapping each protocol's old use of the columns to
the new ones; the messages table is unchanged.
"""

from __future__ import annotations

import sqlite3

from mmsim.store.schema import EPISODES_TABLE

# Old column -> new column, per the protocol of the run (the manifest's ``kind``) and, for
# the dynamic protocol, per episode kind (calibration episodes are a judge's).
_V1_SELECT = """
INSERT INTO episodes SELECT
  e.episode_id, e.run_id, p.protocol, e.kind, e.sample_id, e.category,
  e.policy, e.status, e.error,
  CASE WHEN e.kind = 'dyn_calibration' THEN '' ELSE e.receiver END,
  CASE WHEN p.protocol = 'interfeedback' THEN e.provider ELSE '' END,
  CASE WHEN e.kind = 'dyn_calibration' THEN e.receiver
       WHEN e.kind = 'dyn_task' AND e.feedback_tokens > 0 THEN p.scoring_judge ELSE '' END,
  e.first_correct, e.first_unparsed, e.solved,
  CASE WHEN e.solved IS NULL THEN NULL ELSE e.solved * 1.0 END,
  e.n_responses, e.n_unparsed,
  CASE WHEN e.kind = 'dyn_calibration' THEN 0 ELSE e.prompt_tokens END,
  CASE WHEN e.kind = 'dyn_calibration' THEN 0 ELSE e.completion_tokens END,
  CASE WHEN e.kind = 'dyn_calibration' THEN 0 ELSE e.retries END,
  CASE WHEN p.protocol = 'interfeedback'
       THEN e.feedback_tokens - e.feedback_completion_tokens ELSE 0 END,
  CASE WHEN p.protocol = 'interfeedback' THEN e.feedback_completion_tokens ELSE 0 END,
  CASE WHEN p.protocol = 'interfeedback' THEN e.feedback_retries ELSE 0 END,
  CASE WHEN e.kind = 'dyn_calibration' THEN e.prompt_tokens
       WHEN e.kind = 'dyn_task' THEN e.feedback_tokens - e.feedback_completion_tokens
       ELSE 0 END,
  CASE WHEN e.kind = 'dyn_calibration' THEN e.completion_tokens
       WHEN e.kind = 'dyn_task' THEN e.feedback_completion_tokens ELSE 0 END,
  CASE WHEN e.kind = 'dyn_calibration' THEN e.retries ELSE 0 END,
  e.latency_s, e.simulated, e.finished_at,
  CASE WHEN p.protocol = 'interfeedback' THEN json_object(
         'rounds', e.rounds, 'corrected_round', e.corrected_round, 'n_options', e.n_options,
         'n_feedback', e.n_feedback, 'n_leaked', e.n_leaked)
       ELSE json_object('n_options', e.n_options) END
FROM episodes_v1 e, (
  SELECT coalesce(json_extract(manifest, '$.kind'), 'interfeedback') AS protocol,
         coalesce(json_extract(scenario, '$.judge.use'),
                  json_extract(scenario, '$.judges[0].name'), '') AS scoring_judge
  FROM runs ORDER BY created_at LIMIT 1) p
"""


def migrate_v1(conn: sqlite3.Connection) -> None:
    """Rewrite a schema-1 store as schema 2, in one transaction (see the module
    docstring). The caller then creates the schema-2 table's index."""
    has_runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {r[1] for r in conn.execute("PRAGMA table_info(episodes)")}
        for col in ("retries", "feedback_retries", "feedback_completion_tokens"):
            if col not in have:  # added to schema 1 after it shipped
                conn.execute(f"ALTER TABLE episodes ADD COLUMN {col} INTEGER NOT NULL "
                             "DEFAULT 0")
        conn.execute("DROP INDEX IF EXISTS episodes_cell")
        conn.execute("ALTER TABLE episodes RENAME TO episodes_v1")
        conn.execute(EPISODES_TABLE)
        if has_runs:
            conn.execute(_V1_SELECT)
        conn.execute("DROP TABLE episodes_v1")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


__all__ = ["migrate_v1"]
