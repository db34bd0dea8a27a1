"""Every InterFeedback figure recomputed independently from the raw store (SQL over the
episodes and messages tables, the grade and feedback messages themselves, Wilson bounds as
the roots of the score equation, the chance baseline as a product of elimination
probabilities) and compared with ``mmsim.metrics.compute``: a planted bug in a metric, an
interval or a denominator fails here. Plus the leak detector's patterns, each both ways."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL, play

from mmsim.data.sample import Sample
from mmsim.messages import AnswerFormat
from mmsim.metrics import compute
from mmsim.policies.leak import detect_leak
from mmsim.store import RunStore

Z = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    ph = k / n
    a, b, c = 1 + Z * Z / n, -(2 * ph + Z * Z / n), ph * ph
    d = math.sqrt(b * b - 4 * a * c)
    return max(0.0, (-b - d) / (2 * a)), min(1.0, (-b + d) / (2 * a))


def chance(k_options: int, rounds: int) -> float:
    """P(a receiver that eliminates each option marked wrong and guesses uniformly among the
    rest finds the answer within ``rounds`` guesses after a wrong first answer)."""
    if k_options < 2:
        return 0.0
    miss, left = 1.0, k_options - 1
    for _ in range(rounds):
        if left <= 0:
            return 1.0
        miss *= (left - 1) / left
        left -= 1
    return 1.0 - miss


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("indep")
    scn = d / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 30"))
    play(scn, d / "run")
    store = RunStore.open(d / "run", create=False)
    try:
        m = compute(store, resamples=0)
    finally:
        store.close()
    return m, d / "run"


def _raw(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    db.row_factory = sqlite3.Row
    eps = [dict(r) for r in db.execute("SELECT * FROM episodes")]
    msgs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in db.execute("SELECT episode_id, kind, payload FROM messages ORDER BY episode_id, seq"):
        msgs[r["episode_id"]].append({"kind": r["kind"], **json.loads(r["payload"])})
    db.close()
    return eps, msgs


def _close(got: dict[str, Any], k: int, n: int) -> None:
    assert got["value"] == pytest.approx(k / n, abs=1e-12)
    lo, hi = wilson(k, n)
    assert got["lo"] == pytest.approx(lo, abs=1e-9) and got["hi"] == pytest.approx(hi, abs=1e-9)


def test_every_cell_figure_matches_an_independent_recomputation(
        run: tuple[dict[str, Any], Path]) -> None:
    m, run_dir = run
    eps, msgs = _raw(run_dir)
    max_rounds = m["max_rounds"]
    screen = {(e["model"], e["sample_id"]): e for e in eps
              if e["kind"] == "screen" and e["status"] == "done"}
    assert m["cells"]
    checked_chance = 0
    for c in m["cells"]:
        r, p, pol = c["receiver"], c["provider"], c["policy"]
        mine = [e for (a, _), e in screen.items() if a == r]
        grades0 = {e["sample_id"]: next(x for x in msgs[e["episode_id"]] if x["kind"] == "grade")
                   for e in mine}
        n = len(mine)
        wrong = [s for s, g in grades0.items() if not g["correct"]]
        assert c["n"] == n and c["n_wrong"] == len(wrong)
        _close(c["accuracy"], n - len(wrong), n)
        fb = [e for e in eps if e["kind"] == "feedback" and e["model"] == r
              and e["provider"] == p and e["condition"] == pol and e["status"] == "done"]
        assert c["n_test"] == len(fb) <= len(wrong)
        # the round of the first correct grade of each episode (round 0 = screening reply)
        first_ok: list[int | None] = []
        responses = unparsed = 0
        n_feedback = n_leaked = 0
        for e in fb:
            g = [x for x in msgs[e["episode_id"]] if x["kind"] == "grade"]
            first_ok.append(next((i for i, x in enumerate(g) if x["correct"]), None))
            resp = [x for x in msgs[e["episode_id"]] if x["kind"] == "response"]
            responses += len(resp) - 1  # round 0 is the screening reply, counted there
            unparsed += sum(x["parse"] == "unparsed" for x in resp[1:])
            fbs = [x for x in msgs[e["episode_id"]] if x["kind"] == "feedback"]
            n_feedback += len(fbs)
            n_leaked += sum(bool(x["leaked"]) for x in fbs)
        n_c = sum(x is not None for x in first_ok)
        assert c["n_corrected"] == n_c
        if fb:
            _close(c["correction_rate"], n_c, len(fb))
            for row in c["correction_by_round"]:
                k = row["round"]
                at = sum(x == k for x in first_ok)
                assert row["corrected"] == at
                _close(row["cumulative"], sum(x is not None and x <= k for x in first_ok),
                       len(fb))
            # the option-elimination baseline and the chance-adjusted correction
            opts = [len(grades0[e["sample_id"]]["expected"]) and
                    json.loads(e["payload"])["n_options"] for e in fb]
            ch = sum(chance(k, max_rounds) for k in opts) / len(fb)
            assert c["chance_correction"] == pytest.approx(ch, abs=1e-12)
            if ch < 1:
                assert c["chance_adjusted_correction"] == pytest.approx(
                    (n_c / len(fb) - ch) / (1 - ch), abs=1e-12)
                checked_chance += any(k >= 3 for k in opts)
        # parse failures over every receiver reply: screening plus feedback rounds
        screen_unparsed = sum(
            x["parse"] == "unparsed" for e in mine for x in msgs[e["episode_id"]]
            if x["kind"] == "response")
        assert c["n_unparsed"] == screen_unparsed + unparsed
        assert c["parse_failure_rate"] == pytest.approx(
            (screen_unparsed + unparsed) / (n + responses), abs=1e-12)
        _close(c["parse_failure"], screen_unparsed + unparsed, n + responses)
        assert c["n_feedback"] == n_feedback and c["n_leaked"] == n_leaked
        if n_feedback:
            assert c["leak_rate"] == pytest.approx(n_leaked / n_feedback, abs=1e-12)
            _close(c["leak"], n_leaked, n_feedback)
        # extractor sensitivity, from the grades' second reading
        ex = c["extractor"]
        assert ex["primary"] == "strict" and ex["alternative"] == "lenient"
        alt0 = {s: bool(g["alt_correct"]) for s, g in grades0.items()}
        _close(ex["lenient"]["accuracy"], sum(alt0.values()), n)
        alt_test = [e for e in fb if not alt0[e["sample_id"]]]
        alt_fixed = sum(any(x["alt_correct"] for x in msgs[e["episode_id"]]
                            if x["kind"] == "grade") for e in alt_test)
        if alt_test:
            _close(ex["lenient"]["correction"], alt_fixed, len(alt_test))
        dis = sum(any(x["alt_answer"] != x["answer"] for x in msgs[e["episode_id"]]
                      if x["kind"] == "grade") for e in fb)
        if fb:
            _close(ex["disagree"], dis, len(fb))
    assert checked_chance  # the baseline was checked on items with 3+ options


def test_agent_rows_use_the_same_interval_as_the_cells(run: tuple[dict[str, Any], Path]
                                                       ) -> None:
    m, _ = run
    acc = {a["name"]: a["accuracy"] for a in m["agents"]}
    for c in m["cells"]:
        got = {k: c["accuracy"][k] for k in ("value", "lo", "hi")}
        assert got == {k: acc[c["receiver"]][k] for k in ("value", "lo", "hi")}


def test_chance_baseline_values() -> None:
    # 4 options, a wrong first answer: 3 left; 1 round: 1/3; 2 rounds: 2/3; 3 rounds: 1
    assert chance(4, 1) == pytest.approx(1 / 3)
    assert chance(4, 2) == pytest.approx(2 / 3)
    assert chance(4, 3) == pytest.approx(1.0)
    assert chance(10, 3) == pytest.approx(3 / 9)
    from mmsim.metrics.interfeedback import _chance
    for k in (2, 3, 4, 5, 10):
        for r in (1, 2, 3, 5):
            assert _chance(k, r) == pytest.approx(chance(k, r), abs=1e-12)
    assert _chance(1, 3) == 0.0 and _chance(0, 3) == 0.0


# --------------------------------------------------------------------------------------
# The leak detector, each pattern both ways
# --------------------------------------------------------------------------------------

CHOICE_B = Sample(id="c", question="q", answer="B",
                  answer_format=AnswerFormat(kind="choice", letters=("A", "B", "C", "D"),
                                             options=("40°", "60°", "80°", "100°")))
NUM_58 = Sample(id="n", question="q", answer="58", answer_format=AnswerFormat(kind="numeric"))
EXACT = Sample(id="e", question="q", answer="Paris", answer_format=AnswerFormat(kind="exact"))


@pytest.mark.parametrize(("text", "leaks"), [
    # "(B)"
    ("Look at option (B) again.", True),
    ("Look at option (A) again.", False),
    # "answer/option/choice is B"
    ("The answer is B.", True),
    ("The answer is A.", False),
    ("Option B", True),
    ("choice: B", True),
    ("answer should be B", True),
    ("Your answer B's reasoning is off.", False),  # B's: not the letter as an answer
    # "B is correct"
    ("B is correct.", True),
    ("B is the right one, actually.", True),
    ("A is correct.", False),
    ("B is wrong.", False),
    # the correct option's text
    ("The angle is 60° here.", True),
    ("The angle is 160° here.", False),  # another number containing 60
    ("The angle is 40° here.", False),
    # mentions of the receiver's wrong letter are not leaks
    ("Your answer A is not correct; check the angle sum.", False),
])
def test_choice_leak_patterns(text: str, leaks: bool) -> None:
    assert detect_leak(text, CHOICE_B) is leaks


@pytest.mark.parametrize(("text", "leaks"), [
    ("it should be 58 units", True),
    ("It is 58.0 exactly", True),
    ("The total is 1,058", False),
    ("recount: 5 and 8 are not the same", False),
    ("maybe 57 or 59", False),
])
def test_numeric_leak_patterns(text: str, leaks: bool) -> None:
    assert detect_leak(text, NUM_58) is leaks


@pytest.mark.parametrize(("text", "leaks"), [
    ("The capital is Paris.", True),
    ("Think about paris", True),
    ("Think about Parisian food", False),
    ("Think about France", False),
])
def test_exact_leak_patterns(text: str, leaks: bool) -> None:
    assert detect_leak(text, EXACT) is leaks


def test_leak_detector_corners() -> None:
    """Corners mutation testing found unchecked: money and grouped numbers, whitespace in
    exact answers, multi-character option labels, an unparseable number before the value."""
    money = Sample(id="m", question="q", answer="$1,000",
                   answer_format=AnswerFormat(kind="numeric"))
    assert detect_leak("It costs 1,000 dollars", money)
    assert detect_leak("It costs 1000", money)
    assert not detect_leak("It costs 100", money)
    spaced = Sample(id="s", question="q", answer="New   York",
                    answer_format=AnswerFormat(kind="exact"))
    assert detect_leak("I love new york", spaced)
    labels = Sample(id="l", question="q", answer="B2",
                    answer_format=AnswerFormat(kind="choice", letters=("A1", "B2")))
    assert detect_leak("the answer is b2", labels)
    assert not detect_leak("the answer is a1", labels)
    assert detect_leak("version 1.2.3 says 58", NUM_58)  # 1.2.3 is no number: go on


# -- retries and token cost, recomputed from the raw episodes ----------------------------
PRICED = (SMALL.replace("size: 40", "size: 20")
          .replace("{name: r1, backend: sim, params: {skill: 0.0}}",
                   "{name: r1, backend: sim, params: {skill: 0.0}, "
                   "prices: {input: 1.5, output: 4.0}}")
          .replace("{name: p2, backend: sim, params: {skill: 1.5}}",
                   "{name: p2, backend: sim, params: {skill: 1.5}, "
                   "prices: {input: 0.25, output: 2.0, currency: USD}}"))
PRICES = {"r1": (1.5, 4.0), "p2": (0.25, 2.0)}


def _usd(name: str, prompt: int, completion: int) -> float:
    pin, pout = PRICES[name]
    return (prompt * pin + completion * pout) / 1e6


def test_cost_and_retries_match_an_independent_recomputation(tmp_path: Path) -> None:
    """Per agent (screening, answers after feedback, feedback given), per cell and per role,
    over every episode, failed ones included; a feedback episode's round-0 answer is the
    screening answer and is not charged twice. Retries and failures are planted in the
    store (seeded) so every branch carries a different number."""
    import random

    scn = tmp_path / "s.yaml"
    scn.write_text(PRICED)
    play(scn, tmp_path / "run")
    db = sqlite3.connect(tmp_path / "run" / "mmsim.sqlite")
    rng = random.Random(7)
    ids = [r[0] for r in db.execute("SELECT episode_id FROM episodes ORDER BY episode_id")]
    for eid in ids:
        db.execute("UPDATE episodes SET model_retries=?, provider_retries=? WHERE episode_id=?",
                   (rng.randrange(4), rng.randrange(3), eid))
    db.execute("UPDATE episodes SET status='failed', error='planted' WHERE episode_id IN "
               "(SELECT episode_id FROM episodes WHERE kind='feedback' ORDER BY episode_id "
               "LIMIT 3)")
    db.commit()
    db.close()
    eps, _ = _raw(tmp_path / "run")
    store = RunStore.open(tmp_path / "run", create=False)
    try:
        m = compute(store, resamples=0)
    finally:
        store.close()

    screen = {(e["model"], e["sample_id"]): e for e in eps if e["kind"] == "screen"}
    fb = [e for e in eps if e["kind"] == "feedback"]
    assert any(e["status"] == "failed" for e in fb)
    want_retries: dict[str, int] = defaultdict(int)
    for e in eps:
        want_retries[e["model"]] += e["model_retries"]
        if e["kind"] == "feedback":
            want_retries[e["provider"]] += e["provider_retries"]
    cost = {n: {"screening": 0.0, "receiver": 0.0, "provider": 0.0} for n in PRICES}
    for e in screen.values():
        if e["model"] in PRICES:
            cost[e["model"]]["screening"] += _usd(e["model"], e["model_prompt_tokens"],
                                                  e["model_completion_tokens"])
    cells: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"receiver": 0.0, "provider": 0.0, "rr": 0, "pr": 0})
    for e in fb:
        s = screen[(e["model"], e["sample_id"])]
        c = cells[(e["model"], e["provider"], e["condition"])]
        c["rr"] += e["model_retries"]
        c["pr"] += e["provider_retries"]
        if e["model"] in PRICES:
            rc = _usd(e["model"], e["model_prompt_tokens"] - s["model_prompt_tokens"],
                      e["model_completion_tokens"] - s["model_completion_tokens"])
            cost[e["model"]]["receiver"] += rc
            c["receiver"] += rc
        if e["provider"] in PRICES:
            pc = _usd(e["provider"], e["provider_prompt_tokens"],
                      e["provider_completion_tokens"])
            cost[e["provider"]]["provider"] += pc
            c["provider"] += pc
    assert cost["r1"]["receiver"] > 0 and cost["p2"]["provider"] > 0

    agents = {a["name"]: a for a in m["agents"]}
    assert set(agents) == {"r1", "r2", "p1", "p2"}
    for name, a in agents.items():
        assert a["retries"] == want_retries[name], name
        if name not in PRICES:
            assert a["cost"] is None
            continue
        got = a["cost"]
        for part in ("screening", "receiver", "provider"):
            assert got[part] == pytest.approx(cost[name][part], abs=2e-6), (name, part)
        assert got["total"] == pytest.approx(sum(cost[name].values()), abs=2e-6)
        assert got["currency"] == "USD"
    assert m["retries"] == sum(want_retries.values())
    run_cost = m["cost"]
    assert run_cost["currency"] == "USD" and run_cost["judge"] is None
    want_recv = cost["r1"]["screening"] + cost["r1"]["receiver"]
    # providers are screened too: a provider's screening is charged to the provider role
    assert cost["p2"]["screening"] > 0
    want_prov = cost["p2"]["screening"] + cost["p2"]["provider"]
    assert run_cost["receiver"] == pytest.approx(want_recv, abs=2e-6)
    assert run_cost["provider"] == pytest.approx(want_prov, abs=2e-6)
    assert run_cost["total"] == pytest.approx(want_recv + want_prov, abs=2e-6)
    for c in m["cells"]:
        key = (c["receiver"], c["provider"], c["policy"])
        want = cells[key]
        assert c["retries"] == {"receiver": want["rr"], "provider": want["pr"]}, key
        if key[0] not in PRICES and key[1] not in PRICES:
            assert c["cost"] is None, key
            continue
        assert c["cost"]["receiver"] == pytest.approx(want["receiver"], abs=2e-6), key
        assert c["cost"]["provider"] == pytest.approx(want["provider"], abs=2e-6), key
        assert c["cost"]["total"] == pytest.approx(want["receiver"] + want["provider"],
                                                   abs=2e-6), key


def test_leak_detector_letter_case_and_number_tolerance() -> None:
    """A one-letter answer counts only as written ("the answer is a bit off" names no
    option A); a longer label in any case. A number leaks when it equals the answer within
    1e-9 relative (absolute below 1): 1000000.0001 names 1,000,000, 1000000.1 does not;
    0.5000000015 does not name 0.5."""
    a = Sample(id="a", question="q", answer="A",
               answer_format=AnswerFormat(kind="choice", letters=("A", "B")))
    assert not detect_leak("The answer is a bit more subtle than that.", a)
    assert not detect_leak("option a", a)
    assert detect_leak("option A", a)

    def num(ans: str) -> Sample:
        return Sample(id="n", question="q", answer=ans,
                      answer_format=AnswerFormat(kind="numeric"))

    assert detect_leak("it is 1000000.0001", num("1000000"))
    assert not detect_leak("it is 1000000.1", num("1000000"))
    assert not detect_leak("it is 0.5000000015", num("0.5"))
    assert detect_leak("it is 0.50000000001", num("0.5"))


def test_leak_detector_length_threshold() -> None:
    """Option texts and exact answers are matched from two characters on; a one-character
    one ("7", "x") is everywhere in ordinary feedback and is not searched."""
    def choice(opts: tuple[str, ...]) -> Sample:
        return Sample(id="c", question="q", answer="B",
                      answer_format=AnswerFormat(kind="choice", letters=("A", "B"),
                                                 options=opts))

    assert not detect_leak("there are 7 of them", choice(("6", "7")))
    assert detect_leak("there are 12 of them", choice(("11", "12")))
    assert not detect_leak("there are 11 of them", choice(("11", "12")))

    def exact(ans: str) -> Sample:
        return Sample(id="e", question="q", answer=ans,
                      answer_format=AnswerFormat(kind="exact"))

    assert not detect_leak("x marks the spot", exact("x"))
    assert detect_leak("think about ab again", exact("ab"))
    assert not detect_leak("think about abc again", exact("ab"))
