"""Loading a large VLMEvalKit TSV and a Hugging Face parquet of the same items.

    python benchmarks/data_load.py [--rows 10000] [--images 2000] [--image-kb 75]
                                   [--dir /tmp/mmsim-data-load] [--json out.json]

Generates a VLMEvalKit TSV (``index, question, hint, A..D, answer, category, image``):
``--images`` distinct PNGs of random noise (incompressible, ~``--image-kb`` each, base64
in the cell), the other rows reusing one of them by ``index`` (VLMEvalKit's rule), about
200 MB at the defaults; and the same items as a hub-layout parquet
(``data/test-00000-of-00001.parquet``, ``image`` as the Image feature ``{bytes, path}``,
``choices`` a list, ``answer`` an index, as ``datasets`` writes them: every row embeds its
image bytes).

Each load runs in its own process, so its peak RSS (``VmHWM``) is that load's alone:

* ``mmsim tsv``: ``load_samples`` of the TSV (rows mapped to Samples, images base64-decoded,
  verified by PIL and written once by content hash);
* ``pandas.read_csv``: ``pandas.read_csv(path, sep="\\t")`` of the same file (no image
  decoding at all: the floor of "reading the file");
* ``mmsim parquet`` and ``pyarrow.parquet.read_table`` likewise for the parquet.

Every process imports pandas, pyarrow and mmsim before timing (so each starts from the same
RSS); "over imports" is the peak RSS minus the RSS after those imports: what the load itself
added.

Prints rows/s and peak RSS side by side, and the ratios (mmsim / baseline).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _png(seed: int, kb: int) -> bytes:
    """A PNG of random noise of about ``kb`` KB (stdlib only: fast to generate)."""
    side = max(8, int((kb * 1024 / 3) ** 0.5))
    rng = random.Random(seed)
    raw = b"".join(b"\x00" + rng.randbytes(side * 3) for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def generate(folder: Path, rows: int, images: int, kb: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / "bench.tsv"
    hub = folder / "hub"
    colours = ["red", "green", "blue", "yellow"]
    pngs: dict[int, bytes] = {}
    first_row: dict[int, int] = {}
    parquet_rows: list[dict[str, Any]] = []
    with tsv.open("w", encoding="utf-8") as fh:
        fh.write("index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n")
        for i in range(rows):
            img = i % images
            if img not in pngs:
                pngs[img] = _png(img, kb)
            if img in first_row:
                cell = str(first_row[img])
            else:
                cell = base64.b64encode(pngs[img]).decode()
                first_row[img] = i
            ans = i % 4
            fh.write(f"{i}\tWhat is shown in picture {i}?\t\t" + "\t".join(colours)
                     + f"\t{'ABCD'[ans]}\tcat{i % 7}\t{cell}\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("question", pa.string()),
                        ("choices", pa.list_(pa.string())), ("answer", pa.int64()),
                        ("category", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    (hub / "data").mkdir(parents=True, exist_ok=True)
    out = hub / "data" / "test-00000-of-00001.parquet"
    with pq.ParquetWriter(out, schema) as w:
        for start in range(0, rows, 500):
            parquet_rows = [{"id": str(i), "question": f"What is shown in picture {i}?",
                             "choices": colours, "answer": i % 4, "category": f"cat{i % 7}",
                             "image": {"bytes": pngs[i % images], "path": None}}
                            for i in range(start, min(rows, start + 500))]
            w.write_table(pa.Table.from_pylist(parquet_rows, schema=schema),
                          row_group_size=100)
    return tsv, hub


def _status_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, MB. ``ru_maxrss`` is not used:
    Linux carries it over from the parent across fork + exec, so a child would report the
    driver's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, path: str) -> dict[str, Any]:
    """One load in this process (its libraries imported first, not timed): rows, seconds,
    peak RSS and the RSS after the imports (MB)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from mmsim.data.fields import load_samples

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    if kind in ("mmsim-tsv", "mmsim-parquet"):
        with tempfile.TemporaryDirectory() as tmp:
            n = len(load_samples({"path": path}, base_dir=Path.cwd(), cache_dir=Path(tmp),
                                 limit=None))
            elapsed = time.perf_counter() - t0
    elif kind == "pandas":
        n = len(pd.read_csv(path, sep="\t"))
        elapsed = time.perf_counter() - t0
    else:
        n = pq.read_table(path).num_rows
        elapsed = time.perf_counter() - t0
    rss = _status_mb("VmHWM")
    return {"kind": kind, "rows": n, "seconds": elapsed, "rows_per_s": n / elapsed,
            "peak_rss_mb": rss, "rss_after_imports_mb": base,
            "peak_over_imports_mb": rss - base}


def _child(kind: str, path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{r.stderr}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=2_000)
    ap.add_argument("--image-kb", type=int, default=75)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="mmsim-data-load-") as tmp:
        folder = args.dir or Path(tmp)
        t0 = time.perf_counter()
        tsv, hub = generate(folder, args.rows, args.images, args.image_kb)
        parquet = hub / "data" / "test-00000-of-00001.parquet"
        sizes = {"tsv_mb": tsv.stat().st_size / 2**20,
                 "parquet_mb": parquet.stat().st_size / 2**20}
        print(f"generated {args.rows} rows, {args.images} distinct images: TSV "
              f"{sizes['tsv_mb']:.0f} MB, parquet {sizes['parquet_mb']:.0f} MB "
              f"({time.perf_counter() - t0:.0f} s)")
        results = {k: _child(k, p) for k, p in (("mmsim-tsv", tsv), ("pandas", tsv),
                                                 ("mmsim-parquet", hub),
                                                 ("pyarrow", parquet))}
    print(f"{'load':<16}{'rows':>8}{'seconds':>10}{'rows/s':>10}{'peak RSS MB':>13}"
          f"{'over imports':>14}")
    for r in results.values():
        print(f"{r['kind']:<16}{r['rows']:>8}{r['seconds']:>10.2f}{r['rows_per_s']:>10.0f}"
              f"{r['peak_rss_mb']:>13.0f}{r['peak_over_imports_mb']:>14.0f}")
    ratios = {
        "tsv_rows_per_s_ratio": results["mmsim-tsv"]["rows_per_s"]
        / results["pandas"]["rows_per_s"],
        "tsv_peak_rss_ratio": results["mmsim-tsv"]["peak_rss_mb"]
        / results["pandas"]["peak_rss_mb"],
        "parquet_rows_per_s_ratio": results["mmsim-parquet"]["rows_per_s"]
        / results["pyarrow"]["rows_per_s"],
        "parquet_peak_rss_ratio": results["mmsim-parquet"]["peak_rss_mb"]
        / results["pyarrow"]["peak_rss_mb"],
    }
    print("mmsim / pandas.read_csv: rows/s x{:.2f}, peak RSS x{:.2f}".format(
        ratios["tsv_rows_per_s_ratio"], ratios["tsv_peak_rss_ratio"]))
    print("mmsim / pyarrow.parquet.read_table: rows/s x{:.2f}, peak RSS x{:.2f}".format(
        ratios["parquet_rows_per_s_ratio"], ratios["parquet_peak_rss_ratio"]))
    if args.json:
        args.json.write_text(json.dumps({"params": vars(args) | {"dir": None, "json": None},
                                         "sizes": sizes, "results": results,
                                         "ratios": ratios}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
