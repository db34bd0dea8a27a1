"""Parameter recovery for docs/twins.md: simulate a run with known sim parameters, fit
twins, and draw truth vs estimate ± 95% interval (docs/twins-recovery.svg).

    python benchmarks/twins_recovery.py [--items 400] [--out docs/twins-recovery.svg]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmsim.runtime import run_scenario  # noqa: E402
from mmsim.scenario import load_scenario  # noqa: E402
from mmsim.twins.data import attach_difficulty, load_dataset_difficulty, read_run  # noqa: E402
from mmsim.twins.fit import fit_run  # noqa: E402
from tests.test_twins import RECOVERY, _truth  # noqa: E402


def svg(rows: list[tuple[str, float, float, float, float]]) -> str:
    """A forest plot: one line per parameter, estimate and interval minus the truth."""
    h = 22 * len(rows) + 60
    x0, x1 = 260, 700
    span = max(max(abs(lo - t), abs(hi - t)) for _, t, _, lo, hi in rows) * 1.1
    def sx(v: float) -> float:
        return x0 + (v + span) / (2 * span) * (x1 - x0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="740" height="{h}" '
           'font-family="sans-serif" font-size="12">',
           '<text x="10" y="18" font-weight="bold">Parameter recovery: estimate − truth, '
           'with 95% interval (black: covers the truth, red: misses)</text>',
           f'<line x1="{sx(0)}" y1="30" x2="{sx(0)}" y2="{h - 25}" stroke="#888" '
           'stroke-dasharray="4 3"/>']
    for i, (name, t, est, lo, hi) in enumerate(rows):
        y = 45 + 22 * i
        colour = "#000" if lo <= t <= hi else "#c00"
        out += [f'<text x="10" y="{y + 4}">{name} (truth {t:.3g})</text>',
                f'<line x1="{sx(lo - t)}" y1="{y}" x2="{sx(hi - t)}" y2="{y}" '
                f'stroke="{colour}" stroke-width="2"/>',
                f'<circle cx="{sx(est - t)}" cy="{y}" r="4" fill="{colour}"/>']
    out += [f'<text x="{x0}" y="{h - 8}">−{span:.2f}</text>',
            f'<text x="{sx(0) - 4}" y="{h - 8}">0</text>',
            f'<text x="{x1 - 30}" y="{h - 8}">+{span:.2f}</text>', "</svg>"]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=1, help="simulated runs (coverage)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "twins-recovery.svg")
    args = ap.parse_args()
    truth = _truth(RECOVERY)
    fits = []
    for seed in range(11, 11 + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            scn = Path(tmp) / "recovery.yaml"
            scn.write_text(RECOVERY.replace("size: 400", f"size: {args.items}")
                           .replace("seed: 11", f"seed: {seed}"))
            loaded = load_scenario(scn)
            anyio.run(run_scenario, loaded, Path(tmp) / "run")
            data = read_run(Path(tmp) / "run")
            attach_difficulty(data, load_dataset_difficulty(data))
            fits.append(fit_run(data, difficulty="data"))
    if len(fits) > 1:
        n = k = 0
        for f in fits:
            for name, af in f.agents.items():
                for key, e in af.estimates.items():
                    if not e.fixed:
                        n += 1
                        k += e.covers(truth[name][key])
        print(f"coverage over {len(fits)} simulated runs: {k}/{n} = {k / n:.3f}\n")
    fit = fits[0]
    rows = []
    print("| agent | parameter | truth | estimate | 95% interval | covered |")
    print("|---|---|---|---|---|---|")
    for name, af in fit.agents.items():
        for key, e in af.estimates.items():
            if e.fixed or e.lo is None or e.hi is None:
                continue
            t = truth[name][key]
            rows.append((f"{name}.{key}", t, e.value, e.lo, e.hi))
            print(f"| {name} | {key} | {t:.3g} | {e.value:.3f} | [{e.lo:.3f}, {e.hi:.3f}] | "
                  f"{'yes' if e.covers(t) else '**no**'} |")
    cov = sum(lo <= t <= hi for _, t, _, lo, hi in rows)
    print(f"\ncovered: {cov}/{len(rows)}")
    args.out.write_text(svg(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
