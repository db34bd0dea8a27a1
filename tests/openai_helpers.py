"""Shared helpers of the openai-backend and fault tests (real local HTTP servers)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio

from mmsim.backends.base import Backend, GenerateRequest
from mmsim.errors import InfrastructureError
from mmsim.messages import ChatTurn, Text
from mmsim.metrics import compute
from mmsim.runtime import RunResult, run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore


def scenario_yaml(receiver_url: str, provider_url: str, *, size: int = 12, rounds: int = 2,
                  receiver_extra: str = "", provider_extra: str = "", agent_extra: str = "",
                  policies: str = "[binary, detailed]") -> str:
    return f"""
name: openai-test
seed: 1
dataset: {{name: synthetic, size: {size}, seed: 2}}
receivers:
  - name: r1
    backend: openai
    params: {{base_url: "{receiver_url}", model: echo-r, temperature: 0, max_tokens: 64,
              system_prompt: "You are careful.", {receiver_extra}}}
    {agent_extra}
providers:
  - name: p1
    backend: openai
    params: {{base_url: "{provider_url}", model: echo-p, temperature: 0, {provider_extra}}}
    {agent_extra}
policies: {policies}
protocol: {{max_rounds: {rounds}, test_set: all_wrong}}
run: {{concurrency: 16, bootstrap: 0}}
"""


def run(tmp: Path, text: str, out: Path, name: str = "s.yaml") -> RunResult:
    p = tmp / name
    p.write_text(text)
    loaded = load_scenario(p)
    return anyio.run(lambda: run_scenario(loaded, out))


def metrics(out: Path) -> dict[str, Any]:
    store = RunStore.open(out, create=False)
    try:
        return compute(store, resamples=0)
    finally:
        store.close()


def episodes(out: Path) -> dict[str, dict[str, Any]]:
    store = RunStore.open(out, create=False)
    try:
        return {e["episode_id"]: e for e in store.episodes()}
    finally:
        store.close()


def forget_episodes(out: Path) -> None:
    """Drop every committed episode: what a crash before the commits leaves behind."""
    conn = sqlite3.connect(out / "mmsim.sqlite")
    conn.execute("DELETE FROM episodes")
    conn.execute("DELETE FROM messages")
    conn.commit()
    conn.close()


OUTCOME = ("status", "first_correct", "solved", "corrected_round", "rounds", "n_responses",
           "n_unparsed", "n_feedback", "model_prompt_tokens", "model_completion_tokens")


def ask_concurrently(backend: Backend, n: int) -> list[tuple[str, int] | str]:
    """``n`` one-turn requests in flight at once through ``backend`` (closed after): each
    gives ``(text, retries)``, or ``"failed: <reason>"`` for an infrastructure failure."""
    out: list[tuple[str, int] | str] = [""] * n

    async def one(i: int) -> None:
        turns = (ChatTurn(role="user", parts=(Text(text=f"q{i} 'Answer: <letter>'"),)),)
        try:
            c = await backend.generate(GenerateRequest(messages=turns))
            out[i] = (c.text, c.meta["retries"])
        except InfrastructureError as exc:
            out[i] = f"failed: {exc}"

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        await backend.aclose()
    anyio.run(main)
    return out
