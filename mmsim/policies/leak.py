"""Leak detection: does feedback that must not reveal the answer contain it?"""

from __future__ import annotations

import re

from mmsim.data.sample import Sample

_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def detect_leak(text: str, sample: Sample) -> bool:
    """True when ``text`` names the sample's answer.

    Choice items: the correct letter in an answer-like phrase ("answer is B", "(B)",
    "Option B", "B is correct"; the words in any case, a one-letter answer only as written)
    or the correct option's text. Numeric/exact items: the
    answer's value as a number or phrase in the text. Mentions of *other* letters (the
    receiver's wrong answer) are not leaks.
    """
    fmt = sample.answer_format
    low = _norm(text)
    if fmt.kind == "choice":
        letter = re.escape(sample.answer)
        patterns = (
            rf"\({letter}\)",
            rf"\b(?i:answer|option|choice)\s*(?i:is|:|should be|=)?\s*\(?{letter}\b(?!')",
            rf"\b{letter}\s+(?i:is)\s+(?i:the\s+)?(?i:correct|right)\b",
        )
        if any(re.search(pat, text, flags=re.IGNORECASE if len(sample.answer) > 1 else 0)
               for pat in patterns):
            return True
        if sample.answer in fmt.letters and fmt.options:
            opt = _norm(fmt.options[fmt.letters.index(sample.answer)])
            if len(opt) >= 2 and re.search(rf"(?<!\w){re.escape(opt)}(?!\w)", low):
                return True
        return False
    truth = _norm(sample.answer)
    try:
        value = float(truth.replace(",", "").strip("$"))
    except ValueError:
        return len(truth) >= 2 and re.search(rf"(?<!\w){re.escape(truth)}(?!\w)", low) is not None
    for m in _NUM.finditer(text):
        try:
            if abs(float(m.group().replace(",", "")) - value) <= 1e-9 * max(1.0, abs(value)):
                return True
        except ValueError:
            continue
    return False
