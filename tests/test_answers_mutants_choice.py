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


_MID = ("The figure shows several overlapping shapes and the colours are hard to tell apart "
        "in places, so I looked closely. ") * 2


@pytest.mark.parametrize(("text", "want"), [
    # a long reply is read only at its unmistakable places: the last line (after the LAST
    # newline), then the first line, each only as an answer form
    ("Let me think.\n" + _MID + "\nC", "C"),
    ("C\n" + _MID + "\nSo, on balance, that is my reading of it all.", "C"),
    # a letter mentioned mid-prose in a long reply is no answer, even leniently
    (_MID + " Between the two I would go with (B) for now. " + _MID, None),
    # lowercase letters lead only explicit regions: not a long reply's first or last line
    ("b. " + _MID + "\nThat is all.", None),
    ("Overall thoughts first.\n" + _MID + "\nb", None),
])
def test_long_replies_are_read_only_at_their_answer_lines(text: str, want: str | None
                                                         ) -> None:
    assert len(text) > 200  # past the short-reply scan
    assert extract_choice(text, ("A", "B", "C", "D"), mode="lenient") == want
