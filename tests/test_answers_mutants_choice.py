"""Choice-extraction corners found unchecked by mutation testing (issue 19 item 6).

Each case asserts behaviour of strict/lenient answer extraction as documented in
mmsim/tasks/answers.py and docs/metrics.md ("Answer extraction").
"""
from __future__ import annotations

import pytest

from mmsim.tasks.answers import extract_choice

L4 = ("A", "B", "C", "D")


@pytest.mark.parametrize("mode", ["strict", "lenient"])
@pytest.mark.parametrize("text", [
    # An ambiguous deciding region gives None; a later bare letter must not be read.
    "The answer is A or B.\nC",
])
def test_ambiguous_region_stops_the_search(text: str, mode: str) -> None:
    assert extract_choice(text, L4, mode=mode) is None  # type: ignore[arg-type]


def test_options_shorter_than_letters_still_match() -> None:
    # Option texts may be shorter than the letters (zip is not strict).
    assert extract_choice("The answer is blue.", L4, ("red", "blue")) == "B"


def test_implicit_letters_stop_at_z() -> None:
    # Without explicit letters, options are lettered A..Z only; a 27th option gets no letter.
    from mmsim.messages import AnswerFormat
    from mmsim.tasks.answers import extract_answer

    fmt = AnswerFormat(kind="choice", options=tuple(f"opt{i}" for i in range(27)))
    assert extract_answer("Z", fmt) == "Z"
    assert extract_answer("The answer is [.", fmt) is None
