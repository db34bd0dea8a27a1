"""Extractor figures (``cells[].extractor``, ``cells[].model_extractors``), the ``ci`` block
and retries/cost (``usage_figures``) checked in-process against values computed
independently: hand-checked numbers for hand-built episode records, and token sums read from
the stored *messages* (each reply and feedback message carries its own usage) for cost,
never from the episode columns the code reads. Documented key sets are those of
docs/metrics.md, "The JSON object"."""

from __future__ import annotations

import copy
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import play, read_store

from mmsim.metrics import compute
from mmsim.metrics.interfeedback import (
    _cost,
    extractor_sensitivity,
    model_extraction,
    usage_figures,
)
from mmsim.metrics.intervals import ci_info
from mmsim.store import RunStore

# docs/metrics.md "The JSON object": every {...} is {value, lo, hi, k, n}
INTERVAL_KEYS = {"value", "lo", "hi", "k", "n"}


def _kn(iv: dict[str, Any], k: int, n: int) -> None:
    assert set(iv) == INTERVAL_KEYS
    assert (iv["k"], iv["n"]) == (k, n)
    assert iv["value"] == pytest.approx(k / n)
    assert 0.0 <= iv["lo"] <= k / n <= iv["hi"] <= 1.0


# --------------------------------------------------------------------------------------
# ci block (docs/metrics.md: ci {method: "wilson score", level: 0.95, proportions,
# differences, resamples, seed})
# --------------------------------------------------------------------------------------

def test_ci_block_has_the_documented_keys_and_values() -> None:
    ci = ci_info(321, 17)
    assert set(ci) == {"method", "level", "proportions", "differences", "resamples", "seed"}
    assert ci["method"] == "wilson score" and ci["level"] == 0.95
    assert ci["proportions"] == "wilson score"
    assert "bootstrap" in ci["differences"]
    assert (ci["resamples"], ci["seed"]) == (321, 17)
    assert ci_info(0, 0, level=0.9)["level"] == 0.9


# --------------------------------------------------------------------------------------
# extractor sensitivity, hand-built records (the fields a stored episode carries)
# --------------------------------------------------------------------------------------

def _screen(first_correct: int, alt: int | None, n_disagree: int) -> dict[str, Any]:
    return {"first_correct": first_correct, "alt_correct_round": alt, "n_disagree": n_disagree}


def _fb(solved: int, alt: int | None, n_disagree: int) -> dict[str, Any]:
    return {"solved": solved, "alt_correct_round": alt, "n_disagree": n_disagree}


SCREEN = [_screen(1, 0, 0), _screen(1, None, 1), _screen(0, 0, 1), _screen(0, 2, 2),
          _screen(0, None, 0)]
# the three items wrong under the primary extractor, as feedback episodes
TEST = [_fb(1, 0, 1), _fb(1, 2, 2), _fb(0, None, 0)]


@pytest.mark.parametrize("primary", ["strict", "lenient"])
def test_extractor_sensitivity_hand_checked(primary: str) -> None:
    alt = "lenient" if primary == "strict" else "strict"
    fig = extractor_sensitivity(SCREEN, TEST, primary)
    assert fig is not None
    # docs/metrics.md: extractor {primary, alternative, strict {accuracy, correction},
    # lenient {...}, screening_disagree {...}, disagree {...}}
    assert set(fig) == {"primary", "alternative", "strict", "lenient", "screening_disagree",
                        "disagree"}
    assert (fig["primary"], fig["alternative"]) == (primary, alt)
    for ex in ("strict", "lenient"):
        assert set(fig[ex]) == {"accuracy", "correction"}
    # primary: 2 of 5 right at first; 2 of the 3 tested items solved
    _kn(fig[primary]["accuracy"], 2, 5)
    _kn(fig[primary]["correction"], 2, 3)
    # other extractor: items 1 and 3 read right at round 0 (2 of 5); in the test set the
    # first item (read right at round 0) leaves; of the other two one is read right later
    _kn(fig[alt]["accuracy"], 2, 5)
    _kn(fig[alt]["correction"], 1, 2)
    # episodes with at least one disagreeing reply: screening 3 of 5 (one of them with
    # exactly one), feedback 2 of 3 (one with exactly one)
    _kn(fig["screening_disagree"], 3, 5)
    _kn(fig["disagree"], 2, 3)


def test_extractor_sensitivity_is_none_for_old_records() -> None:
    old = [{k: v for k, v in e.items() if k != "n_disagree"} for e in SCREEN[:1]]
    assert extractor_sensitivity([*old, *SCREEN[1:]], TEST, "strict") is None
    assert extractor_sensitivity(SCREEN, [{"solved": 1, "alt_correct_round": 1}], "strict") \
        is None


# --------------------------------------------------------------------------------------
# model-based extractors, hand-built ``mx`` records
# --------------------------------------------------------------------------------------

def _mx(correct_round: int | None, filled: int, calls: int, errors: int, pt: int,
        ct: int) -> dict[str, Any]:
    return {"correct_round": correct_round, "filled": filled, "calls": calls, "errors": errors,
            "prompt_tokens": pt, "completion_tokens": ct}


def test_model_extraction_hand_checked() -> None:
    # x1 on four screening episodes (round 0 only: right, right, right, never) and five
    # feedback episodes (right at round 0, 1, 1, 2, never); x2 on every episode but one
    s_x1 = [_mx(0, 1, 1, 0, 10, 2), _mx(0, 0, 0, 0, 0, 0), _mx(0, 1, 1, 0, 12, 3),
            _mx(None, 0, 1, 1, 7, 0)]
    t_x1 = [_mx(0, 1, 1, 0, 10, 3), _mx(1, 1, 2, 0, 20, 5), _mx(1, 0, 1, 0, 9, 1),
            _mx(2, 2, 3, 0, 30, 4), _mx(None, 0, 2, 2, 14, 0)]
    x2 = _mx(0, 1, 1, 0, 1, 1)
    screen = [{"mx": {"x1": r, "x2": x2}} for r in s_x1]
    test = [{"mx": {"x1": r, "x2": x2}} for r in t_x1]
    test[2] = {"mx": {"x1": t_x1[2]}}  # x2 missing from one episode's record
    out = model_extraction(["x2", "x1", "gone"], screen, test)
    # one entry per extractor named in the scenario; null where any record lacks it
    assert set(out) == {"x1", "x2", "gone"}
    assert out["x2"] is None and out["gone"] is None
    fig = out["x1"]
    # docs/metrics.md: {accuracy {...}, correction {...}, filled_screening,
    # filled_feedback, calls, errors, tokens}
    assert set(fig) == {"accuracy", "correction", "filled_screening", "filled_feedback",
                        "calls", "errors", "tokens"}
    _kn(fig["accuracy"], 3, 4)
    # the feedback episode read right at round 0 leaves the test set: 3 of the other 4
    _kn(fig["correction"], 3, 4)
    assert fig["filled_screening"] == 2
    assert fig["filled_feedback"] == 4
    assert fig["calls"] == 3 + 9
    assert fig["errors"] == 1 + 2
    assert fig["tokens"] == (10 + 2 + 12 + 3 + 7) + (10 + 3 + 20 + 5 + 9 + 1 + 30 + 4 + 14)


def test_model_extraction_without_records() -> None:
    assert model_extraction([], [{"first_correct": 1}], []) == {}
    # episodes recorded without any model-based extractor carry no ``mx``
    assert model_extraction(["x1"], [{"first_correct": 1}], [{"solved": 0}]) == {"x1": None}
    # an extractor that filled nothing still has figures (its readings: none)
    r = _mx(None, 0, 0, 0, 0, 0)
    fig = model_extraction(["x1"], [{"mx": {"x1": r}}], [{"mx": {"x1": r}}])["x1"]
    _kn(fig["accuracy"], 0, 1)
    _kn(fig["correction"], 0, 1)


# --------------------------------------------------------------------------------------
# cost and retries over a real run, recomputed from the stored messages
# --------------------------------------------------------------------------------------

SCN = """
name: usage
seed: 3
dataset: {name: synthetic, size: 12, seed: 1}
receivers:
  - {name: r1, backend: sim, params: {skill: 0.0, format_noise: 0.2}}
  - {name: r2, backend: sim, params: {skill: -0.5}}
providers:
  - {name: p1, backend: sim, params: {skill: 2.5}}
  - {name: p2, backend: sim, params: {skill: 1.5}}
extractors:
  - {name: x1, backend: sim}
policies: [binary, detailed]
protocol: {max_rounds: 3, test_set: all_wrong}
run: {concurrency: 16, bootstrap: 0}
"""

# per 1M tokens, odd digits so that costs have a 7th decimal (docs: rounded to 6)
PRICES = {"r1": (1.234567, 3.456789), "r2": (2.345678, 5.678912), "p1": (4.321987, 9.87654)}


@pytest.fixture(scope="module")
def usage_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("usage")
    (d / "s.yaml").write_text(SCN)
    play(d / "s.yaml", d / "run")
    # one feedback episode of r1 failed on its first re-answer: no reply after round 0,
    # its recorded receiver tokens are the screening answer's, its feedback was given
    db = sqlite3.connect(d / "run" / "mmsim.sqlite")
    eid, sid = db.execute("SELECT episode_id, sample_id FROM episodes WHERE kind='feedback' "
                          "AND model='r1' AND provider='p1' ORDER BY episode_id").fetchone()
    pt, ct = db.execute("SELECT model_prompt_tokens, model_completion_tokens FROM episodes "
                        "WHERE kind='screen' AND model='r1' AND sample_id=?", (sid,)).fetchone()
    db.execute("DELETE FROM messages WHERE episode_id=? AND turn>=1", (eid,))
    db.execute("UPDATE episodes SET status='failed', error='planted', model_prompt_tokens=?, "
               "model_completion_tokens=? WHERE episode_id=?", (pt, ct, eid))
    db.commit()
    db.close()
    return d / "run"


def _priced(scenario: dict[str, Any], prices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    s = copy.deepcopy(scenario)
    for role in ("receivers", "providers"):
        for a in s[role]:
            a.pop("prices", None)
            if a["name"] in prices:
                a["prices"] = prices[a["name"]]
    return s


def _tokens(run_dir: Path) -> tuple[dict[str, list[int]], dict[tuple[str, str, str],
                                                                 dict[str, list[int]]]]:
    """Tokens per agent and part, and per cell and role, summed over the usage of stored
    reply and feedback messages (every episode, failed ones included)."""
    db = sqlite3.connect(run_dir / "mmsim.sqlite")
    agent: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {"screening": [0, 0], "receiver": [0, 0], "provider": [0, 0]})
    cell: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(
        lambda: {"receiver": [0, 0], "provider": [0, 0]})
    rows = db.execute(
        "SELECT e.kind, e.model, e.provider, e.condition, m.sender, m.kind, m.turn, "
        "json_extract(m.payload, '$.usage.prompt_tokens'), "
        "json_extract(m.payload, '$.usage.completion_tokens') "
        "FROM messages m JOIN episodes e ON e.episode_id = m.episode_id "
        "WHERE m.kind IN ('response', 'feedback')").fetchall()
    db.close()
    for ekind, model, provider, cond, sender, mkind, turn, pt, ct in rows:
        if ekind == "screen":
            assert sender == model
            part, who, cpart = "screening", model, None
        elif mkind == "response":
            assert sender == model
            if turn == 0:  # the screening answer, replayed: charged in screening
                continue
            part, who, cpart = "receiver", model, "receiver"
        else:
            assert sender == provider
            part, who, cpart = "provider", provider, "provider"
        agent[who][part][0] += pt
        agent[who][part][1] += ct
        if cpart is not None:
            cell[(model, provider, cond)][cpart][0] += pt
            cell[(model, provider, cond)][cpart][1] += ct
    return dict(agent), dict(cell)


def _money(tokens: list[int], price: dict[str, Any] | None) -> float:
    if price is None:
        return 0.0
    return tokens[0] * price["input"] / 1e6 + tokens[1] * price["output"] / 1e6


def _is_6dp(x: float) -> bool:
    return abs(x * 1e6 - round(x * 1e6)) < 1e-3


def _close(got: float, want: float) -> bool:
    """Rounded to 6 decimals: within half a unit of the 6th decimal of the exact value."""
    return _is_6dp(got) and abs(got - want) <= 5.0001e-7


def _check(m: dict[str, Any], scenario: dict[str, Any], run_dir: Path,
           prices: dict[str, dict[str, Any]]) -> None:
    agent_tok, cell_tok = _tokens(run_dir)
    receivers = {a["name"] for a in scenario["receivers"]}
    money = {name: {part: _money(tok, prices.get(name)) for part, tok in parts.items()}
             for name, parts in agent_tok.items()}
    assert set(m["agents"]) == {"r1", "r2", "p1", "p2"}
    role = {"receiver": 0.0, "provider": 0.0}
    for name, a in m["agents"].items():
        assert set(a) == {"retries", "cost"}
        if name not in prices:
            assert a["cost"] is None
            continue
        want = money[name]
        # docs: cost {screening, receiver, provider, total, currency}
        assert set(a["cost"]) == {"screening", "receiver", "provider", "total", "currency"}
        for part in ("screening", "receiver", "provider"):
            assert _close(a["cost"][part], want[part]), (name, part, a["cost"][part], want)
        assert _close(a["cost"]["total"], sum(want.values())), name
        role["receiver" if name in receivers else "provider"] += want["screening"]
        role["receiver"] += want["receiver"]
        role["provider"] += want["provider"]
    cost = m["cost"]
    assert set(cost) == {"currency", "receiver", "provider", "judge", "total"}
    assert cost["judge"] is None
    assert _close(cost["receiver"], role["receiver"])
    assert _close(cost["provider"], role["provider"])
    assert _close(cost["total"], role["receiver"] + role["provider"])
    assert set(m["cells"]) == set(cell_tok)
    for key, c in m["cells"].items():
        if key[0] not in prices and key[1] not in prices:
            assert c["cost"] is None, key
            continue
        want_r = _money(cell_tok[key]["receiver"], prices.get(key[0]))
        want_p = _money(cell_tok[key]["provider"], prices.get(key[1]))
        assert set(c["cost"]) == {"receiver", "provider", "total"}
        assert _close(c["cost"]["receiver"], want_r), key
        assert _close(c["cost"]["provider"], want_p), key
        assert _close(c["cost"]["total"], want_r + want_p), key


def _scenario(run_dir: Path) -> dict[str, Any]:
    run = read_store(run_dir, RunStore.run)
    assert run is not None
    return dict(run["scenario"])


def _usage(run_dir: Path, scenario: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = read_store(run_dir, usage_figures, scenario)
    return out


def test_cost_matches_the_stored_messages_in_one_currency(usage_run: Path) -> None:
    prices = {n: {"input": i, "output": o, "currency": "EUR"} for n, (i, o) in PRICES.items()}
    scenario = _priced(_scenario(usage_run), prices)
    m = _usage(usage_run, scenario)
    _check(m, scenario, usage_run, prices)
    assert m["cost"]["currency"] == "EUR"
    assert {a["cost"]["currency"] for a in m["agents"].values() if a["cost"]} == {"EUR"}
    # the run has feedback tokens, re-answers and a failed episode to count
    assert m["cost"]["provider"] > 0 and m["agents"]["r1"]["cost"]["receiver"] > 0
    with sqlite3.connect(usage_run / "mmsim.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM episodes WHERE status='failed'").fetchone()[0]
    # retries: the sim backend makes none
    assert m["retries"] == 0


def test_cost_in_mixed_currencies_and_default_usd(usage_run: Path) -> None:
    prices: dict[str, dict[str, Any]] = {
        n: {"input": i, "output": o, "currency": "USD"} for n, (i, o) in PRICES.items()}
    prices["r2"]["currency"] = "EUR"
    scenario = _priced(_scenario(usage_run), prices)
    m = _usage(usage_run, scenario)
    _check(m, scenario, usage_run, prices)
    # docs: currency is `mixed` when the agents' currencies differ
    assert m["cost"]["currency"] == "mixed"
    assert m["agents"]["r1"]["cost"]["currency"] == "USD"
    assert m["agents"]["r2"]["cost"]["currency"] == "EUR"


def test_free_agents_cost_zero_and_no_prices_gives_null(usage_run: Path) -> None:
    scenario = _scenario(usage_run)
    free = {n: {"input": 0.0, "output": 0.0, "currency": "USD"} for n in ("r1", "p1")}
    m = _usage(usage_run, _priced(scenario, free))
    assert m["cost"] == {"currency": "USD", "receiver": 0.0, "provider": 0.0, "judge": None,
                         "total": 0.0}
    for name in ("r1", "p1"):
        assert m["agents"][name]["cost"] == {"screening": 0.0, "receiver": 0.0,
                                             "provider": 0.0, "total": 0.0, "currency": "USD"}
    # docs: cost is null when no agent has prices (run, agents and cells)
    m = _usage(usage_run, _priced(scenario, {}))
    assert m["cost"] is None
    assert all(a["cost"] is None for a in m["agents"].values())
    assert all(c["cost"] is None for c in m["cells"].values())


def test_cost_matches_direct_formula() -> None:
    """docs/metrics.md: prices are per 1M input and output tokens."""
    assert _cost({"input": 2.5, "output": 10.0, "currency": "USD"}, 1_000_000, 500_000) == 7.5
    assert _cost({"input": 3, "output": 0, "currency": "USD"}, 2_000_000, 9) == 6.0
    assert _cost(None, 10, 10) is None


def test_compute_reports_model_extractors_from_the_stored_readings(usage_run: Path) -> None:
    """The cell figures of a real run with a model-based extractor: accuracy over the
    screening episodes, calls = stored extraction messages."""
    m = read_store(usage_run, compute, resamples=0)
    with sqlite3.connect(usage_run / "mmsim.sqlite") as db:
        calls = dict(db.execute(
            "SELECT e.model || '/' || e.provider || '/' || e.condition, COUNT(*) FROM messages m "
            "JOIN episodes e ON e.episode_id = m.episode_id WHERE m.kind='extraction' "
            "AND e.kind='feedback' AND e.status='done' GROUP BY 1").fetchall())
        screen_calls = dict(db.execute(
            "SELECT e.model, COUNT(*) FROM messages m JOIN episodes e ON "
            "e.episode_id = m.episode_id WHERE m.kind='extraction' AND e.kind='screen' "
            "GROUP BY 1").fetchall())
    # docs/metrics.md: ci {method: "wilson score", level: 0.95, proportions, differences,
    # resamples, seed}
    assert set(m["ci"]) == {"method", "level", "proportions", "differences", "resamples",
                            "seed"}
    assert (m["ci"]["resamples"], m["ci"]["seed"]) == (0, 0)
    for c in m["cells"]:
        fig = c["model_extractors"]["x1"]
        key = f"{c['receiver']}/{c['provider']}/{c['policy']}"
        assert fig["calls"] == calls.get(key, 0) + screen_calls.get(c["receiver"], 0), key
        assert fig["accuracy"]["n"] == c["n"]
        assert fig["correction"]["n"] <= c["n_test"]
