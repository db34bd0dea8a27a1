"""Deterministic answer extraction and checking.

Extraction takes the model's *final* answer and never guesses: when nothing matches, or
the final answer names several options at once, the extractors return ``None`` and the
caller records the response as ``unparsed`` (peers that fall back to a random option
produce fake corrections in a feedback loop).

Regions are tried in priority order and the first region that yields a match wins:

1. the content of the last ``<answer>...</answer>`` tag (an unclosed last tag runs to the
   end of the text); inside it a ``\\boxed{}`` or an "answer is" phrase is preferred;
2. the last balanced ``\\boxed{...}``;
3. the first sentence after an "answer is" / "Answer:" / "final answer:" / "correct
   option is" / "答案" marker, or the clause before "is the correct answer/option/choice",
   last marker first (a region starting with "not" is skipped);
4. the whole text (for exact answers its last non-empty line).

When the text holds a closed ``<think>...</think>`` block followed by more text, only
that text after the block is searched (the reasoning is not the answer).

A region that names several distinct options ("A or C") is ambiguous: extraction stops
and returns ``None`` instead of looking at lower-priority regions.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Literal, TypeVar

from mmsim.messages import AnswerFormat

__all__ = [
    "MODES",
    "SCAN_LIMIT",
    "SHORT_TEXT_CHARS",
    "Mode",
    "check_answer",
    "extract_answer",
    "extract_choice",
    "extract_exact",
    "extract_number",
    "format_number",
    "normalize_text",
    "parse_number",
]

#: A whole text (region 4) at most this long is searched like an explicit answer region
#: (leading letter, unique letter mention, option text). Longer texts only accept an
#: unmistakable answer line: ``(B)``/``**B**`` at the very end, or a first line or a last
#: line of at most 80 characters that is ``B``, ``B.``, ``(B) ...``, ``Option B``, ``B: 60°``.
SHORT_TEXT_CHARS = 200
#: Explicit regions (tag, boxed, after a marker) longer than this get the long-text rules.
SCAN_LIMIT = 1000
#: How many of the last "answer is" markers are tried.
_MAX_MARKERS = 10
#: How many of the last ``\boxed{`` openings are tried, and how far a brace is looked for.
_MAX_BOXED = 5
_MAX_BOXED_CHARS = 5000
#: Numbers are first looked for in this many final characters of a long region.
_NUMBER_TAIL = 4096
#: At most this many of the last number-like matches are evaluated (``1/0`` is none).
_MAX_NUMBER_TRIES = 1000

# --------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------

_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_HALFWIDTH[0x3000] = 0x20


_R = TypeVar("_R")
_MEMO_MAX_CHARS = 256  # only short strings (options, answers, keys) are memoised


def _memo_short(fn: Callable[[str], _R]) -> Callable[[str], _R]:
    """Memoise a pure function of one string for short strings (options and answers recur
    on every turn of every episode; long model outputs are computed, not kept)."""
    cached = lru_cache(maxsize=16_384)(fn)

    @wraps(fn)
    def wrapper(s: str) -> _R:
        return cached(s) if len(s) <= _MEMO_MAX_CHARS else fn(s)

    return wrapper


def _halfwidth(s: str) -> str:
    """Map full-width ASCII forms (``Ｂ``, ``（``, ``：``, ``５``) to ASCII."""
    return s.translate(_HALFWIDTH)


_SUPERSCRIPT_RE = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")


def _powers(s: str) -> str:
    """Write superscript digits as the power they are (``5²`` -> ``5^2``, ``10⁻³`` ->
    ``10^-3``, ``m²`` -> ``m^2``), so a power is never read as a digit (NFKC would make
    ``5²`` the number 52) nor dropped (``5``)."""
    return _SUPERSCRIPT_RE.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPT), s)


_LATEX_WRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|boxed|fbox)"
    r"\s*\{([^{}]*)\}")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_SPACE_BEFORE_OP_RE = re.compile(r"\s+(?=[=+\-*/^<>])")
_SPACE_AFTER_OP_RE = re.compile(r"(?<=[=+\-*/^<>])\s+")
_WS_RE = re.compile(r"\s+")
_LEAD_STRIP = " ,;:!?\"'`“”‘’*_"
_TRAIL_STRIP = " .,;:!?\"'`“”‘’*_。，"
_MAX_UNWRAP_CHARS = 2000  # brackets around longer strings are left alone (cost bound)
_PAIRS = {"(": ")", "[": "]", "{": "}", '"': '"', "'": "'"}


def _unwrap_latex(s: str) -> str:
    for _ in range(4):
        t = _LATEX_WRAP_RE.sub(r"\1", s)
        if t == s:
            break
        s = t
    return s


def _wraps_whole(s: str) -> bool:
    """Whether ``s`` is one bracket pair around everything (``(a+b)``, not ``(a)+(b)``)."""
    open_, close = s[0], _PAIRS[s[0]]
    if open_ == close:
        return s.count(open_) == 2
    depth = 0
    for i, ch in enumerate(s):
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


@_memo_short
def normalize_text(s: str) -> str:
    """Normalise a short answer string for exact comparison.

    Writes superscript powers with ``^`` (``x²`` -> ``x^2``), NFKC-normalises, unwraps LaTeX
    ``\\text{}``/``\\mathrm{}``/``\\boxed{}``, drops ``$``,
    ``\\(``/``\\)``, ``\\left``/``\\right``, LaTeX spacing and markdown emphasis, writes
    degrees as ``°``, lowercases, collapses whitespace, removes spaces around operators
    (``h = 58`` -> ``h=58``), strips surrounding punctuation and quotes, and removes
    brackets that wrap the whole string.

    Args:
        s: Any text.

    Returns:
        The normalised text (possibly empty).
    """
    t = unicodedata.normalize("NFKC", _powers(s))
    t = _unwrap_latex(t)
    t = _DEGREE_RE.sub("°", t)
    t = t.replace("\\left", "").replace("\\right", "")
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\%", "%")
    t = re.sub(r"\\[,;:! ]", " ", t)
    t = re.sub(r"\\[()\[\]]", " ", t)
    t = t.replace("$", "").replace("**", "").replace("__", "").replace("`", "")
    t = _WS_RE.sub(" ", t.lower()).strip()
    t = _SPACE_AFTER_OP_RE.sub("", _SPACE_BEFORE_OP_RE.sub("", t))
    for _ in range(8):
        before = t
        t = t.lstrip(_LEAD_STRIP).rstrip(_TRAIL_STRIP)
        if (2 <= len(t) <= _MAX_UNWRAP_CHARS and t[0] in _PAIRS and t[-1] == _PAIRS[t[0]]
                and _wraps_whole(t)):
            t = t[1:-1].strip()
        if t == before:
            break
    return t


# --------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------

RegionKind = Literal["tag", "boxed", "marker", "whole"]
#: ``strict`` (default): only answers the reply gives as answers; ``lenient``: also unique
#: letter mentions and contained option texts in short replies (VLMEvalKit's first stage).
Mode = Literal["strict", "lenient"]
MODES: tuple[Mode, ...] = ("strict", "lenient")


def _strict(mode: str) -> bool:
    if mode not in MODES:
        raise ValueError(f"unknown extractor {mode!r}: use strict or lenient")
    return mode == "strict"

_OPEN_TAG_RE = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_CLOSE_TAG_RE = re.compile(r"<\s*/\s*answer\s*>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"[{}]")
_MARKER_RE = re.compile(
    r"\b(?:answer(?:\s+(?:choice|option|letter))?|correct\s+(?:option|choice|letter))"
    r"[ \t]*+(?:(?:is|was|would\s+be|should\s+be|will\s+be)\b|[=:])[ \t]*+:?"
    r"|答案[ \t]*+(?:是|为|為|应为|應為|:)?",
    re.IGNORECASE)
_BACK_MARKER_RE = re.compile(
    r"(?<![ \t])[ \t]++(?:is|would\s+be)[ \t]++(?:the[ \t]++)?(?:correct|right|best|final)[ \t]++"
    r"(?:answer|option|choice)\b",
    re.IGNORECASE)
_CLAUSE_START_RE = re.compile(r"[.!?;。！？；](?=\s)|\n|[,:](?=\s)")
_SENTENCE_END_RE = re.compile(r"[。！？；]|[.!?;](?=\s|$)")
_NEGATION_RE = re.compile(r"(?:not|isn't|is not)\b", re.IGNORECASE)


def _final_body(text: str) -> str:
    """The text after the last closed ``</think>`` when there is any, else the text."""
    last = None
    for m in _THINK_CLOSE_RE.finditer(text):
        last = m
    if last is not None:
        after = text[last.end():]
        if after.strip():
            return after
    return text


def _last_answer_tag(s: str) -> str | None:
    last = None
    for m in _OPEN_TAG_RE.finditer(s):
        last = m
    if last is None:
        return None
    close = _CLOSE_TAG_RE.search(s, last.end())
    return s[last.end(): close.start() if close else len(s)]


def _last_boxed(s: str) -> str | None:
    starts = [m.end() for m in _BOXED_RE.finditer(s)]
    for pos in reversed(starts[-_MAX_BOXED:]):
        depth = 1
        for m in _BRACE_RE.finditer(s, pos, pos + _MAX_BOXED_CHARS):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                return s[pos:m.start()]
    return None


def _marker_regions(s: str) -> Iterator[str]:
    """The answer next to each marker, the last marker first.

    After "answer is"/"Answer:": the first sentence after it. Before "is the correct
    answer/option/choice": the clause that ends there ("Thus, B is the correct choice").
    """
    found: list[tuple[int, bool, int]] = [(m.start(), True, m.end())
                                          for m in _MARKER_RE.finditer(s)]
    found += [(m.start(), False, m.start()) for m in _BACK_MARKER_RE.finditer(s)]
    found.sort()
    for _start, forward, pos in reversed(found[-_MAX_MARKERS:]):
        if forward:
            line = s[pos:pos + 400].lstrip().split("\n", 1)[0]
            cut = _SENTENCE_END_RE.search(line)
            if cut is not None:
                line = line[:cut.start()]
        else:
            window = s[max(0, pos - 200):pos]
            starts = [m.end() for m in _CLAUSE_START_RE.finditer(window)]
            line = window[starts[-1]:] if starts else window
        line = line.strip()
        if not line or (forward and _NEGATION_RE.match(line)):
            continue
        yield line


def _regions(body: str) -> Iterator[tuple[str, RegionKind]]:
    tag = _last_answer_tag(body)
    if tag is not None:
        boxed = _last_boxed(tag)
        if boxed is not None:
            yield boxed, "boxed"
        for region in _marker_regions(tag):
            yield region, "marker"
        yield tag, "tag"
    boxed = _last_boxed(body)
    if boxed is not None:
        yield boxed, "boxed"
    for region in _marker_regions(body):
        yield region, "marker"
    yield body, "whole"


# --------------------------------------------------------------------------------------
# Choice
# --------------------------------------------------------------------------------------

_Status = Literal["match", "none", "ambiguous"]
_NONE: tuple[_Status, str | None] = ("none", None)
_AMBIGUOUS: tuple[_Status, str | None] = ("ambiguous", None)

#: Words after a bare "A"/"I" that show the letter is an option, not an article/pronoun.
_ANSWER_CONTINUATIONS = frozenset({
    "is", "because", "since", "seems", "appears", "matches", "corresponds", "fits",
    "and", "or", "nor", "best", "correctly",
})
_PROSE_LETTERS = frozenset({"A", "I"})

_PRE_OPEN_RE = re.compile(r"[(\[{]\s*$")
_POST_CLOSE_RE = re.compile(r"\s*[)\]}]")
_PRE_BOLD_RE = re.compile(r"(?:\*\*?|__?)$")
_POST_BOLD_RE = re.compile(r"[.:]?(?:\*\*?|__?)")
_PRE_CUE_RE = re.compile(r"\b(?:option|choice|letter)s?\s*[:\-]?\s*[(\[]?\s*$", re.IGNORECASE)
_PROSE_NEXT_RE = re.compile(r"[ \t]+([^\W_]+)")
_PRE_NEGATION_RE = re.compile(
    r"\b(?:not|isn't|except|excluding|eliminate|rule\s+out)\s+(?:(?:option|choice)s?\s*)?"
    r"[(\[]?\s*(?:\*\*)?$", re.IGNORECASE)
_LEAD_PREFIX_RE = re.compile(
    r"[\s*_#>\"'`$~\-]*"
    r"(?:\\(?:text|textbf|textrm|mathrm|mathbf|boxed)\s*\{\s*)*"
    r"(?:(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer\s+)?(?:option|choice|letter)"
    r"\s*[:\-]?\s*)?"
    r"[*_]*[(\[{]?\s*",
    re.IGNORECASE)
_STRONG_DELIM_RE = re.compile(r"(?:\*\*|__)?[ \t]*(?:[.:)\],]|\r?\n|$)")
_LOWER_DELIM_RE = re.compile(r"[ \t]*(?:[.:)\]]|$)")
_BARE_STRIP_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|boxed)\s*\{")
_BARE_CHARS = " \t\r\n{}()[]*_$.:\"'`"
_TOKENS_RE = re.compile(r"[^\W_]+|[^\w\s]")


@dataclass(frozen=True)
class _LetterSpec:
    """Compiled matchers for one set of option letters."""

    variants: dict[str, str]
    token_re: re.Pattern[str]
    conj_re: re.Pattern[str]
    end_re: re.Pattern[str]


@lru_cache(maxsize=128)
def _letter_spec(letters: tuple[str, ...]) -> _LetterSpec | None:
    variants: dict[str, str] = {}
    for letter in letters:
        if letter:
            variants.setdefault(_halfwidth(letter), letter)
    for letter in letters:
        h = _halfwidth(letter)
        for v in (h.upper(), h.lower()):
            if v and len(v) == len(h):
                variants.setdefault(v, letter)
    if not variants:
        return None
    ordered = sorted(variants, key=len, reverse=True)
    alt = "|".join(re.escape(v) for v in ordered)
    upper_alt = "|".join(re.escape(v) for v in ordered if not v.islower())
    any_tok = rf"(?<![^\W_])(?:{alt})(?![^\W_])"
    upper_tok = rf"(?<![^\W_])(?:{upper_alt})(?![^\W_])" if upper_alt else "(?!)"
    token_re = re.compile(
        rf"(?<![^\W_])(?<![^\W_][.'’\-])(?P<l>{alt})(?![^\W_])(?!['’\-][^\W_])(?!\.[^\W\s_])")
    conj_re = re.compile(
        rf"[)\]}}*_]*\s*(?:,|/|&|\bor\b|\band\b|\bnor\b|、|或|和|及)\s*"
        rf"(?:(?:option|choice)s?\s*)?(?:[(\[]\s*{any_tok}\s*[)\]]|{upper_tok})",
        re.IGNORECASE)
    end_re = re.compile(
        rf"(?:[(\[]\s*(?P<p>{any_tok})\s*[)\]]|(?:\*\*|__)\s*(?P<b>{upper_tok})\s*[.:]?\s*"
        rf"(?:\*\*|__))[\s.]*$")
    return _LetterSpec(variants=variants, token_re=token_re, conj_re=conj_re, end_re=end_re)


def _is_upper(raw: str) -> bool:
    return not raw.islower()


def _token_context(s: str, m: re.Match[str]) -> tuple[bool, bool]:
    """``(strong, prose)`` for a letter token: strong = wrapped/cued, prose = article."""
    start, end = m.span("l")
    pre = s[max(0, start - 16):start]
    post = s[end:end + 40]
    raw = m.group("l")
    # A lowercase letter needs brackets: "option (b)" counts, "the letter i" does not.
    strong = bool(
        (_PRE_OPEN_RE.search(pre) and _POST_CLOSE_RE.match(post))
        or (_is_upper(raw) and _PRE_BOLD_RE.search(pre) and _POST_BOLD_RE.match(post))
        or (_is_upper(raw) and _PRE_CUE_RE.search(pre)))
    prose = False
    if not strong and raw in _PROSE_LETTERS:
        nxt = _PROSE_NEXT_RE.match(post)
        if nxt is not None:
            word = nxt.group(1)
            prose = word.lower() not in _ANSWER_CONTINUATIONS and not (
                len(word) == 1 and word.isupper())
    return strong, prose


def _bare_letter(region: str, spec: _LetterSpec) -> str | None:
    """The letter when the region is nothing but one letter in formatting (``**(b).**``)."""
    core = _BARE_STRIP_RE.sub("", region).strip(_BARE_CHARS)
    core = re.sub(r"^(?:option|choice|letter)\s*", "", core, flags=re.IGNORECASE)
    return spec.variants.get(core.strip(_BARE_CHARS))


def _lead(region: str, spec: _LetterSpec, *, explicit: bool,
          strict: bool) -> tuple[_Status, str | None] | None:
    """A letter at the start of the region (after formatting, "Option", brackets)."""
    head = region[:160]
    m = spec.token_re.search(head)
    if m is None or m.start() > 100 or not _LEAD_PREFIX_RE.fullmatch(head[:m.start()]):
        return None
    raw = m.group("l")
    strong, prose = _token_context(head, m)
    post = head[m.end():]
    if strict:
        ok = strong or (_is_upper(raw) and _STRONG_DELIM_RE.match(post) is not None)
    elif strong:
        ok = True
    elif _is_upper(raw):
        ok = not prose
    else:
        ok = explicit and _LOWER_DELIM_RE.match(post) is not None
    if not ok:
        return None
    if spec.conj_re.match(post):
        return _AMBIGUOUS
    return "match", spec.variants[raw]


def _scan(region: str, spec: _LetterSpec) -> set[str]:
    """Distinct letters mentioned as answers (stops after two); "not A" is skipped."""
    found: set[str] = set()
    for m in spec.token_re.finditer(region):
        raw = m.group("l")
        if _PRE_NEGATION_RE.search(region, max(0, m.start() - 24), m.start()):
            continue
        strong, prose = _token_context(region, m)
        if strong or (_is_upper(raw) and not prose):
            found.add(spec.variants[raw])
            if len(found) > 1:
                break
    return found


@_memo_short
def _token_key(s: str) -> str:
    toks = _TOKENS_RE.findall(normalize_text(s))
    return "\x00" + "\x00".join(toks) + "\x00" if toks else ""


def _match_options(region: str,
                   options: Sequence[tuple[str, str]]) -> tuple[_Status, str | None]:
    """The letter of the one option whose text occurs in the region as whole tokens."""
    if not options:
        return _NONE
    hay = _token_key(region)
    if not hay:
        return _NONE
    hits: list[tuple[str, list[tuple[int, int]]]] = []
    for letter, key in options:
        spans: list[tuple[int, int]] = []
        pos = hay.find(key)
        while pos >= 0:
            spans.append((pos, pos + len(key)))
            pos = hay.find(key, pos + 1)
        if spans:
            hits.append((letter, spans))
    kept: set[str] = set()
    for letter, spans in hits:
        inside_longer = all(
            any(o0 <= s0 and s1 <= o1 and (o1 - o0) > (s1 - s0)
                for other, ospans in hits if other != letter for o0, o1 in ospans)
            for s0, s1 in spans)
        if not inside_longer:
            kept.add(letter)
    if len(kept) == 1:
        return "match", next(iter(kept))
    return _AMBIGUOUS if kept else _NONE


def _equals_option(region: str, options: Sequence[tuple[str, str]]
                   ) -> tuple[_Status, str | None]:
    """The letter of the option whose text *is* the region (normalised, whole tokens)."""
    key = _token_key(region)
    if not key:
        return _NONE
    hits = {letter for letter, opt in options if opt == key}
    if len(hits) == 1:
        return "match", next(iter(hits))
    return _AMBIGUOUS if hits else _NONE


def _labelled_option(line: str, spec: _LetterSpec,
                     options: Sequence[tuple[str, str]]) -> str | None:
    """``B``, ``(B)``, ``**B.**``, or a letter followed by its own option's text
    (``B. 15``, ``(B) 15``, ``B: 15``): the whole line is one labelled option."""
    r = line.strip()
    if not r or len(r) > 400:
        return None
    if len(r) <= 60:
        bare = _bare_letter(r, spec)
        if bare is not None:
            return bare
    lead = _lead(r, spec, explicit=False, strict=True)
    if lead is None or lead[0] != "match" or lead[1] is None:
        return None
    letter = lead[1]
    m = spec.token_re.search(r)
    assert m is not None
    rest = r[m.end():].lstrip(" \t)]}*_.:-")
    own = dict(options).get(letter)
    if own is not None and _token_key(rest) == own:
        return letter
    return None


def _strict_whole(body: str, spec: _LetterSpec,
                  options: Sequence[tuple[str, str]]) -> tuple[_Status, str | None]:
    """Strict reading of a reply without an answer marker: the reply (or its first or last
    line) is a letter or a labelled option, or the whole reply is one option's text."""
    r = body.strip()
    if not r:
        return _NONE
    whole = _labelled_option(r, spec, options)
    if whole is not None:
        return "match", whole
    status, letter = _equals_option(r, options)
    if status != "none":
        return status, letter
    lines = [ln for ln in r.splitlines() if ln.strip()]
    if len(lines) > 1:
        # no line-length cut here: a labelled line must carry its own option's whole
        # text, which may be long ("B. The red bars outnumber the blue ones")
        first = _labelled_option(lines[0], spec, options)
        last = _labelled_option(lines[-1], spec, options)
        if first is not None and last is not None and first != last:
            return _AMBIGUOUS
        found = last or first
        if found is not None:
            return "match", found
    return _NONE


def _match_choice(region: str, kind: RegionKind, spec: _LetterSpec,
                  options: Sequence[tuple[str, str]], *,
                  strict: bool = False) -> tuple[_Status, str | None]:
    r = region.strip()
    if not r:
        return _NONE
    if strict and kind == "whole":
        return _strict_whole(r, spec, options)
    if len(r) <= 60:
        bare = _bare_letter(r, spec)
        if bare is not None:
            return "match", bare
    explicit = kind != "whole"
    if len(r) <= (SCAN_LIMIT if explicit else SHORT_TEXT_CHARS):
        lead = _lead(r, spec, explicit=explicit, strict=False)
        if lead is not None:
            return lead
        found = _scan(r, spec)
        if len(found) > 1:
            return _AMBIGUOUS
        if found:
            return "match", found.pop()
        return _equals_option(r, options) if strict else _match_options(r, options)
    # Long region: only unmistakable answer forms.
    end = spec.end_re.search(r[-80:])
    if end is not None:
        return "match", spec.variants[end.group("p") or end.group("b")]
    last_line = r[r.rfind("\n") + 1:]
    if len(last_line) <= 80:
        lead = _lead(last_line, spec, explicit=False, strict=True)
        if lead is not None:
            return lead
    nl = r.find("\n")
    first_line = r[: nl if 0 <= nl < 160 else 160]
    lead = _lead(first_line, spec, explicit=False, strict=True)
    return lead if lead is not None else _NONE


def extract_choice(text: str, letters: Sequence[str], options: Sequence[str] = (), *,
                   mode: Mode = "strict") -> str | None:
    """Extract the final option letter from a model's reply.

    ``strict`` (the default) reads an answer only where the reply gives one: an explicit
    region (``<answer>``, ``\\boxed{}``, an "Answer:"/"the answer is" marker), where
    option text must *equal* the region; or, without a marker, a reply (or its first or last
    line) that is nothing but a letter or a labelled option (``B``, ``(B) 15``) or whose
    whole text is one option's text. A reply that merely *contains* an option's value
    ("There are 20 bars") is unparsed. ``lenient`` also reads short replies the way
    VLMEvalKit's first stage does: a unique letter mention or a unique option text contained
    in the reply.

    Recognises ``B``, ``(B)``, ``(b)``, ``B.``, ``B)``, ``[B]``, ``**B**``, ``Option B``,
    ``option (b)``, ``B: 60°``, full-width ``Ｂ``, in the regions described in the module
    docstring. A bare capital ``A``/``I`` followed by a word ("A triangle", "I think") is
    read as an article/pronoun, not an answer. Lowercase letters count only in brackets
    (``(b)``, ``option (b)``), alone, or leading an explicit answer region
    (``Answer: b.``); "option b" in prose does not count. When no letter is
    found, the option whose text (normalised, as whole tokens) occurs in the region gives
    the letter. Several distinct letters or option texts in the deciding region give
    ``None``.

    Args:
        text: The model's raw output.
        letters: The valid option letters (e.g. ``("A", "B", "C", "D")``).
        options: The option texts, aligned with ``letters`` (may be shorter or empty).

    Returns:
        One of ``letters``, or ``None`` when unparsed or ambiguous.
    """
    spec = _letter_spec(tuple(letters))
    if spec is None:
        return None
    opts = [(letter, key) for letter, opt in zip(letters, options, strict=False)
            if letter and (key := _token_key(opt))]
    body = _final_body(_halfwidth(text))
    strict = _strict(mode)
    for region, kind in _regions(body):
        status, letter = _match_choice(region, kind, spec, opts, strict=strict)
        if status == "match":
            return letter
        if status == "ambiguous":
            return None
    return None


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------

_U = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?" \
     r"|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
_PI = r"(?:\\pi(?![A-Za-z])|π)"
_SQRT = rf"(?:\\sqrt\s*+\{{\s*+(?:{_U})\s*+\}}|\\sqrt\s*+[0-9]|√\s*+(?:{_U}))"
_SCI_SUFFIX = r"(?:\\times|×|\\cdot)\s*+10\s*+\^\s*+\{?\s*+[-+]?[0-9]+\s*+\}?"
_ROOT_PI = rf"(?:{_SQRT}(?:\s*+{_PI})?|{_PI})"
# The coefficient is factored out so that each number is matched about once.
_ATOM = rf"(?:(?:{_U})(?:\s*+(?:{_SCI_SUFFIX}|{_ROOT_PI}))?|{_ROOT_PI})"
_NUM_RE = re.compile(
    # A cheap filter on how a number can start keeps long texts fast.
    r"(?=-?(?:[0-9π]|\.[0-9]|√\s*+[0-9.]|\\(?:frac|sqrt|pi)))"
    rf"(?P<sign>(?<![A-Za-z0-9_)\]}}])-)?"
    rf"(?:\\frac\s*+\{{\s*+(?P<fn>-?{_ATOM})\s*+\}}\s*+\{{\s*+(?P<fd>-?{_ATOM})\s*+\}}"
    rf"|\\frac\s*+(?P<fn1>[0-9])\s*+(?P<fd1>[0-9])"
    rf"|(?P<a>{_ATOM})(?:\s*+/\s*+(?P<sd>{_ATOM}))?)"
    rf"(?P<pct>\s*+%|\s*+percent\b)?")
_SCI_FULL_RE = re.compile(
    rf"(?P<m>{_U})\s*+(?:\\times|×|\\cdot)\s*+10\s*+\^\s*+\{{?\s*+(?P<e>[-+]?[0-9]+)\s*+\}}?")
_TERM_FULL_RE = re.compile(
    rf"(?P<c>{_U})?\s*+(?:\\sqrt\s*+\{{\s*+(?P<r1>{_U})\s*+\}}|\\sqrt\s*+(?P<r2>[0-9])"
    rf"|√\s*+(?P<r3>{_U}))?\s*+(?P<pi>{_PI})?")
_UNIT_POWER_RE = re.compile(r"(?<=[A-Za-z])\s*(?:\^\s*\{?\s*[23]\s*\}?|[²³])")
_RESIDUAL_BAD_RE = re.compile(r"[0-9+*/^\\|<>=&#@×÷√π\-]")
_EQUALS_RE = re.compile(r"=|≈|\\approx")


def _clean_math(s: str) -> str:
    t = _halfwidth(_powers(s))
    t = _unwrap_latex(t)
    t = _DEGREE_RE.sub(" ", t).replace("°", " ").replace("º", " ")
    t = t.replace("\\%", "%").replace("\\left", "").replace("\\right", "")
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    t = t.replace("−", "-").replace("$", "")
    t = re.sub(r"\\[,;:! ]", " ", t)
    t = re.sub(r"\\[()\[\]]", " ", t)
    return _UNIT_POWER_RE.sub("", t)


def _num(u: str) -> float:
    return float(u.replace(",", ""))


def _atom_value(s: str) -> float | None:
    s = s.strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:].strip()
    sci = _SCI_FULL_RE.fullmatch(s)
    if sci is not None:
        value = float(f"{_num(sci.group('m'))}e{int(sci.group('e'))}")
    else:
        m = _TERM_FULL_RE.fullmatch(s)
        if m is None or not s:
            return None
        value = _num(m.group("c")) if m.group("c") else 1.0
        rad = m.group("r1") or m.group("r2") or m.group("r3")
        if rad is not None:
            value *= math.sqrt(_num(rad))
        if m.group("pi"):
            value *= math.pi
    return -value if neg else value


def _match_value(m: re.Match[str]) -> float | None:
    try:
        if m.group("fn") is not None:
            num, den = _atom_value(m.group("fn")), _atom_value(m.group("fd"))
        elif m.group("fn1") is not None:
            num, den = float(m.group("fn1")), float(m.group("fd1"))
        else:
            num = _atom_value(m.group("a"))
            den = 1.0 if m.group("sd") is None else _atom_value(m.group("sd"))
        if num is None or den is None or den == 0:
            return None
        value = num / den
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    return -value if m.group("sign") else value


def _in_power(t: str, m: re.Match[str]) -> bool:
    """Whether the number ``m`` is the base or the exponent of a power (``5^2``,
    ``10^{-3}``; a unit's power was removed before, ``3 \\times 10^{5}`` is one match)."""
    return t[:m.start()].rstrip(" {").endswith("^") or t[m.end():].lstrip().startswith("^")


def _last_number(region: str) -> float | None:
    """The last number of ``region``; None when that number is part of a power (``5^2``,
    ``5²``): the answer is an expression, and neither its base nor its exponent is it."""
    t = _clean_math(region)
    if len(t) > 2 * _NUMBER_TAIL:
        # Long text: the last number lies in the tail. Matches near the window's start
        # may be cut; when the tail has no number well inside it, scan everything.
        start = len(t) - _NUMBER_TAIL
        for m in reversed(list(_NUM_RE.finditer(t, start))):
            if m.start() < start + 256:
                break
            value = _match_value(m)
            if value is not None:
                return None if _in_power(t, m) else value
    for m in reversed(list(_NUM_RE.finditer(t))[-_MAX_NUMBER_TRIES:]):
        value = _match_value(m)
        if value is not None:
            return None if _in_power(t, m) else value
    return None


@_memo_short
def parse_number(s: str) -> float | None:
    """Parse a string that holds one number, with optional label, unit or LaTeX.

    Handles ``58``, ``$h=58$`` (the right side of the last ``=``), ``58°``, ``1,234``,
    ``-3.5``, ``\\frac{1}{2}``, ``1/2``, ``50%`` (-> 50), ``2.5 cm``, ``12 cm^2``,
    ``2\\sqrt{3}``, ``4\\pi``, ``3 \\times 10^{5}``, ``1e-5`` and full-width digits.
    Strings with several numbers (``(3, 4)``) or leftover arithmetic (``x^2+1``) give
    ``None``: use :func:`extract_number` to pull the last number out of prose.

    Args:
        s: The text to parse.

    Returns:
        The finite value, or ``None``.
    """
    t = _clean_math(s)
    parts = _EQUALS_RE.split(t)
    t = parts[-1]
    found = _NUM_RE.finditer(t)
    m = next(found, None)
    if m is None or next(found, None) is not None:
        return None
    residual = t[:m.start()] + t[m.end():]
    if _RESIDUAL_BAD_RE.search(residual):
        return None
    return _match_value(m)


def extract_number(text: str, *, mode: Mode = "strict") -> float | None:
    """Extract the final numeric answer: the last number in the deciding region.

    ``strict``: without an answer marker, the reply (or its first or last line) must be one
    number (``58``, ``$h=58$``, ``12 cm``); "There are 20 bars" is unparsed. ``lenient``:
    the last number anywhere in the reply.

    Args:
        text: The model's raw output.
        mode: ``strict`` or ``lenient``.

    Returns:
        The number, or ``None`` when no region holds one.
    """
    strict = _strict(mode)
    for region, kind in _regions(_final_body(text)):
        if strict and kind == "whole":
            return _strict_number(region)
        value = _last_number(region)
        if value is not None:
            return value
    return None


_UNIT_RE = re.compile(r"[^\W\d_]{1,12}(?:[ \t]+[^\W\d_]{1,12})?|")
#: Markdown bold marks that open or close a span (not ``2**3``, a power between operands).
_BOLD_MARK_RE = re.compile(r"(?<![^\W_])(?:\*\*|__)|(?:\*\*|__)(?![^\W_])")


def _number_alone(line: str) -> float | None:
    """A line that is one number, with at most a short unit (``12 cm``, ``58°``, ``$h=58$``):
    not a sentence that happens to hold one number. Bold marks (``**58**``) are ignored."""
    line = _BOLD_MARK_RE.sub("", line)
    value = parse_number(line)
    if value is None:
        return None
    parts = _EQUALS_RE.split(_clean_math(line))
    label = " ".join(parts[:-1]).strip(" \t*_")
    if label and (len(label) > 24 or any(c.isdigit() for c in label)
                  or len(label.split()) > 2):
        return None  # "x = 4 and y = 5": not one labelled number
    t = parts[-1]
    m = _NUM_RE.search(t)
    if m is None:
        return None
    before = t[:m.start()].strip(" \t*_([{\"'`")
    after = t[m.end():].strip(" \t.,;:!?)]}*_\"'`")
    return value if before in ("", "$", "€", "£", "¥", "~", "≈") and _UNIT_RE.fullmatch(after) \
        else None


def _strict_number(region: str) -> float | None:
    r = region.strip()
    if not r or len(r) > SCAN_LIMIT:
        return None
    value = _number_alone(r)
    if value is not None:
        return value
    lines = [ln for ln in r.splitlines() if ln.strip()]
    if len(lines) > 1:
        for line in (lines[-1], lines[0]):
            if len(line) <= 80 and (value := _number_alone(line)) is not None:
                return value
    return None


def format_number(value: float) -> str:
    """The canonical string of a number: ``58`` for integral values, else ``repr``.

    Args:
        value: A finite float.

    Returns:
        ``"58"``, ``"2.5"``, ``"-0.75"``, ``"1e-05"``.
    """
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


# --------------------------------------------------------------------------------------
# Exact
# --------------------------------------------------------------------------------------


def extract_exact(text: str, *, mode: Mode = "strict") -> str | None:
    """Extract the final answer string, normalised with :func:`normalize_text`.

    Without an answer marker, ``strict`` takes a reply of one short line
    (<= ``SHORT_TEXT_CHARS``) as the answer and leaves anything longer unparsed;
    ``lenient`` takes the last non-empty line.

    Args:
        text: The model's raw output.
        mode: ``strict`` or ``lenient``.

    Returns:
        The normalised answer, or ``None`` when it is empty.
    """
    strict = _strict(mode)
    for region, kind in _regions(_final_body(text)):
        candidate = region
        if kind == "whole":
            lines = [ln for ln in region.splitlines() if ln.strip()]
            if not lines or (strict and (len(lines) > 1
                                         or len(lines[0].strip()) > SHORT_TEXT_CHARS)):
                return None
            candidate = lines[-1]
        norm = normalize_text(candidate)
        if norm:
            return norm
    return None


# --------------------------------------------------------------------------------------
# Dispatch and checking
# --------------------------------------------------------------------------------------


def _choice_letters(fmt: AnswerFormat) -> tuple[str, ...]:
    if fmt.letters:
        return fmt.letters
    return tuple(chr(ord("A") + i) for i in range(min(len(fmt.options), 26)))


#: Replies at most this long are memoised with their format and mode (templated replies —
#: simulated agents, short answers — recur across episodes; both extractors read each
#: reply, so a hit saves two regex passes).
_MEMO_REPLY_CHARS = 512


@lru_cache(maxsize=32_768)
def _extract_memo(text: str, fmt: AnswerFormat, mode: Mode) -> str | None:
    return _extract(text, fmt, mode)


def extract_answer(text: str, fmt: AnswerFormat, *, mode: Mode = "strict") -> str | None:
    """Extract the answer for a format.

    ``choice`` returns a letter (``fmt.letters``, or A, B, ... for ``fmt.options`` when
    no letters are given), ``numeric`` the canonical string of the number
    (:func:`format_number`), ``exact`` the normalised final answer.

    Args:
        text: The model's raw output.
        fmt: How the answer is extracted.
        mode: ``strict`` (default) or ``lenient`` (see :func:`extract_choice`).

    Returns:
        The answer, or ``None`` when unparsed.
    """
    if len(text) <= _MEMO_REPLY_CHARS:
        _strict(mode)  # an unknown mode is refused before it reaches the cache
        return _extract_memo(text, fmt, mode)
    return _extract(text, fmt, mode)


def _extract(text: str, fmt: AnswerFormat, mode: Mode) -> str | None:
    if fmt.kind == "choice":
        return extract_choice(text, _choice_letters(fmt), fmt.options, mode=mode)
    if fmt.kind == "numeric":
        value = extract_number(text, mode=mode)
        return None if value is None else format_number(value)
    return extract_exact(text, mode=mode)


def _choice_key(s: str) -> str:
    return _halfwidth(s).strip(_BARE_CHARS).upper()


def check_answer(answer: str | None, expected: str, fmt: AnswerFormat) -> bool:
    """Check an extracted answer against the ground truth.

    ``choice``: same letter, case-insensitive (surrounding brackets/punctuation ignored).
    ``numeric``: both sides go through :func:`parse_number` and are compared with
    ``math.isclose(rel_tol=fmt.rel_tol, abs_tol=fmt.abs_tol)``; when either side is not a
    single number (``2\\sqrt{x}``) the normalised texts must be equal.
    ``exact``: equal :func:`normalize_text`, or both parse as numbers that are close.
    ``None`` and empty answers are never correct.

    Args:
        answer: The extracted answer, or ``None`` when unparsed.
        expected: The ground truth.
        fmt: The answer format (kind and tolerances).

    Returns:
        Whether the answer is correct.
    """
    if answer is None:
        return False
    if fmt.kind == "choice":
        key = _choice_key(answer)
        return bool(key) and key == _choice_key(expected)
    a_num, e_num = parse_number(answer), parse_number(expected)
    if a_num is not None and e_num is not None:
        if math.isclose(a_num, e_num, rel_tol=fmt.rel_tol, abs_tol=fmt.abs_tol):
            return True
        if fmt.kind == "numeric":
            return False
    a_txt, e_txt = normalize_text(answer), normalize_text(expected)
    return bool(a_txt) and a_txt == e_txt
