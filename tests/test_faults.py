"""Fault injection: the fault proxy in front of the local test server, at 10–50% fault
rates, for each fault kind. Every episode ends done or explicitly failed with its reason,
none is lost, none is scored differently because of a fault, retries show in the report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from openai_helpers import OUTCOME, ask_concurrently, episodes, metrics, run, scenario_yaml

from mmsim.backends.openai import OpenAIBackend
from mmsim.testing import FAULT_KINDS, EchoServer, FaultProxy

FAST = {"timeout_s": 0.5, "backoff_base_s": 0.01, "backoff_max_s": 0.05}


@pytest.fixture(scope="module")
def server() -> EchoServer:
    with EchoServer() as srv:
        yield srv  # type: ignore[misc]


def _asks(url: str, n: int, **params: object) -> list[tuple[str, int] | str]:
    b = OpenAIBackend("r", {"base_url": url, "model": "echo", "temperature": 0, **params})
    return ask_concurrently(b, n)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried_and_never_taken_as_an_answer(server: EchoServer,
                                                                 kind: str) -> None:
    clean = _asks(server.base_url, 12, **FAST)
    with FaultProxy(server.base_url, rate=0.5, kinds=[kind], seed=3, retry_after_s=0.05,
                    hang_s=3, slow_s=1.5) as proxy:
        faulty = _asks(proxy.base_url, 12, max_retries=12, **FAST)
        assert proxy.counts[kind] > 0
    assert [f[0] for f in faulty] == [c[0] for c in clean]  # type: ignore[index]
    assert sum(int(f[1]) for f in faulty) == proxy.counts[kind]  # type: ignore[index]


def test_retry_after_is_honoured_and_the_budget_ends_in_infrastructure_error(
        server: EchoServer) -> None:
    with FaultProxy(server.base_url, rate=1.0, kinds=["429_retry_after"],
                    retry_after_s=0.6) as proxy:
        t0 = time.perf_counter()
        [res] = _asks(proxy.base_url, 1, max_retries=1, **FAST)
        elapsed = time.perf_counter() - t0
    assert isinstance(res, str) and "HTTP 429" in res and "gave up after 1 retries" in res
    assert elapsed >= 0.55
    with FaultProxy(server.base_url, rate=1.0, kinds=["500"]) as proxy:
        [res] = _asks(proxy.base_url, 1, max_retries=2, **FAST)
    assert isinstance(res, str) and "HTTP 500" in res and proxy.counts["500"] == 3


def test_a_4xx_is_not_retried(server: EchoServer) -> None:
    [res] = _asks(server.base_url.replace("/v1", "/nope"), 1, max_retries=3, **FAST)
    assert isinstance(res, str) and "HTTP 404" in res and "gave up" not in res


def _outcomes(out: Path) -> dict[str, tuple[object, ...]]:
    return {k: tuple(e[c] for c in OUTCOME) for k, e in episodes(out).items()
            if e["status"] == "done"}


def test_scenario_under_faults_loses_nothing_and_miscounts_nothing(server: EchoServer,
                                                                   tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    run(tmp_path, scenario_yaml(server.base_url, server.base_url), clean_dir, "clean.yaml")
    clean = _outcomes(clean_dir)
    clean_m = metrics(clean_dir)
    fast = "timeout_s: 0.5, backoff_base_s: 0.01, backoff_max_s: 0.05"
    with FaultProxy(server.base_url, rate=0.25, seed=11, retry_after_s=0.05, hang_s=3,
                    slow_s=1.5) as proxy:
        # generous budget: everything ends done, exactly as without faults
        out = tmp_path / "faulty"
        text = scenario_yaml(proxy.base_url, proxy.base_url,
                             receiver_extra=f"max_retries: 12, {fast}",
                             provider_extra=f"max_retries: 12, {fast}")
        res = run(tmp_path, text, out, "faulty.yaml")
        assert res.failed == 0
        assert _outcomes(out) == clean
        m = metrics(out)
        assert m["retries"] > 0 and sum(a["retries"] for a in m["agents"]) == m["retries"]
        assert sum(c["retries"]["receiver"] + c["retries"]["provider"]
                   for c in m["cells"]) > 0
        for a, b in zip(m["cells"], clean_m["cells"], strict=True):
            assert a["correction_rate"] == b["correction_rate"]
            assert a["n_test"] == b["n_test"]

        # no retries: faults end episodes as explicitly failed, with their reason
        out2 = tmp_path / "budget0"
        proxy.rate = 0.3
        text2 = scenario_yaml(proxy.base_url, proxy.base_url,
                              receiver_extra=f"max_retries: 0, {fast}",
                              provider_extra=f"max_retries: 0, {fast}")
        res2 = run(tmp_path, text2, out2, "budget0.yaml")
        eps = episodes(out2)
        failed = {k: e for k, e in eps.items() if e["status"] == "failed"}
        assert res2.failed == len(failed) > 0
        assert all(e["error"] and ("r1 (echo-r" in e["error"] or "p1 (echo-p" in e["error"])
                   for e in failed.values())
        assert len([k for k in eps if k.startswith("screen/")]) == 24  # none lost
        for k, v in _outcomes(out2).items():  # done episodes scored exactly as without faults
            assert clean[k] == v, k
        m2 = metrics(out2)
        assert sum(c["failed"] for c in m2["cells"]) + sum(a["failed"] for a in m2["agents"]) \
            == len(failed)

        # resume with the faults gone: the failed episodes are re-played, results == clean
        proxy.rate = 0.0
        res3 = run(tmp_path, text2, out2, "budget0.yaml")
        assert res3.failed == 0 and res3.resumed
        assert _outcomes(out2) == clean
        m3 = metrics(out2)
        for a, b in zip(m3["cells"], clean_m["cells"], strict=True):
            assert {k: v for k, v in a.items() if k not in ("retries", "cost")} == \
                {k: v for k, v in b.items() if k not in ("retries", "cost")}


def test_httpx_client_survives_every_fault_kind(server: EchoServer) -> None:
    clean = _asks(server.base_url, 16, http_client="httpx", **FAST)
    with FaultProxy(server.base_url, rate=0.5, seed=5, retry_after_s=0.05, hang_s=3,
                    slow_s=1.5) as proxy:
        faulty = _asks(proxy.base_url, 16, http_client="httpx", max_retries=12, **FAST)
        faults = sum(v for k, v in proxy.counts.items() if k != "ok")
    assert [f[0] for f in faulty] == [c[0] for c in clean]  # type: ignore[index]
    assert sum(int(f[1]) for f in faulty) == faults > 0  # type: ignore[index]
