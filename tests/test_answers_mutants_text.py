"""Number parsing, text normalisation and dispatch corners that mutation testing (mutmut,
issue 19) found unchecked. Each case states behaviour of the public answer API."""

from __future__ import annotations

import pytest

from mmsim.messages import AnswerFormat
from mmsim.tasks.answers import (
    SCAN_LIMIT,
    SHORT_TEXT_CHARS,
    check_answer,
    extract_answer,
    extract_choice,
    extract_exact,
    extract_number,
    normalize_text,
    parse_number,
)

CHOICE = AnswerFormat(kind="choice", letters=("A", "B", "C", "D"))
NUMERIC = AnswerFormat(kind="numeric")
EXACT = AnswerFormat(kind="exact")


# --------------------------------------------------------------------------------------
# normalize_text
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "norm"), [
    # \left / \right sizing commands vanish, then the whole-string brackets go.
    (r"\left( 1, 2 \right)", "1, 2"),
    (r"\left[x\right]", "x"),
    # \dfrac and \tfrac are written as \frac.
    (r"\dfrac{a}{b}", r"\frac{a}{b}"),
    (r"\tfrac{a}{b}", r"\frac{a}{b}"),
    (r"50\%", "50%"),
    # LaTeX spacing commands become spaces; \( \) \[ \] delimiters vanish.
    (r"a\,b", "a b"),
    (r"a\;b", "a b"),
    (r"\(x+1\)", "x+1"),
    (r"\[x+1\]", "x+1"),
    # Markdown emphasis and code marks inside the answer are dropped.
    ("a **b** c", "a b c"),
    ("a __b__ c", "a b c"),
    ("a `b` c", "a b c"),
    # One bracket pair around everything goes, also around nested brackets ...
    ("(f(x))", "f(x)"),
    ("[g(1)]", "g(1)"),
    # ... an empty pair leaves nothing ...
    ("()", ""),
    ("[]", ""),
    # ... but brackets that do not wrap the whole string, or do not balance, stay.
    ("(a)+(b)", "(a)+(b)"),
    ("((1,2)", "((1,2)"),
    ("(x))", "(x))"),
])
def test_normalize_text_forms(raw: str, norm: str) -> None:
    assert normalize_text(raw) == norm


def test_exact_answers_equal_through_latex_sizing_and_spacing() -> None:
    assert check_answer(r"\left( 1, 2 \right)", "(1, 2)", EXACT)
    assert check_answer(r"\tfrac{a}{b}", r"\dfrac{a}{b}", EXACT)
    assert check_answer("a **b** c", "a b c", EXACT)
    assert not check_answer("()", "()", EXACT)  # an empty answer is never correct


# --------------------------------------------------------------------------------------
# \boxed with nested braces
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "answer"), [
    (r"Thus \boxed{x^{2}}", "x^{2}"),
    (r"We get \boxed{\frac{1}{2}} in the end", r"\frac{1}{2}"),
])
def test_boxed_with_nested_braces(text: str, answer: str) -> None:
    assert extract_exact(text) == answer


# --------------------------------------------------------------------------------------
# Options with empty text never match
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["__", "Answer: $$", "**"])
def test_empty_option_text_never_matches_an_empty_reply(text: str) -> None:
    assert extract_choice(text, ("A", "B"), ("", "5")) is None
    assert extract_choice(text, ("A", "B"), ("", "5"), mode="lenient") is None


# --------------------------------------------------------------------------------------
# parse_number
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    # A negative numerator or denominator inside \frac.
    (r"\frac{-1}{2}", -0.5),
    (r"\frac{3}{-4}", -0.75),
    (r"\dfrac{-12}{5}", -2.4),
    (r"\tfrac{1}{2}", 0.5),
    # Roots written without braces or with the root sign.
    (r"2\sqrt3", 2 * 3 ** 0.5),
    ("2√3", 2 * 3 ** 0.5),
    # \left / \right and \( \) around a number.
    (r"\left(5\right)", 5.0),
    (r"\(5\)", 5.0),
    (r"5\,\text{cm}", 5.0),
])
def test_parse_number_latex_forms(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == pytest.approx(value)


# --------------------------------------------------------------------------------------
# Strict numbers: a reply (or its first or last line) that is one number
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    # Degrees followed by a unit (^\circ, °, º are all degree signs).
    (r"$58^{\circ}$ C", 58.0),
    (r"58^\circ C", 58.0),
    ("58° C", 58.0),
    ("40° north latitude", 40.0),
    ("40º north latitude", 40.0),
    # \left( \right), \( \), LaTeX spaces and unit powers around a number with a unit.
    (r"$\left(5\right)$ cm", 5.0),
    (r"\(5\)", 5.0),
    (r"$12\ \text{square units}$", 12.0),
    ("12 kilometers^2", 12.0),
    # Brackets and quotes around the number, currency and "about" signs before it.
    ("(58)", 58.0),
    ('"58"', 58.0),
    ("€5", 5.0),
    ("£5", 5.0),
    ("¥5", 5.0),
    ("~5", 5.0),
    # Labels: up to two words, emphasis around them ignored; chained equal sides.
    ("**Approximate wavelength** = 5 nm", 5.0),
    ("AB = CD = 5 cm", 5.0),
])
def test_strict_number_alone(text: str, value: float) -> None:
    assert extract_number(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "value"), [
    ("**58**", 58.0),
    ("__58__", 58.0),
    ("**58 cm**", 58.0),
    ("**58** cm", 58.0),
    ("**x = 5**", 5.0),
    ("Work shown above.\n**58**", 58.0),
])
def test_strict_number_in_bold(text: str, value: float) -> None:
    # A bold number is a number alone (models often bold the final answer).
    assert extract_number(text) == value


@pytest.mark.parametrize("text", ["2**3", "**2x = 10**"])
def test_strict_number_power_is_not_bold(text: str) -> None:
    assert extract_number(text) is None


@pytest.mark.parametrize("text", [
    "2x = 10",  # an equation, not the value of x
    "Solving gives X = 5",  # a sentence: the label is longer than two words
    "X 12",  # a word before the number
    "12 more than X",  # a phrase after the number, not a unit
])
def test_strict_number_rejects_sentences(text: str) -> None:
    assert extract_number(text) is None
    assert extract_number(text, mode="lenient") is not None


@pytest.mark.parametrize(("text", "value"), [
    ("Result\n58", 58.0),  # last line of two
    ("Work:\nsome reasoning\n58", 58.0),  # last line of three
    ("58\nbecause of the reasoning\nshown above", 58.0),  # first line of three
])
def test_strict_number_first_or_last_line(text: str, value: float) -> None:
    assert extract_number(text) == value


def test_strict_number_whole_reply_length_bound() -> None:
    head = "58\n"
    at_limit = head + "w" * (SCAN_LIMIT - len(head))
    assert len(at_limit) == SCAN_LIMIT
    assert extract_number(at_limit) == 58.0
    assert extract_number(at_limit + "w") is None
    assert extract_number(at_limit + "w", mode="lenient") == 58.0


# --------------------------------------------------------------------------------------
# Long replies: the last number is read whole, unparseable numbers are skipped
# --------------------------------------------------------------------------------------


def test_long_reply_last_number_read_whole() -> None:
    # The last number straddles where the 4096-character tail of a long reply begins.
    text = "w " * 3000 + "123456" + " z" * 2046 + " "
    assert len(text) > 8192
    assert extract_number(text, mode="lenient") == 123456.0


def test_long_reply_skips_unparseable_last_number() -> None:
    text = "w " * 5000 + "so 7 and then 1/0 end"
    assert extract_number(text, mode="lenient") == 7.0
    assert extract_number("so 7 and then 1/0 end", mode="lenient") == 7.0


# --------------------------------------------------------------------------------------
# extract_exact (strict: one short line)
# --------------------------------------------------------------------------------------


def test_exact_strict_takes_one_short_line_only() -> None:
    assert extract_exact("foo\nbar") is None
    assert extract_exact("foo\nbar", mode="lenient") == "bar"
    line = "q" * SHORT_TEXT_CHARS
    assert extract_exact(line) == line
    assert extract_exact(line + "q") is None


# --------------------------------------------------------------------------------------
# extract_answer: mode reaches every extractor, long replies too
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [0, 600])
def test_extract_answer_passes_mode(pad: int) -> None:
    prefix = "w " * (pad // 2)
    assert extract_answer(prefix + "There are 20 bars", NUMERIC) is None
    assert extract_answer(prefix + "There are 20 bars", NUMERIC, mode="lenient") == "20"
    assert extract_answer(prefix + "x\nfinal", EXACT) is None
    assert extract_answer(prefix + "x\nfinal", EXACT, mode="lenient") == "final"


def test_extract_answer_long_reply() -> None:
    text = "reasoning " * 60 + "\nThe answer is 42."
    assert len(text) > 512
    assert extract_answer(text, NUMERIC) == "42"
    assert extract_answer(text, EXACT) == "42"
    assert extract_answer(text + " (B)", CHOICE) is None
    assert extract_answer("reasoning " * 60 + "\nAnswer: (B)", CHOICE) == "B"


# --------------------------------------------------------------------------------------
# check_answer
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    ("B)", "B"),
    ("b", "B"),
    ("(C).", "C"),
])
def test_check_choice_ignores_brackets_and_case(answer: str, expected: str) -> None:
    assert check_answer(answer, expected, CHOICE)


def test_check_choice_does_not_read_latex() -> None:
    # A choice answer is a letter: LaTeX around it is not unwrapped as for exact answers.
    assert not check_answer(r"\text{B}", "B", CHOICE)
    assert check_answer(r"\text{B}", "B", EXACT)


def test_check_numeric_compares_values_not_texts() -> None:
    # NFKC turns "5²" into "52"; numeric checking compares the parsed values.
    assert not check_answer("5²", "52", NUMERIC)
