"""The built-in synthetic visual dataset: small Pillow drawings with exact answers.

Three families, mixed evenly (item ``i`` belongs to ``families[i % len(families)]``):

- ``math``: a triangle with two labelled angles (find the third), a rectangle with
  labelled sides (area or perimeter), or numbers drawn across the canvas (their sum).
- ``counting``: circles, squares and triangles in several colours ("How many red
  circles are there?"); some images let shapes overlap partially (occlusion).
- ``chart``: a bar chart with month labels and a y axis ("What is the value of bar
  Mar?", "Which bar is the tallest?", "How much greater is bar X than bar Y?").

Each family alternates multiple choice (4 or 5 lettered options listed as
``Choices:\\nA: ...`` lines, answer = a letter) and free-form numeric items. Every item
is drawn from its own RNG seeded by ``(seed, index)``, so ``limit`` yields a prefix of
the same samples and re-running with the same seed gives identical samples and
byte-identical PNGs (written once, under content-hash names, to
``cache_dir/synthetic/seed{seed}``). The samples are indexed there too
(``index-v1-<families>.jsonl``), so loading the same items again (a resumed run) reads
them instead of drawing them; an entry whose image file is missing is drawn again.

``difficulty`` is a logit in about [-2, 2.5] computed from the item's parameters (more
objects, larger numbers, more bars, occlusion, no value labels => harder; free-form is
a little harder than multiple choice) plus a small seeded jitter.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from mmsim.data import dataset
from mmsim.data.files import png_bytes, write_once
from mmsim.data.sample import Sample
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Image
from mmsim.registry import did_you_mean

FAMILIES: tuple[str, ...] = ("math", "counting", "chart")
"""The synthetic task families, in their default mixing order."""

WIDTH, HEIGHT = 320, 240
DIFFICULTY_RANGE = (-2.0, 2.5)
LETTERS = "ABCDE"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 90, 220),
    "green": (30, 150, 60),
    "orange": (245, 150, 20),
    "purple": (140, 60, 180),
}
SHAPES = ("circle", "square", "triangle")
_WHERE = "dataset 'synthetic'"
_OPTION_KEYS = ("seed", "size", "families")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass
class _Item:
    """One generated item before it becomes a :class:`Sample`."""

    task: str
    stem: str
    truth: int | str
    truth_text: str
    distractors: list[str]
    params: dict[str, Any]
    difficulty: float
    image: PILImage.Image


# --------------------------------------------------------------------------- drawing


@cache
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _text(draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str, size: int,
          fill: tuple[int, int, int] | str = "black") -> None:
    """Draw ``text`` centred on ``centre``, kept inside the canvas (works with bitmap and
    FreeType fonts)."""
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = min(max(centre[0] - (left + right) / 2, 2 - left), WIDTH - 2 - right)
    y = min(max(centre[1] - (top + bottom) / 2, 2 - top), HEIGHT - 2 - bottom)
    draw.text((round(x), round(y)), text, font=font, fill=fill)


def _canvas() -> tuple[PILImage.Image, ImageDraw.ImageDraw]:
    img = PILImage.new("RGB", (WIDTH, HEIGHT), "white")
    return img, ImageDraw.Draw(img)


# --------------------------------------------------------------------------- distractors


def _numeric_distractors(truth: int, extra: Sequence[int], *, lo: int = 1,
                         unit: str = "", step: int | None = None,
                         fine: bool = True) -> list[str]:
    """Plausible wrong values: typical mistakes (``extra``), near misses (+-1, +-2 when
    ``fine``) and multiples of ``step`` away; at least four, all distinct and >= ``lo``."""
    step = step or max(1, round(abs(truth) * 0.1))
    near = [truth + d for d in (1, -1, 2, -2)] if fine else []
    near += [truth + d * step for d in (1, -1, 2, -2, 3, 4)]
    out: list[int] = []
    for cand in [*extra, *near]:
        if cand >= lo and cand != truth and cand not in out:
            out.append(cand)
    bump = 3
    while len(out) < 4:
        cand = truth + bump * step
        if cand not in out:
            out.append(cand)
        bump += 1
    return [f"{v}{unit}" for v in out]


def _difficulty_jitter(rng: random.Random) -> float:
    return rng.gauss(0.0, 0.15)


# --------------------------------------------------------------------------- math


def _math_triangle(rng: random.Random) -> _Item:
    round_angles = rng.random() < 0.5
    while True:
        if round_angles:
            a = 5 * rng.randint(5, 22)
            b = 5 * rng.randint(5, (155 - a) // 5)
        else:
            a = rng.randint(25, 110)
            b = rng.randint(25, 155 - a)
        c = 180 - a - b
        if c >= 25:
            break
    angles = [a, b, c]
    unknown = rng.randrange(3)
    # Vertex 0 and 1 form the horizontal base; the apex follows from the law of sines.
    ra, rb, rc = (math.radians(x) for x in angles)
    side = math.sin(rb) / math.sin(rc)
    pts = [(0.0, 0.0), (1.0, 0.0), (side * math.cos(ra), -side * math.sin(ra))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    margin = 34
    scale = min((WIDTH - 2 * margin) / (max(xs) - min(xs)),
                (HEIGHT - 2 * margin) / (max(ys) - min(ys)))
    ox = (WIDTH - scale * (max(xs) - min(xs))) / 2 - scale * min(xs)
    oy = (HEIGHT - scale * (max(ys) - min(ys))) / 2 - scale * min(ys)
    verts = [(ox + scale * x, oy + scale * y) for x, y in pts]
    img, draw = _canvas()
    draw.polygon(verts, outline=(20, 20, 20), width=2)
    cx = sum(v[0] for v in verts) / 3
    cy = sum(v[1] for v in verts) / 3
    for k, (vx, vy) in enumerate(verts):
        # Put the label on the angle's bisector, far enough in for a narrow angle.
        bx = by = 0.0
        for m in (1, 2):
            wx, wy = verts[(k + m) % 3]
            length = math.hypot(wx - vx, wy - vy) or 1.0
            bx, by = bx + (wx - vx) / length, by + (wy - vy) / length
        norm = math.hypot(bx, by) or 1.0
        reach = math.hypot(cx - vx, cy - vy)
        dist = min(max(24.0, 15.0 / math.tan(math.radians(angles[k]) / 2)), 0.8 * reach)
        label = "?" if k == unknown else f"{angles[k]}°"
        _text(draw, (vx + bx / norm * dist, vy + by / norm * dist), label, 14,
              (200, 30, 30) if k == unknown else (20, 20, 20))
    truth = angles[unknown]
    known = [x for k, x in enumerate(angles) if k != unknown]
    extra = [180 - known[0], 180 - known[1], known[0] + known[1], 90 - min(known),
             truth + 10, truth - 10]
    diff = -1.4 + (0.5 if not round_angles else 0.0) + 0.2 * (unknown == 2)
    return _Item(
        task="triangle_angle",
        stem="Two angles of the triangle are labelled. What is the measure, in degrees, "
             "of the angle marked '?'?",
        truth=truth, truth_text=f"{truth}°",
        distractors=_numeric_distractors(truth, extra, unit="°", step=5,
                                         fine=not round_angles),
        params={"angles": angles, "unknown": unknown, "round": round_angles},
        difficulty=diff, image=img)


def _math_rectangle(rng: random.Random) -> _Item:
    big = rng.random() < 0.5
    hi = 25 if big else 12
    w, h = rng.randint(2, hi), rng.randint(2, hi)
    ask = rng.choice(("area", "perimeter"))
    img, draw = _canvas()
    # Draw with the true aspect ratio, clamped so thin rectangles stay visible.
    aspect = min(2.6, max(0.45, w / h))
    box_w, box_h = WIDTH - 110, HEIGHT - 90
    rw = min(box_w, box_h * aspect)
    rh = rw / aspect
    x0, y0 = (WIDTH - rw) / 2 - 10, (HEIGHT - rh) / 2 - 8
    draw.rectangle((x0, y0, x0 + rw, y0 + rh), outline=(20, 20, 20), width=2,
                   fill=(225, 238, 250))
    _text(draw, (x0 + rw / 2, y0 + rh + 16), f"{w} cm", 15)
    _text(draw, (x0 + rw + 30, y0 + rh / 2), f"{h} cm", 15)
    if ask == "area":
        truth = w * h
        extra = [2 * (w + h), w + h, w * h + w, w * h - h, w * (h + 1)]
        stem = "What is the area of the rectangle, in square centimetres?"
        diff = -1.2 + 0.9 * math.log10(truth)
    else:
        truth = 2 * (w + h)
        extra = [w + h, w * h, 2 * w + h, w + 2 * h, 4 * max(w, h)]
        stem = "What is the perimeter of the rectangle, in centimetres?"
        diff = -1.5 + 0.8 * math.log10(truth)
    return _Item(task=f"rectangle_{ask}", stem=stem, truth=truth, truth_text=str(truth),
                 distractors=_numeric_distractors(truth, extra),
                 params={"width": w, "height": h, "ask": ask}, difficulty=diff, image=img)


def _math_sum(rng: random.Random) -> _Item:
    count = rng.randint(2, 5)
    digits = rng.choice((1, 1, 2, 2, 3))
    lo, hi = (1, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)
    numbers = [rng.randint(lo, hi) for _ in range(count)]
    img, draw = _canvas()
    cells = rng.sample([(c, r) for c in range(4) for r in range(3)], count)
    for n, (col, row) in zip(numbers, cells, strict=True):
        cx = 40 + 80 * col + rng.randint(-12, 12)
        cy = 40 + 80 * row + rng.randint(-10, 10)
        colour = rng.choice(list(COLOURS.values()))
        _text(draw, (cx, cy), str(n), rng.randint(22, 32), colour)
    truth = sum(numbers)
    extra = [truth - numbers[0], truth - numbers[-1], truth + 10 ** (digits - 1),
             truth - 10 ** (digits - 1), truth + 10]
    diff = -1.7 + 0.5 * (count - 2) + 0.7 * (digits - 1)
    return _Item(task="sum", stem="What is the sum of all the numbers shown in the image?",
                 truth=truth, truth_text=str(truth),
                 distractors=_numeric_distractors(truth, extra),
                 params={"numbers": numbers}, difficulty=diff, image=img)


def _gen_math(rng: random.Random, fmt: str) -> _Item:
    del fmt
    kind = rng.choice(("triangle", "rectangle", "sum"))
    if kind == "triangle":
        return _math_triangle(rng)
    if kind == "rectangle":
        return _math_rectangle(rng)
    return _math_sum(rng)


# --------------------------------------------------------------------------- counting


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float,
                colour: tuple[int, int, int]) -> None:
    outline = (30, 30, 30)
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=outline)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle((x - s, y - s, x + s, y + s), fill=colour, outline=outline)
    else:
        draw.polygon([(x, y - r), (x + r * 0.95, y + r * 0.75), (x - r * 0.95, y + r * 0.75)],
                     fill=colour, outline=outline)


def _positions(rng: random.Random, n: int, occlusion: bool) -> list[tuple[int, int, int]]:
    """``n`` (x, y, r) positions: a jittered grid, or overlapping ones whose centres stay
    visible (centres at least 1.5 r apart) when ``occlusion``."""
    if occlusion:
        out: list[tuple[int, int, int]] = []
        for _ in range(n):
            for _try in range(300):
                r = rng.randint(12, 16)
                x, y = rng.randint(r + 4, WIDTH - r - 4), rng.randint(r + 4, HEIGHT - r - 4)
                if all(math.hypot(x - px, y - py) >= 1.5 * max(r, pr) for px, py, pr in out):
                    out.append((x, y, r))
                    break
            else:
                break
        if len(out) == n:
            return out
    cells = rng.sample([(c, r) for c in range(8) for r in range(6)], n)
    return [(20 + 40 * c + rng.randint(-4, 4), 20 + 40 * r + rng.randint(-4, 4),
             rng.randint(11, 15)) for c, r in cells]


def _gen_counting(rng: random.Random, fmt: str) -> _Item:
    del fmt
    total = rng.randint(4, 20)
    target_n = rng.randint(1, min(9, total - 2))
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    occlusion = total >= 6 and rng.random() < 0.3
    others: list[tuple[str, str]] = []
    for _ in range(total - target_n):
        while True:
            oc, os_ = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            if (oc, os_) != (colour, shape):
                break
        others.append((os_, oc))
    kinds = [(shape, colour)] * target_n + others
    rng.shuffle(kinds)
    pos = _positions(rng, total, occlusion)
    img, draw = _canvas()
    objects: list[dict[str, Any]] = []
    for (s, c), (x, y, r) in zip(kinds, pos, strict=True):
        _draw_shape(draw, s, x, y, r, COLOURS[c])
        objects.append({"shape": s, "colour": c, "x": x, "y": y, "r": r})
    same_shape = sum(1 for s, _ in kinds if s == shape)
    same_colour = sum(1 for _, c in kinds if c == colour)
    confusers = same_shape + same_colour - 2 * target_n
    truth = target_n
    diff = (-2.0 + 0.09 * total + 0.15 * target_n + 0.9 * occlusion
            + 0.04 * confusers)
    return _Item(
        task="count", stem=f"How many {colour} {shape}s are there in the image?",
        truth=truth, truth_text=str(truth),
        distractors=_numeric_distractors(truth, [same_shape, same_colour, total], lo=0,
                                         step=1),
        params={"target_shape": shape, "target_colour": colour, "total": total,
                "occlusion": occlusion, "objects": objects},
        difficulty=diff, image=img)


# --------------------------------------------------------------------------- chart


def _gen_chart(rng: random.Random, fmt: str) -> _Item:
    n = rng.randint(3, 8)
    start = rng.randint(0, len(MONTHS) - n)
    labels = list(MONTHS[start:start + n])
    unit = rng.choice((1, 2, 5, 10))
    step = unit * rng.choice((1, 2))
    value_labels = rng.random() < 0.4
    values = [unit * rng.randint(1, 10) for _ in range(n)]
    tasks = ["value", "difference"] + (["tallest"] if fmt == "choice" and n >= 4 else [])
    task = rng.choice(tasks)
    if task == "tallest":
        top = max(values)
        tops = [i for i, v in enumerate(values) if v == top]
        if len(tops) > 1:
            values[rng.choice(tops)] = top + unit
    if task == "difference" and len(set(values)) == 1:
        values[rng.randrange(n)] += unit
    ymax = max(step, math.ceil(max(values) / step) * step)

    img, draw = _canvas()
    left, right, top_y, bottom = 42, WIDTH - 12, 18, HEIGHT - 30
    plot_h = bottom - top_y
    for tick in range(0, ymax + 1, step):
        y = bottom - plot_h * tick / ymax
        draw.line((left, y, right, y), fill=(215, 215, 215))
        draw.line((left - 4, y, left, y), fill=(20, 20, 20))
        _text(draw, (left - 18, y), str(tick), 11)
    draw.line((left, top_y - 4, left, bottom), fill=(20, 20, 20), width=2)
    draw.line((left, bottom, right, bottom), fill=(20, 20, 20), width=2)
    slot = (right - left) / n
    bar_w = slot * 0.6
    colour = rng.choice(list(COLOURS.values()))
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        cx = left + slot * (i + 0.5)
        y = bottom - plot_h * v / ymax
        draw.rectangle((cx - bar_w / 2, y, cx + bar_w / 2, bottom - 1), fill=colour,
                       outline=(30, 30, 30))
        _text(draw, (cx, bottom + 13), lab, 12)
        if value_labels:
            _text(draw, (cx, y - 8), str(v), 11)

    params: dict[str, Any] = {"labels": labels, "values": values, "unit": unit, "step": step,
                              "value_labels": value_labels}
    diff = (-1.4 + 0.14 * n + 0.7 * (step != unit) + 0.7 * (not value_labels)
            + 0.25 * math.log10(unit))
    if task == "value":
        i = rng.randrange(n)
        params["target"] = labels[i]
        truth: int | str = values[i]
        others = [v for v in values if v != values[i]]
        distractors = _numeric_distractors(values[i], [*others, values[i] + unit,
                                                      values[i] - unit], step=unit,
                                           fine=unit == 1)
        stem = f"What is the value of bar {labels[i]}?"
        truth_text = str(values[i])
    elif task == "difference":
        while True:
            i, j = rng.sample(range(n), 2)
            if values[i] != values[j]:
                break
        if values[i] < values[j]:
            i, j = j, i
        params["target"], params["other"] = labels[i], labels[j]
        truth = values[i] - values[j]
        distractors = _numeric_distractors(truth, [values[i], values[j], truth + unit,
                                                   truth - unit], step=unit,
                                           fine=unit == 1)
        stem = f"How much greater is the value of bar {labels[i]} than that of bar {labels[j]}?"
        truth_text = str(truth)
        diff += 0.6
    else:
        order = sorted(range(n), key=lambda k: -values[k])
        truth = labels[order[0]]
        truth_text = truth
        distractors = [labels[k] for k in order[1:]]
        stem = "Which bar is the tallest?"
        diff -= 0.6
    return _Item(task=f"chart_{task}", stem=stem, truth=truth, truth_text=truth_text,
                 distractors=distractors, params=params, difficulty=diff, image=img)


_GENERATORS: dict[str, Callable[[random.Random, str], _Item]] = {
    "math": _gen_math,
    "counting": _gen_counting,
    "chart": _gen_chart,
}


# --------------------------------------------------------------------------- assembly


def _options(options: dict[str, Any]) -> tuple[int, int, tuple[str, ...]]:
    unknown = sorted(set(options) - set(_OPTION_KEYS))
    if unknown:
        hint = did_you_mean(str(unknown[0]), list(_OPTION_KEYS))
        raise DataError(f"unknown option(s) {', '.join(map(repr, unknown))}{hint}; known: "
                        + ", ".join(_OPTION_KEYS), where=_WHERE, field=str(unknown[0]))
    seed = options.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}", where=_WHERE,
                        field="seed")
    size = options.get("size", 120)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DataError(f"size must be a positive integer, got {size!r}", where=_WHERE,
                        field="size")
    fams = options.get("families", list(FAMILIES))
    if isinstance(fams, str):
        fams = [fams]
    if not isinstance(fams, list | tuple) or not fams:
        raise DataError(f"families must be a non-empty list drawn from {list(FAMILIES)}",
                        where=_WHERE, field="families")
    chosen: list[str] = []
    for fam in fams:
        if fam not in FAMILIES:
            raise DataError(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}",
                            where=_WHERE, field="families")
        if fam not in chosen:
            chosen.append(fam)
    return seed, size, tuple(chosen)


def make_sample(seed: int, index: int, families: Sequence[str] = FAMILIES,
                image_dir: Path | None = None) -> tuple[Sample, bytes]:
    """Generate item ``index`` of the synthetic set for ``seed``: the sample and its PNG.

    ``image_dir`` is where the PNG is written (once); without it the image is
    referenced under a ``synthetic://`` URI and not written.
    """
    rng = random.Random(f"mmsim-synthetic:{seed}:{index}")
    nfam = len(families)
    family = families[index % nfam]
    fmt = "choice" if (index // nfam) % 2 == 0 else "free"
    item = _GENERATORS[family](rng, fmt)

    png = png_bytes(item.image)
    digest = hashlib.sha256(png).hexdigest()
    name = f"{digest[:32]}.png"
    uri = str(write_once(image_dir, name, png)) if image_dir else f"synthetic://{name}"
    image = Image(uri=uri, sha256=digest, mime="image/png", width=WIDTH, height=HEIGHT)

    if fmt == "choice":
        k = min(rng.choice((4, 5)), len(item.distractors) + 1)
        opts = [item.truth_text, *rng.sample(item.distractors, k - 1)]
        rng.shuffle(opts)
        letters = tuple(LETTERS[:k])
        answer = letters[opts.index(item.truth_text)]
        question = item.stem + "\nChoices:\n" + "\n".join(
            f"{letter}: {opt}" for letter, opt in zip(letters, opts, strict=True))
        answer_format = AnswerFormat(kind="choice", letters=letters, options=tuple(opts))
        diff = item.difficulty - 0.2
    else:
        answer = str(item.truth)
        question = item.stem + "\nAnswer with a single number."
        answer_format = AnswerFormat(kind="numeric")
        diff = item.difficulty + 0.2
    diff += _difficulty_jitter(rng)
    diff = round(min(DIFFICULTY_RANGE[1], max(DIFFICULTY_RANGE[0], diff)), 4)
    sample = Sample(
        id=f"syn-{index:05d}",
        question=question,
        images=(image,),
        answer=answer,
        answer_format=answer_format,
        category=family,
        difficulty=diff,
        meta={"family": family, "format": fmt, "task": item.task, "seed": seed,
              "index": index, "truth": item.truth, "truth_text": item.truth_text,
              "params": item.params},
    )
    return sample, png


@dataset("synthetic")
def load_synthetic(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                   limit: int | None) -> list[Sample]:
    """Built-in synthetic visual math, counting and chart items (seeded, exact answers).

    Options:
        seed: the RNG seed (default 0).
        size: how many items (default 120).
        families: which of ``math``, ``counting``, ``chart`` to mix (default all).
    """
    del base_dir
    seed, size, families = _options(options)
    if limit is not None:
        if limit < 0:
            raise DataError(f"limit must be >= 0, got {limit}", where=_WHERE, field="limit")
        size = min(size, limit)
    folder = cache_dir / "synthetic" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / f"index-{_INDEX_VERSION}-{'-'.join(families)}.jsonl"
    cached = _read_index(index, size)
    samples: list[Sample] = []
    fresh: list[str] = []
    for i in range(size):
        s = cached[i] if i < len(cached) else None
        if s is None or not all(Path(im.uri).is_file() for im in s.images):
            s = make_sample(seed, i, families, folder)[0]
            fresh.append(s.model_dump_json())
        samples.append(s)
    if fresh:
        _write_index(index, [s.model_dump_json() for s in samples])
    return samples


_INDEX_VERSION = "v1"  # bump when generation changes, so stale indexes are ignored


def _read_index(path: Path, size: int) -> list[Sample | None]:
    """The indexed samples (a line that does not parse is drawn again)."""
    out: list[Sample | None] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if len(out) >= size:
                    break
                try:
                    out.append(Sample.model_validate_json(line))
                except ValueError:
                    out.append(None)
    except (OSError, UnicodeDecodeError):
        return []
    return out


def _write_index(path: Path, lines: list[str]) -> None:
    """Replace the index atomically (it only ever grows: a longer one is kept)."""
    try:
        if len(_read_index(path, len(lines) + 1)) > len(lines):
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jsonl")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # the index is a cache: failing to write it only costs a redraw later


__all__ = ["FAMILIES", "load_synthetic", "make_sample"]
