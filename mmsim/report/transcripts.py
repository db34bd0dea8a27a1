"""Episode transcripts for the HTML report's viewer.

Big runs stay bounded: at most ``max_episodes`` episodes per run are embedded, picked
deterministically and stratified by outcome with an equal share per outcome (an outcome
with fewer episodes than its share gives the rest to the others), so rare outcomes such as
failures are always shown. Within an outcome, episodes are taken in the order of a stable
hash of their id. Images are embedded once each, as downscaled thumbnails keyed by the
sha256 of the original.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmsim.metrics.outcomes import OUTCOMES, EpisodeOutcome
from mmsim.store import RunStore

MAX_TEXT = 4000


def _order_key(seed: int, episode_id: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{episode_id}".encode()).hexdigest()


def stratified_sample(outcomes: list[EpisodeOutcome], n: int,
                      seed: int = 0) -> list[EpisodeOutcome]:
    """At most ``n`` episodes, an equal share per outcome (water-filling), deterministic."""
    strata: dict[str, list[EpisodeOutcome]] = defaultdict(list)
    for o in outcomes:
        strata[o.outcome].append(o)
    for v in strata.values():
        v.sort(key=lambda o: _order_key(seed, o.episode_id))
    if n >= len(outcomes):
        chosen = [o for v in strata.values() for o in v]
    else:
        remaining = max(0, n)
        chosen = []
        ordered = sorted(strata.items(), key=lambda kv: (len(kv[1]), kv[0]))
        for k, (_, eps) in enumerate(ordered):
            share = remaining // (len(ordered) - k)
            take = eps[:min(len(eps), share)]
            chosen.extend(take)
            remaining -= len(take)
    return sorted(chosen, key=lambda o: _order_key(seed, o.episode_id))


class ImageBank:
    """Distinct images as thumbnail data URIs, keyed by the sha256 of the original."""

    def __init__(self, max_px: int = 320):
        self.max_px = max_px
        self.uris: dict[str, str] = {}
        self.missing: set[str] = set()

    def _resolve(self, uri: str, run_dir: Path) -> bytes | None:
        if uri.startswith("data:"):
            try:
                return base64.b64decode(uri.split(",", 1)[1])
            except (IndexError, ValueError):
                return None
        if "://" in uri and not uri.startswith("file://"):
            return None  # never fetched: the report works offline
        p = Path(uri.removeprefix("file://"))
        candidates = [p, run_dir / p] if not p.is_absolute() else [p]
        for c in candidates:
            if c.is_file():
                return c.read_bytes()
        assets = run_dir / "assets"
        if assets.is_dir():  # the run directory moved: look for the file by name
            for c in assets.rglob(p.name):
                if c.is_file():
                    return c.read_bytes()
        return None

    def add(self, part: dict[str, Any], run_dir: Path) -> str:
        sha = str(part.get("sha256") or hashlib.sha256(str(part.get("uri")).encode())
                  .hexdigest())
        if sha in self.uris or sha in self.missing:
            return sha
        data = self._resolve(str(part.get("uri", "")), run_dir)
        uri = self._thumbnail(data) if data is not None else None
        if uri is None:
            self.missing.add(sha)
        else:
            self.uris[sha] = uri
        return sha

    def _thumbnail(self, data: bytes) -> str | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as src:
                src.load()
                im = src.convert("RGBA" if src.mode in ("RGBA", "LA", "P") else "RGB")
                im.thumbnail((self.max_px, self.max_px))
                png = io.BytesIO()
                im.save(png, format="PNG", optimize=True)
                best, mime = png.getvalue(), "image/png"
                if im.mode == "RGB":
                    jpg = io.BytesIO()
                    im.save(jpg, format="JPEG", quality=80)
                    if len(jpg.getvalue()) < len(best):
                        best, mime = jpg.getvalue(), "image/jpeg"
        except (UnidentifiedImageError, OSError, ValueError):
            return None
        return f"data:{mime};base64,{base64.b64encode(best).decode()}"


def _clip(text: object) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + f" … [{len(s) - MAX_TEXT} more chars]"


#: fields of a protocol's own result message shown first (the rest: under "all fields")
RESULT_FIELDS = ("phase", "family", "level", "agent", "model", "answer", "gold", "correct",
                 "score", "reward", "rewards", "scoring", "judge", "perturbation", "label",
                 "unparsed")


def _short(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_short(x)}" for k, x in v.items())
    return _clip(v)[:200]


def _turn_view(turn: dict[str, Any], bank: ImageBank, run_dir: Path) -> dict[str, Any]:
    texts, images, videos = [], [], []
    for part in turn.get("parts") or []:
        t = part.get("type")
        if t == "text":
            texts.append(part.get("text", ""))
        elif t == "image":
            images.append(bank.add(part, run_dir))
        elif t == "video":
            videos.append(str(part.get("uri", "")))
    out: dict[str, Any] = {"t": "turn", "role": turn.get("role"), "text": _clip("\n".join(texts))}
    if images:
        out["images"] = images
    if videos:
        out["videos"] = videos
    return out


def _result_events(kind: str, m: dict[str, Any], *, has_prompt: bool
                   ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A protocol's own result message as the dialogue's closing line: correct or not, the
    answer read, what it was scored against, the score and the reward (with its parts);
    all fields stay one click away. An episode with no model turn (a judge calibration
    pair) first shows what the judge was given: returned apart, as the dialogue's opening."""
    judge_input = None
    rest = {k: v for k, v in m.items() if k not in ("seq", "turn", "sender", "kind",
                                                    "run_id", "episode_id")}
    if not has_prompt and m.get("output") is not None:
        parts = [f"QUESTION: {m['question']}" if m.get("question") else "",
                 f"REFERENCE: {m['reference']}" if m.get("reference") else "",
                 f"OUTPUT: {m['output']}"]
        judge_input = {"t": "turn", "role": "judge input",
                       "text": _clip("\n".join(p for p in parts if p))}
    rewards = m.get("rewards") if isinstance(m.get("rewards"), dict) else None
    correct = m.get("correct")
    if correct is None and rewards and "accuracy" in rewards:
        correct = float(rewards["accuracy"]) >= 1.0
    if correct is None and m.get("scoring") == "exact" and m.get("score") is not None:
        correct = float(m["score"]) >= 1.0
    gold = next((m[k] for k in ("gold", "expected", "reference") if m.get(k) is not None),
                None)
    fields = [(k, _short(rest[k])) for k in RESULT_FIELDS if rest.get(k) is not None]
    result = {"t": "result", "what": kind, "round": m.get("turn"), "sender": m.get("sender"),
              "correct": correct, "answer": m.get("answer"),
              "gold": None if gold is None else _clip(gold)[:300],
              "unparsed": bool(m.get("unparsed")) or (
                  "answer" in m and m.get("answer") is None and rewards is not None),
              "score": m.get("score") if m.get("scoring") == "judge" else None,
              "label": m.get("label"), "perturbation": m.get("perturbation"),
              "reward": m.get("reward"), "rewards": rewards, "fields": fields,
              "text": _clip(json.dumps(rest, ensure_ascii=False, default=str))}
    return judge_input, result


def episode_view(store: RunStore, eo: EpisodeOutcome, bank: ImageBank, run_dir: Path,
                 run_index: int) -> dict[str, Any]:
    """One episode as the viewer shows it: its outcome, the prompt with images, then the
    receiver's replies, their grades and the provider's feedback in order."""
    ep = eo.episode
    events: list[dict[str, Any]] = []
    first_obs = True
    for m in store.messages(eo.episode_id):
        kind = m.get("kind")
        if kind == "observation":
            if first_obs:
                events.extend(_turn_view(t, bank, run_dir) for t in m.get("conversation") or [])
                first_obs = False
        elif kind == "response":
            usage = m.get("usage") or {}
            events.append({"t": "response", "round": m.get("turn"), "sender": m.get("sender"),
                           "text": _clip(m.get("text")), "answer": m.get("answer"),
                           "parse": m.get("parse"), "error": m.get("error"),
                           "tokens": [usage.get("prompt_tokens", 0),
                                      usage.get("completion_tokens", 0)]})
        elif kind == "grade":
            events.append({"t": "grade", "round": m.get("turn"), "correct": m.get("correct"),
                           "answer": m.get("answer"), "expected": m.get("expected"),
                           "unparsed": m.get("unparsed")})
        elif kind == "feedback":
            events.append({"t": "feedback", "round": m.get("turn"), "sender": m.get("sender"),
                           "kind": m.get("feedback_kind"), "policy": m.get("policy"),
                           "text": _clip(m.get("text")), "leaked": m.get("leaked"),
                           "reveals": m.get("reveals_answer")})
        elif kind == "verdict":
            events.append({"t": "verdict", "round": m.get("turn"), "sender": m.get("sender"),
                           "score": m.get("score"), "parse": m.get("parse"),
                           "text": _clip(m.get("reason"))})
        else:  # another protocol's scored result: a verdict line, then all its fields
            judge_input, result = _result_events(str(kind), m, has_prompt=not first_obs)
            if judge_input is not None:  # it opens the dialogue (stored after the verdict)
                events.insert(0, judge_input)
            events.append(result)
    return {"run": run_index, "id": eo.episode_id, "kind": ep["kind"],
            "receiver": ep["model"] or ep["judge"], "provider": ep["provider"] or "—",
            "policy": ep["condition"] or "—", "sample": ep["sample_id"],
            "category": ep["category"], "outcome": eo.outcome, "round": eo.round,
            "status": ep["status"], "error": ep["error"], "simulated": bool(ep["simulated"]),
            "events": events}


def outcome_counts(outcomes: list[EpisodeOutcome]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return counts


__all__ = ["ImageBank", "episode_view", "outcome_counts", "stratified_sample"]
