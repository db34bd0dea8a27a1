"""Datasets of the video protocol (``kind: video``, docs/video.md).

* ``seed-bench-r1`` — the published SEED-Bench-R1 layout (HF ``TencentARC/SEED-Bench-R1``):
  ``annotations/validation_L1.jsonl`` (L2, L3) and ``annotations/training_6k.jsonl``
  (the annotation files may also sit at the root), videos in
  ``videos/<video_source>/<video_basename>``, current-observation images in
  ``images/<video_source>/<current_observation_basename>``. Validation rows carry
  ``choice_a``..``choice_d`` and ``golden_choice_idx`` (a letter); training rows carry
  ``negative_answers`` instead: three of them (a seeded draw per row) and the answer are
  shuffled into four options. The video is part of the item only when
  ``task_progress_metadata`` is non-empty; the current-observation image always is.
* ``synthetic-video`` — the embedded default: short clips drawn with Pillow (objects moving
  in "environments" that differ in palette and background), written *in the SEED-Bench-R1
  layout* (mp4 through PyAV, or animated GIF when PyAV is not installed) and then read by
  the ``seed-bench-r1`` loader, so the default exercises the real loading path. Levels:
  **L1** training environments and training task, **L2** new environments, same task,
  **L3** new environments and a new task; ``train`` rows (training environments and task,
  with ``negative_answers``) feed rollouts.

Every item is a :class:`~mmsim.data.sample.Sample`: ``question`` is the problem text
(question then ``A. …`` option lines), ``images`` the current observation, ``videos`` the
clip (or nothing), ``answer`` the gold letter, ``category`` the level (``L1``/``L2``/``L3``/
``train``) and ``meta`` the row's ids (``sample_id``, ``split``, ``video_source``,
``task_progress_metadata`` length).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from PIL import Image as PILImage
from PIL import ImageDraw

from mmsim.data import safeio
from mmsim.data.files import png_bytes, write_once
from mmsim.data.mathverse import check_options, image_from_file, resolve_data_path, row_where
from mmsim.data.sample import Sample
from mmsim.data.video import video_ref
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Video
from mmsim.registry import Registry

LETTERS = ("A", "B", "C", "D")
LEVELS = ("L1", "L2", "L3")
TRAIN = "train"
TRAINING_FILE = "training_6k.jsonl"


class VideoDatasetLoader(Protocol):
    def __call__(self, options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 limit: int | None, seed: int) -> list[Sample]: ...


VIDEO_DATASETS: Registry[VideoDatasetLoader] = Registry("video dataset")


def video_dataset(name: str) -> Callable[[VideoDatasetLoader], VideoDatasetLoader]:
    """Register a video dataset loader under ``name``."""
    return VIDEO_DATASETS.decorator(name)


def problem_text(question: str, options: Sequence[str]) -> str:
    """The published problem text: the question, then one ``X. option`` line per option,
    then a newline."""
    return f"{question}\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options)) \
        + "\n"


def _video_ref(path: Path, *, where: str, field: str) -> Video:
    if not path.is_file():
        raise DataError(f"video file not found: {path}", where=where, field=field)
    if path.stat().st_size == 0:
        raise DataError(f"video file is empty (0 bytes): {path}", where=where, field=field)
    return video_ref(path)


def _str(row: dict[str, Any], key: str, where: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, str) and not v.strip()) or isinstance(v, dict | list):
        raise DataError(f"missing or empty {key!r}", where=where, field=key)
    return str(v)


def _find(root: Path, name: str) -> Path | None:
    for p in (root / "annotations" / name, root / name):
        if p.is_file():
            return p
    return None


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a JSONL file (blank lines skipped)."""
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        text = safeio.read_text(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable UTF-8 JSONL file ({exc})", where=str(path)) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg})", where=f"{path}:{n}") from None
        if not isinstance(row, dict):
            raise DataError("expected a JSON object per line", where=f"{path}:{n}")
        out.append((n, row))
    return out


def row_item(root: Path, file: Path, line: int, row: dict[str, Any], level: str,
             seed: int) -> Sample:
    """One annotation row as a :class:`Sample` (validation or training row)."""
    rid = row.get("sample_id")
    where = row_where(f"{file}:{line}", line - 1, rid)
    sid = _str(row, "sample_id", where)
    question = _str(row, "question", where)
    answer_text = _str(row, "answer", where)
    source = _str(row, "video_source", where)
    progress = row.get("task_progress_metadata")
    if progress is None:
        progress = []
    if not isinstance(progress, list):
        raise DataError("'task_progress_metadata' must be a list", where=where,
                        field="task_progress_metadata")
    if level == TRAIN:
        negs = row.get("negative_answers")
        if not isinstance(negs, list) or len([n for n in negs if str(n).strip()]) < 3:
            raise DataError("a training row needs 'negative_answers': a list of at least 3 "
                            "wrong answers", where=where, field="negative_answers")
        rng = random.Random(f"mmsim-video:{seed}:options:{sid}")
        options = [*rng.sample([str(n) for n in negs if str(n).strip()], 3), answer_text]
        rng.shuffle(options)
        gold = LETTERS[options.index(answer_text)]
    else:
        options = [_str(row, f"choice_{c}", where) for c in "abcd"]
        gold = _str(row, "golden_choice_idx", where).strip().rstrip(".").upper()
        if gold not in LETTERS:
            raise DataError(f"'golden_choice_idx' must be one of A, B, C, D (got "
                            f"{row.get('golden_choice_idx')!r})", where=where,
                            field="golden_choice_idx")
    img_name = _str(row, "current_observation_basename", where)
    image = image_from_file(root / "images" / source / img_name, where=where,
                            field="current_observation_basename")
    videos: tuple[Video, ...] = ()
    if progress:
        vname = _str(row, "video_basename", where)
        videos = (_video_ref(root / "videos" / source / vname, where=where,
                             field="video_basename"),)
    return Sample(
        id=f"{level}/{sid}", question=problem_text(question, options), images=(image,),
        videos=videos, answer=gold,
        answer_format=AnswerFormat(kind="choice", letters=LETTERS, options=tuple(options)),
        category=level,
        difficulty=float(row["difficulty"]) if isinstance(row.get("difficulty"),
                                                          int | float) else None,
        meta={"sample_id": sid, "split": "training" if level == TRAIN else "validation",
              "level": level, "video_source": source, "progress_steps": len(progress),
              "answer_text": answer_text,
              **({"environment": row["environment"], "task": row["task"]}
                 if "environment" in row and "task" in row else {})})


def load_layout(root: Path, *, levels: Sequence[str], training: str | None, seed: int,
                limit: int | None, where: str) -> list[Sample]:
    """The items of a SEED-Bench-R1 folder: ``levels`` (validation files) and, when
    ``training`` names a file, its rows (level ``train``). ``limit``: items per file."""
    files: list[tuple[str, Path]] = []
    for lv in levels:
        f = _find(root, f"validation_{lv}.jsonl")
        if f is None:
            raise DataError(f"validation_{lv}.jsonl not found (looked in {root}/annotations "
                            f"and {root})", where=where, field="levels")
        files.append((lv, f))
    if training:
        f = _find(root, training)
        if f is None:
            raise DataError(f"training file {training!r} not found (looked in "
                            f"{root}/annotations and {root})", where=where, field="training")
        files.append((TRAIN, f))
    out: list[Sample] = []
    seen: set[str] = set()
    for level, f in files:
        n = 0
        for line, row in read_rows(f):
            item = row_item(root, f, line, row, level, seed)
            if item.id in seen:
                raise DataError(f"duplicate sample_id {item.meta['sample_id']!r}",
                                where=f"{f}:{line}", field="sample_id")
            seen.add(item.id)
            out.append(item)
            n += 1
            if limit is not None and n >= limit:
                break
    return out


@video_dataset("seed-bench-r1")
def load_seed_bench_r1(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                       limit: int | None, seed: int) -> list[Sample]:
    """A local copy of SEED-Bench-R1 (option ``path``: the folder holding ``annotations/``,
    ``videos/`` and ``images/``; ``levels``: validation levels to load, default all three;
    ``training``: the training file for rollouts, e.g. ``training_6k.jsonl``, default
    none)."""
    del cache_dir
    check_options(options, ("path", "levels", "training"), "dataset 'seed-bench-r1'")
    root = resolve_data_path(options.get("path"), base_dir, where="dataset 'seed-bench-r1'")
    levels = options.get("levels", list(LEVELS))
    if not isinstance(levels, list) or any(lv not in LEVELS for lv in levels):
        raise DataError(f"levels must be a list of {', '.join(LEVELS)}",
                        where="dataset 'seed-bench-r1'", field="levels")
    training = options.get("training")
    if training is not None and not isinstance(training, str):
        raise DataError("training must be a file name", where="dataset 'seed-bench-r1'",
                        field="training")
    return load_layout(root, levels=levels, training=training, seed=seed, limit=limit,
                       where=str(root))


# --------------------------------------------------------------------------- synthetic
SIZE = 112
CLIP_FPS = 8


class Environment:
    """A palette and a background: what differs between environments."""

    def __init__(self, name: str, source: str, bg: tuple[int, int, int],
                 accent: tuple[int, int, int], pattern: str,
                 colors: dict[str, tuple[int, int, int]]):
        self.name, self.source, self.bg, self.accent = name, source, bg, accent
        self.pattern, self.colors = pattern, colors

    def background(self) -> PILImage.Image:
        img = PILImage.new("RGB", (SIZE, SIZE), self.bg)
        d = ImageDraw.Draw(img)
        if self.pattern == "tiles":
            for k in range(0, SIZE, 16):
                d.line([(k, 0), (k, SIZE)], fill=self.accent)
                d.line([(0, k), (SIZE, k)], fill=self.accent)
        elif self.pattern == "stripes":
            for k in range(0, SIZE, 12):
                d.rectangle([0, k, SIZE, k + 5], fill=self.accent)
        elif self.pattern == "dots":
            for x in range(6, SIZE, 14):
                for y in range(6, SIZE, 14):
                    d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=self.accent)
        elif self.pattern == "horizon":
            d.rectangle([0, 0, SIZE, SIZE // 2], fill=self.accent)
        elif self.pattern == "stars":
            rng = random.Random(self.name)
            for _ in range(40):
                x, y = rng.randrange(SIZE), rng.randrange(SIZE)
                d.point((x, y), fill=self.accent)
        return img


_WARM = {"red": (200, 40, 40), "orange": (230, 140, 30), "brown": (120, 70, 30),
         "yellow": (220, 200, 40)}
_COOL = {"blue": (40, 70, 200), "purple": (120, 50, 160), "teal": (30, 150, 150),
         "white": (235, 235, 235)}
ENVIRONMENTS = {
    "kitchen": Environment("kitchen", "SynthKitchens", (225, 210, 180), (190, 170, 140),
                           "tiles", _WARM),
    "garden": Environment("garden", "SynthKitchens", (90, 160, 70), (70, 130, 55),
                          "stripes", _WARM),
    "workshop": Environment("workshop", "SynthEgo", (150, 150, 155), (110, 110, 115),
                            "dots", _COOL),
    "beach": Environment("beach", "SynthEgo", (230, 215, 160), (70, 140, 200), "horizon",
                         _COOL),
    "night": Environment("night", "SynthEgo", (20, 20, 45), (230, 230, 180), "stars", _COOL),
}
TRAIN_ENVS = ("kitchen", "garden")
OOD_ENVS = ("workshop", "beach", "night")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
_DIR_TEXT = {"left": "it reaches the left wall", "right": "it reaches the right wall",
             "up": "it reaches the top wall", "down": "it reaches the bottom wall"}
_EXTRA_NEG = ("it stops in the centre", "it goes back to where it started",
              "it disappears behind the box")


def _clip(env: Environment, rng: random.Random, task: str
          ) -> tuple[list[PILImage.Image], str, list[str], str, float]:
    """Frames, question, options (answer first), the answer text, difficulty."""
    bg = env.background()
    n = rng.randrange(12, 25)  # 1.5 to 3 s at 8 fps
    names = list(env.colors)
    mover = rng.choice(names)
    radius = 7
    if task == "next-position":
        direction = rng.choice(list(DIRECTIONS))
        dx, dy = DIRECTIONS[direction]
        speed = rng.uniform(0.6, 1.6)
        x0 = SIZE / 2 - dx * 20 + rng.uniform(-8, 8) * (dx == 0)
        y0 = SIZE / 2 - dy * 20 + rng.uniform(-8, 8) * (dy == 0)
        path = [(x0 + dx * speed * t, y0 + dy * speed * t) for t in range(n)]
        distractors = [(rng.uniform(15, SIZE - 15), rng.uniform(15, SIZE - 15),
                        rng.choice(names)) for _ in range(rng.randrange(0, 3))]
        question = (f"The {mover} ball keeps moving the way it is moving now. "
                    "What happens next?")
        answer = _DIR_TEXT[direction]
        negatives = [_DIR_TEXT[d] for d in DIRECTIONS if d != direction]
        difficulty = 0.8 - 0.9 * speed + 0.35 * len(distractors)
        targets: list[tuple[float, float, str]] = []
    else:  # next-contact: which coloured box will the ball touch first
        corners = [(18.0, 18.0), (SIZE - 18.0, 18.0), (18.0, SIZE - 18.0),
                   (SIZE - 18.0, SIZE - 18.0)]
        box_colors = [*rng.sample([c for c in names if c != mover], 3), mover]
        rng.shuffle(box_colors)
        targets = [(x, y, box_colors[i]) for i, (x, y) in enumerate(corners)]
        goal = rng.randrange(4)
        gx, gy, _ = targets[goal]
        x0, y0 = SIZE / 2, SIZE / 2
        frac = rng.uniform(0.25, 0.55)
        path = [(x0 + (gx - x0) * frac * t / (n - 1), y0 + (gy - y0) * frac * t / (n - 1))
                for t in range(n)]
        distractors = []
        labels = [f"the {c} box in the {_corner(x, y)} corner" for x, y, c in targets]
        question = (f"The {mover} ball keeps moving the way it is moving now. "
                    "Which box will it touch first?")
        answer = labels[goal]
        negatives = [lab for i, lab in enumerate(labels) if i != goal]
        difficulty = 1.2 - 2.0 * frac
    frames = []
    for x, y in path:
        img = bg.copy()
        d = ImageDraw.Draw(img)
        for tx, ty, c in targets:
            d.rectangle([tx - 9, ty - 9, tx + 9, ty + 9], fill=env.colors[c])
        for ox, oy, c in distractors:
            d.rectangle([ox - 4, oy - 4, ox + 4, oy + 4], fill=env.colors[c])
        d.ellipse([x - radius, y - radius, x + radius, y + radius], fill=env.colors[mover],
                  outline=(0, 0, 0))
        frames.append(img)
    return frames, question, [answer, *negatives], answer, difficulty


def _corner(x: float, y: float) -> str:
    return ("top" if y < SIZE / 2 else "bottom") + "-" + ("left" if x < SIZE / 2 else "right")


SYNTH_VERSION = 1


def synthesize(root: Path, *, seed: int, items_per_level: int, training_items: int,
               container: str) -> None:
    """Write the synthetic set to ``root`` in the SEED-Bench-R1 layout (skipped when a
    complete set for the same parameters is already there)."""
    from mmsim.data.video import write_video

    stamp = root / "COMPLETE.json"
    params = {"version": SYNTH_VERSION, "seed": seed, "items_per_level": items_per_level,
              "training_items": training_items, "container": container}
    try:
        if json.loads(stamp.read_text()) == params:
            return
    except (OSError, ValueError):
        pass
    plan = [("L1", TRAIN_ENVS, "next-position", items_per_level),
            ("L2", OOD_ENVS, "next-position", items_per_level),
            ("L3", OOD_ENVS, "next-contact", items_per_level),
            (TRAIN, TRAIN_ENVS, "next-position", training_items)]
    for level, envs, task, count in plan:
        rows = []
        for i in range(count):
            rng = random.Random(f"mmsim-video-synth:{seed}:{level}:{i}")
            env = ENVIRONMENTS[envs[i % len(envs)]]
            frames, question, opts, answer, difficulty = _clip(env, rng, task)
            sid = f"{level.lower()}-{i:05d}"
            with_video = rng.random() < 0.85
            if not with_video:  # only the current observation: the motion is not visible
                difficulty += 0.6
            image_name = f"{sid}.png"
            write_once(root / "images" / env.source, image_name, png_bytes(frames[-1]))
            video_name = f"{sid}.{container}"
            if with_video:
                vpath = root / "videos" / env.source / video_name
                if not vpath.is_file():
                    write_video(vpath, frames[:-1], CLIP_FPS)
            progress = [{"narration_text": "the ball starts moving"}] if with_video else []
            row: dict[str, Any] = {
                "sample_id": sid, "question": question, "answer": answer,
                "video_source": env.source, "video_basename": video_name,
                "current_observation_basename": image_name,
                "task_progress_metadata": progress, "environment": env.name, "task": task,
                "difficulty": round(difficulty, 4)}
            if level == TRAIN:
                row["negative_answers"] = [*opts[1:], *_EXTRA_NEG] \
                    if task == "next-position" else opts[1:]
            else:
                order = opts[:]
                rng.shuffle(order)
                for c, o in zip("abcd", order, strict=True):
                    row[f"choice_{c}"] = o
                row["golden_choice_idx"] = LETTERS[order.index(answer)]
            rows.append(row)
        name = TRAINING_FILE if level == TRAIN else f"validation_{level}.jsonl"
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        write_once(root / "annotations", name, body.encode())
    write_once(root, "COMPLETE.json", json.dumps(params).encode())


def _container() -> str:
    try:
        import av  # noqa: F401
    except ImportError:
        return "gif"
    return "mp4"


@video_dataset("synthetic-video")
def load_synthetic_video(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                         limit: int | None, seed: int) -> list[Sample]:
    """Synthetic clips in the SEED-Bench-R1 layout (options ``items_per_level``, default
    60; ``training_items`` (rollout prompts), default 60; ``levels``; ``container``: ``mp4``
    (needs PyAV) or ``gif``, default mp4 when PyAV is installed)."""
    del base_dir
    where = "dataset 'synthetic-video'"
    check_options(options, ("items_per_level", "training_items", "levels", "container"),
                  where)
    n = options.get("items_per_level", 60)
    t = options.get("training_items", 60)
    for key, v in (("items_per_level", n), ("training_items", t)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if key != "training_items"
                                                                  else 0):
            raise DataError(f"{key} must be a positive integer", where=where, field=key)
    container = options.get("container") or _container()
    if container not in ("mp4", "gif"):
        raise DataError("container must be mp4 or gif", where=where, field="container")
    levels = options.get("levels", list(LEVELS))
    if not isinstance(levels, list) or any(lv not in LEVELS for lv in levels):
        raise DataError(f"levels must be a list of {', '.join(LEVELS)}", where=where,
                        field="levels")
    if limit is not None:
        n, t = min(n, limit), min(t, limit)
    root = cache_dir / f"synthetic-video-v{SYNTH_VERSION}-s{seed}-n{n}-t{t}-{container}"
    synthesize(root, seed=seed, items_per_level=n, training_items=t, container=container)
    return load_layout(root, levels=levels, training=TRAINING_FILE if t else None,
                       seed=seed, limit=None, where=where)


__all__ = ["ENVIRONMENTS", "LETTERS", "LEVELS", "TRAIN", "VIDEO_DATASETS",
           "load_layout", "load_seed_bench_r1", "load_synthetic_video", "problem_text",
           "read_rows", "row_item", "synthesize", "video_dataset"]


def _reader(fmt: str | None) -> VideoDatasetLoader:
    def load(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
             limit: int | None, seed: int) -> list[Sample]:
        from mmsim.data.fields import load_samples

        del seed
        out = []
        for s in load_samples(options, base_dir=base_dir, cache_dir=cache_dir, limit=limit,
                              fmt=fmt):
            if s.category not in (*LEVELS, TRAIN):  # the protocol groups items by level
                s = s.model_copy(update={"category": "L1",
                                         "meta": {**s.meta, "source_category": s.category}})
            out.append(s)
        return out

    return load


def _register_readers() -> None:
    """The field-map readers, for a table with a ``video`` path column (frames by the
    protocol's recipe); a ``category`` of L1/L2/L3/train is the level, anything else is
    kept in ``meta.source_category`` and the item is L1."""
    from mmsim.data.readers import READERS

    for name, doc in READERS.items():
        VIDEO_DATASETS.register(name, _reader(None if name == "table" else name), doc=doc)


_register_readers()
