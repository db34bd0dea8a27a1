"""The ``mmsim`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from mmsim.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Interactive evaluation of multimodal models as simulations.")
err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 200)


def _fail(exc: UserError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


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
) -> None:
    """Run (or resume) a scenario and print its per-model table."""
    from mmsim import logging as mlog
    from mmsim.metrics import compute
    from mmsim.report import print_table
    from mmsim.runtime import Progress, default_run_dir, run_scenario
    from mmsim.scenario import load_scenario
    from mmsim.store import RunStore

    mlog.configure(log_level)
    try:
        _plugins(plugin)
        loaded = load_scenario(scenario, overrides=set_, limit=limit)
        run_dir = out_dir or default_run_dir(loaded.scenario)
        bar = RichProgress("[progress.description]{task.description}", BarColumn(),
                           MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                           console=err, disable=not progress, transient=False)
        with bar:
            prog: Progress = _BarProgress(bar)  # type: ignore[assignment]
            result = anyio.run(lambda: run_scenario(loaded, run_dir, progress=prog))
    except UserError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished episodes are saved; rerun the same "
                  "command to resume.")
        raise typer.Exit(130) from None
    store = RunStore.open(run_dir, create=False)
    try:
        metrics = compute(store, resamples=loaded.scenario.run.bootstrap,
                          seed=loaded.scenario.seed)
    finally:
        store.close()
    err.print(f"run {result.run_id} in {run_dir}: {result.played} episodes played, "
              f"{result.skipped} already done, {result.failed} failed, "
              f"{result.elapsed_s:.1f} s" + (" (resumed)" if result.resumed else ""),
              soft_wrap=True, highlight=False)
    print_table(metrics, out)


@app.command()
def validate(scenario: Path, set_: SetOpt = None, plugin: PluginOpt = None) -> None:
    """Check a scenario file without running it."""
    from mmsim.scenario import load_scenario

    try:
        _plugins(plugin)
        loaded = load_scenario(scenario, overrides=set_)
    except UserError as exc:
        raise _fail(exc) from None
    s = loaded.scenario
    out.print(f"{scenario}: ok — {len(s.receivers)} receivers x {len(s.providers)} providers "
              f"x {len(s.policies)} policies on dataset {s.dataset.name!r}")


@app.command()
def report(
    run_dir: Path,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Print a run's metrics (table, or one JSON object documented in docs/metrics.md)."""
    from mmsim.metrics import compute
    from mmsim.report import print_table
    from mmsim.store import RunStore

    if format not in ("table", "json"):
        raise _fail(UserError("must be 'table' or 'json'", where="--format"))
    try:
        store = RunStore.open(run_dir, create=False)
    except UserError as exc:
        raise _fail(exc) from None
    try:
        run = store.run()
        scenario = run["scenario"] if run else {}
        metrics = compute(store, resamples=int(scenario.get("run", {}).get("bootstrap", 1000)),
                          seed=int(scenario.get("seed", 0)))
    finally:
        store.close()
    if format == "json":
        sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    else:
        print_table(metrics, out)


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
    for title, reg in (("backends", BACKENDS), ("policies", POLICIES), ("datasets", DATASETS),
                       ("tasks", TASKS)):
        t = Table(title=title, title_justify="left", show_header=False)
        t.add_column("name", style="bold")
        t.add_column("description")
        for name, doc in reg.describe():
            t.add_row(name, doc)
        out.print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
