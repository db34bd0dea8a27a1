"""The twin file: a complete, runnable scenario whose agents are the fitted sim twins.

``mmsim fit RUN_DIR -o twin.yaml`` writes the source run's scenario (data, policies,
protocol) with every agent replaced by a ``backend: sim`` agent with fitted ``params:``,
each value followed by its 95% interval in a YAML comment, and the seed moved on by one
(a twin replays the source's distribution, not its random draws). The file is an ordinary
scenario: ``mmsim run twin.yaml``, ``mmsim plan twin.yaml``, or paste an agent's
``params:`` block into any scenario. The machine-readable fit (intervals, counts, notes,
item difficulties) goes next to it, in ``twin.fit.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmsim.twins.fit import Estimate, TwinFit

_PATH_KEYS = ("path", "root", "dir", "data_dir", "images", "file")


def _num(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"


def _comment(e: Estimate | None) -> str:
    if e is None:
        return ""
    if e.fixed:
        return f"  # fixed ({e.note or 'not estimated'})"
    ci = f"[{_num(e.lo)}, {_num(e.hi)}]" if e.lo is not None and e.hi is not None else ""
    note = f"; {e.note}" if e.note else ""
    return f"  # 95% {ci} n={e.n}{note}"


def _dataset(fit: TwinFit) -> dict[str, Any]:
    ds = dict(fit.scenario.get("dataset", {}))
    # relative data paths were relative to the source scenario's folder
    src = None
    try:
        from mmsim.store import RunStore

        store = RunStore.open(fit.run_dir, create=False)
        try:
            run = store.run()
            src = (run or {}).get("manifest", {}).get("scenario_file")
        finally:
            store.close()
    except Exception:  # the twin is still useful without it
        src = None
    if src:
        base = Path(src).parent
        for k, v in list(ds.items()):
            if k in _PATH_KEYS and isinstance(v, str) and v and not Path(v).is_absolute():
                cand = base / v
                if cand.exists():
                    ds[k] = str(cand.resolve())
    return ds


def twin_yaml(fit: TwinFit, *, fit_json: str = "twin.fit.json", seed: int | None = None) -> str:
    """The twin scenario as YAML text with interval comments."""
    scn = fit.scenario
    name = f"{scn.get('name', 'run')}-twin"
    seed = int(scn.get("seed", 0)) + 1 if seed is None else seed
    lines = [
        f"# Digital twin of run {fit.run_id} ({fit.run_dir}), written by `mmsim fit`.",
        "# Every agent is a sim agent fitted to the run's transcripts by maximum likelihood",
        f"# (item difficulty: {fit.mode}); 95% intervals in comments, the full fit in "
        f"{fit_json}.",
        "# Run it (mmsim run), plan with it (mmsim plan), or paste a params: block into any",
        "# scenario. docs/twins.md explains every parameter and interval.",
        f"name: {name}",
        f"description: {json.dumps('Simulated twins of ' + fit.run_id)}",
        f"seed: {seed}",
        f"dataset: {json.dumps(_dataset(fit))}",
    ]
    anchored = False
    for role, key in (("receiver", "receivers"), ("provider", "providers")):
        lines.append(f"{key}:")
        for spec in scn.get(key, []):
            af = fit.agents[spec["name"]]
            est = af.estimates
            params = af.params()
            lines += [f"  - name: {json.dumps(spec['name'])}", "    backend: sim",
                      f"    concurrency: {int(spec.get('concurrency', 256))}", "    params:"]
            for k, v in params.items():
                if k == "uptake":
                    lines.append("      uptake:")
                    for kind, u in v.items():
                        lines.append(f"        {kind}: {_num(u)}{_comment(est[f'uptake.{kind}'])}")
                    continue
                e = est.get("uptake_decay" if k == "uptake_decay" else k)
                lines.append(f"      {k}: {_num(v)}{_comment(e)}")
            if fit.mode == "fit":
                if not anchored:
                    diff = {i: round(e.value, 4) for i, e in sorted(fit.difficulty.items())}
                    lines.append(f"      item_difficulty: &item_difficulty {json.dumps(diff)}")
                    anchored = True
                else:
                    lines.append("      item_difficulty: *item_difficulty")
        del role
    pols = [{k: v for k, v in p.items() if v not in (None, {}, [])}
            for p in scn.get("policies", [])]
    lines += [f"policies: {json.dumps(pols)}",
              f"protocol: {json.dumps(scn.get('protocol', {}))}",
              f"run: {json.dumps(scn.get('run', {}))}", ""]
    return "\n".join(lines)


def write_twin(fit: TwinFit, path: Path, *, seed: int | None = None,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (the twin scenario) and ``<stem>.fit.json`` next to it."""
    fit_path = path.with_name(path.stem + ".fit.json")
    path.write_text(twin_yaml(fit, fit_json=fit_path.name, seed=seed), encoding="utf-8")
    fit_path.write_text(json.dumps({**fit.to_dict(), **(extra or {})}, indent=2) + "\n",
                        encoding="utf-8")
    return fit_path
