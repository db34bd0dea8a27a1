"""Classification data: the class list, labelled images, multilabel ground truth.

An item is a :class:`~mmsim.data.Sample` whose ``answer`` is its single (original) label
and whose ``meta`` holds ``label`` (the same) and ``labels`` (the multilabel set, ReaL /
ReGT style: a prediction is correct if it is in the set; an empty set means the item has
no valid label and is left out of multilabel accuracy, as ReaL does).

Built-in loaders (``dataset.name``):

* ``synthetic-objects`` — the embedded default: Pillow drawings of 48 classes (8 shapes x
  6 colours), some with two objects (two labels) and some with a deliberately wrong
  original label (the re-annotation fixes it), deterministic from ``seed``.
* ``imagenet-labels`` — local images + a class list + a label file, either a relabel CSV
  (rows ``id, original_label, proposed_labels``, the proposed labels comma-separated) or a
  ReaL-style JSON (``real.json``: a list of label-index lists aligned with the images
  sorted by file name) with the original labels in a separate file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from PIL import ImageDraw

from mmsim.data import safeio
from mmsim.data.files import png_bytes, write_once
from mmsim.data.sample import Sample
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Image
from mmsim.registry import Registry

FloatMatrix = NDArray[np.float64]


@dataclass(frozen=True)
class ClassificationData:
    """What a classification loader returns.

    Attributes:
        name: the loader's name.
        classes: the class names, in index order (the closed-world list).
        items: the labelled images (see the module docstring for ``meta``).
        synonyms: paraphrases of class names (used by simulated agents for out-of-list
            answers; empty for real data).
        similarity: a class x class "visual" similarity in [0, 1] that simulated agents
            confuse along (None: simulated agents use the string encoder's similarity).
    """

    name: str
    classes: tuple[str, ...]
    items: tuple[Sample, ...]
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    similarity: FloatMatrix | None = None


def item_label(sample: Sample) -> str:
    """The single (original) label of an item."""
    return str(sample.meta.get("label", sample.answer))


def item_labels(sample: Sample) -> tuple[str, ...]:
    """The multilabel ground truth of an item (may be empty: no valid label)."""
    labels = sample.meta.get("labels")
    if labels is None:
        return (item_label(sample),)
    return tuple(str(x) for x in labels)


class ClassificationLoader(Protocol):
    """``(options, *, base_dir, cache_dir, limit) -> ClassificationData`` (options: the
    scenario's ``dataset`` mapping minus ``name``)."""

    def __call__(self, options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 limit: int | None) -> ClassificationData: ...


CLS_DATASETS: Registry[ClassificationLoader] = Registry("classification dataset")


def classification_dataset(name: str) -> Callable[[ClassificationLoader], ClassificationLoader]:
    """Register a classification loader under ``name`` (usable in ``kind: classification``
    scenarios)."""
    return CLS_DATASETS.decorator(name)


def make_item(item_id: str, image: Image, label: str, labels: Sequence[str], *,
              category: str | None = None, difficulty: float | None = None,
              meta: dict[str, Any] | None = None) -> Sample:
    """A classification item as a :class:`Sample`."""
    labels = tuple(labels)
    cat = category or ("multi-label" if len(set(labels)) > 1 else
                       "relabelled" if labels and label not in labels else "single")
    return Sample(id=item_id, question="What does the image show?", images=(image,),
                  answer=label, answer_format=AnswerFormat(kind="exact"), category=cat,
                  difficulty=difficulty,
                  meta={**(meta or {}), "label": label, "labels": list(labels)})


def _int_option(options: dict[str, Any], key: str, default: int, where: str,
                lo: int = 0) -> int:
    v = options.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise DataError(f"{key} must be an integer >= {lo}, got {v!r}", where=where, field=key)
    return v


def _float_option(options: dict[str, Any], key: str, default: float, where: str) -> float:
    v = options.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 1:
        raise DataError(f"{key} must be a number in [0, 1], got {v!r}", where=where, field=key)
    return float(v)


def _check_keys(options: dict[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(map(repr, unknown))}; known: "
                        + ", ".join(known), where=where, field=unknown[0])


# --------------------------------------------------------------------------- synthetic

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "orange": (245, 140, 20), "yellow": (230, 200, 30),
    "green": (40, 160, 60), "blue": (40, 90, 220), "purple": (140, 60, 180),
}
SHAPES = ("circle", "ring", "square", "diamond", "triangle", "star", "hexagon", "cross")
_NEAR_COLOURS = {frozenset(p) for p in (("red", "orange"), ("orange", "yellow"),
                                        ("yellow", "green"), ("green", "blue"),
                                        ("blue", "purple"), ("purple", "red"))}
_NEAR_SHAPES = {frozenset(p) for p in (("circle", "ring"), ("circle", "hexagon"),
                                       ("square", "diamond"), ("square", "hexagon"),
                                       ("triangle", "diamond"), ("triangle", "star"),
                                       ("star", "cross"))}
COLOUR_SYNONYMS = {"red": ("crimson", "scarlet"), "orange": ("amber", "tangerine"),
                   "yellow": ("golden", "lemon"), "green": ("emerald", "lime"),
                   "blue": ("navy", "azure"), "purple": ("violet", "lilac")}
SHAPE_SYNONYMS = {"circle": ("disc", "dot"), "ring": ("donut", "hoop"),
                  "square": ("box", "block"), "diamond": ("rhombus", "lozenge"),
                  "triangle": ("wedge", "pyramid"), "star": ("pentagram", "starburst"),
                  "hexagon": ("six-sided polygon", "honeycomb cell"),
                  "cross": ("plus sign", "plus")}
SIZE = 128
_SYN_WHERE = "dataset 'synthetic-objects'"
_SYN_KEYS = ("seed", "size", "multi_label", "label_noise")


def synthetic_classes() -> tuple[str, ...]:
    """The 48 class names of ``synthetic-objects`` ("red circle", ...), colour-major."""
    return tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)


def _part_sim(a: str, b: str, near: set[frozenset[str]], adjacent: float,
              other: float) -> float:
    return 1.0 if a == b else adjacent if frozenset((a, b)) in near else other


def synthetic_similarity() -> FloatMatrix:
    """Visual similarity of the synthetic classes: the mean of a colour similarity (1 same,
    0.6 neighbours on the colour wheel, 0.3 else) and a shape similarity (1 same, 0.6
    similar outlines such as circle/ring, 0.2 else)."""
    classes = [c.split(" ", 1) for c in synthetic_classes()]
    n = len(classes)
    m = np.zeros((n, n))
    for i, (ci, si) in enumerate(classes):
        for j, (cj, sj) in enumerate(classes):
            m[i, j] = 0.5 * (_part_sim(ci, cj, _NEAR_COLOURS, 0.6, 0.3)
                             + _part_sim(si, sj, _NEAR_SHAPES, 0.6, 0.2))
    return m


def synthetic_synonyms() -> dict[str, tuple[str, ...]]:
    """Out-of-list paraphrases of each synthetic class ("crimson disc", "red dot", ...)."""
    out: dict[str, tuple[str, ...]] = {}
    for c in COLOURS:
        for s in SHAPES:
            names = [f"{cs} {s}" for cs in COLOUR_SYNONYMS[c]]
            names += [f"{c} {ss}" for ss in SHAPE_SYNONYMS[s]]
            names += [f"{COLOUR_SYNONYMS[c][0]} {SHAPE_SYNONYMS[s][0]}", f"{c} {s} shape"]
            out[f"{c} {s}"] = tuple(names)
    return out


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float
             ) -> list[tuple[float, float]]:
    def ring(n: int, radii: Sequence[float], phase: float) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            a = phase + rot + 2 * math.pi * k / n
            rr = radii[k % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [r], math.pi / 4)
    if shape == "diamond":
        return ring(4, [r * 1.1, r * 0.75], 0.0)
    if shape == "triangle":
        return ring(3, [r], -math.pi / 2)
    if shape == "star":
        return ring(10, [r, r * 0.45], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [r], 0.0)
    # cross: a plus sign of arm half-width w
    w = r * 0.33
    base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
            (-r, w), (-r, -w), (-w, -w)]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]


def _draw_object(draw: ImageDraw.ImageDraw, cls: str, cx: float, cy: float, r: float,
                 rot: float) -> None:
    colour_name, shape = cls.split(" ", 1)
    colour = COLOURS[colour_name]
    outline = (30, 30, 30)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=outline)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour,
                     width=max(3, int(r * 0.35)))
    else:
        draw.polygon(_polygon(shape, cx, cy, r, rot), fill=colour, outline=outline)


def make_synthetic_item(seed: int, index: int, *, multi_label: float = 0.25,
                        label_noise: float = 0.06, image_dir: Path | None = None
                        ) -> tuple[Sample, bytes]:
    """Item ``index`` of ``synthetic-objects`` for ``seed``: the sample and its PNG.

    One object (or, with probability ``multi_label``, two objects of different classes:
    two labels, the larger one is the original label); with probability ``label_noise``
    the original label is a near class (a labelling mistake) and the multilabel set holds
    the true class(es), as a re-annotation would.
    """
    rng = random.Random(f"mmsim-cls-objects:{seed}:{index}")
    classes = synthetic_classes()
    sim = _SIMILARITY
    primary = classes[index % len(classes)] if index < len(classes) else rng.choice(classes)
    two = rng.random() < multi_label
    noisy = rng.random() < label_noise
    img = PILImage.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(img)
    shade = rng.randint(205, 255)
    draw.rectangle((0, 0, SIZE, SIZE), fill=(shade, shade, rng.randint(205, 255)))
    clutter = rng.randint(0, 40)
    for _ in range(clutter):
        x, y = rng.uniform(0, SIZE), rng.uniform(0, SIZE)
        g = rng.randint(120, 200)
        draw.point((x, y), fill=(g, g, g))
    labels = [primary]
    if two:
        secondary = rng.choice([c for c in classes if c != primary])
        labels.append(secondary)
        r1, r2 = rng.uniform(24, 30), rng.uniform(14, 22)
        _draw_object(draw, primary, SIZE * 0.32, SIZE * rng.uniform(0.35, 0.65), r1,
                     rng.uniform(-0.3, 0.3))
        _draw_object(draw, secondary, SIZE * 0.75, SIZE * rng.uniform(0.3, 0.7), r2,
                     rng.uniform(-0.3, 0.3))
        radius = r1
    else:
        radius = rng.uniform(14, 40)
        _draw_object(draw, primary, SIZE / 2 + rng.uniform(-14, 14),
                     SIZE / 2 + rng.uniform(-14, 14), radius, rng.uniform(-0.4, 0.4))
    label = primary
    if noisy:
        i = classes.index(primary)
        near = [classes[j] for j in np.argsort(-sim[i], kind="stable")[1:4]]
        label = rng.choice(near)
    difficulty = (-1.2 + 1.6 * (40 - radius) / 26 + 0.5 * two + 0.012 * clutter
                  + 0.6 * (shade < 225) + rng.gauss(0.0, 0.15))
    png = png_bytes(img)
    digest = hashlib.sha256(png).hexdigest()
    name = f"{digest[:32]}.png"
    uri = str(write_once(image_dir, name, png)) if image_dir else f"synthetic://{name}"
    image = Image(uri=uri, sha256=digest, mime="image/png", width=SIZE, height=SIZE)
    sample = make_item(f"obj-{index:05d}", image, label, labels,
                       difficulty=round(min(2.5, max(-2.0, difficulty)), 4),
                       meta={"seed": seed, "index": index, "noisy_label": noisy})
    return sample, png


_SIMILARITY = synthetic_similarity()


@classification_dataset("synthetic-objects")
def load_synthetic_objects(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                           limit: int | None) -> ClassificationData:
    """Embedded synthetic objects: 48 classes (shape x colour), some two-label images.

    Some original labels are wrong (the label set fixes them); seeded.

    Options:
        seed: RNG seed (default 0).
        size: how many images (default 96; the first 48 cover every class once).
        multi_label: share of two-object (two-label) images (default 0.25).
        label_noise: share of images whose original label is wrong (default 0.06).
    """
    del base_dir
    _check_keys(options, _SYN_KEYS, _SYN_WHERE)
    seed = _int_option(options, "seed", 0, _SYN_WHERE)
    size = _int_option(options, "size", 96, _SYN_WHERE, lo=1)
    multi = _float_option(options, "multi_label", 0.25, _SYN_WHERE)
    noise = _float_option(options, "label_noise", 0.06, _SYN_WHERE)
    if limit is not None:
        size = min(size, limit)
    folder = cache_dir / "classification" / f"objects-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    items = tuple(make_synthetic_item(seed, i, multi_label=multi, label_noise=noise,
                                      image_dir=folder)[0] for i in range(size))
    return ClassificationData("synthetic-objects", synthetic_classes(), items,
                              synonyms=synthetic_synonyms(), similarity=_SIMILARITY)


# --------------------------------------------------------------------------- label files

_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassList:
    """A class list: ``names[i]`` is class ``i``; ``keys[i]`` its id (a WordNet id such as
    ``n01440764`` where the file gives one, else the name)."""

    keys: tuple[str, ...]
    names: tuple[str, ...]

    def resolve(self, label: str) -> str | None:
        """A class name from a key, a name, or a 0-based index; None if unknown."""
        s = label.strip()
        lookup = self._lookup()
        if s in lookup:
            return lookup[s]
        if s.isdigit() and int(s) < len(self.names):
            return self.names[int(s)]
        return lookup.get(s.lower())

    def _lookup(self) -> dict[str, str]:
        d: dict[str, str] = {}
        for k, n in zip(self.keys, self.names, strict=True):
            d.setdefault(k, n)
            d.setdefault(n, n)
            d.setdefault(n.lower(), n)
        return d


def read_class_list(path: Path) -> ClassList:
    """Read a class list: one class per line, as ``name``, ``key<TAB>name``, or an ImageNet
    synset line ``n01440764 tench, Tinca tinca`` (the first comma-separated name is used).
    Blank lines and ``#`` comments are skipped; duplicate names are an error."""
    keys: list[str] = []
    names: list[str] = []
    try:
        lines = safeio.read_text(path, encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class list: {exc}", where=str(path)) from None
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            key, name = (x.strip() for x in line.split("\t", 1))
        else:
            first, _, rest = line.partition(" ")
            if _WNID.match(first) and rest.strip():
                key, name = first, rest.split(",")[0].strip()
            else:
                key = name = line
        if not name:
            raise DataError("empty class name", where=f"{path}:{no}")
        if name in names:
            raise DataError(f"duplicate class name {name!r}", where=f"{path}:{no}")
        keys.append(key)
        names.append(name)
    if len(names) < 2:
        raise DataError("a class list needs at least 2 classes", where=str(path))
    return ClassList(tuple(keys), tuple(names))


@dataclass(frozen=True)
class RelabelRow:
    """One row of a relabel CSV: the image id, its original label and the proposed labels
    (raw strings as in the file; resolve them with :meth:`ClassList.resolve`)."""

    id: str
    original: str
    proposed: tuple[str, ...]
    line: int


def read_relabel_csv(path: Path) -> list[RelabelRow]:
    """Read ``id, original_label, proposed_labels`` rows (a header row is optional; the
    proposed labels are comma-separated inside one quoted field, or spill over into the
    following fields when unquoted; an empty field means no proposal)."""
    try:
        text = safeio.read_text(path, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the label file: {exc}", where=str(path)) from None
    rows: list[RelabelRow] = []
    seen: set[str] = set()
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    for row in reader:
        no = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not rows and cells[0].lower() in ("id", "image", "image_id", "filename"):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise DataError("expected 'id, original_label, proposed_labels'",
                            where=f"{path}:{no}")
        proposed = tuple(x.strip() for c in cells[2:] for x in c.split(",") if x.strip())
        if cells[0] in seen:
            raise DataError(f"duplicate id {cells[0]!r}", where=f"{path}:{no}")
        seen.add(cells[0])
        rows.append(RelabelRow(cells[0], cells[1], proposed, no))
    return rows


def write_relabel_csv(path: Path, rows: Sequence[tuple[str, str, Sequence[str]]]) -> None:
    """Write ``id, original_label, proposed_labels`` rows (with a header)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "original_label", "proposed_labels"])
        for rid, orig, proposed in rows:
            w.writerow([rid, orig, ",".join(proposed)])


def read_real_json(path: Path) -> list[list[int]]:
    """Read a ReaL-style ``real.json``: a JSON list (one entry per validation image, in
    file-name order) of lists of class indices; an empty list means no valid label."""
    try:
        data = json.loads(safeio.read_text(path, encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the ReaL label file: {exc}", where=str(path)) from None
    if not isinstance(data, list):
        raise DataError("expected a JSON list of label-index lists", where=str(path))
    out: list[list[int]] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in entry):
            raise DataError(f"entry {i} is not a list of non-negative integers",
                            where=str(path), field=str(i))
        out.append(list(entry))
    return out


def read_original_labels(path: Path) -> list[tuple[str | None, str]]:
    """Original single labels, one per line: ``label`` or ``filename label`` (as in
    ``val.txt``); labels are indices, keys or names (resolved by the caller)."""
    out: list[tuple[str | None, str]] = []
    try:
        lines = safeio.read_text(path, encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the original labels: {exc}", where=str(path)) from None
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        out.append((parts[0], parts[1]) if len(parts) == 2 else (None, parts[0]))
    return out


_IMG_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".JPEG"}
_IN_WHERE = "dataset 'imagenet-labels'"
_IN_KEYS = ("images", "classes", "labels", "format", "original", "empty_proposed")


def _find_image(folder: Path, image_id: str) -> Path | None:
    p = folder / image_id
    if p.is_file():
        return p
    for cand in sorted(folder.glob(f"{glob_escape(image_id)}.*")):
        if cand.suffix in _IMG_SUFFIXES or cand.suffix.lower() in _IMG_SUFFIXES:
            return cand
    return None


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def _path_option(options: dict[str, Any], key: str, base_dir: Path) -> Path:
    v = options.get(key)
    if not isinstance(v, str) or not v:
        raise DataError(f"{key} must be a path", where=_IN_WHERE, field=key)
    p = Path(v).expanduser()
    return p if p.is_absolute() else base_dir / p


@classification_dataset("imagenet-labels")
def load_imagenet_labels(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                         limit: int | None) -> ClassificationData:
    """Local images with ImageNet-style labels: a relabel CSV or a ReaL JSON.

    Options:
        images: the image folder.
        classes: the class list (``name``, ``key<TAB>name`` or synset lines).
        labels: ``*.csv`` (``id, original_label, proposed_labels``) or ``*.json`` (ReaL).
        format: ``csv`` or ``real`` (default: from the file suffix).
        original: (ReaL) the original labels, one per line aligned with the sorted
            images (``label`` or ``filename label``).
        empty_proposed: (CSV) an empty proposal means the original label stands
            (``original``, default) or the image has no valid label (``exclude``).
    """
    del cache_dir
    _check_keys(options, _IN_KEYS, _IN_WHERE)
    images_dir = _path_option(options, "images", base_dir)
    if not images_dir.is_dir():
        raise DataError("image folder not found", where=str(images_dir), field="images")
    cl = read_class_list(_path_option(options, "classes", base_dir))
    label_path = _path_option(options, "labels", base_dir)
    fmt = options.get("format") or ("real" if label_path.suffix.lower() == ".json" else "csv")
    if fmt not in ("csv", "real"):
        raise DataError(f"format must be 'csv' or 'real', got {fmt!r}", where=_IN_WHERE,
                        field="format")
    empty = options.get("empty_proposed", "original")
    if empty not in ("original", "exclude"):
        raise DataError("empty_proposed must be 'original' or 'exclude'", where=_IN_WHERE,
                        field="empty_proposed")

    def resolve(label: str, where: str) -> str:
        name = cl.resolve(label)
        if name is None:
            raise DataError(f"unknown class {label!r} (not a key, name or index of the "
                            "class list)", where=where)
        return name

    def _image(img: Path, where: str) -> Image:  # no device, pipe or oversized file
        safeio.check_regular(img, safeio.MAX_IMAGE_BYTES, what=f"image file {img}", where=where)
        return Image.from_path(img)

    items: list[Sample] = []
    if fmt == "csv":
        for row in read_relabel_csv(label_path):
            if limit is not None and len(items) >= limit:
                break
            where = f"{label_path}:{row.line}"
            img = _find_image(images_dir, row.id)
            if img is None:
                raise DataError(f"image {row.id!r} not found in {images_dir}", where=where)
            original = resolve(row.original, where)
            proposed = tuple(dict.fromkeys(resolve(x, where) for x in row.proposed))
            labels = proposed or ((original,) if empty == "original" else ())
            items.append(make_item(row.id, _image(img, where), original, labels))
    else:
        if "original" not in options:
            raise DataError("a ReaL label file needs 'original' (the original labels)",
                            where=_IN_WHERE, field="original")
        real = read_real_json(label_path)
        orig_path = _path_option(options, "original", base_dir)
        originals = read_original_labels(orig_path)
        files = sorted(p for p in images_dir.iterdir()
                       if p.is_file() and p.suffix.lower() in {s.lower() for s in _IMG_SUFFIXES})
        if not len(files) == len(real) == len(originals):
            raise DataError(f"{len(files)} images, {len(real)} ReaL entries and "
                            f"{len(originals)} original labels must align", where=_IN_WHERE,
                            field="labels")
        for i, (img, idx, (fname, orig)) in enumerate(zip(files, real, originals,
                                                          strict=True)):
            if limit is not None and len(items) >= limit:
                break
            if fname is not None and fname != img.name:
                raise DataError(f"line {i + 1} names {fname!r} but image {i} is {img.name!r}",
                                where=str(orig_path))
            bad = [x for x in idx if x >= len(cl.names)]
            if bad:
                raise DataError(f"class index {bad[0]} out of range ({len(cl.names)} "
                                "classes)", where=str(label_path), field=str(i))
            original = resolve(orig, f"{orig_path}:{i + 1}")
            items.append(make_item(img.stem, _image(img, str(img)), original,
                                   [cl.names[x] for x in idx]))
    if not items:
        raise DataError("no labelled images", where=str(label_path))
    return ClassificationData("imagenet-labels", cl.names, tuple(items))


__all__ = ["CLS_DATASETS", "ClassList", "ClassificationData", "ClassificationLoader",
           "RelabelRow", "classification_dataset", "item_label", "item_labels",
           "load_imagenet_labels", "load_synthetic_objects", "make_item",
           "make_synthetic_item", "read_class_list", "read_original_labels",
           "read_real_json", "read_relabel_csv", "synthetic_classes", "synthetic_similarity",
           "synthetic_synonyms", "write_relabel_csv"]


# --------------------------------------------------------------------------- field-map readers


def _reader(fmt: str | None) -> ClassificationLoader:
    def load(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
             limit: int | None) -> ClassificationData:
        from mmsim.data.fields import load_labelled

        classes, mapped = load_labelled(options, base_dir=base_dir, cache_dir=cache_dir,
                                        limit=limit, fmt=fmt)
        items = tuple(make_item(m.sample.id, m.sample.images[0], m.label or m.labels[0],
                                m.labels, meta=m.sample.meta) for m in mapped)
        return ClassificationData(fmt or "table", classes, items)

    return load


def _register_readers() -> None:
    from mmsim.data.readers import READERS

    for name, doc in READERS.items():
        CLS_DATASETS.register(name, _reader(None if name == "table" else name),
                              doc=f"{doc.rstrip('.')}; a label column (ClassLabel names) "
                                  "or a multilabel list column.")


_register_readers()
