"""The tables every protocol declares once (mmsim/report/tabular.py) and their four
renderers: the figures each renderer shows are checked against the metrics JSON,
computed here independently of the renderers' formatting code."""

from __future__ import annotations

import copy
import csv
import io
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT
from rich.cells import cell_len
from rich.console import Console

from mmsim.report.tabular import Document, print_document, to_csv, to_latex, to_markdown
from mmsim.runtime import PROTOCOLS, Kernel
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

LIMITS = {"interfeedback": 12, "classification": 8, "dynamic_eval": 6, "video_levels": 4}
KINDS = {"interfeedback": "interfeedback", "classification": "classification",
         "dynamic_eval": "dynamic", "video_levels": "video"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The shipped scenarios, cut short, played in-process: metrics and tables of each."""
    out: dict[str, dict[str, Any]] = {}
    base = tmp_path_factory.mktemp("tables")
    for name, limit in LIMITS.items():
        run_dir = base / name
        kernel = Kernel(load_scenario(ROOT / "scenarios" / f"{name}.yaml", limit=limit),
                        run_dir)
        anyio.run(kernel.run)
        store = RunStore.open(run_dir, create=False)
        try:
            proto = PROTOCOLS.get(KINDS[name])
            metrics = proto.metrics(store)
        finally:
            store.close()
        out[name] = {"metrics": metrics, "doc": proto.tables(metrics), "dir": run_dir}
    return out


# -- independent formatting of the expected figures ----------------------------------------

def pct(v: float | None) -> str:
    return "—" if v is None else "%.1f" % (v * 100)


def ci(d: dict[str, Any], dash: str = "–") -> str:
    if d.get("value") is None:
        return "—"
    s = pct(d["value"])
    if d.get("lo") is not None and d.get("hi") is not None:
        s += f" [{pct(d['lo'])}{dash}{pct(d['hi'])}]"
    return s


def md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown pipe tables by their bold title: rows as header -> cell."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith(("|:", "|-")):
            title = lines[i - 2].strip("*")
            head = [c.strip() for c in line.strip("|").split(" | ")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
                assert len(cells) == len(head), row
                rows.append(dict(zip(head, cells, strict=True)))
            tables[title] = rows
    return tables


def _by_title(tables: dict[str, list[dict[str, str]]], start: str) -> list[dict[str, str]]:
    [rows] = [v for k, v in tables.items() if k.startswith(start)]
    return rows


# -- interfeedback --------------------------------------------------------------------------

def test_interfeedback_markdown_matches_metrics(runs: dict[str, Any]) -> None:
    m = runs["interfeedback"]["metrics"]
    rows = _by_title(md_tables(to_markdown(runs["interfeedback"]["doc"])), "InterFeedback")
    assert len(rows) == len(m["cells"]) > 0
    for c, r in zip(m["cells"], rows, strict=True):
        assert (r["receiver"], r["provider"], r["policy"]) == \
            (c["receiver"], c["provider"], c["policy"])
        assert r["N_test"] == str(c["n_test"]) and r["N"] == str(c["n"])
        assert r["corr. % [95% CI]"] == ci(c["correction_rate"])
        assert r["adj. %"] == pct(c["chance_adjusted_correction"])
        assert r["unparsed %"] == pct(c["parse_failure_rate"])
        assert r["leaks"] == str(c["n_leaked"]) and r["failed"] == str(c["failed"])
        for k, rnd in enumerate(c["correction_by_round"], start=1):
            assert r[f"≤r{k} %"] == pct(rnd["cumulative"]["value"])
    agents = _by_title(md_tables(to_markdown(runs["interfeedback"]["doc"])), "Screening")
    for a, r in zip(m["agents"], agents, strict=True):
        assert r["accuracy % [95% CI]"] == ci(a["accuracy"]) and r["N"] == str(a["n"])


def test_interfeedback_csv_has_full_precision_intervals(runs: dict[str, Any]) -> None:
    m = runs["interfeedback"]["metrics"]
    [cells] = [t for t in runs["interfeedback"]["doc"].tables if t.name == "cells"]
    rows = list(csv.DictReader(io.StringIO(to_csv(cells))))
    assert len(rows) == len(m["cells"])
    for c, r in zip(m["cells"], rows, strict=True):
        cr = c["correction_rate"]
        for key, v in (("", cr["value"]), (" lo", cr["lo"]), (" hi", cr["hi"])):
            got = r[f"corr. % [95% CI]{key}"]
            assert (got == "") if v is None else abs(float(got) - 100 * v) < 1e-4
        assert int(r["N_test"]) == c["n_test"] and int(r["leaks"]) == c["n_leaked"]
        assert abs(float(r["adj. %"]) - 100 * c["chance_adjusted_correction"]) < 1e-4 \
            if c["chance_adjusted_correction"] is not None else r["adj. %"] == ""


def test_latex_is_booktabs_with_escaped_cells(runs: dict[str, Any]) -> None:
    m = runs["interfeedback"]["metrics"]
    tex = to_latex(runs["interfeedback"]["doc"])
    assert tex.count(r"\begin{tabular}") == tex.count(r"\bottomrule") >= 2
    assert r"\toprule" in tex and r"\midrule" in tex and r"\hline" not in tex
    body = tex[tex.index(r"\caption{InterFeedback"):]
    for c in m["cells"]:
        want = " & ".join([c["receiver"].replace("_", r"\_"), c["provider"].replace("_", r"\_"),
                           c["policy"].replace("_", r"\_"), str(c["n"])])
        assert want in body
        assert ci(c["correction_rate"], dash="--") in body
    for line in tex.splitlines():  # no unescaped % outside comment lines
        assert line.startswith("%") or not re.search(r"(?<!\\)%", line), line
    # special characters never reach LaTeX unescaped
    doc = Document("h", [copy.deepcopy(runs["interfeedback"]["doc"].tables[0])])
    doc.tables[0].rows[0][0] = "a_b & 50% {x}"
    assert r"a\_b \& 50\% \{x\}" in to_latex(doc)


# -- the other protocols --------------------------------------------------------------------

def _acc_ci(acc: dict[str, Any]) -> str:
    """A classification accuracy with its Wilson interval (``single_ci``)."""
    lo, hi = acc["single_ci"]
    return ci({"value": acc["single"], "lo": lo, "hi": hi})


def test_classification_tables_match_metrics(runs: dict[str, Any]) -> None:
    m = runs["classification"]["metrics"]
    md = md_tables(to_markdown(runs["classification"]["doc"]))
    rows = _by_title(md, "Classification protocols")
    assert len(rows) == len(m["models"]) > 0
    for mod, r in zip(m["models"], rows, strict=True):
        [closed] = [k for k in r if k.startswith("closed (")]
        assert r[closed] == _acc_ci(mod["closed"]["accuracy"])
        [hard] = [k for k in r if k.startswith("MC-") and "hard" in k]
        assert r[hard] == _acc_ci(mod["multiple_choice"]["hard"]["accuracy"])
        assert r["failed"] == str(mod["failed"])
    batch = _by_title(md, "Batch size")
    sizes = [(mod["name"], s) for mod in m["models"] for s in mod["batch"]["sizes"]]
    for (name, s), r in zip(sizes, batch, strict=True):
        assert (r["model"], r["batch"], r["N"]) == (name, str(s["size"]), str(s["n"]))
        assert r["acc %"] == _acc_ci(s["accuracy"])


def test_dynamic_tables_match_metrics(runs: dict[str, Any]) -> None:
    m = runs["dynamic_eval"]["metrics"]
    rows = _by_title(md_tables(to_markdown(runs["dynamic_eval"]["doc"])), "Ability vectors")
    codes = m["task_codes"]
    for mod, r in zip(m["models"], rows, strict=True):
        for task in m["tasks"]:
            assert r[f"{codes[task]} {task}"] == ci(mod["vector"][task])
        s = mod["sharpness"]
        assert r["sharpness pts (T0 − mean others)"].startswith("%+.1f" % (100 * s["value"]))


def test_video_tables_match_metrics(runs: dict[str, Any]) -> None:
    m = runs["video_levels"]["metrics"]
    md = md_tables(to_markdown(runs["video_levels"]["doc"]))
    rows = _by_title(md, "Accuracy by level")
    for model, r in zip(m["models"], rows, strict=True):
        assert r["model"] == model
        assert r["all"] == ci(m["levels"][model]["all"]["accuracy"])
        assert r["n"] == str(m["levels"][model]["all"]["n"])
    [t] = [t for t in runs["video_levels"]["doc"].tables if t.name == "levels"]
    got = list(csv.DictReader(io.StringIO(to_csv(t))))
    for model, r in zip(m["models"], got, strict=True):
        acc = m["levels"][model]["all"]["accuracy"]
        assert abs(float(r["all"]) - 100 * acc["value"]) < 1e-4
        assert abs(float(r["all lo"]) - 100 * acc["lo"]) < 1e-4


# -- the terminal ---------------------------------------------------------------------------

def _terminal(doc: Document, width: int, wide: bool = False) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    print_document(doc, console, wide=wide)
    return console.export_text()


@pytest.mark.parametrize("name", list(LIMITS))
def test_compact_summary_fits_and_uses_more_width(runs: dict[str, Any], name: str) -> None:
    doc = runs[name]["doc"]
    narrow, mid = _terminal(doc, 80), _terminal(doc, 120)
    assert max(cell_len(x) for x in narrow.splitlines()) <= 80
    assert max(cell_len(x) for x in mid.splitlines()) <= 120
    assert doc.headline.startswith(narrow.splitlines()[0].rstrip())
    # more room shows more figures (fewer hidden columns)
    hidden = [sum(int(n) for n in re.findall(r"\((\d+) more columns?: --wide\)", t))
              for t in (narrow, mid)]
    assert hidden[1] < hidden[0] or hidden[0] == 0


def _names(label: str, policy: str) -> bool:
    """A compact label names ``policy``: whole, or cut with "…"."""
    return policy.startswith(label[:-1]) if label.endswith("…") else label == policy


def test_compact_interfeedback_shows_every_cell_on_one_line(runs: dict[str, Any]) -> None:
    m = runs["interfeedback"]["metrics"]
    text = _terminal(runs["interfeedback"]["doc"], 80)
    lines = text.splitlines()
    for c in m["cells"]:
        head = lines.index(f"{c['receiver']} · {c['provider']}")
        group = []
        for x in lines[head + 1:]:
            if not x.startswith(" "):
                break
            group.append(x)
        [line] = [x for x in group if _names(x.split()[0], c["policy"])]
        assert ci(c["correction_rate"]) in line
        figures = line.split()[1:]
        # N_test, correction with its interval, chance-adjusted, unparsed, leaks, failed
        assert str(c["n_test"]) in figures
        assert ci(c["correction_rate"]) in line
        assert figures[-3:] == [pct(c["parse_failure_rate"]), str(c["n_leaked"]),
                                str(c["failed"])]


def test_wide_shows_every_column_without_cutting(runs: dict[str, Any]) -> None:
    doc = runs["interfeedback"]["doc"]
    text = _terminal(doc, 80, wide=True)
    assert "…" not in text and "--wide" not in text
    for col in doc.tables[0].columns:
        assert col.name in text
    m = runs["interfeedback"]["metrics"]
    for c in m["cells"]:
        assert any(c["policy"] in x and ci(c["correction_rate"]) in x
                   and x.split()[0] == c["receiver"] for x in text.splitlines())


def test_headline_names_the_best_cell_with_its_interval(runs: dict[str, Any]) -> None:
    m = runs["interfeedback"]["metrics"]
    best = max((c for c in m["cells"] if c["n_test"]),
               key=lambda c: (c["correction_rate"]["value"], c["n_test"]))
    h = runs["interfeedback"]["doc"].headline
    assert f"{best['receiver']} / {best['provider']} / {best['policy']}" in h
    assert ci(best["correction_rate"]) + "%" in h and f"of {best['n_test']} errors" in h
    v = runs["video_levels"]["metrics"]["levels"]
    top = max(v, key=lambda k: v[k]["all"]["accuracy"]["value"])
    assert f"is {top} at {ci(v[top]['all']['accuracy'])}%" in runs["video_levels"]["doc"].headline


def test_report_formats_on_the_command_line(runs: dict[str, Any], tmp_path: Path) -> None:
    from conftest import run_cli

    run_dir = runs["interfeedback"]["dir"]
    md = run_cli("report", str(run_dir), "--format", "markdown")
    assert md.returncode == 0, md.stderr
    assert md.stdout == to_markdown(runs["interfeedback"]["doc"])
    tex = run_cli("report", str(run_dir), "--format", "latex", "--table", "cells")
    assert tex.returncode == 0 and tex.stdout.count(r"\begin{tabular}") == 1
    out = tmp_path / "t.csv"
    r = run_cli("report", str(run_dir), "--format", "csv", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("t.*.csv")) == ["t.agents.csv", "t.cells.csv"]
    bad = run_cli("report", str(run_dir), "--format", "csv", "--table", "nope")
    assert bad.returncode == 2 and "cells" in bad.stderr and "Traceback" not in bad.stderr
    for name in ("classification", "dynamic_eval", "video_levels"):
        r = run_cli("report", str(runs[name]["dir"]), "--format", "latex")
        assert r.returncode == 0 and r"\toprule" in r.stdout, r.stderr


def test_figures_written_as_svg_and_pdf(runs: dict[str, Any], tmp_path: Path) -> None:
    from conftest import run_cli

    dest = tmp_path / "figs"
    r = run_cli("report", str(runs["interfeedback"]["dir"]), "--format", "json",
                "--figures", str(dest))
    assert r.returncode == 0, r.stderr
    svgs = sorted(dest.glob("*.svg"))
    assert len(svgs) >= 3
    for p in svgs:
        text = p.read_text()
        assert text.startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in text
        assert "<style>" in text and text.rstrip().endswith("</svg>")
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        assert "SVG only" in r.stderr
    else:
        pdfs = sorted(dest.glob("*.pdf"))
        assert len(pdfs) == len(svgs)
        assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)


def test_html_page_starts_with_the_headline(runs: dict[str, Any], tmp_path: Path) -> None:
    from html import escape

    from mmsim.report.html import build_html

    html, _ = build_html([runs["dynamic_eval"]["dir"]], max_episodes=5)
    top = html[html.index('<header id="top">'):html.index("</header>")]
    assert escape(runs["dynamic_eval"]["doc"].headline) in top


def test_transcripts_show_protocol_results_as_fields(runs: dict[str, Any]) -> None:
    """Dynamic and video episodes show their scored result as named fields (score,
    reward, answer, gold), not as a raw JSON line."""
    import json

    from mmsim.report.html import build_html

    for name, key in (("dynamic_eval", "score"), ("video_levels", "reward")):
        html, _ = build_html([runs[name]["dir"]], max_episodes=30)
        blob = html.split('id="mmsim-data">', 1)[1].split("</script>", 1)[0]
        data = json.loads(blob.replace("\\u003c", "<").replace("\\u003e", ">")
                          .replace("\\u0026", "&"))
        results = [ev for ep in data["episodes"] for ev in ep["events"]
                   if ev["t"] == "result"]
        assert results, name
        store = RunStore.open(runs[name]["dir"], create=False)
        try:
            for ep in data["episodes"][:10]:
                stored = [m for m in store.messages(ep["id"])
                          if m["kind"] in ("dyn_result", "video_result")]
                shown = [dict(ev["fields"]) for ev in ep["events"] if ev["t"] == "result"]
                assert len(stored) == len(shown)
                for m, f in zip(stored, shown, strict=True):
                    if m.get(key) is not None:
                        assert float(f[key]) == pytest.approx(m[key], rel=1e-2)
                    if m.get("answer") is not None:
                        assert f["answer"] == m["answer"]
        finally:
            store.close()
