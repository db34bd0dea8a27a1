"""The ``mmsim`` command line."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from mmsim.errors import StoreError, UserError

if TYPE_CHECKING:
    from mmsim.protocols.classification.scenario import LoadedClassification
    from mmsim.protocols.dynamic.scenario import LoadedDynamic
    from mmsim.protocols.video.scenario import LoadedVideo
    from mmsim.runtime import Progress
    from mmsim.store import RunStore

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Interactive evaluation of multimodal models as simulations.")
err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 200)


def _fail(exc: UserError | StoreError) -> typer.Exit:
    """Exit 2 for bad input (UserError), 3 for a store that cannot be written (StoreError:
    locked, disk full; rerunning resumes) — one line on stderr, never a traceback."""
    err.print(f"[bold red]error:[/] {escape(exc.one_line())}", highlight=False,
              soft_wrap=True)
    return typer.Exit(3 if isinstance(exc, StoreError) else 2)


def _same_command() -> str:
    return shlex.join(["mmsim", *sys.argv[1:]])


def _plugins(plugins: list[Path] | None) -> None:
    from mmsim.registry import load_entry_points, load_plugin_file

    load_entry_points()
    for p in plugins or []:
        load_plugin_file(p)


class _BarProgress:
    def __init__(self, bar: RichProgress):
        self.bar = bar
        self.task: object | None = None

    def phase(self, name: str, total: int) -> None:
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)  # type: ignore[arg-type]


PluginOpt = Annotated[list[Path] | None, typer.Option(
    "--plugin", help="Python file that registers policies/backends/datasets (repeatable).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a scenario field: dotted.key=value (repeatable).")]


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory "
                       "(default runs/<scenario name>). Rerunning on it resumes.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N items.")] = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "warning",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Annotated[str, typer.Option(help="Where episodes play: local (this process) "
                        "or ray (Ray actors; pip install 'mmsim[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join: auto or "
                           "HOST:PORT (default: start a local Ray).")] = None,
    ray_workers: Annotated[int | None, typer.Option(help="Ray actors (default: one per "
                           "CPU of the cluster).", min=1)] = None,
) -> None:
    """Run (or resume) a scenario and print its per-model table."""
    from mmsim import logging as mlog
    from mmsim.metrics import compute
    from mmsim.report import print_table
    from mmsim.runtime import default_run_dir, run_scenario
    from mmsim.runtime.executors import make_executor
    from mmsim.scenario import LoadedScenario, load_any_scenario

    mlog.configure(log_level)
    try:
        _plugins(plugin)
        ex = make_executor(executor, address=ray_address, workers=ray_workers,
                           plugins=plugin or ())
        loaded_any = load_any_scenario(scenario, overrides=set_, limit=limit)
        from mmsim.protocols.dynamic.scenario import LoadedDynamic as _Dyn
        from mmsim.protocols.video.scenario import LoadedVideo as _Video

        if isinstance(loaded_any, _Dyn | _Video):  # kind: dynamic / video
            if ex.name != "local":
                raise UserError(f"{loaded_any.scenario.kind} scenarios run with the local "
                                "executor", field="executor")
            if isinstance(loaded_any, _Dyn):
                _run_dynamic(loaded_any, out_dir, progress)
            else:
                _run_video(loaded_any, out_dir, progress)
            return
        if not isinstance(loaded_any, LoadedScenario):  # kind: classification
            if ex.name != "local":
                raise UserError("classification scenarios run with the local executor",
                                field="executor")
            _run_classification(loaded_any, out_dir, progress)
            return
        loaded = loaded_any
        run_dir = out_dir or default_run_dir(loaded.scenario)
        if any(p.channel == "terminal" for p in loaded.scenario.providers):
            progress = False  # a person answers prompts on this terminal: no live bar
        result = _with_bar(progress, lambda prog: run_scenario(
            loaded, run_dir, progress=prog, handle_signals=True, executor=ex))
    except (UserError, StoreError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished episodes are saved; resume with: "
                  f"{_same_command()}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if result.interrupted is not None:
        name = signal.Signals(result.interrupted).name
        err.print(f"interrupted ({name}): {result.played + result.skipped} episodes saved in "
                  f"{run_dir}; resume with: {_same_command()}", markup=False,
                  highlight=False, soft_wrap=True)
        raise typer.Exit(128 + result.interrupted)
    scn = loaded.scenario
    _finish(result, run_dir, lambda store: compute(store, resamples=scn.run.bootstrap,
                                                   seed=scn.seed), print_table)


R = TypeVar("R")


def _with_bar(progress: bool, play: Callable[[Progress], Awaitable[R]]) -> R:
    """Run ``play`` under a rich progress bar on stderr (hidden with ``progress=False``)."""
    bar = RichProgress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=err, disable=not progress, transient=False)
    with bar:
        prog: Progress = _BarProgress(bar)  # type: ignore[assignment]
        return anyio.run(play, prog)


def _finish(result: Any, run_dir: Path, metrics_of: Callable[[RunStore], dict[str, Any]],
            table: Callable[[dict[str, Any], Console], None]) -> None:
    """After a run: read its metrics from the store, print the summary line and table."""
    from mmsim.store import RunStore

    store = RunStore.open(run_dir, create=False)
    try:
        metrics = metrics_of(store)
    finally:
        store.close()
    err.print(f"run {result.run_id} in {run_dir}: {result.played} episodes played, "
              f"{result.skipped} already done, {result.failed} failed, "
              f"{result.elapsed_s:.1f} s" + (" (resumed)" if result.resumed else ""),
              soft_wrap=True, highlight=False)
    table(metrics, out)


def _run_classification(loaded: LoadedClassification, out_dir: Path | None,
                        progress: bool) -> None:
    """``mmsim run`` for a ``kind: classification`` scenario (inside run's error handling)."""
    from mmsim.protocols.classification import compute as cls_compute
    from mmsim.protocols.classification import print_table as cls_table
    from mmsim.protocols.classification import run_classification
    from mmsim.protocols.classification.runner import default_run_dir

    run_dir = out_dir or default_run_dir(loaded.scenario)
    result = _with_bar(progress, lambda prog: run_classification(loaded, run_dir,
                                                                 progress=prog))
    _finish(result, run_dir, cls_compute, cls_table)


def _run_dynamic(loaded: LoadedDynamic, out_dir: Path | None, progress: bool) -> None:
    """``mmsim run`` for a ``kind: dynamic`` scenario (inside run's error handling)."""
    from mmsim.protocols.dynamic import compute as dyn_compute
    from mmsim.protocols.dynamic import print_table as dyn_table
    from mmsim.protocols.dynamic import run_dynamic
    from mmsim.protocols.dynamic.runner import default_run_dir

    run_dir = out_dir or default_run_dir(loaded.scenario)
    result = _with_bar(progress, lambda prog: run_dynamic(loaded, run_dir, progress=prog))
    _finish(result, run_dir, dyn_compute, dyn_table)


def _run_video(loaded: LoadedVideo, out_dir: Path | None, progress: bool) -> None:
    """``mmsim run`` for a ``kind: video`` scenario (inside run's error handling)."""
    from mmsim.protocols.video import compute as video_compute
    from mmsim.protocols.video import print_table as video_table
    from mmsim.protocols.video import run_video
    from mmsim.protocols.video.runner import default_run_dir

    run_dir = out_dir or default_run_dir(loaded.scenario)
    result = _with_bar(progress, lambda prog: run_video(loaded, run_dir, progress=prog))
    _finish(result, run_dir, video_compute, video_table)
    ro = loaded.scenario.rollouts
    if ro is not None:
        for fmt in ro.export:
            err.print(f"rollouts: {run_dir / f'rollouts.{fmt}'}", highlight=False,
                      soft_wrap=True)


def _check_agents(loaded: Any) -> None:
    """Every agent's params as its backend takes them (nothing is built or started)."""
    from mmsim.protocols.classification.scenario import LoadedClassification
    from mmsim.protocols.dynamic.scenario import LoadedDynamic
    from mmsim.protocols.video.scenario import LoadedVideo
    from mmsim.runtime.runner import check_backends

    if isinstance(loaded, LoadedVideo):
        from mmsim.protocols.video.runner import check_agents as check_video
        check_video(loaded)
    elif isinstance(loaded, LoadedDynamic):
        from mmsim.protocols.dynamic.runner import check_agents as check_dynamic
        check_dynamic(loaded)
    elif isinstance(loaded, LoadedClassification):
        from mmsim.protocols.classification.runner import check_agents as check_cls
        check_cls(loaded)
    else:
        check_backends(loaded)


@app.command()
def validate(scenario: Path, set_: SetOpt = None, plugin: PluginOpt = None) -> None:
    """Check a scenario file without running it."""
    from mmsim.scenario import LoadedScenario, load_any_scenario

    try:
        _plugins(plugin)
        loaded = load_any_scenario(scenario, overrides=set_)
        _check_agents(loaded)
    except UserError as exc:
        raise _fail(exc) from None
    from mmsim.protocols.dynamic.scenario import LoadedDynamic as _Dyn
    from mmsim.protocols.video.scenario import LoadedVideo as _Video

    if isinstance(loaded, _Video):  # kind: video
        v = loaded.scenario
        ro = v.rollouts
        out.print(f"{scenario}: ok — video: {len(v.models)} models on dataset "
                  f"{v.dataset.name!r}, frames {v.frames.send}"
                  + (f", rollouts G={ro.samples} at T={ro.temperature}" if ro else ""))
        return
    if isinstance(loaded, _Dyn):  # kind: dynamic
        d = loaded.scenario
        out.print(f"{scenario}: ok — dynamic: {len(d.models)} models x {len(d.tasks)} task "
                  f"families, {len(d.judges)} judges on dataset {d.dataset.name!r}")
        return
    if not isinstance(loaded, LoadedScenario):  # kind: classification
        c = loaded.scenario
        out.print(f"{scenario}: ok — classification: {len(c.models)} models x "
                  f"{len(c.encoders)} encoders on dataset {c.dataset.name!r}")
        return
    s = loaded.scenario
    out.print(f"{scenario}: ok — {len(s.receivers)} receivers x {len(s.providers)} providers "
              f"x {len(s.policies)} policies on dataset {s.dataset.name!r}")


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directory; several for --format html (one page, a section per run).")],
    format: Annotated[str, typer.Option("--format", help="table, json or html")] = "table",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write to this file (html: default report.html).")] = None,
    max_episodes: Annotated[int, typer.Option(
        "--max-episodes", min=0, help="html: transcripts embedded per run (stratified "
        "by outcome).")] = 500,
    plugin: PluginOpt = None,
) -> None:
    """Report a run's metrics: a table, one JSON object (docs/metrics.md), or a
    self-contained HTML page with plots and a transcript viewer (docs/reports.md)."""
    from mmsim.report import print_table
    from mmsim.report.html import run_metrics, write_html
    from mmsim.store import RunStore

    if format not in ("table", "json", "html"):
        raise _fail(UserError("must be 'table', 'json' or 'html'", where="--format"))
    try:
        _plugins(plugin)
        if format == "html":
            import mmsim.protocols.classification.html  # noqa: F401  (registers its section)

            dest = output or Path("report.html")
            info = write_html(list(run_dirs), dest, max_episodes=max_episodes)
            err.print(f"wrote {dest} ({info.bytes / 1e6:.1f} MB): {info.runs} run(s), "
                      f"{info.episodes_embedded} of {info.episodes_total} episodes embedded, "
                      f"{info.images} images", highlight=False, soft_wrap=True)
            return
        if format == "json" and len(run_dirs) > 1:
            raise UserError("--format json takes one RUN_DIR (use --format html for several)",
                            where="RUN_DIR")
        all_metrics = []
        for run_dir in run_dirs:
            store = RunStore.open(run_dir, create=False)
            try:
                metrics = run_metrics(store)
                if metrics.get("kind") == "classification":
                    from mmsim.protocols.classification import compute as cls_compute

                    metrics = cls_compute(store)
                elif metrics.get("kind") == "dynamic":
                    from mmsim.protocols.dynamic import compute as dyn_compute

                    metrics = dyn_compute(store)
                elif metrics.get("kind") == "video":
                    from mmsim.protocols.video import compute as video_compute

                    metrics = video_compute(store)
                all_metrics.append(metrics)
            finally:
                store.close()
    except UserError as exc:
        raise _fail(exc) from None
    if format == "json":
        text = json.dumps(all_metrics[0], indent=2, sort_keys=False) + "\n"
        if output is not None:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    else:
        for metrics in all_metrics:
            if metrics.get("kind") == "classification":
                from mmsim.protocols.classification import print_table as cls_table

                cls_table(metrics, out)
            elif metrics.get("kind") == "dynamic":
                from mmsim.protocols.dynamic import print_table as dyn_table

                dyn_table(metrics, out)
            elif metrics.get("kind") == "video":
                from mmsim.protocols.video import print_table as video_table

                video_table(metrics, out)
            else:
                print_table(metrics, out)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Run directory compared with it (B).")],
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    resamples: Annotated[int, typer.Option(min=0, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """B minus A per receiver x provider x policy: accuracy, correction rate and parse-failure
    rate, with paired bootstrap intervals over shared items (docs/metrics.md)."""
    from mmsim.metrics.compare import compare as compare_runs
    from mmsim.report.compare import print_compare
    from mmsim.store import RunStore

    if format not in ("table", "json"):
        raise _fail(UserError("must be 'table' or 'json'", where="--format"))
    try:
        sa = RunStore.open(run_a, create=False)
        try:
            sb = RunStore.open(run_b, create=False)
        except UserError:
            sa.close()
            raise
    except UserError as exc:
        raise _fail(exc) from None
    try:
        result = compare_runs(sa, sb, resamples=resamples, seed=seed, run_dir_a=str(run_a),
                              run_dir_b=str(run_b))
    finally:
        sa.close()
        sb.close()
    if format == "json":
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_compare(result, out)


@app.command()
def export(
    run_dir: Path,
    format: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet")] = "jsonl",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Episodes file (default RUN_DIR/episodes.FORMAT; '-' for "
        "stdout, jsonl/csv only).")] = None,
    messages: Annotated[bool, typer.Option(
        "--messages", help="Also export messages, to <output stem>.messages.FORMAT.")] = False,
    rollouts: Annotated[bool, typer.Option(
        "--rollouts", help="A video run's rollouts for a trainer (jsonl or parquet; default "
        "RUN_DIR/rollouts.FORMAT; docs/video.md).")] = False,
) -> None:
    """Export a run's episodes (and messages) as rows (docs/reports.md)."""
    from mmsim.store import RunStore
    from mmsim.store.export import FORMATS, export_run

    if rollouts:
        from mmsim.protocols.video.export import export_rollouts

        if format not in ("jsonl", "parquet"):
            raise _fail(UserError("rollouts export as jsonl or parquet", where="--format"))
        dest_r = output or run_dir / f"rollouts.{format}"
        try:
            n = export_rollouts(run_dir, dest_r, format)
        except UserError as exc:
            raise _fail(exc) from None
        err.print(f"rollouts: {n} rows -> {dest_r}", highlight=False, soft_wrap=True)
        return
    if format not in FORMATS:
        raise _fail(UserError(f"must be one of {', '.join(FORMATS)}", where="--format"))
    dest: Path | None = run_dir / f"episodes.{format}" if output is None else output
    if dest is not None and str(dest) == "-":
        dest = None
    try:
        store = RunStore.open(run_dir, create=False)
        try:
            result = export_run(store, format, dest, messages=messages)
        finally:
            store.close()
    except UserError as exc:
        raise _fail(exc) from None
    for what, r in result.items():
        err.print(f"{what}: {r['rows']} rows -> {r['path']}", highlight=False, soft_wrap=True)


@app.command("list")
def list_(plugin: PluginOpt = None) -> None:
    """List backends, feedback policies, datasets and tasks."""
    from mmsim.backends import BACKENDS
    from mmsim.data import DATASETS
    from mmsim.policies import POLICIES
    from mmsim.tasks import TASKS

    try:
        _plugins(plugin)
    except UserError as exc:
        raise _fail(exc) from None
    from mmsim.protocols.classification import CLS_DATASETS, ENCODERS
    from mmsim.protocols.dynamic import DYN_DATASETS, TASK_FAMILIES

    for title, reg in (("backends", BACKENDS), ("policies", POLICIES), ("datasets", DATASETS),
                       ("tasks", TASKS), ("classification datasets", CLS_DATASETS),
                       ("encoders", ENCODERS), ("dynamic-evaluation task families",
                                                TASK_FAMILIES),
                       ("dynamic-evaluation datasets", DYN_DATASETS)):
        t = Table(title=title, title_justify="left", show_header=False)
        t.add_column("name", style="bold")
        t.add_column("description")
        for name, doc in reg.describe():
            t.add_row(name, doc)
        out.print(t)


@app.command()
def fit(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to fit twins to.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Twin scenario to write "
                      "(the fit itself goes to <stem>.fit.json).")] = Path("twin.yaml"),
    difficulty: Annotated[str, typer.Option(help="Item difficulty: data (the dataset's), "
                          "fit (estimated per item) or auto.")] = "auto",
    check: Annotated[bool, typer.Option(help="Check the twin reproduces its source run.")
                     ] = True,
    predict: Annotated[Path | None, typer.Option(
        "--predict", help="Another run (other rounds/policies, same agents) to predict "
        "and calibrate against.")] = None,
    draws: Annotated[int, typer.Option(min=20, help="Posterior predictive draws.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the fit's random draws.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Fit sim twins of a run's agents (docs/twins.md) and write them as a scenario."""
    from mmsim.twins import fit_twins

    if difficulty not in ("auto", "data", "fit"):
        raise _fail(UserError("must be auto, data or fit", where="--difficulty"))
    try:
        _plugins(plugin)
        fit_twins(run_dir, output, difficulty=difficulty, check=check, predict=predict,
                  draws=draws, seed=seed, json_out=json_, console=out, err=err)
    except (UserError, StoreError) as exc:
        raise _fail(exc) from None


@app.command()
def plan(
    scenario: Annotated[Path, typer.Argument(help="Scenario of sim agents (e.g. a twin).")],
    target: Annotated[str, typer.Option(help="ci_width=W (95% CI width of the metric) or "
                      "mdd=D (minimum detectable difference, --compare).")] = "ci_width=0.05",
    metric: Annotated[str, typer.Option(help="correction_rate or accuracy")] = "correction_rate",
    compare: Annotated[str | None, typer.Option(help="Two receivers A,B for mdd.")] = None,
    cell: Annotated[list[str] | None, typer.Option(
        help="receiver/provider/policy cell(s) to plan for (default: all, the widest).")]
        = None,
    items: Annotated[str, typer.Option(help="Item counts to try.")] =
        "25,50,100,200,400,800",
    seeds: Annotated[str, typer.Option(help="Seed counts to try.")] = "1,2,4",
    max_rounds: Annotated[int | None, typer.Option(help="Largest round budget to try "
                          "(default: the scenario's, at least 5).")] = None,
    reps: Annotated[int, typer.Option(min=20, help="Replicate studies per design.")] = 100,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
) -> None:
    """Recommend items, seeds and rounds for a target precision by simulating twins."""
    from mmsim.twins import plan_scenario

    try:
        _plugins(plugin)
        plan_scenario(scenario, target=target, metric=metric, compare=compare, cells=cell,
                      items=items, seeds=seeds, max_rounds=max_rounds, reps=reps, seed=seed,
                      json_out=json_, overrides=set_, console=out)
    except UserError as exc:
        raise _fail(exc) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
