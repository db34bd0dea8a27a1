"""The episode sink under a writer slower than the episodes: backpressure bounds what is
held in memory, and every episode is written exactly once (also when the run is cancelled).
And the compact set of done episodes a resumed run skips.

The store is the real SQLite store; only its write is slowed down (a sleep in the writer
thread, as a slow disk would), so the queue between the event loop and the writer fills.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim.errors import StoreError
from mmsim.runtime.sink import EpisodeSink
from mmsim.store import EpisodeIdSet
from mmsim.store.sqlite import EncodedEpisode, EpisodeRecord, RunStore


class SlowStore(RunStore):
    delay_s = 0.01
    fail_after: int | None = None  # batches written before every write fails

    def write_encoded(self, episodes: Sequence[EncodedEpisode]) -> None:
        time.sleep(self.delay_s)
        if self.fail_after is not None:
            if self.fail_after <= 0:
                raise StoreError("disk is full (test)", where=str(self.path))
            self.fail_after -= 1
        super().write_encoded(episodes)


def _record(i: int) -> EpisodeRecord:
    return EpisodeRecord(episode_id=f"e{i:05d}", run_id="r", kind="screen", model="a",
                         sample_id=f"s{i}", category="c", status="done",
                         payload={"rounds": 1})


def _stored_ids(run_dir: Path) -> list[str]:
    conn = sqlite3.connect(run_dir / "mmsim.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT episode_id FROM episodes")]
    finally:
        conn.close()


def _open_slow(run_dir: Path) -> SlowStore:
    base = RunStore.open(run_dir)
    return SlowStore(base.path, base.conn)


def test_backpressure_bounds_memory_and_writes_each_episode_once(tmp_path: Path) -> None:
    n_episodes, n_workers, batch, max_batches = 3000, 64, 8, 2
    store = _open_slow(tmp_path)
    peak = {"pending": 0, "queued": 0, "held": 0}
    waited = entered = 0

    async def main() -> None:
        sink = EpisodeSink(store, batch=batch, interval_s=0.05, max_batches=max_batches)
        it = iter(range(n_episodes))

        async def worker() -> None:
            nonlocal waited, entered
            for i in it:
                await anyio.sleep(0)  # the episode's own work
                t0 = time.perf_counter()
                entered += 1
                await sink.add(_record(i))
                if time.perf_counter() - t0 > 0.002:
                    waited += 1

        async def monitor() -> None:
            while True:
                pending = len(sink._pending)
                queued = sink._queue.qsize()
                peak["pending"] = max(peak["pending"], pending)
                peak["queued"] = max(peak["queued"], queued)
                # Episodes handed to the sink and not yet written, wherever they wait.
                peak["held"] = max(peak["held"], entered - sink.written)
                await anyio.sleep(0.001)

        async with sink:
            async with anyio.create_task_group() as tg:
                tg.start_soon(monitor)
                async with anyio.create_task_group() as workers:
                    for _ in range(n_workers):
                        workers.start_soon(worker)
                tg.cancel_scope.cancel()
        assert sink.written == n_episodes

    anyio.run(main)
    store.close()
    ids = _stored_ids(tmp_path)
    assert len(ids) == n_episodes and len(set(ids)) == n_episodes
    # The writer was the bottleneck, so episodes did wait in add ...
    assert waited > 0
    # ... and what waited is bounded by batches plus one episode per worker, not by
    # workers x batch (each waiting worker holding a batch of its own).
    assert peak["queued"] <= max_batches
    assert peak["pending"] <= 2 * batch + n_workers
    assert peak["held"] <= (max_batches + 3) * batch + n_workers < n_workers * batch // 2


def test_cancelled_run_keeps_every_added_episode(tmp_path: Path) -> None:
    store = _open_slow(tmp_path)
    added: list[str] = []

    async def main() -> None:
        sink = EpisodeSink(store, batch=16, interval_s=0.05, max_batches=2)
        counter = iter(range(10**6))
        with anyio.move_on_after(0.5):
            async with sink:
                async with anyio.create_task_group() as tg:
                    async def worker() -> None:
                        for i in counter:
                            rec = _record(i)
                            await sink.add(rec)
                            added.append(rec.episode_id)
                    for _ in range(32):
                        tg.start_soon(worker)

    anyio.run(main)
    store.close()
    ids = _stored_ids(tmp_path)
    assert len(ids) == len(set(ids))
    # Every episode whose add returned is stored; an add cut short by the cancellation
    # may have been stored too (its episode was already pending), nothing else.
    assert set(added) <= set(ids)
    assert len(ids) - len(added) <= 32
    assert len(added) > 100


def test_writer_error_is_raised_and_nothing_half_written(tmp_path: Path) -> None:
    store = _open_slow(tmp_path)
    store.delay_s = 0.0
    store.fail_after = 3

    async def main() -> None:
        async with EpisodeSink(store, batch=10, interval_s=0.05, max_batches=2) as sink:
            for i in range(2000):
                await sink.add(_record(i))
                if i % 10 == 0:
                    await anyio.sleep(0.001)

    with pytest.raises(StoreError, match="disk is full"):
        anyio.run(main)
    store.close()
    ids = _stored_ids(tmp_path)
    # Only the batches before the failure (each batch is one transaction; the writer
    # writes nothing after its first error).
    assert 0 < len(ids) <= 30
    assert sorted(ids) == ids and ids[0] == "e00000"


# -- the resume set: which episodes are done -------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=60), st.lists(st.text(max_size=30),
                                                             max_size=60))
def test_episode_id_set_is_a_set(ids: list[str], others: list[str]) -> None:
    s = EpisodeIdSet(ids)
    assert len(s) == len(set(ids))
    assert bool(s) == bool(ids)
    for i in ids + others:
        assert (i in s) == (i in set(ids))


def test_episode_id_set_at_scale_and_store_queries(tmp_path: Path) -> None:
    ids = [f"feedback/r{i % 7}/p/binary/syn-{i:06d}" for i in range(50_000)]
    s = EpisodeIdSet(ids)
    assert all(i in s for i in ids)
    assert not any(i + "x" in s for i in ids[:5000])
    assert 7 not in s and None not in s
    # ~20 bytes per id, where a set of the strings takes > 100
    size = sum(a.itemsize * len(a) for a in (s._hi, s._lo, s._starts))
    assert 16 * len(ids) < size <= 28 * len(ids)

    store = RunStore.open(tmp_path)
    names = ["screen/a/1", "screen/b/2", "screen0", "screen", "screen.x", "screen/zz/é",
             "feedback/a/p/binary/1", "failed/one"]
    recs = [EpisodeRecord(episode_id=n, run_id="r", kind="screen", model="a",
                          sample_id="s", category="c",
                          status="failed" if n.startswith("failed") else "done")
            for n in names]
    store.write_episodes(recs)
    done = store.done_ids()
    assert len(done) == len(names) - 1 and "failed/one" not in done
    assert all(n in done for n in names if not n.startswith("failed"))
    assert list(store.done_with_prefix("screen/")) == ["screen/a/1", "screen/b/2",
                                                         "screen/zz/é"]
    store.close()
