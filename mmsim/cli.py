"""The ``mmsim`` command line."""

from __future__ import annotations

import json
import os
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
from rich.text import Text

from mmsim._version import __version__
from mmsim.errors import StoreError, UserError

if TYPE_CHECKING:
    from mmsim.runtime import Progress
    from mmsim.store import RunStore

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Interactive evaluation of multimodal models as simulations. "
                  "Exit codes: 0 done, 2 bad input, 3 store not writable, 4 episodes "
                  "failed (--allow-failed: 0), 130 interrupted (docs/cli.md).")


def _version(value: bool) -> None:
    if value:
        from mmsim.runtime.manifest import build_info

        info = build_info()
        commit = info.get("git_commit")
        sys.stdout.write(f"mmsim {__version__}" + (f" ({commit[:12]})" if commit else "")
                         + "\n")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print mmsim's version (and the git commit it was built from) and exit.")]
        = False) -> None:
    """Interactive evaluation of multimodal models as simulations."""

#: exit codes (docs/cli.md): 0 done; 1 an unexpected error (a bug: traceback); 2 bad input;
#: 3 a store that cannot be written; 4 episodes failed permanently (infrastructure errors
#: after their retries; rerunning plays them again; --allow-failed exits 0);
#: 128+N stopped by signal N (130: Ctrl-C)
EXIT_OK, EXIT_USER, EXIT_STORE, EXIT_FAILED = 0, 2, 3, 4


def terminal_width() -> int | None:
    """The width tables are laid out for: ``COLUMNS`` when set, else the terminal's (of
    stdout, stderr or stdin: output piped from a terminal still fits it), else None
    (rich's default, 80)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    for fd in (1, 2, 0):
        try:
            return os.get_terminal_size(fd).columns or None
        except OSError:
            continue
    return None


err = Console(stderr=True)
out = Console(width=terminal_width())


#: ``--log-format json``: every line on stderr is a JSON object (no progress bar, and the
#: run's own lines become events), so a log collector never meets a line for people
_json_stderr = False


def _say(text: str, event: str = "note", level: str = "info") -> None:
    """A line for the user on stderr: as is, or as a JSON object under --log-format json."""
    if _json_stderr:
        sys.stderr.write(json.dumps({"event": event, "level": level, "message": text}) + "\n")
        sys.stderr.flush()
    else:
        err.print(text, markup=False, highlight=False, soft_wrap=True)


def _fail(exc: UserError | StoreError) -> typer.Exit:
    """Exit 2 for bad input (UserError), 3 for a store that cannot be written (StoreError:
    locked, disk full; rerunning resumes) — one line on stderr, never a traceback."""
    from mmsim.redaction import scrub

    line = scrub(exc.one_line())
    if _json_stderr:
        _say(line, "error", "error")
    else:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_STORE if isinstance(exc, StoreError) else EXIT_USER)


def _writable(path: Path, flag: str = "-o", *, makes_folders: bool = False) -> Path:
    """``path`` if a file can be written there; else a UserError (exit 2, one line): a
    directory, a missing folder (unless the command ``makes_folders``), a file where a
    folder should be, a read-only folder or file. Checked before any work."""
    import os

    where = f"{flag} {path}"
    if path.is_dir():
        raise UserError("is a directory: give a file name", where=where)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest folder that exists
    if not parent.is_dir():
        raise UserError(f"{parent} is a file, not a folder", where=where)
    if parent != path.parent and not makes_folders:
        raise UserError(f"the folder {path.parent} does not exist", where=where)
    if (path.exists() and not os.access(path, os.W_OK)) or \
            (not path.exists() and not os.access(parent, os.W_OK | os.X_OK)):
        raise UserError("cannot write here (permission denied)", where=where)
    return path


def _write_failed(exc: OSError, path: Path | str, flag: str = "-o") -> typer.Exit:
    return _fail(UserError(f"cannot write the output ({exc.strerror or exc})",
                           where=f"{flag} {path}"))


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
    "--plugin", metavar="FILE",
    help="Python file that registers policies/backends/datasets (repeatable).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a scenario field: dotted.key=value (repeatable).")]
WideOpt = Annotated[bool, typer.Option(
    "--wide/--no-wide", help="Every column and table (else a summary that fits the "
    "terminal's width: COLUMNS or the terminal's).")]


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory "
                       "(default runs/<scenario name>). Rerunning on it resumes.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N items.")] = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "warning",
    log_format: Annotated[str, typer.Option(help="Log lines on stderr: human or json "
                          "(one JSON object a line).")] = "human",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    wide: WideOpt = False,
    allow_failed: Annotated[bool, typer.Option(
        "--allow-failed/--no-allow-failed", help="Exit 0 even when episodes failed "
        "permanently (else exit 4).")] = False,
    executor: Annotated[str, typer.Option(help="Where episodes play: local (this process) "
                        "or ray (Ray actors; pip install 'mmsim[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join: auto or "
                           "HOST:PORT (default: start a local Ray).")] = None,
    ray_workers: Annotated[int | None, typer.Option(help="Ray actors (default: one per "
                           "CPU of the cluster).", min=1)] = None,
) -> None:
    """Run (or resume) a scenario of any protocol and print its table."""
    from mmsim import logging as mlog
    from mmsim.runtime import PROTOCOLS, default_run_dir, run_scenario
    from mmsim.runtime.executors import make_executor
    from mmsim.scenario import load_scenario

    if log_format not in ("human", "json"):
        raise _fail(UserError("must be 'human' or 'json'", where="--log-format"))
    mlog.configure(log_level, json=log_format == "json")
    global _json_stderr
    _json_stderr = log_format == "json"
    if _json_stderr:
        progress = False
    try:
        _plugins(plugin)
        ex = make_executor(executor, address=ray_address, workers=ray_workers,
                           plugins=plugin or ())
        loaded = load_scenario(scenario, overrides=set_, limit=limit)
        proto = PROTOCOLS.get(loaded.kind)
        run_dir = out_dir or default_run_dir(loaded)
        if any(getattr(a, "channel", None) == "terminal" for _, _, a, _ in
               proto.agent_specs(loaded.scenario)):
            progress = False  # a person answers prompts on this terminal: no live bar
        result = _with_bar(progress, lambda prog: run_scenario(
            loaded, run_dir, progress=prog, handle_signals=True, executor=ex))
    except (UserError, StoreError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        _say("interrupted: finished episodes are saved; resume with: "
             f"{_same_command()}", "run.interrupted", "warning")
        raise typer.Exit(130) from None
    if result.interrupted is not None:
        name = signal.Signals(result.interrupted).name
        _say(f"interrupted ({name}): {result.played + result.skipped} episodes saved in "
             f"{run_dir}; resume with: {_same_command()}", "run.interrupted", "warning")
        raise typer.Exit(128 + result.interrupted)
    _finish(result, run_dir, proto, wide=wide)
    for note in result.notes:
        _say(note)
    if result.failed and not allow_failed:
        _say(f"{result.failed} episodes failed permanently (see the report's failed column; "
             "rerunning plays them again): exit 4 (--allow-failed: exit 0)", "run.failed",
             "error")
        raise typer.Exit(EXIT_FAILED)


R = TypeVar("R")


def _with_bar(progress: bool, play: Callable[[Progress], Awaitable[R]]) -> R:
    """Run ``play`` under a rich progress bar on stderr (hidden with ``progress=False``)."""
    bar = RichProgress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=err, disable=not progress, transient=False)
    with bar:
        prog: Progress = _BarProgress(bar)  # type: ignore[assignment]
        return anyio.run(play, prog)


def _finish(result: Any, run_dir: Path, proto: Any, *, wide: bool) -> None:
    """After a run: read its metrics from the store, print the summary line and tables."""
    from mmsim.store import RunStore

    store = RunStore.open(run_dir, create=False)
    try:
        metrics = proto.metrics(store)
    finally:
        store.close()
    _say(f"run {result.run_id} in {run_dir}: {result.played} episodes played, "
         f"{result.skipped} already done, {result.failed} failed, "
         f"{result.elapsed_s:.1f} s" + (" (resumed)" if result.resumed else ""),
         "run.summary")
    _print_tables(proto, metrics, wide=wide)


def _print_tables(proto: Any, metrics: dict[str, Any], *, wide: bool) -> None:
    """The protocol's tables (its headline first), or its own ``print_table``."""
    from mmsim.report.tabular import print_document

    doc = proto.tables(metrics)
    if doc is None:
        proto.print_table(metrics, out)
    else:
        print_document(doc, out, wide=wide)


@app.command()
def validate(scenario: Path, set_: SetOpt = None, plugin: PluginOpt = None) -> None:
    """Check a scenario file without running it."""
    from mmsim.runtime import PROTOCOLS
    from mmsim.runtime.agents import check_agents
    from mmsim.scenario import load_scenario

    try:
        _plugins(plugin)
        loaded = load_scenario(scenario, overrides=set_)
        proto = PROTOCOLS.get(loaded.kind)
        check_agents(proto, loaded)
    except UserError as exc:
        raise _fail(exc) from None
    out.print(f"{scenario}: ok — {proto.summary(loaded)}", highlight=False, soft_wrap=True)


def _run_kind(store: RunStore) -> str:
    run = store.run()
    kind = ((run or {}).get("manifest") or {}).get("kind")
    return str(kind or "interfeedback")


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directory; several for --format html (one page, a section per run).")],
    format: Annotated[str, typer.Option("--format", help="table (the terminal), json, "
                      "html, markdown, latex (booktabs) or csv")] = "table",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write to this file (html: default report.html; csv: one "
        "file per table, <stem>.<table>.csv, unless --table).")] = None,
    table_name: Annotated[str | None, typer.Option(
        "--table", help="markdown, latex, csv: only this table (its name, e.g. cells).")]
        = None,
    wide: Annotated[bool, typer.Option(
        "--wide/--no-wide", help="table: every column and table (the default), or a "
        "summary that fits the terminal's width.")] = True,
    figures: Annotated[Path | None, typer.Option(
        "--figures", metavar="DIR", help="Also write each chart of the HTML report to DIR "
        "as SVG and PDF (PDF needs pip install 'mmsim[figures]').")] = None,
    max_episodes: Annotated[int, typer.Option(
        "--max-episodes", min=0, help="html: transcripts embedded per run (stratified "
        "by outcome).")] = 500,
    plugin: PluginOpt = None,
) -> None:
    """Report a run's metrics: tables (terminal, markdown, LaTeX, CSV), one JSON object
    (docs/metrics.md), or a self-contained HTML page with plots and a transcript viewer
    (docs/reports.md)."""
    from mmsim.report.html import write_html
    from mmsim.runtime import PROTOCOLS
    from mmsim.store import RunStore

    formats = ("table", "json", "html", "markdown", "latex", "csv")
    if format not in formats:
        raise _fail(UserError("must be one of " + ", ".join(formats), where="--format"))
    try:
        _plugins(plugin)
        if output is not None or format == "html":
            _writable(output or Path("report.html"), makes_folders=True)
        if figures is not None:
            from mmsim.report.figures import write_figures

            written, pdf_note = write_figures(list(run_dirs), figures)
            err.print(f"wrote {len(written)} figure files to {figures}"
                      + (f" ({pdf_note})" if pdf_note else ""), markup=False,
                      highlight=False, soft_wrap=True)
        if format == "html":
            dest = output or Path("report.html")
            try:
                info = write_html(list(run_dirs), dest, max_episodes=max_episodes)
            except OSError as exc:
                raise _write_failed(exc, dest) from None
            err.print(f"wrote {dest} ({info.bytes / 1e6:.1f} MB): {info.runs} run(s), "
                      f"{info.episodes_embedded} of {info.episodes_total} episodes embedded, "
                      f"{info.images} images", highlight=False, soft_wrap=True)
            return
        if format != "table" and len(run_dirs) > 1:
            raise UserError(f"--format {format} takes one RUN_DIR (use --format html for "
                            "several)", where="RUN_DIR")
        results = []
        for run_dir in run_dirs:
            store = RunStore.open(run_dir, create=False)
            try:
                proto = PROTOCOLS.get(_run_kind(store))
                results.append((proto, proto.metrics(store)))
            finally:
                store.close()
    except UserError as exc:
        raise _fail(exc) from None
    if format == "json":
        _emit(json.dumps(results[0][1], indent=2, sort_keys=False) + "\n", output)
    elif format == "table":
        for proto, metrics in results:
            _print_tables(proto, metrics, wide=wide)
    else:
        _export_tables(results[0][0], results[0][1], format, output, table_name)


def _emit(text: str, output: Path | None) -> None:
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _write_failed(exc, output) from None


def _export_tables(proto: Any, metrics: dict[str, Any], format: str, output: Path | None,
                   table_name: str | None) -> None:
    """A run's tables as markdown, LaTeX or CSV (docs/reports.md)."""
    from mmsim.report import tabular

    doc = proto.tables(metrics)
    if doc is None:
        raise _fail(UserError(f"protocol {proto.name!r} declares no tables (only --format "
                              "table or json)", where="--format"))
    try:
        tabs = tabular.pick(doc, table_name)
    except KeyError as exc:
        raise _fail(UserError(f"no table {table_name!r}; tables: {exc.args[0]}",
                              where="--table")) from None
    picked = tabular.Document(doc.headline, tabs, doc.notes, doc.footer)
    if format in tabular.FORMATS:
        _emit(tabular.FORMATS[format](picked), output)
        return
    if len(tabs) == 1:
        _emit(tabular.to_csv(tabs[0]), output)
        return
    if output is None or str(output) == "-":  # several tables on stdout: a comment each
        _emit("\n".join(f"# {t.name}: {t.title}\n" + tabular.to_csv(t) for t in tabs), None)
        return
    for t in tabs:
        dest = output.with_name(f"{output.stem}.{t.name}.csv")
        _emit(tabular.to_csv(t), dest)
        err.print(f"{t.name}: {len(t.rows)} rows -> {dest}", markup=False,
                  highlight=False, soft_wrap=True)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Run directory compared with it (B).")],
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    resamples: Annotated[int, typer.Option(min=0, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    plugin: PluginOpt = None,
) -> None:
    """B minus A, paired over shared items: per receiver x provider x policy for
    InterFeedback (accuracy, correction rate, parse-failure rate), per agent x episode kind
    x condition (solved) for other protocols (docs/metrics.md)."""
    from mmsim.report.compare import print_compare
    from mmsim.runtime import PROTOCOLS
    from mmsim.store import RunStore

    if format not in ("table", "json"):
        raise _fail(UserError("must be 'table' or 'json'", where="--format"))
    try:
        _plugins(plugin)
        sa = RunStore.open(run_a, create=False)
        try:
            sb = RunStore.open(run_b, create=False)
        except UserError:
            sa.close()
            raise
    except UserError as exc:
        raise _fail(exc) from None
    try:
        kind_a, kind_b = _run_kind(sa), _run_kind(sb)
        if kind_a != kind_b:
            raise _fail(UserError(f"run A is a {kind_a} run and run B a {kind_b} run: "
                                  "compare runs of one protocol", where=str(run_b)))
        try:
            result = PROTOCOLS.get(kind_a).compare(sa, sb, resamples=resamples, seed=seed,
                                                   run_dir_a=str(run_a), run_dir_b=str(run_b))
        except UserError as exc:
            raise _fail(exc) from None
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
    plugin: PluginOpt = None,
) -> None:
    """Export a run's episodes (and messages) as rows (docs/reports.md)."""
    try:
        _plugins(plugin)  # a plugin's message types and protocol, as the run had them
    except UserError as exc:
        raise _fail(exc) from None
    from mmsim.store import RunStore
    from mmsim.store.export import FORMATS, export_run

    if rollouts:
        from mmsim.protocols.video.export import export_rollouts

        if format not in ("jsonl", "parquet"):
            raise _fail(UserError("rollouts export as jsonl or parquet", where="--format"))
        dest_r = output or run_dir / f"rollouts.{format}"
        try:
            n = export_rollouts(run_dir, _writable(dest_r, makes_folders=True), format)
        except UserError as exc:
            raise _fail(exc) from None
        except OSError as exc:
            raise _write_failed(exc, dest_r) from None
        err.print(f"rollouts: {n} rows -> {dest_r}", highlight=False, soft_wrap=True)
        return
    if format not in FORMATS:
        raise _fail(UserError(f"must be one of {', '.join(FORMATS)}", where="--format"))
    dest: Path | None = run_dir / f"episodes.{format}" if output is None else output
    if dest is not None and str(dest) == "-":
        dest = None
    try:
        if dest is not None:
            _writable(dest, makes_folders=True)
        store = RunStore.open(run_dir, create=False)
        try:
            result = export_run(store, format, dest, messages=messages)
        finally:
            store.close()
    except UserError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _write_failed(exc, dest or "-") from None
    for what, r in result.items():
        err.print(f"{what}: {r['rows']} rows -> {r['path']}", highlight=False, soft_wrap=True)


@app.command("list")
def list_(plugin: PluginOpt = None) -> None:
    """List protocols, backends, feedback policies, datasets (readers included), dataset
    presets and tasks."""
    from mmsim.backends import BACKENDS
    from mmsim.data import DATASETS
    from mmsim.policies import POLICIES
    from mmsim.registry import Registry
    from mmsim.runtime import PROTOCOLS
    from mmsim.tasks import TASKS

    try:
        _plugins(plugin)
        PROTOCOLS.names()  # every protocol registers itself (and its registries)
    except UserError as exc:
        raise _fail(exc) from None
    regs: list[tuple[str, Registry[Any]]] = [
        ("protocols (kind:)", PROTOCOLS), ("backends", BACKENDS), ("policies", POLICIES),
        ("datasets", DATASETS), ("tasks", TASKS)]
    regs += [r for name in PROTOCOLS.names() for r in PROTOCOLS.get(name).registries]
    for title, reg in regs:
        t = Table(title=title, title_justify="left", show_header=False)
        t.add_column("name", style="bold", no_wrap=True)
        t.add_column("description", overflow="fold")
        for name, doc in reg.describe():
            t.add_row(Text(name), Text(doc))  # Text: brackets (mmsim[ray]) shown as they are
        out.print(t)
    from mmsim.data.presets import PRESETS

    t = Table(title="dataset presets (dataset.preset; docs/datasets.md)", title_justify="left",
              show_header=False)
    t.add_column("name", style="bold")
    t.add_column("description")
    for name, preset in PRESETS.items():
        t.add_row(name, preset.title)
    out.print(t)


data_app = typer.Typer(no_args_is_help=True, help="Look at data files before a run.")
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    path: Annotated[str, typer.Argument(help="Data file, folder or hf://owner/name.")],
    preset: Annotated[str | None, typer.Option(help="A benchmark's field map "
                      "(mmsim list shows them).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="field=column (or a "
                    "reader option: format, split, config, prompt...); repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How mmsim reads a data file: mapping, rows, answer kinds, options, shared images,
    three rows as the model sees them, and every problem (file:row: column). Exit 2 when
    there are problems."""
    from mmsim.data.inspect import inspect_options, run_inspect, summary

    try:
        info = summary(run_inspect(inspect_options(path, preset=preset, sets=set_),
                                   Path.cwd()))
    except UserError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(data=info)
    else:
        _print_inspect(info)
    if info["problems"]:
        raise typer.Exit(2)


def _print_inspect(info: dict[str, Any]) -> None:
    from mmsim.protocols.interfeedback.env import INSTRUCTIONS

    p = out.print
    p(f"[bold]{escape(info['source'])}[/] ({info['format']}"
      + (f", preset {info['preset']}" if info["preset"] else "") + f", prompt "
      f"{info['prompt']}): {info['rows']} rows, {info['items']} items read",
      highlight=False, soft_wrap=True)
    t = Table(title="mapping", title_justify="left", show_header=False)
    for k, v in info["mapping"].items():
        t.add_row(k, escape(str(v)))
    p(t)
    for col, names in info["class_names"].items():
        p(f"ClassLabel {col}: {', '.join(names)}", highlight=False, soft_wrap=True)
    p("answer kinds: " + (", ".join(f"{k} {v}" for k, v in info["answer_kinds"].items())
                          or "none"), highlight=False)
    p("options per item: " + (", ".join(f"{k}: {v}" for k, v in
                                        info["options_per_item"].items()) or "none"),
      highlight=False)
    im = info["images"]
    p(f"images: {im['references']} in rows, {im['distinct']} distinct, {im['shared']} "
      "shared (a row reusing another row's image)", highlight=False)
    for row in info["shown"]:
        p(f"\n[bold]-- {escape(row['where'])} id {escape(row['id'])}[/] "
          f"({len(row['images'])} image(s){', video' if row['videos'] else ''}; answer "
          f"{escape(row['answer'])} {escape('[' + row['answer_kind'] + ']')}"
          + (f"; category {escape(row['category'])}" if row["category"] else "") + ")",
          highlight=False, soft_wrap=True)
        p(escape(row["text"]), highlight=False, soft_wrap=True)
        instr = INSTRUCTIONS.get(row["answer_format"])
        if instr:  # what an InterFeedback episode appends to the first turn
            p(f"[dim]\n{escape(instr)}[/]", highlight=False, soft_wrap=True)
    probs = info["problems"]
    p(f"\n[bold]{len(probs)} problem(s)[/]", highlight=False)
    for line in probs:
        p(escape(line), highlight=False, soft_wrap=True)


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
        _writable(output)
        _writable(output.with_suffix(".fit.json"))
        _plugins(plugin)
        fit_twins(run_dir, output, difficulty=difficulty, check=check, predict=predict,
                  draws=draws, seed=seed, json_out=json_, console=out, err=err)
    except (UserError, StoreError) as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _write_failed(exc, output) from None


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


def _plain_metavar(param: Any) -> str:
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return "TEXT"
    if getattr(desc, "is_choice", False) and getattr(desc, "choices", None):
        return "{" + "|".join(str(getattr(c, "value", c)) for c in desc.choices) + "}"
    if getattr(desc, "is_path", False):
        kind = str(getattr(desc, "path_type", "path")).lower()
        return "FILE" if kind == "file" else "DIR" if kind.startswith("dir") else "PATH"
    ann = getattr(desc, "annotation", str)
    return "N" if ann is int else "X" if ann is float else "TEXT"


def plain_metavars(command: Any) -> Any:
    """Help in click's plain style: ``--out PATH``, ``--limit N``, ``RUN_DIRS...`` instead
    of typer's ``<path>``, ``<int range>`` and ``{run_dirs}... <list[Path]>``. (Typer
    vendors its own click, so parameters are told apart by their declared kind.)"""
    for p in command.params:
        kind = getattr(p, "param_type_name", "")
        if kind == "argument":
            name = p.metavar or str(p.name or "arg").upper()
            shown = name + ("..." if p.nargs != 1 and not name.endswith("...") else "")
            p.metavar = shown
            # typer prints an argument with its Python type: show the plain name only
            p.display_type_rich = lambda ctx: None
            p._usage_display_name = lambda s=shown, req=p.required: s if req else f"[{s}]"
        elif kind == "option" and p.metavar is None and not p.is_flag:
            p.metavar = _plain_metavar(p)
    for sub in (getattr(command, "commands", None) or {}).values():
        plain_metavars(sub)
    return command


def main() -> None:
    plain_metavars(typer.main.get_command(app))(prog_name="mmsim")


if __name__ == "__main__":
    main()
