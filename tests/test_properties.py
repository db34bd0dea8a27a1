"""Property tests (hypothesis): answer extraction and the scenario loader.

Extraction never returns a letter outside the allowed letters, never returns an option the
text does not name (by letter or by option text), is deterministic, and reads the explicit
answer forms (``Answer: B``, ``(b)``, ``B.``, ``\\boxed{B}``, ``<answer>B</answer>``) however
much text surrounds them. The loader turns any dict or text into a scenario or a
:class:`UserError` (exit 2) — nothing else — and valid scenarios round-trip through YAML.
Example counts are modest: the file runs in well under 20 s on 2 cores.
"""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim.errors import UserError
from mmsim.scenario import load_scenario
from mmsim.tasks.answers import extract_choice

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ALL_LETTERS = "ABCDEFGHIJ"
letter_sets = st.integers(2, 10).map(lambda k: tuple(ALL_LETTERS[:k]))
filler = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
words = st.sampled_from(["the", "figure", "shows", "angle", "I think", "A triangle",
                         "option", "answer", "is", "not", "maybe", "or", "and", "\n",
                         "Let me check.", "So", "final", "答案", "ｂ", "É", "→", "**"])


def _answer_forms(letter: str) -> st.SearchStrategy[str]:
    return st.sampled_from([
        f"Answer: {letter}", f"The answer is {letter}.", f"({letter.lower()})",
        f"{letter}.", f"\\boxed{{{letter}}}", f"<answer>{letter}</answer>",
        f"**{letter}**", f"Option {letter}", f"answer: ({letter})", letter,
    ])


@st.composite
def replies(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    letters = draw(letter_sets)
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(filler))
        elif kind == 1:
            parts.append(draw(words))
        else:
            parts.append(draw(st.sampled_from(ALL_LETTERS + "abcdefghijXYZ")
                              .flatmap(_answer_forms)))
    return " ".join(parts), letters


def _named_in(text: str, letter: str, options: tuple[str, ...], letters: tuple[str, ...]
              ) -> bool:
    folded = unicodedata.normalize("NFKC", text).casefold()
    if letter.casefold() in folded:
        return True
    i = letters.index(letter)
    return i < len(options) and options[i].casefold() in folded


@FAST
@given(replies())
def test_choice_is_an_allowed_letter_named_in_the_text(reply: tuple[str, tuple[str, ...]]
                                                       ) -> None:
    text, letters = reply
    got = extract_choice(text, letters)
    assert got is None or got in letters
    if got is not None:
        assert _named_in(text, got, (), letters)
    assert extract_choice(text, letters) == got  # deterministic


@FAST
@given(replies(), st.lists(st.sampled_from(["red", "blue", "green", "60°", "3.5", "none"]),
                           min_size=2, max_size=10, unique=True))
def test_choice_with_option_texts_names_letter_or_text(reply: tuple[str, tuple[str, ...]],
                                                       options: list[str]) -> None:
    text, _ = reply
    letters = tuple(ALL_LETTERS[:len(options)])
    got = extract_choice(text, letters, tuple(options))
    assert got is None or got in letters
    if got is not None:
        assert _named_in(text, got, tuple(options), letters)


@FAST
@given(letter_sets.flatmap(lambda ls: st.tuples(st.just(ls), st.sampled_from(ls))),
       st.sampled_from(["Answer: {}", "The final answer is {}.", "\\boxed{{{}}}",
                        "<answer>{}</answer>", "({})"]),
       st.integers(0, 30_000), st.booleans())
def test_explicit_answer_is_read_in_long_outputs(choice: tuple[tuple[str, ...], str],
                                                 form: str, pad: int, lower: bool) -> None:
    letters, letter = choice
    shown = letter.lower() if lower and form == "({})" else letter
    text = ("Reasoning about the figure. " * (pad // 28 + 1))[:pad] + "\n" + form.format(shown)
    assert extract_choice(text, letters) == letter


@FAST
@given(letter_sets.flatmap(lambda ls: st.tuples(st.just(ls), st.permutations(ls))),
       st.sampled_from(["Answer: {} or {}", "The answer is {} and {}.",
                        "<answer>{}, {}</answer>", "\\boxed{{{} or {}}}"]))
def test_two_different_answers_are_ambiguous(choice: tuple[tuple[str, ...], list[str]],
                                             form: str) -> None:
    letters, perm = choice
    assert extract_choice(form.format(perm[0], perm[1]), letters) is None


@FAST
@given(letter_sets, st.sampled_from("KLMNOPQRSTUVWXYZ"))
def test_letter_outside_the_options_is_never_returned(letters: tuple[str, ...], out: str
                                                      ) -> None:
    for form in (f"Answer: {out}", f"\\boxed{{{out}}}", f"<answer>{out}</answer>", f"({out})"):
        assert extract_choice(form, letters) is None


# ------------------------------------------------------------------------ scenario loader

_TMP = Path(tempfile.mkdtemp(prefix="mmsim-props-"))

VALID = {
    "name": "prop", "seed": 1,
    "dataset": {"name": "synthetic", "size": 4, "seed": 1},
    "receivers": [{"name": "r1", "backend": "sim", "params": {"skill": 0.0}}],
    "providers": [{"name": "p1", "backend": "sim", "params": {"skill": 2.0}}],
    "policies": ["binary"],
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                              max_size=4),
    max_leaves=12)
keys = st.sampled_from(["name", "seed", "dataset", "receivers", "providers", "policies",
                        "protocol", "run", "description", "kind", "params", "backend",
                        "max_rounds", "test_set", "schedule", "size", "nme"])


def _load_text(text: str, overrides: list[str] | None = None) -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=_TMP, delete=False,
                                     encoding="utf-8") as f:
        f.write(text)
    try:
        return load_scenario(f.name, overrides=overrides)
    finally:
        Path(f.name).unlink()


def _only_user_errors(text: str, overrides: list[str] | None = None) -> None:
    try:
        _load_text(text, overrides)
    except UserError as exc:
        assert "\n" not in exc.one_line()


@SLOW
@given(st.dictionaries(keys, json_values, max_size=8))
def test_random_dicts_load_or_raise_user_error(data: dict[str, Any]) -> None:
    _only_user_errors(yaml.safe_dump(data, allow_unicode=True))


@SLOW
@given(st.fixed_dictionaries({}, optional={k: json_values for k in ["seed", "protocol", "run",
                                                                     "policies", "receivers"]}))
def test_mutated_valid_scenarios_load_or_raise_user_error(patch: dict[str, Any]) -> None:
    _only_user_errors(yaml.safe_dump({**VALID, **patch}, allow_unicode=True))


@SLOW
@given(st.text(max_size=200))
def test_random_text_loads_or_raises_user_error(text: str) -> None:
    _only_user_errors(text)


@SLOW
@given(st.lists(st.tuples(st.sampled_from(["seed", "protocol.max_rounds", "run", "policies",
                                           "receivers.0.params.skill", "receivers.3",
                                           "dataset.size", "x.y.z", "", "name"]),
                          st.text(max_size=15)).map(lambda kv: f"{kv[0]}={kv[1]}")
                | st.text(max_size=15), max_size=3))
def test_random_overrides_load_or_raise_user_error(overrides: list[str]) -> None:
    _only_user_errors(yaml.safe_dump(VALID), overrides)


@SLOW
@given(st.fixed_dictionaries({
    "name": st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True),
    "seed": st.integers(0, 2**31),
    "description": st.text(max_size=30),
    "receivers": st.lists(st.builds(lambda n, s: {"name": f"r{n}", "params": {"skill": s}},
                                    st.integers(0, 99), st.floats(-3, 3)),
                          min_size=1, max_size=3, unique_by=lambda a: a["name"]),
    "policies": st.lists(st.sampled_from(["binary", "detailed", "reveal", "retry"]),
                         min_size=1, max_size=4, unique=True),
    "protocol": st.fixed_dictionaries({"max_rounds": st.integers(1, 50), "test_set":
                                       st.sampled_from(["intersection", "shared", "all_wrong"])}),
}))
def test_valid_scenarios_round_trip(fields: dict[str, Any]) -> None:
    data = {**VALID, **fields}
    first = _load_text(yaml.safe_dump(data, allow_unicode=True)).scenario
    again = _load_text(yaml.safe_dump(first.canonical(), allow_unicode=True)).scenario
    assert again.canonical() == first.canonical()
    assert again.fingerprint() == first.fingerprint()
