"""Scale-out benchmarks (issue 7): concurrency, run size, Ray vs local, store cost.

Usage::

    python benchmarks/scale.py concurrency [--levels 1,10,100,1000,10000] [--latencies 0,50]
    python benchmarks/scale.py runsize     [--sizes 1000,10000,100000]
    python benchmarks/scale.py ray         [--items 2000] [--latency-ms 0]
    python benchmarks/scale.py store       [--items 2000] [--repeats 3]
    (every subcommand takes --json out.json)

Each measurement runs in a fresh Python process (``python scale.py _one ...``) so that its
peak RSS (``ru_maxrss``) is its own. The synthetic data is drawn once per size into a
shared folder that every run directory links to (``assets``), so data drawing is never
timed. Workloads use ``sim`` agents; see benchmarks/README.md for how to read the tables.
Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_SEED = 0
SKILL = 5.0  # concurrency benchmark agents


def _rss_mb() -> float:
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_now_mb() -> float:
    """Current RSS (Linux; elsewhere the peak so far)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()


def _quiet() -> None:
    import logging

    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _agents(n_recv: int, n_prov: int, rskill: float, pskill: float, latency_ms: float,
            concurrency: int | None = None) -> str:
    lat = f", latency_ms: {latency_ms}, latency_sigma: 0" if latency_ms else ""
    cc = f", concurrency: {concurrency}" if concurrency else ""
    rec = "\n".join(f"  - {{name: r{i}, backend: sim{cc}, params: {{skill: {rskill}{lat}}}}}"
                    for i in range(n_recv))
    prov = "\n".join(f"  - {{name: p{i}, backend: sim{cc}, params: {{skill: {pskill}{lat}}}}}"
                     for i in range(n_prov))
    return f"receivers:\n{rec}\nproviders:\n{prov}\n"


def scenario_text(items: int, n_recv: int, n_prov: int, *, rskill: float = 0.0,
                  pskill: float = 2.5, latency_ms: float = 0.0, concurrency: int = 512,
                  policies: str = "[binary, detailed]") -> str:
    return (f"name: scale\nseed: 0\n"
            f"dataset: {{name: synthetic, size: {items}, seed: {DATA_SEED}}}\n"
            + _agents(n_recv, n_prov, rskill, pskill, latency_ms)
            + f"policies: {policies}\nprotocol: {{max_rounds: 3, test_set: all_wrong}}\n"
            f"run: {{concurrency: {concurrency}, bootstrap: 0}}\n")


def assets_for(work: Path, items: int) -> Path:
    """Draw the synthetic set once (per size) into a folder runs link to."""
    from mmsim.data.synthetic import load_synthetic
    folder = work / f"assets-{items}"
    if not folder.exists():
        load_synthetic({"size": items, "seed": DATA_SEED}, base_dir=work, cache_dir=folder,
                       limit=None)
    return folder


# --------------------------------------------------------------------- one measurement


class _PhaseClock:
    """A Progress that times the screening phase (the Little's-law workload)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.totals: dict[str, int] = {}
        self.rss: dict[str, float] = {}

    def phase(self, name: str, total: int) -> None:
        self.t[name] = time.perf_counter()
        self.totals[name] = total
        self.rss[name] = _rss_now_mb()  # at "screening": data loaded, store open, no play

    def advance(self, n: int = 1) -> None:
        pass


def one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process (called in a child process)."""
    _quiet()
    work = Path(spec["work"])
    scn_path = work / f"scn-{os.getpid()}.yaml"
    scn_path.write_text(spec["scenario"], encoding="utf-8")
    rss0 = _rss_mb()
    if spec["path"] == "bare":
        return {**bare_screening(spec), "rss0_mb": rss0}

    import anyio

    from mmsim.runtime import Kernel as Runner
    from mmsim.runtime.executors import LocalExecutor, RayExecutor
    from mmsim.scenario import load_scenario

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    (run_dir / "assets").symlink_to(assets_for(work, spec["items"]))
    executor: Any = LocalExecutor()
    ray_start = 0.0
    if spec.get("ray_workers"):
        import ray
        t = time.perf_counter()
        ray.init(num_cpus=max(2, spec["ray_workers"]), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - t
        executor = RayExecutor(workers=spec["ray_workers"], batch_size=spec.get("batch"))
    clock = _PhaseClock()
    runner = Runner(load_scenario(scn_path), run_dir, progress=clock,  # type: ignore[arg-type]
                    store_enabled=spec.get("store", True), executor=executor)
    t0 = time.perf_counter()
    res = anyio.run(runner.run)
    t_end = time.perf_counter()
    out = {"turns": res.turns, "episodes": res.played + res.failed, "failed": res.failed,
           "play_s": res.play_s, "elapsed_s": res.elapsed_s, "rss0_mb": rss0,
           "rss_play0_mb": clock.rss.get("screening"), "peak_rss_mb": _rss_mb(),
           "ray_start_s": ray_start, "wall_s": t_end - t0}
    if "screening" in clock.t:
        t_fb = clock.t.get("feedback", t_end)
        out["screen_turns"] = clock.totals["screening"]
        out["screen_s"] = t_fb - clock.t["screening"]
    return out


def bare_screening(spec: dict[str, Any]) -> dict[str, Any]:
    """The bare-asyncio baseline of the concurrency benchmark: the screening phase's work
    (same SimBackend calls, seeds, extraction and checking, validated Response objects),
    C coroutines pulling from one iterator, nothing else."""
    from mmsim.backends import BACKENDS
    from mmsim.backends.base import GenerateRequest, Oracle
    from mmsim.data.synthetic import load_synthetic
    from mmsim.messages import Response
    from mmsim.protocols.interfeedback.env import first_turn
    from mmsim.tasks.answers import check_answer, extract_answer

    work = Path(spec["work"])
    samples = load_synthetic({"size": spec["items"], "seed": DATA_SEED}, base_dir=work,
                             cache_dir=assets_for(work, spec["items"]), limit=None)
    lat = spec["latency_ms"]
    params = {"latency_ms": lat, "latency_sigma": 0} if lat else {}
    backends = [BACKENDS.get("sim")(f"a{i}", {"skill": spec["skill"], **params})
                for i in range(spec["agents"])]
    firsts = {s.id: (first_turn(s),) for s in samples}
    n = 0

    async def play(backend: Any, sample: Any) -> None:
        nonlocal n
        c = await backend.generate(GenerateRequest(
            messages=firsts[sample.id], purpose="answer", seed=0,
            oracle=Oracle(sample=sample, responses=(), feedback=(), episode_key="screen")))
        ans = extract_answer(c.text, sample.answer_format)
        r = Response(run_id="bare", episode_id="", turn=0, sender=backend.name, text=c.text,
                     answer=ans, parse="parsed" if ans is not None else "unparsed",
                     usage=c.usage)
        check_answer(r.answer, sample.answer, sample.answer_format)
        n += 1

    async def main() -> float:
        it = iter([(b, s) for b in backends for s in samples])

        async def worker() -> None:
            for b, s in it:
                await play(b, s)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        return time.perf_counter() - t0

    import gc
    gc.freeze()
    secs = asyncio.run(main())
    return {"turns": n, "screen_turns": n, "screen_s": secs, "play_s": secs,
            "peak_rss_mb": _rss_mb()}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``one(spec)`` in a child process and return its result."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_one",
                          json.dumps(spec)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"measurement failed: {spec['path']}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- subcommands


def _table(title: str, cols: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c in cols:
        t.add_column(c, justify="left" if c in ("path",) else "right")
    for r in rows:
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) and abs(v) < 10 else
                    f"{v:,.0f}" if isinstance(v, float) else str(v) for v in r])
    Console(width=max(Console().width, 130)).print(t)


def cmd_concurrency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Screening-phase turns/s vs episodes in flight: every agent answers every item once,
    one turn per episode, so with latency L the Little's-law ideal is min(C, n) / L."""
    items = args.items
    rows: list[dict[str, Any]] = []
    for lat in [float(x) for x in args.latencies.split(",")]:
        zero_tps: float | None = None
        for c in [int(x) for x in args.levels.split(",")]:
            n_target = max(40, min(args.max_turns, 40 * c)) if lat else args.zero_turns
            agents = max(2, math.ceil(n_target / items))  # screened agents
            n_items = min(items, math.ceil(n_target / agents))
            base = {"work": str(work), "items": n_items, "agents": agents, "skill": SKILL,
                    "concurrency": c, "latency_ms": lat}
            # skill 5 answers (nearly) everything right: the feedback phase is tiny and
            # not timed
            scn = ("name: scale\nseed: 0\n"
                   f"dataset: {{name: synthetic, size: {n_items}, seed: {DATA_SEED}}}\n"
                   + _agents(agents - 1, 1, SKILL, SKILL, lat, concurrency=c)
                   + "policies: [binary]\nprotocol: {max_rounds: 1, test_set: all_wrong}\n"
                   f"run: {{concurrency: {c}, bootstrap: 0}}\n")
            for path in ("mmsim", "bare"):
                r = measure({**base, "path": path, "scenario": scn, "store": args.store})
                tps = r["screen_turns"] / r["screen_s"]
                if lat == 0 and path == "bare":
                    zero_tps = zero_tps or tps
                ideal = min(c, r["screen_turns"]) / (lat / 1000) if lat else None
                rows.append({"latency_ms": lat, "concurrency": c, "path": path,
                             "items": n_items, "agents": agents,
                             "turns": r["screen_turns"], "seconds": r["screen_s"],
                             "turns_per_s": tps, "ideal_turns_per_s": ideal,
                             "vs_ideal": tps / ideal if ideal else None,
                             "peak_rss_mb": r["peak_rss_mb"]})
            m, b = rows[-2], rows[-1]
            m["vs_bare"] = m["turns_per_s"] / b["turns_per_s"]
            b["vs_bare"] = 1.0
            print(f"  L={lat:g} ms C={c}: mmsim {m['turns_per_s']:,.0f} turns/s, bare "
                  f"{b['turns_per_s']:,.0f}, rss {m['peak_rss_mb']:.0f} MB", flush=True)
    _table("screening turns/s vs episodes in flight (sim backend, store "
           f"{'on' if args.store else 'off'})",
           ["latency ms", "in flight", "path", "turns", "s", "turns/s", "Little ideal",
            "vs ideal", "vs bare", "peak RSS MB"],
           [[int(r["latency_ms"]), r["concurrency"], r["path"], r["turns"], r["seconds"],
             r["turns_per_s"], r["ideal_turns_per_s"] or "-",
             r["vs_ideal"] if r["vs_ideal"] is not None else "-", r["vs_bare"],
             r["peak_rss_mb"]] for r in rows])
    # peak RSS per 1k in flight (latency rows: every episode waits, so C are really alive),
    # between the two largest levels that play the same data (items, agents): the smaller
    # levels draw fewer items, whose samples and screening answers are not in-flight state
    per_1k: dict[str, float] = {}
    for path in ("mmsim", "bare"):
        lat_rows = [r for r in rows if r["path"] == path and r["latency_ms"] > 0]
        if len(lat_rows) < 2:
            continue
        hi = max(lat_rows, key=lambda r: r["concurrency"])
        same = [r for r in lat_rows if (r["items"], r["agents"]) == (hi["items"], hi["agents"])
                and r["concurrency"] < hi["concurrency"]]
        if not same:
            continue
        lo = max(same, key=lambda r: r["concurrency"])
        per_1k[path] = ((hi["peak_rss_mb"] - lo["peak_rss_mb"])
                        / ((hi["concurrency"] - lo["concurrency"]) / 1000))
        print(f"peak RSS per 1k episodes in flight, {path}: {per_1k[path]:.1f} MB "
              f"({lo['concurrency']} -> {hi['concurrency']} in flight, same data)")
    return {"rows": rows, "rss_mb_per_1k_in_flight": per_1k.get("mmsim"),
            "bare_rss_mb_per_1k_in_flight": per_1k.get("bare")}


def cmd_runsize(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Time per episode and peak RSS as the run grows (zero latency, store on)."""
    rows = []
    for target in [int(x) for x in args.sizes.split(",")]:
        # 1 provider, R receivers over I items: ~ I + R * 2 * I episodes (skill 0 receivers
        # get about half wrong; two policies)
        items = min(2000, max(100, target // 5))
        recv = max(1, round((target - items) / (2 * items)))
        scn = scenario_text(items, recv, 1, concurrency=args.concurrency)
        r = measure({"work": str(work), "items": items, "path": "mmsim", "scenario": scn,
                     "store": True})
        rows.append({"target": target, "items": items, "receivers": recv,
                     "episodes": r["episodes"], "turns": r["turns"], "play_s": r["play_s"],
                     "us_per_episode": 1e6 * r["play_s"] / r["episodes"],
                     "turns_per_s": r["turns"] / r["play_s"], "peak_rss_mb": r["peak_rss_mb"],
                     "rss0_mb": r["rss0_mb"], "rss_play0_mb": r["rss_play0_mb"],
                     "screen_answers": (recv + 1) * items})
        print(f"  {r['episodes']} episodes: {r['play_s']:.1f} s, RSS at play start "
              f"{r['rss_play0_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB", flush=True)
    _table(f"run size (zero latency, store on, concurrency {args.concurrency})",
           ["episodes", "items", "receivers", "screening answers", "turns", "play s",
            "µs/episode", "turns/s", "RSS at play start MB", "peak RSS MB"],
           [[r["episodes"], r["items"], r["receivers"], r["screen_answers"], r["turns"],
             r["play_s"], r["us_per_episode"], r["turns_per_s"], r["rss_play0_mb"],
             r["peak_rss_mb"]] for r in rows])
    big = max(rows, key=lambda r: r["episodes"])
    for r in rows:
        if r is not big and r["episodes"] * 5 <= big["episodes"]:
            print(f"peak RSS {big['episodes']:,} vs {r['episodes']:,} episodes: "
                  f"{big['peak_rss_mb'] / r['peak_rss_mb']:.2f}x")
    return {"rows": rows}


def cmd_ray(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    scn = scenario_text(args.items, 1, 1, latency_ms=args.latency_ms,
                        concurrency=args.concurrency)
    rows = []
    for name, workers in (("local", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2)):
        best: dict[str, Any] | None = None
        for _ in range(args.repeats):
            r = measure({"work": str(work), "items": args.items, "path": "mmsim",
                         "scenario": scn, "store": True, "ray_workers": workers})
            if best is None or r["play_s"] < best["play_s"]:
                best = r
        assert best is not None
        rows.append({"path": name, "episodes": best["episodes"], "turns": best["turns"],
                     "play_s": best["play_s"], "turns_per_s": best["turns"] / best["play_s"],
                     "ray_start_s": best["ray_start_s"], "peak_rss_mb": best["peak_rss_mb"]})
    base = rows[0]["turns_per_s"]
    for r in rows:
        r["vs_local"] = r["turns_per_s"] / base
    _table(f"local vs Ray ({args.items} items, latency {args.latency_ms:g} ms, concurrency "
           f"{args.concurrency}, best of {args.repeats})",
           ["path", "episodes", "turns", "play s", "turns/s", "vs local", "ray.init s",
            "driver peak RSS MB"],
           [[r["path"], r["episodes"], r["turns"], r["play_s"], r["turns_per_s"],
             r["vs_local"], r["ray_start_s"], r["peak_rss_mb"]] for r in rows])
    return {"rows": rows}


def cmd_store(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    scn = scenario_text(args.items, 1, 1, concurrency=args.concurrency)
    rows = []
    for name, store in (("store on", True), ("store off", False)):
        runs = [measure({"work": str(work), "items": args.items, "path": "mmsim",
                         "scenario": scn, "store": store}) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["play_s"])
        rows.append({"path": name, "turns": best["turns"], "episodes": best["episodes"],
                     "play_s": best["play_s"], "turns_per_s": best["turns"] / best["play_s"],
                     "all_play_s": [r["play_s"] for r in runs]})
    cost = 1 - rows[0]["turns_per_s"] / rows[1]["turns_per_s"]
    _table(f"store cost ({args.items} items, zero latency, best of {args.repeats})",
           ["path", "turns", "episodes", "play s", "turns/s"],
           [[r["path"], r["turns"], r["episodes"], r["play_s"], r["turns_per_s"]]
            for r in rows])
    print(f"store cost: {cost:.1%} of store-off throughput")
    return {"rows": rows, "store_cost_fraction": cost}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_one":
        print(json.dumps(one(json.loads(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("concurrency")
    p.add_argument("--levels", default="1,10,100,1000,10000")
    p.add_argument("--latencies", default="0,50")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--max-turns", type=int, default=40000,
                   help="turns per measurement at latency > 0: min(this, 40 x C)")
    p.add_argument("--zero-turns", type=int, default=8000)
    p.add_argument("--store", action=argparse.BooleanOptionalAction, default=True)
    p = sub.add_parser("runsize")
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--concurrency", type=int, default=512)
    p = sub.add_parser("ray")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=512)
    p.add_argument("--repeats", type=int, default=1)
    p = sub.add_parser("store")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    for p in sub.choices.values():
        p.add_argument("--json", type=Path, default=None)
        p.add_argument("--work", type=Path, default=None,
                       help="folder for drawn data and runs (default: a temp dir)")
    args = ap.parse_args(argv)
    fn = {"concurrency": cmd_concurrency, "runsize": cmd_runsize, "ray": cmd_ray,
          "store": cmd_store}[args.cmd]
    with tempfile.TemporaryDirectory(prefix="mmsim-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = fn(args, work)
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": args.cmd, "args": {k: str(v) for k, v in vars(args).items()},
            "python": platform.python_version(), "cpus": os.cpu_count(), **result},
            indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
