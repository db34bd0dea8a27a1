"""The InterFeedback sections of the HTML report (registered on import)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from mmsim.metrics.intervals import proportion
from mmsim.report.sections import Markup, RunContext, esc, pct, section, table
from mmsim.report.svg import Bar, BarGroup, Line, Point, bar_chart, hbar_chart, small_multiples

SCHEMA = "mmsim.interfeedback.v1"


def _is_interfeedback(ctx: RunContext) -> bool:
    return ctx.metrics.get("schema") == SCHEMA


def _cells(ctx: RunContext) -> list[dict[str, Any]]:
    cells = ctx.metrics.get("cells") or []
    return [c for c in cells if isinstance(c, dict)]


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@section("interfeedback.overview", title="Overview", order=10)
def overview(ctx: RunContext) -> str | None:
    """Run status, protocol settings and episode counts."""
    if not _is_interfeedback(ctx):
        return None
    m = ctx.metrics
    counts = m.get("counts") or {}
    oc = Counter(o.outcome for o in ctx.outcomes)
    rows = [("run id", m.get("run_id")), ("status", m.get("status")),
            ("test set", m.get("test_set")), ("feedback rounds", m.get("max_rounds")),
            ("episodes", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"),
            ("outcomes", ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(oc.items()))
             or "none"),
            ("answer extractor", m.get("extractor")),
            ("intervals", f"proportions: {(m.get('ci') or {}).get('proportions', '')} 95%; "
                          f"differences: {(m.get('ci') or {}).get('differences', '')}")]
    return table(("", ""), rows, css_class="data kv")


@section("interfeedback.accuracy", title="Accuracy and correction rate", order=20)
def accuracy(ctx: RunContext) -> str | None:
    """Screening accuracy per agent and correction rate per receiver x provider x policy."""
    if not _is_interfeedback(ctx):
        return None
    agents = [a for a in ctx.metrics.get("agents") or [] if isinstance(a, dict)]
    parts: list[str] = []
    if agents:
        groups = [BarGroup(a["name"], [Bar("accuracy", a["accuracy"]["value"],
                                           a["accuracy"]["lo"], a["accuracy"]["hi"],
                                           f"N={a['n']}")]) for a in agents]
        parts.append(bar_chart(groups, title="Screening accuracy per agent (95% CI)"))
    cells = _cells(ctx)
    if not cells:
        return "".join(parts) or None
    by_pair: dict[str, BarGroup] = {}
    for c in cells:
        g = by_pair.setdefault(f"{c['receiver']} × {c['provider']}",
                               BarGroup(f"{c['receiver']} × {c['provider']}"))
        cr = c["correction_rate"]
        g.bars.append(Bar(c["policy"], cr["value"], cr["lo"], cr["hi"],
                          f"{c['n_corrected']}/{c['n_test']} corrected"))
    parts.append(bar_chart(list(by_pair.values()),
                           title="Correction rate per receiver × provider, by policy (95% CI)"))
    rows = []
    for c in cells:
        rows.append((c["receiver"], c["provider"], c["policy"], c["n"], pct(c["accuracy"]),
                     c["n_test"], c["n_corrected"], pct(c["correction_rate"]),
                     pct(c.get("chance_correction")), pct(c.get("chance_adjusted_correction")),
                     "—" if c.get("mean_rounds") is None else f"{c['mean_rounds']:.2f}"))
    parts.append(table(("receiver", "provider", "policy", "N", "accuracy % [95% CI]", "N_test",
                        "N_c", "correction % [95% CI]", "chance %", "chance-adj. %",
                        "mean rounds"), rows))
    return "".join(parts)


@section("interfeedback.rounds", title="Correction by round", order=30)
def by_round(ctx: RunContext) -> str | None:
    """Cumulative correction rate by feedback round, one chart per receiver."""
    if not _is_interfeedback(ctx):
        return None
    per_receiver: dict[str, list[Line]] = defaultdict(list)
    for c in _cells(ctx):
        pts = [Point(0, 0.0 if c["n_test"] else None)]
        for r in c["correction_by_round"]:
            cum = r["cumulative"]
            pts.append(Point(r["round"], cum["value"], cum["lo"], cum["hi"]))
        per_receiver[c["receiver"]].append(Line(f"{c['provider']}/{c['policy']}", pts))
    if not per_receiver:
        return None
    charts = [small_multiples(lines, title=f"{rec}: cumulative correction by round, per "
                              "provider/policy (95% CI)", x_label="feedback round",
                              columns=2)
              for rec, lines in per_receiver.items()]
    rows = []
    for c in _cells(ctx):
        rows.append((c["receiver"], c["provider"], c["policy"], c["n_test"],
                     *[Markup(f"{r['corrected']} ({pct(r['rate'])}%)")
                       for r in c["correction_by_round"]]))
    rounds = max((len(c["correction_by_round"]) for c in _cells(ctx)), default=0)
    rows = [r + ("",) * (4 + rounds - len(r)) for r in rows]
    return ('<div class="charts">' + "".join(charts) + "</div>"
            + "<h4>Items first corrected at each round</h4>"
            + table(("receiver", "provider", "policy", "N_test",
                     *[f"round {k}" for k in range(1, rounds + 1)]), rows))


@section("interfeedback.extractor", title="Extractor sensitivity", order=35)
def extractor(ctx: RunContext) -> str | None:
    """Accuracy and correction read by both extractors, and how often they disagree."""
    if not _is_interfeedback(ctx):
        return None
    cells = [c for c in _cells(ctx) if isinstance(c.get("extractor"), dict)]
    if not cells:
        return None
    primary = cells[0]["extractor"]["primary"]
    alt = cells[0]["extractor"]["alternative"]
    rows = []
    for c in cells:
        ex = c["extractor"]
        rows.append((c["receiver"], c["provider"], c["policy"],
                     pct(ex[primary]["accuracy"]), pct(ex[alt]["accuracy"]),
                     pct(ex[primary]["correction"]), pct(ex[alt]["correction"]),
                     pct(ex["screening_disagree"]), pct(ex["disagree"])))
    note = (f"<p>The same replies read by the {esc(primary)} extractor (this run's) and by the "
            f"{esc(alt)} one. Disagreement: share of episodes in which the two read at least "
            "one reply differently. A large share means the figure depends on how answers "
            "are read (docs/metrics.md, answer extraction).</p>")
    html = note + table(("receiver", "provider", "policy", f"accuracy % ({primary})",
                         f"accuracy % ({alt})", f"correction % ({primary})",
                         f"correction % ({alt})", "disagree % (screening)",
                         "disagree % (feedback)"), rows)
    mx_rows = [(c["receiver"], c["provider"], c["policy"], name, pct(fig["accuracy"]),
                pct(fig["correction"]), fig["filled_screening"], fig["filled_feedback"],
                fig["calls"], fig["errors"])
               for c in cells for name, fig in (c.get("model_extractors") or {}).items()
               if isinstance(fig, dict)]
    if mx_rows:
        html += ("<h4>Model-based extractors</h4><p>An extractor agent's readings fill the "
                 f"replies the {esc(primary)} extractor left unparsed; the figures above are "
                 "not changed by them.</p>")
        html += table(("receiver", "provider", "policy", "extractor", "accuracy %",
                       "correction %", "filled (screening)", "filled (feedback)", "calls",
                       "errors"), mx_rows)
    return html


@section("interfeedback.failures", title="Parse failures, errors and leaks", order=40)
def failures(ctx: RunContext) -> str | None:
    """Parse-failure, failed-episode and leak rates."""
    if not _is_interfeedback(ctx):
        return None
    agents = [a for a in ctx.metrics.get("agents") or [] if isinstance(a, dict)]
    cells = _cells(ctx)
    parts: list[str] = []
    groups = []
    for c in cells:
        fail = proportion(c["failed"], c["n_test"] + c["failed"])
        pf, lk = c.get("parse_failure") or {}, c.get("leak") or {}
        groups.append(BarGroup(f"{c['receiver']} × {c['provider']} × {c['policy']}", [
            Bar("parse failures", c["parse_failure_rate"], pf.get("lo"), pf.get("hi"),
                note=f"{c['n_unparsed']} replies"),
            Bar("failed episodes", fail["value"], fail["lo"], fail["hi"],
                note=f"{c['failed']} episodes"),
            Bar("leaks", c.get("leak_rate"), lk.get("lo"), lk.get("hi"),
                note=f"{c['n_leaked']} of {c['n_feedback']}")]))
    if groups:
        # the scale holds every bar and whisker (a 0% rate's interval still has width)
        need = max([max(b.value or 0.0, b.hi or 0.0) for g in groups for b in g.bars]
                   + [0.0625])
        x_max = min(1.0, max(0.1, round(need + 0.049, 1)))
        parts.append(hbar_chart(groups, title="Parse-failure, failed-episode and leak rates",
                                x_max=x_max))
    if agents:
        rows: list[tuple[object, ...]] = [
            (a["name"], ",".join(a["roles"]), a["n"], a["n_unparsed"],
                 pct(a["parse_failure_rate"]), a["failed"],
                 pct(_rate(a["failed"], a["n"] + a["failed"])))
                for a in agents]
        parts.append("<h4>Screening</h4>")
        parts.append(table(("agent", "roles", "N", "unparsed", "parse-failure %",
                            "failed episodes", "error rate %"), rows))
    if cells:
        rows = [(c["receiver"], c["provider"], c["policy"], c["n_unparsed"],
                 pct(c["parse_failure_rate"]), c["failed"],
                 pct(_rate(c["failed"], c["n_test"] + c["failed"])), c["n_leaked"],
                 pct(c.get("leak_rate"))) for c in cells]
        parts.append("<h4>Feedback episodes</h4>")
        parts.append(table(("receiver", "provider", "policy", "unparsed", "parse-failure %",
                            "failed episodes", "error rate %", "leaks", "leak %"), rows))
    return "".join(parts) or None


def _money(v: object, currency: str) -> str:
    if not isinstance(v, int | float):
        return "—"
    return f"{v:,.4f} {currency}"


@section("interfeedback.tokens", title="Tokens and cost", order=50)
def tokens(ctx: RunContext) -> str | None:
    """Token totals per role and phase (screening answers, answers after feedback, provider
    feedback), with cost and retries where the metrics record them."""
    if not _is_interfeedback(ctx):
        return None
    screen: dict[tuple[str, str], tuple[int, int]] = {}
    per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    feedback_eps = []
    for ep in ctx.store.episodes():
        if ep["kind"] == "screen":
            screen[(ep["model"], ep["sample_id"])] = (ep["model_prompt_tokens"],
                                                          ep["model_completion_tokens"])
            row = per[("screening", ep["model"])]
            row[0] += ep["model_prompt_tokens"]
            row[1] += ep["model_completion_tokens"]
            row[2] += 1
        elif ep["kind"] == "feedback":
            feedback_eps.append(ep)
    for ep in feedback_eps:
        # a feedback episode's tokens include its round-0 answer, reused from screening
        p0, c0 = screen.get((ep["model"], ep["sample_id"]), (0, 0))
        row = per[("receiver", ep["model"])]
        row[0] += max(0, ep["model_prompt_tokens"] - p0)
        row[1] += max(0, ep["model_completion_tokens"] - c0)
        row[2] += 1
        prow = per[("provider", ep["provider"])]
        prow[0] += ep["provider_prompt_tokens"]
        prow[1] += ep["provider_completion_tokens"]
        prow[2] += 1
    if not per:
        return None
    agents = {a["name"]: a for a in ctx.metrics.get("agents") or [] if isinstance(a, dict)}
    roles = {n: ",".join(a.get("roles") or []) for n, a in agents.items()}
    have_cost = any(isinstance(a.get("cost"), dict) for a in agents.values())
    phase_label = {"screening": "screening answers", "receiver": "answers after feedback",
                   "provider": "feedback given"}
    rows = []
    totals = [0, 0]
    for (phase, agent), (p, c, n) in sorted(per.items()):
        role = roles.get(agent, "") if phase == "screening" else phase
        r: list[object] = [role, agent, phase_label[phase], n, f"{p:,}", f"{c:,}", f"{p + c:,}"]
        if have_cost:
            cost = agents.get(agent, {}).get("cost")
            r.append(_money(cost.get(phase), str(cost.get("currency", "")))
                     if isinstance(cost, dict) else "—")
        rows.append(r)
        totals[0] += p
        totals[1] += c
    headers = ["role", "agent", "tokens for", "episodes", "prompt", "completion", "total"]
    if have_cost:
        headers.append("cost")
    parts = [table(headers, rows),
             f"<p>Total: <b>{totals[0] + totals[1]:,}</b> tokens "
             f"({totals[0]:,} prompt, {totals[1]:,} completion).</p>"]
    run_cost = ctx.metrics.get("cost")
    if isinstance(run_cost, dict):
        cur = str(run_cost.get("currency", ""))
        parts.append(table(("role", "cost"), [
            (k, _money(run_cost.get(k), cur)) for k in ("receiver", "provider", "judge", "total")
            if k in run_cost]))
    retries = [(n, a["retries"]) for n, a in agents.items()
               if isinstance(a.get("retries"), int) and a["retries"]]
    if retries:
        parts.append("<h4>Retries (calls repeated after transient errors)</h4>")
        parts.append(table(("agent", "retries"), retries))
    parts.append("<p class='note'>A feedback episode's round-0 answer is its screening answer, "
                 "counted once, under screening. Cost appears where the scenario gives "
                 "prices (docs/metrics.md).</p>")
    return "".join(parts)


@section("interfeedback.categories", title="Correction by category", order=60)
def categories(ctx: RunContext) -> str | None:
    """Correction rate per item category and cell."""
    if not _is_interfeedback(ctx):
        return None
    cells = _cells(ctx)
    cats = sorted({k for c in cells for k in (c.get("by_category") or {})})
    if len(cats) < 2:
        return None
    rows = []
    for c in cells:
        bc = c.get("by_category") or {}
        rows.append((c["receiver"], c["provider"], c["policy"],
                     *[Markup(f"{pct(bc[k]['correction_rate'])} "
                              f"<span class='ci'>({bc[k]['n_corrected']}/{bc[k]['n_test']})"
                              f"</span>") if k in bc else esc(None) for k in cats]))
    return table(("receiver", "provider", "policy", *[f"{k} %" for k in cats]), rows)


__all__ = ["SCHEMA"]
