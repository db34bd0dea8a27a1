"""InterFeedback metrics from a run's store.

Per receiver x provider x policy cell, with N items screened, N_e answered wrongly at
first (unparsed counts as wrong), N_test the cell's test set and N_c of those corrected
within the round budget:

* accuracy = (N - N_e) / N
* correction rate = N_c / N_test (N_test <= N_e always; with ``test_set: all_wrong`` it is
  N_c / N_e exactly as in the paper's definition)
* correction by round: share of the test set corrected at round r, and cumulative
* chance correction: what a receiver that eliminates options marked wrong and guesses
  uniformly among the rest would reach (multiple choice; 0 for free-form), and the
  chance-adjusted correction rate (CR - chance) / (1 - chance)
* parse-failure rate: receiver replies without an extractable answer / all receiver replies
* leak rate: feedback flagged by the leak detector / feedback given

Proportions carry 95% Wilson score intervals (:mod:`mmsim.metrics.intervals`): one
quantity on the same items has the same interval wherever it is shown. Differences between
runs (``mmsim compare``) use a paired bootstrap over items.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mmsim.metrics.human import human_metrics
from mmsim.metrics.intervals import ci_info, proportion
from mmsim.store import RunStore


def _interval(successes: int, n: int) -> dict[str, Any]:
    return proportion(successes, n)


def extractor_sensitivity(screen_eps: list[dict[str, Any]], test_eps: list[dict[str, Any]],
                          primary: str) -> dict[str, Any] | None:
    """The same replies read by the other extractor (strict <-> lenient; the grades store
    both readings): accuracy and correction under each, and the share of episodes where the
    two disagree on at least one reply. Under the other extractor an item it reads correct
    at round 0 leaves the test set; the rest count as corrected at the first round it reads
    correct (re-graded on the replies played, which stop at the primary's correction).
    None for runs recorded before both readings were stored."""
    if any("n_disagree" not in e for e in [*screen_eps, *test_eps]):
        return None
    alt = "lenient" if primary == "strict" else "strict"
    n = len(screen_eps)
    acc_alt = sum(e["alt_correct_round"] == 0 for e in screen_eps)
    alt_test = [e for e in test_eps if e["alt_correct_round"] != 0]
    corr_alt = sum(e["alt_correct_round"] is not None for e in alt_test)
    n_c = sum(bool(e["solved"]) for e in test_eps)
    fig: dict[str, Any] = {
        primary: {"accuracy": _interval(sum(bool(e["first_correct"]) for e in screen_eps), n),
                  "correction": _interval(n_c, len(test_eps))},
        alt: {"accuracy": _interval(acc_alt, n), "correction": _interval(corr_alt,
                                                                       len(alt_test))},
    }
    return {"primary": primary, "alternative": alt, **fig,
            "screening_disagree": _interval(sum(e["n_disagree"] > 0 for e in screen_eps), n),
            "disagree": _interval(sum(e["n_disagree"] > 0 for e in test_eps), len(test_eps))}


def model_extraction(names: list[str], screen_eps: list[dict[str, Any]],
                     test_eps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model-based extractor (``extractors:``): accuracy and correction when its readings
    fill the replies the deterministic extractor left unparsed (grades unchanged otherwise),
    and how many replies it filled. Under an extractor, an item it reads correct at round 0
    leaves the test set. None for an extractor missing from any episode's record."""
    out: dict[str, Any] = {}
    for name in names:
        recs = [(e.get("mx") or {}).get(name) for e in [*screen_eps, *test_eps]]
        if any(r is None for r in recs):
            out[name] = None
            continue
        s = [e["mx"][name] for e in screen_eps]
        t = [e["mx"][name] for e in test_eps]
        mine_test = [r for r in t if r["correct_round"] != 0]
        out[name] = {
            "accuracy": _interval(sum(r["correct_round"] == 0 for r in s), len(s)),
            "correction": _interval(sum(r["correct_round"] is not None for r in mine_test),
                                    len(mine_test)),
            "filled_screening": sum(r["filled"] for r in s),
            "filled_feedback": sum(r["filled"] for r in t),
            "calls": sum(r["calls"] for r in [*s, *t]),
            "errors": sum(r["errors"] for r in [*s, *t]),
            "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in [*s, *t]),
        }
    return out


def _chance(n_options: int, rounds: int) -> float:
    if n_options < 2:
        return 0.0
    return min(1.0, rounds / (n_options - 1))


def _prices(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a["prices"] for role in ("receivers", "providers")
            for a in scenario.get(role, []) if a.get("prices")}


def _cost(prices: dict[str, Any] | None, prompt: int, completion: int) -> float | None:
    if prices is None:
        return None
    return (prompt * float(prices["input"]) + completion * float(prices["output"])) / 1e6


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else a + b


def usage_figures(store: RunStore, scenario: dict[str, Any]) -> dict[str, Any]:
    """Retries and token cost per agent, per cell and per role, over every episode (failed
    ones included: their calls were made). A feedback episode's round-0 answer is the
    screening answer, counted once (in screening)."""
    prices = _prices(scenario)
    receivers = {a["name"] for a in scenario.get("receivers", [])}
    zero = {"screening": 0.0, "receiver": 0.0, "provider": 0.0}
    agent_cost: dict[str, dict[str, float]] = defaultdict(lambda: dict(zero))
    agent_retries: dict[str, int] = defaultdict(int)
    cell_cost: dict[tuple[str, str, str], dict[str, float]] = defaultdict(
        lambda: {"receiver": 0.0, "provider": 0.0})
    cell_retries: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: {"receiver": 0, "provider": 0})
    first: dict[tuple[str, str], tuple[int, int]] = {}
    for ep in store.episodes("screen"):
        name = ep["model"]
        agent_retries[name] += ep["model_retries"]
        first[(name, ep["sample_id"])] = (ep["model_prompt_tokens"], ep["model_completion_tokens"])
        agent_cost[name]["screening"] += _cost(prices.get(name), ep["model_prompt_tokens"],
                                               ep["model_completion_tokens"]) or 0.0
    for ep in store.episodes("feedback"):
        r, p = ep["model"], ep["provider"]
        key = (r, p, ep["condition"])
        f_pt, f_ct = first.get((r, ep["sample_id"]), (0, 0))
        rc = _cost(prices.get(r), max(0, ep["model_prompt_tokens"] - f_pt),
                   max(0, ep["model_completion_tokens"] - f_ct)) or 0.0
        pc = _cost(prices.get(p), ep["provider_prompt_tokens"],
                   ep["provider_completion_tokens"]) or 0.0
        agent_cost[r]["receiver"] += rc
        agent_cost[p]["provider"] += pc
        cell_cost[key]["receiver"] += rc
        cell_cost[key]["provider"] += pc
        agent_retries[r] += ep["model_retries"]
        agent_retries[p] += ep["provider_retries"]
        cell_retries[key]["receiver"] += ep["model_retries"]
        cell_retries[key]["provider"] += ep["provider_retries"]
    currencies = {str(v.get("currency", "USD")) for v in prices.values()}
    currency = currencies.pop() if len(currencies) == 1 else "mixed"
    agents: dict[str, dict[str, Any]] = {}
    role_cost: dict[str, float | None] = {"receiver": None, "provider": None, "judge": None}
    names = {a["name"] for role in ("receivers", "providers") for a in scenario.get(role, [])}
    for name in names:
        c = agent_cost[name]
        cost = None
        if name in prices:
            cost = {**{k: round(v, 6) for k, v in c.items()},
                    "total": round(sum(c.values()), 6),
                    "currency": str(prices[name].get("currency", "USD"))}
            screen_role = "receiver" if name in receivers else "provider"
            role_cost[screen_role] = _add(role_cost[screen_role], c["screening"])
            role_cost["receiver"] = _add(role_cost["receiver"], c["receiver"])
            role_cost["provider"] = _add(role_cost["provider"], c["provider"])
        agents[name] = {"retries": agent_retries[name], "cost": cost}
    total = None
    for v in role_cost.values():
        total = _add(total, v)
    return {
        "agents": agents,
        "cells": {k: {"retries": cell_retries[k],
                      "cost": ({"receiver": round(v["receiver"], 6),
                                "provider": round(v["provider"], 6),
                                "total": round(v["receiver"] + v["provider"], 6)}
                               if k[0] in prices or k[1] in prices else None)}
                  for k, v in cell_cost.items()},
        "retries": sum(agent_retries.values()),
        "cost": None if not prices else {
            "currency": currency,
            **{k: (round(v, 6) if v is not None else None) for k, v in role_cost.items()},
            "total": round(total or 0.0, 6)},
    }


def compute(store: RunStore, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All figures of a run as one JSON-serialisable object (documented in docs/metrics.md)."""
    run = store.run()
    if run is None:
        return {"run_id": None, "cells": [], "agents": []}
    scenario = run["scenario"]
    max_rounds = int(scenario.get("protocol", {}).get("max_rounds", 3))
    extractor = str(scenario.get("protocol", {}).get("extractor", "strict"))

    screen: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    screen_failed: dict[str, int] = defaultdict(int)
    for ep in store.episodes("screen"):
        if ep["status"] == "done":
            screen[ep["model"]][ep["sample_id"]] = ep
        else:
            screen_failed[ep["model"]] += 1
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    cell_failed: dict[tuple[str, str, str], int] = defaultdict(int)
    for ep in store.episodes("feedback"):
        key = (ep["model"], ep["provider"], ep["condition"])
        if ep["status"] == "done":
            cells[key].append(ep)
        else:
            cell_failed[key] += 1

    usage = usage_figures(store, scenario)
    agents_out = []
    roles: dict[str, list[str]] = defaultdict(list)
    for r in scenario.get("receivers", []):
        roles[r["name"]].append("receiver")
    for p in scenario.get("providers", []):
        roles[p["name"]].append("provider")
    for name in roles:
        eps = list(screen.get(name, {}).values())
        n = len(eps)
        correct = sum(bool(e["first_correct"]) for e in eps)
        unparsed = sum(bool(e["first_unparsed"]) for e in eps)
        agents_out.append({
            "name": name, "roles": roles[name], "n": n, "n_correct": correct,
            "accuracy": _interval(correct, n),
            "parse_failure_rate": unparsed / n if n else None, "n_unparsed": unparsed,
            "parse_failure": _interval(unparsed, n),
            "failed": screen_failed.get(name, 0),
            "simulated": any(bool(e["simulated"]) for e in eps),
            "tokens": {"prompt": sum(e["model_prompt_tokens"] for e in eps),
                       "completion": sum(e["model_completion_tokens"] for e in eps)},
            **usage["agents"].get(name, {"retries": 0, "cost": None}),
        })

    cells_out = []
    policies = [p["name"] for p in scenario.get("policies", [])]
    for r in scenario.get("receivers", []):
        rs = screen.get(r["name"], {})
        n = len(rs)
        n_wrong = sum(not e["first_correct"] for e in rs.values())
        screen_unparsed = sum(bool(e["first_unparsed"]) for e in rs.values())
        for p in scenario.get("providers", []):
            for pol in policies:
                key = (r["name"], p["name"], pol)
                eps = cells.get(key, [])
                n_test = len(eps)
                if n_test > n_wrong:
                    raise AssertionError(f"N_test {n_test} > N_wrong {n_wrong} in {key}")
                n_c = sum(bool(e["solved"]) for e in eps)
                by_round = []
                cum = 0
                for k in range(1, max_rounds + 1):
                    at = sum(1 for e in eps if e["corrected_round"] == k)
                    cum += at
                    by_round.append({"round": k, "corrected": at,
                                     "rate": at / n_test if n_test else None,
                                     "cumulative": _interval(cum, n_test)})
                fb_resp = sum(e["n_responses"] - 1 for e in eps)
                fb_unparsed = sum(e["n_unparsed"] - int(bool(e["first_unparsed"])) for e in eps)
                n_fb = sum(e["n_feedback"] for e in eps)
                n_leak = sum(e["n_leaked"] for e in eps)
                chance = (sum(_chance(e["n_options"], max_rounds) for e in eps) / n_test
                          if n_test else None)
                cr = n_c / n_test if n_test else None
                adj = None
                if cr is not None and chance is not None and chance < 1:
                    adj = (cr - chance) / (1 - chance)
                cats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
                for e in eps:
                    cats[e["category"]][0] += int(bool(e["solved"]))
                    cats[e["category"]][1] += 1
                cells_out.append({
                    "receiver": r["name"], "provider": p["name"], "policy": pol,
                    "simulated": any(bool(e["simulated"]) for e in rs.values()),
                    "n": n, "n_wrong": n_wrong,
                    "accuracy": _interval(n - n_wrong, n),
                    "n_test": n_test, "n_corrected": n_c,
                    "correction_rate": _interval(n_c, n_test),
                    "correction_by_round": by_round,
                    "chance_correction": chance,
                    "chance_adjusted_correction": adj,
                    "parse_failure_rate": ((screen_unparsed + fb_unparsed) / (n + fb_resp)
                                           if n + fb_resp else None),
                    "n_unparsed": screen_unparsed + fb_unparsed,
                    "parse_failure": _interval(screen_unparsed + fb_unparsed, n + fb_resp),
                    "n_feedback": n_fb, "n_leaked": n_leak,
                    "leak_rate": n_leak / n_fb if n_fb else None,
                    "leak": _interval(n_leak, n_fb),
                    "failed": cell_failed.get(key, 0),
                    "mean_rounds": (sum(e["rounds"] for e in eps) / n_test) if n_test else None,
                    "tokens": {"receiver_prompt": sum(e["model_prompt_tokens"] for e in eps),
                               "receiver_completion": sum(e["model_completion_tokens"]
                                                          for e in eps),
                               "feedback": sum(e["provider_prompt_tokens"]
                                            + e["provider_completion_tokens"] for e in eps)},
                    "by_category": {c: {"n_test": v[1], "n_corrected": v[0],
                                        "correction_rate": v[0] / v[1],
                                        "correction": _interval(v[0], v[1])}
                                    for c, v in sorted(cats.items())},
                    "extractor": extractor_sensitivity(list(rs.values()), eps, extractor),
                    "model_extractors": model_extraction(
                        [a["name"] for a in scenario.get("extractors", [])],
                        list(rs.values()), eps),
                    **usage["cells"].get(key, {"retries": {"receiver": 0, "provider": 0},
                                               "cost": None}),
                })
    manifest = run["manifest"]
    out: dict[str, Any] = {
        "schema": "mmsim.interfeedback.v1",
        "run_id": run["run_id"], "name": run["name"], "status": run["status"],
        "simulated": bool(manifest.get("simulated")),
        "test_set": scenario.get("protocol", {}).get("test_set", "intersection"),
        "extractor": extractor,
        "max_rounds": max_rounds,
        "ci": ci_info(resamples, seed),
        "counts": store.counts(),
        "retries": usage["retries"],
        "cost": usage["cost"],
        "agents": agents_out,
        "cells": cells_out,
        "manifest": manifest,
    }
    human = human_metrics(store, scenario)  # human proxies and annotator-assist (docs/human.md)
    if human is not None:
        out["human"] = human
    return out
