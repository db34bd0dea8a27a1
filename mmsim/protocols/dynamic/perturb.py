"""Rule-based paraphrase and corruption sampling of reference texts, and the content tokens
a text states (what a judge must compare).

* **paraphrase** (must score high): the same content in other words — function-phrase
  rewording ("The image shows" -> "In the picture there are"), numbers as digits or words,
  content synonyms (circle -> disc), the items of a list in another order.
* **corruption** (must score low): one fact changed — ``object`` (a noun swapped for
  another of the vocabulary: circle -> triangle, dog -> cat), ``attribute`` (a colour or
  size swapped), ``count`` (a number moved by 1-3), ``action`` (a verb swapped: scattered
  -> stacked, sitting -> running). A reference with no word of a kind cannot be corrupted
  in that kind; :func:`corrupt` picks among the kinds that apply.

:func:`content_tokens` is the canonical bag of content words of a text (lower case,
singular, numbers as digits, synonyms mapped to one form, function words dropped). The
simulated judge compares these bags; real judges read the texts.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Literal

Corruption = Literal["object", "attribute", "count", "action"]
CORRUPTIONS: tuple[Corruption, ...] = ("object", "attribute", "count", "action")

OBJECTS = ("circle", "square", "triangle", "star", "dog", "cat", "car", "bus", "person",
           "man", "woman", "child", "tree", "house", "chair", "table", "bottle", "cup",
           "bicycle", "horse", "bird", "ball", "book", "phone", "road", "sign", "truck",
           "boat", "window", "door")
ATTRIBUTES = ("red", "blue", "green", "orange", "purple", "yellow", "black", "white",
              "brown", "grey", "pink", "small", "large", "tall", "short")
ACTIONS = ("scattered", "stacked", "arranged", "sitting", "standing", "running", "walking",
           "lying", "holding", "jumping", "driving", "eating", "floating", "hanging")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
#: content synonyms: the paraphraser may use the right side; the canonicaliser maps back
CONTENT_SYNONYMS = {"circle": "disc", "square": "box", "person": "individual",
                    "car": "automobile", "scattered": "spread", "large": "big",
                    "small": "little", "child": "kid"}
_CANON = {v: k for k, v in CONTENT_SYNONYMS.items()}
#: function phrases the paraphraser rewords (they carry no content)
PHRASES = (("the image shows", "in the picture there are"),
           ("there are", "you can see"),
           ("how many", "what is the number of"),
           ("across", "over"), ("including", "among them"),
           ("on a white background", "against a white backdrop"))
STOPWORDS = frozenset("""a an the of in on at to and or is are was were be been there this
that these those it its with by for from as image picture photo shows show showing depicts
contains has have can you see seen what which who how many number question answer score
over across among them including against backdrop background some any each also
total all shapes shape objects object items item""".split()) - {"one"}
_WORD = re.compile(r"[a-z]+|\d+")


def _singular(w: str) -> str:
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def canonical(word: str) -> str:
    """One canonical form of a word: lower case, singular, number words as digits,
    content synonyms mapped back."""
    w = word.lower()
    if w in NUMBER_WORDS:
        return str(NUMBER_WORDS.index(w))
    w = _CANON.get(w, w)
    s = _singular(w)
    return _CANON.get(s, s)


def content_tokens(text: str) -> Counter[str]:
    """The bag of canonical content words of ``text`` (function words dropped)."""
    out: Counter[str] = Counter()
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS:
            continue
        c = canonical(w)
        if c and c not in STOPWORDS:
            out[c] += 1
    return out


def overlap_f1(output: str, reference: str) -> float:
    """F1 of the content-token bags of ``output`` and ``reference`` (1 when both empty)."""
    a, b = content_tokens(output), content_tokens(reference)
    if not a and not b:
        return 1.0
    common = sum((a & b).values())
    if common == 0:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


# --------------------------------------------------------------------------- paraphrase
def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("x", "s", "ch", "sh")) else "s")


def _swap_numbers(text: str, rng: random.Random) -> str:
    def repl(m: re.Match[str]) -> str:
        w = m.group(0)
        if w.isdigit() and int(w) < len(NUMBER_WORDS) and rng.random() < 0.7:
            return NUMBER_WORDS[int(w)]
        if w.lower() in NUMBER_WORDS and rng.random() < 0.7:
            return str(NUMBER_WORDS.index(w.lower()))
        return w
    return re.sub(r"\b(?:\d+|" + "|".join(NUMBER_WORDS) + r")\b", repl, text,
                  flags=re.IGNORECASE)


def _swap_synonyms(text: str, rng: random.Random) -> str:
    def repl(m: re.Match[str]) -> str:
        w = m.group(0)
        low = w.lower()
        base = _singular(low)
        syn = CONTENT_SYNONYMS.get(base)
        if syn is None or rng.random() < 0.4:
            return str(w)
        return _plural(syn) if base != low else syn
    return re.sub(r"[A-Za-z]+", repl, text)


def _reorder_list(text: str, rng: random.Random) -> str:
    """``including A, B and C`` -> the same items in another order."""
    m = re.search(r"(?:including|among them|:) ((?:[^,.?]+, )*[^,.?]+ and [^,.?]+)", text)
    if m is None:
        return text
    body = str(m.group(1))
    head, _, last = body.rpartition(" and ")
    items = [*head.split(", "), last]
    rng.shuffle(items)
    new = ", ".join(items[:-1]) + " and " + items[-1]
    return text[:m.start(1)] + new + text[m.end(1):]


def paraphrase(text: str, rng: random.Random) -> str:
    """The same content in other words (see the module docstring)."""
    out = text
    for a, b in PHRASES:
        if rng.random() < 0.7:
            out = re.sub(re.escape(a), b, out, flags=re.IGNORECASE)
    out = _swap_numbers(out, rng)
    out = _swap_synonyms(out, rng)
    out = _reorder_list(out, rng)
    if out == text:  # nothing applied: at least reword the opening
        out = "In other words: " + text[:1].lower() + text[1:]
    return out[:1].upper() + out[1:]


# --------------------------------------------------------------------------- corruption
def _vocab(kind: Corruption) -> tuple[str, ...]:
    return {"object": OBJECTS, "attribute": ATTRIBUTES, "action": ACTIONS,
            "count": ()}[kind]


def _sites(text: str, kind: Corruption) -> list[re.Match[str]]:
    if kind == "count":
        return list(re.finditer(r"\b(?:\d+|" + "|".join(NUMBER_WORDS) + r")\b", text,
                                flags=re.IGNORECASE))
    vocab = set(_vocab(kind)) | {CONTENT_SYNONYMS[w] for w in _vocab(kind)
                                 if w in CONTENT_SYNONYMS}
    return [m for m in re.finditer(r"[A-Za-z]+", text)
            if canonical(m.group(0)) in vocab or m.group(0).lower() in vocab]


def corruption_kinds(text: str) -> list[Corruption]:
    """The corruption kinds that apply to ``text``."""
    return [k for k in CORRUPTIONS if _sites(text, k)]


def corrupt(text: str, rng: random.Random, kind: Corruption | None = None
            ) -> tuple[str, Corruption | None]:
    """``text`` with one fact changed (``kind``, or one that applies, chosen at random);
    ``(text, None)`` when no kind applies."""
    kinds = corruption_kinds(text) if kind is None else (
        [kind] if _sites(text, kind) else [])
    if not kinds:
        return text, None
    k = rng.choice(kinds)
    m = rng.choice(_sites(text, k))
    w = m.group(0)
    if k == "count":
        n = int(w) if w.isdigit() else NUMBER_WORDS.index(w.lower())
        new_n = max(0, n + rng.choice((-2, -1, 1, 2, 3))) if n > 0 else n + rng.randint(1, 3)
        if new_n == n:
            new_n = n + 1
        new = str(new_n) if w.isdigit() or new_n >= len(NUMBER_WORDS) else NUMBER_WORDS[new_n]
    else:
        base = canonical(w)
        plural = _singular(w.lower()) != w.lower()
        choices = [x for x in _vocab(k) if x != base]
        if k == "attribute":  # keep colours with colours, sizes with sizes
            sizes = {"small", "large", "tall", "short"}
            choices = [x for x in choices if (x in sizes) == (base in sizes)]
        pick = rng.choice(choices)
        new = _plural(pick) if plural and k == "object" else pick
        if w[:1].isupper():
            new = new[:1].upper() + new[1:]
    return text[:m.start()] + new + text[m.end():], k


__all__ = ["ACTIONS", "ATTRIBUTES", "CORRUPTIONS", "OBJECTS", "Corruption", "canonical",
           "content_tokens", "corrupt", "corruption_kinds", "overlap_f1", "paraphrase"]
