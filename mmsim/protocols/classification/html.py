"""The classification section of the HTML report (``mmsim report RUN --format html``).

Importing this module registers the section; ``mmsim report`` imports it.
"""

from __future__ import annotations

from typing import Any

from mmsim.protocols.classification.metrics import compute
from mmsim.report.sections import Markup, RunContext, esc, pct, section, table


def _single(acc: dict[str, Any] | None) -> Markup:
    return pct(None if not acc else acc.get("single"), ci=False)


@section("classification.protocols", title="Classification protocols", order=150)
def classification_section(ctx: RunContext) -> str | None:
    """Closed world, multiple choice (random vs hard), open world by encoder, batches,
    single- vs multilabel accuracy."""
    if ctx.manifest.get("kind") != "classification":
        return None
    m = ctx.cached("classification", lambda: compute(ctx.store))
    encoders: list[str] = m.get("encoders", [])
    rows = []
    for mod in m["models"]:
        cl, mc, op = mod.get("closed"), mod.get("multiple_choice"), mod.get("open")
        infl = mc and mc.get("inflation")
        rows.append([
            mod["name"], _single(cl and cl["accuracy"]),
            _single(cl and cl["accuracy_without_mapping"]), pct(cl and cl["out_of_list_rate"]),
            _single(mc and mc["random"] and mc["random"]["accuracy"]),
            _single(mc and mc["hard"] and mc["hard"]["accuracy"]),
            pct(infl["single"] if infl else None),
            *[_single(op and op["by_encoder"].get(e)) for e in encoders],
            _single(op and op["accuracy_without_mapping"])])
    head = ["model", "closed", "closed unmapped", "off-list %", "MC random", "MC hard",
            "random − hard", *[f"open ({e})" for e in encoders], "open unmapped"]
    parts = ["<p>Accuracy % against the original single label.</p>", table(head, rows)]
    brows = []
    for mod in m["models"]:
        for s in (mod.get("batch") or {}).get("sizes", []):
            brows.append([mod["name"], s["size"], s["n"], _single(s["accuracy"]),
                          esc(" ".join(f"{100 * x:.1f}" for x in s["accuracy_by_order"]
                                       if x is not None)),
                          pct(s["order_std"], ci=False), pct(s["flip_rate"], ci=False),
                          esc(" ".join(f"{100 * x:.1f}" for x in s["accuracy_by_position"]
                                       if x is not None))])
    if brows:
        parts += ["<h4>Batch size and image order</h4>",
                  table(["model", "batch", "N", "acc %", "by order %", "order std",
                         "flip %", "by position %"], brows)]
    mrows = []
    for mod in m["models"]:
        for key, v in mod.get("single_vs_multi", {}).items():
            mrows.append([mod["name"], key, pct(v["single"], ci=False),
                          pct(v["multi"], ci=False), pct(v["gain"], ci=False)])
    if mrows:
        parts += ["<h4>Single-label vs multilabel ground truth</h4>",
                  table(["model", "protocol", "single %", "multi %", "gain pts"], mrows)]
    return "".join(parts)


__all__ = ["classification_section"]
