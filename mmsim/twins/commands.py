"""The ``mmsim fit`` and ``mmsim plan`` commands, as functions (the CLI calls these)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from mmsim.errors import UserError
from mmsim.twins.data import RunData, attach_difficulty, load_dataset_difficulty, read_run
from mmsim.twins.fit import TwinFit, fit_run
from mmsim.twins.plan import DEFAULT_ITEMS, DEFAULT_SEEDS, Target, plan
from mmsim.twins.predict import Prediction, predict
from mmsim.twins.render import print_fit, print_plan, print_prediction
from mmsim.twins.twin_file import write_twin


def _with_difficulty(data: RunData, difficulty: str) -> RunData:
    if difficulty != "fit":
        try:
            attach_difficulty(data, load_dataset_difficulty(data))
        except UserError:
            if difficulty == "data":
                raise
    return data


def fit_and_check(run_dir: Path, *, difficulty: str = "auto", check: bool = True,
                  predict_run: Path | None = None, draws: int = 200, seed: int = 0
                  ) -> tuple[TwinFit, Prediction | None, Prediction | None]:
    """Fit a run's twins; predict the run itself (``check``) and ``predict_run``."""
    data = _with_difficulty(read_run(run_dir), difficulty)
    fit = fit_run(data, difficulty=difficulty, seed=seed)
    own = predict(fit, data, draws=draws, seed=seed) if check else None
    other = None
    if predict_run is not None:
        target = _with_difficulty(read_run(predict_run), fit.mode)
        other = predict(fit, target, draws=draws, seed=seed + 1)
    return fit, own, other


def fit_twins(run_dir: Path, output: Path, *, difficulty: str = "auto", check: bool = True,
              predict: Path | None = None, draws: int = 200, seed: int = 0,
              json_out: bool = False, console: Console | None = None,
              err: Console | None = None) -> dict[str, Any]:
    fit, own, other = fit_and_check(run_dir, difficulty=difficulty, check=check,
                                    predict_run=predict, draws=draws, seed=seed)
    extra: dict[str, Any] = {}
    if own is not None:
        extra["check"] = own.to_dict()
    if other is not None:
        extra["prediction"] = {"run_dir": str(predict), **other.to_dict()}
    fit_path = write_twin(fit, output, extra=extra)
    from mmsim.scenario import load_scenario

    load_scenario(output)  # the twin must be a valid scenario
    result = {**fit.to_dict(), **extra, "twin": str(output), "fit_file": str(fit_path)}
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return result
    con = console or Console()
    print_fit(fit, con)
    if own is not None:
        print_prediction(own, con, f"Reproduction check: the twin vs its source run "
                                   f"({own.draws} posterior predictive runs)")
    if other is not None:
        print_prediction(other, con, f"Prediction check: the twin vs {predict}", show_all=True)
    (err or con).print(f"wrote {output} (a runnable scenario of sim twins) and {fit_path}",
                       highlight=False, soft_wrap=True)
    return result


def _ints(text: str, where: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError("expected comma-separated integers", where=where) from None
    if not vals or min(vals) < 1:
        raise UserError("expected positive integers", where=where)
    return vals


def plan_scenario(path: Path, *, target: str = "ci_width=0.05",
                  metric: str = "correction_rate", compare: str | None = None,
                  cells: list[str] | None = None, items: str | None = None,
                  seeds: str | None = None, max_rounds: int | None = None, reps: int = 100,
                  seed: int = 0, json_out: bool = False, overrides: list[str] | None = None,
                  console: Console | None = None) -> dict[str, Any]:
    from mmsim.runtime.loading import load_data
    from mmsim.runtime.protocol import PROTOCOLS
    from mmsim.scenario import load_scenario

    tgt = Target.parse(target)
    loaded = load_scenario(path, overrides=overrides)
    if loaded.kind != "interfeedback":
        raise UserError(f"mmsim plan simulates InterFeedback studies; this scenario is "
                        f"kind: {loaded.kind}", where=str(path))
    cmp_pair: tuple[str, str] | None = None
    if compare:
        parts = [c.strip() for c in compare.split(",")]
        if len(parts) != 2:
            raise UserError("expected two receivers A,B", where="--compare")
        cmp_pair = (parts[0], parts[1])
    cell_list = None
    if cells:
        cell_list = []
        for c in cells:
            bits = c.split("/")
            if len(bits) != 3:
                raise UserError(f"expected receiver/provider/policy, got {c!r}", where="--cell")
            cell_list.append((bits[0], bits[1], bits[2]))
    with tempfile.TemporaryDirectory(prefix="mmsim-plan-") as tmp:
        samples = load_data(PROTOCOLS.get(loaded.kind), loaded, Path(tmp))
    rounds = max_rounds if max_rounds is not None else max(5, loaded.scenario.protocol.max_rounds)
    result = plan(loaded.scenario, samples, tgt, metric=metric, compare=cmp_pair,
                  cells=cell_list,
                  items=_ints(items, "--items") if items else DEFAULT_ITEMS,
                  seeds=_ints(seeds, "--seeds") if seeds else DEFAULT_SEEDS,
                  max_rounds=rounds, reps=reps, seed=seed)
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_plan(result, console or Console())
    return result
