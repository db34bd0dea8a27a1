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


# --------------------------------------------------------------------------------------
# Mutation triage, issue 19 item 6 (docs/mutation/answers-choice.md): each case is a rule
# of docs/metrics.md "Answer extraction" or of mmsim/tasks/answers.py's docstrings.
# --------------------------------------------------------------------------------------

COLOURS = ("red", "blue", "green", "yellow")
SIZES = ("S", "M", "XL", "XXL")


@pytest.mark.parametrize(("text", "options", "mode", "want"), [
    # the region after "Answer:" is its first sentence, ending at the line's end ...
    ("Answer: blue\nred was my first guess\nok", COLOURS, "strict", "B"),
    # ... or at a full stop; strict needs the option's whole text there
    ("The answer is blue. red was my first guess", COLOURS, "strict", "B"),
    # "B is the correct answer": the clause before the back marker, even at the text's start
    ("B is the correct answer.", (), "strict", "B"),
    # a marker region that starts with "not" is skipped, and the earlier marker is read
    ("Answer: red.\nThe answer is not blue.", COLOURS, "lenient", "A"),
    # inside <answer>, a \boxed{} is preferred to the tag's whole text
    ("<answer>Between A and C: \\boxed{B}</answer>", (), "strict", "B"),
    ("<answer>Between A and C: \\boxed{B}</answer>", (), "lenient", "B"),
    # the leading letter decides, before later mentions (as "The answer is A because B ...")
    ("The answer is (B), since C is smaller.", (), "strict", "B"),
    ("The answer is (B), since C is smaller.", (), "lenient", "B"),
    # an explicit region that yields nothing lets the lower regions decide
    ("The answer is unclear.\nB", COLOURS, "lenient", "B"),
])
def test_regions_and_markers(text: str, options: tuple[str, ...], mode: str,
                             want: str | None) -> None:
    assert extract_choice(text, L4, options, mode=mode) == want  # type: ignore[arg-type]


def test_letters_match_case_insensitively() -> None:
    # lowercase option letters: "B" and "(B)" name letter "b" (the letter is returned as given)
    low = ("a", "b", "c", "d")
    assert extract_choice("B", low) == "b"
    assert extract_choice("The answer is (C).", low) == "c"


def test_empty_letter_is_never_an_answer() -> None:
    # an empty entry among the letters is no option: nothing (or an empty pair of
    # brackets) is never read as it (docs: the extractor never guesses)
    letters = ("A", "", "C")
    for text in ("()", "**", "Answer: ()"):
        assert extract_choice(text, letters, mode="lenient") is None
    assert extract_choice("C", letters) == "C"


@pytest.mark.parametrize(("text", "want"), [
    # several options named in the deciding region are ambiguous: "Option B" after "or"
    ("Answer: A or Option B", None),
    ("Answer: A OR B", None),
    # lowercase letters count in brackets ...
    ("(b) because the bars are taller", "B"),
    # ... but not merely before a closing bracket or inside bold, outside an explicit region
    ("b) seems right", None),
    ("**b** because it is the tallest", None),
    # "Option A" is a cued letter, not the article "A"
    ("Option A looks right.", "A"),
    # only A and I are read as article/pronoun; "B looks right" names B
    ("B looks right.", "B"),
    # a bare capital A/I followed by a word (any case) is an article/pronoun
    ("A TRIANGLE, SO B.", "B"),
    # lowercase letters lead only explicit regions, not a short reply's text
    ("b. The second bar is tallest.", None),
    # "not B" is no mention of B, also at the very start
    ("Not B. C is right.", "C"),
])
def test_letter_mentions_in_short_replies(text: str, want: str | None) -> None:
    assert extract_choice(text, L4, mode="lenient") == want


def test_shouted_pronoun_is_not_a_letter() -> None:
    letters = tuple("ABCDEFGHI")  # "I" is an option letter here
    assert extract_choice("I AM SURE IT IS B.", letters, mode="lenient") == "B"


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_lowercase_letter_leading_a_long_explicit_region(mode: str) -> None:
    # "Lowercase letters count ... leading an explicit answer region (Answer: b.)"
    text = "<answer>b. The bars of the second group are the tallest of them all.</answer>"
    assert len(text) > 70
    assert extract_choice(text, L4, mode=mode) == "B"  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "mode", "want"), [
    # a reply that is nothing but a letter in formatting is read in strict mode
    ("(Option B)", "strict", "B"),
    ("(\\mathrm{B})", "strict", "B"),
    # a letter followed by its own option's text (C is "XL"), alone or as first/last line
    ("C. XL", "strict", "C"),
    ("C. XL\nIt is the largest of the sizes shown.", "strict", "C"),
    ("I think it is this one.\nC. XL", "strict", "C"),
    # the letter must be closed (`.`, `:`, `)`) to label its option: without that, strict
    # reads nothing (docs/metrics.md); lenient reads the unique letter mention
    ("C XL", "strict", None),
    ("C - XL", "strict", None),
    ("C XL\nIt is the largest of the sizes shown.", "strict", None),
    ("C XL", "lenient", "C"),
    ("C - XL", "lenient", "C"),
])
def test_labelled_and_bare_lines(text: str, mode: str, want: str | None) -> None:
    assert extract_choice(text, L4, SIZES, mode=mode) == want  # type: ignore[arg-type]


_DR = ("red", "dark red", "blue", "green")


@pytest.mark.parametrize(("text", "options", "want"), [
    # an option's text inside a longer matched option's text does not count there ...
    ("It is the red car.", ("red", "red car", "blue", "green"), "B"),
    # ... but it counts where it stands alone: two options named -> ambiguous
    ("red or dark red", _DR, None),
    ("dark red, red or dark red", _DR, None),
    ("red or dark blue", ("red", "blue", "dark blue", "green"), None),
    # an ambiguous explicit region stops the search (the "B" after it is not read)
    ("<answer>red or blue</answer> B", COLOURS, None),
    # two options with the same text named by the region: several letters -> ambiguous
    ("<answer>surely red</answer> B", ("red", "red", "blue", "green"), None),
])
def test_lenient_option_texts(text: str, options: tuple[str, ...], want: str | None
                              ) -> None:
    assert extract_choice(text, L4, options, mode="lenient") == want


def test_duplicate_option_text_equal_to_region_is_ambiguous() -> None:
    dup = ("red", "red", "blue", "green")
    assert extract_choice("<answer>red</answer>\nB", L4, dup) is None


def test_short_text_limit_is_inclusive() -> None:
    # SHORT_TEXT_CHARS: a whole text "at most this long" is scanned for a unique letter
    from mmsim.tasks.answers import SHORT_TEXT_CHARS
    head = "Looking at the chart, I would go with C since the red bars are taller"
    text = head + " " + "x" * (SHORT_TEXT_CHARS - len(head) - 2) + "."
    assert len(text) == SHORT_TEXT_CHARS
    assert extract_choice(text, L4, mode="lenient") == "C"
    assert extract_choice(text + "x", L4, mode="lenient") is None  # long: prose ignored


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_explicit_region_up_to_scan_limit_is_scanned(mode: str) -> None:
    # SCAN_LIMIT: explicit regions up to this long get the short-text rules (a unique
    # letter mention counts), whatever SHORT_TEXT_CHARS is
    from mmsim.tasks.answers import SCAN_LIMIT, SHORT_TEXT_CHARS
    inner = (_MID + "Looking at it all, I would go with C here. " + _MID)
    assert SHORT_TEXT_CHARS < len(inner) < SCAN_LIMIT and "\n" not in inner
    assert extract_choice(f"<answer>{inner}</answer>", L4, mode=mode) == "C"  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "want"), [
    # a long reply: "(B)"/"**B**" at the very end counts, even at the end of a long line
    ("Let me look.\n" + _MID + "All in all, I pick **B**", "B"),
    # a last line that is a letter in a sentence is no answer line
    ("Here is my reasoning.\n" + _MID + "\nB is my pick.", None),
    # only the FIRST line is read at the start: a second line "B. ..." is not
    ("---\nB. " + _MID, None),
    ("---\nB. Here is why.\n" + _MID, None),
])
def test_long_reply_answer_lines(text: str, want: str | None) -> None:
    assert len(text) > 200
    assert extract_choice(text, L4, mode="lenient") == want


_LONG_OPTIONS = ("The red bars outnumber the blue bars in every single group shown",
                 "The blue bars outnumber the red bars in every single group shown", "10", "20")


@pytest.mark.parametrize("text", [
    # docs/metrics.md: strict reads a first or last line that is "a letter with its own
    # option's text (B. 15)", however long that option's text is (a bug: lines over 60
    # characters were skipped, so long options were never read from a first/last line)
    "B. " + _LONG_OPTIONS[1] + "\nI compared the bars group by group.",
    "I compared the bars group by group.\nB. " + _LONG_OPTIONS[1],
])
def test_strict_labelled_long_option_line(text: str) -> None:
    assert len(_LONG_OPTIONS[1]) > 60
    assert extract_choice(text, L4, _LONG_OPTIONS) == "B"
    # a first line naming another option's text is still not read as B
    assert extract_choice(text.replace("B. ", "A. "), L4, _LONG_OPTIONS) is None


def test_long_reply_last_line_up_to_80_chars() -> None:
    # SHORT_TEXT_CHARS' comment: a long reply's last line is read when it is at most 80
    # characters ("B. ..." leads it); a longer last line is prose
    def reply(n: int) -> str:
        last = "B. " + "y" * (n - 4) + "."
        assert len(last) == n
        return "Some thoughts first.\n" + _MID + "\n" + last
    assert extract_choice(reply(80), L4, mode="lenient") == "B"
    assert extract_choice(reply(81), L4, mode="lenient") is None
