"""The ``litellm`` backend's real call path (``litellm.acompletion`` -> the openai SDK ->
HTTP), offline, against the local echo server and the fault proxy: same replies, same
retry and failed-episode semantics as the ``openai`` backend.

litellm is imported once (~3 s); the backend sets ``LITELLM_LOCAL_MODEL_COST_MAP=True``
before the import, so nothing is fetched from the network."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import anyio
import pytest
from openai_helpers import OUTCOME, ask_concurrently, episodes, metrics, run, scenario_yaml

from mmsim.backends import BACKENDS
from mmsim.backends.base import GenerateRequest
from mmsim.errors import InfrastructureError
from mmsim.messages import ChatTurn, Text
from mmsim.testing import EchoServer, FaultProxy

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None,
                                reason="litellm is not installed (pip install 'mmsim[litellm]')")

KEY_ENV = "MMSIM_LITELLM_TEST_KEY"  # the echo server takes any key; litellm insists on one
FAST = {"timeout_s": 0.5, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
FAST_YAML = "timeout_s: 0.5, backoff_base_s: 0.01, backoff_max_s: 0.05"


@pytest.fixture(scope="module")
def server() -> EchoServer:
    with EchoServer(record=True) as srv:
        yield srv  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-local-any")


def _asks(url: str, n: int, **params: object) -> list[tuple[str, int] | str]:
    b = BACKENDS.get("litellm")("h", {"base_url": url, "model": "openai/echo",
                                      "temperature": 0, "api_key_env": KEY_ENV, **params})
    return ask_concurrently(b, n)


def _litellm_yaml(receiver_url: str, provider_url: str, extra: str = "") -> str:
    text = scenario_yaml(receiver_url, provider_url, size=8,
                         receiver_extra=f"api_key_env: {KEY_ENV}, {extra}",
                         provider_extra=f"api_key_env: {KEY_ENV}, {extra}")
    return (text.replace("backend: openai", "backend: litellm")
            .replace("model: echo-r", "model: openai/echo-r")
            .replace("model: echo-p", "model: openai/echo-p"))


def _outcomes(out: Path) -> dict[str, tuple[object, ...]]:
    return {k: tuple(e[c] for c in OUTCOME) for k, e in episodes(out).items()
            if e["status"] == "done"}


def test_scenario_through_litellm_matches_the_openai_backend(server: EchoServer,
                                                             tmp_path: Path) -> None:
    ref = tmp_path / "openai"
    run(tmp_path, scenario_yaml(server.base_url, server.base_url, size=8), ref, "o.yaml")
    out = tmp_path / "litellm"
    h0 = server.hits
    res = run(tmp_path, _litellm_yaml(server.base_url, server.base_url), out)
    assert res.failed == 0 and res.played > 8
    assert server.hits - h0 > 8  # the real HTTP path, not the cache of another run
    assert _outcomes(out) == _outcomes(ref)  # same requests, same replies, same scores
    m = metrics(out)
    assert m["retries"] == 0
    assert {a["name"]: a["simulated"] for a in m["agents"]} == {"r1": False, "p1": False}


def test_faults_through_litellm_are_retried_or_fail_the_episode_with_the_reason(
        server: EchoServer, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    run(tmp_path, _litellm_yaml(server.base_url, server.base_url), clean, "clean.yaml")
    kinds = ["429_retry_after", "500", "reset", "truncated_json", "empty_content"]
    with FaultProxy(server.base_url, rate=0.3, kinds=kinds, seed=4,
                    retry_after_s=0.05) as proxy:
        out = tmp_path / "faulty"
        res = run(tmp_path, _litellm_yaml(proxy.base_url, proxy.base_url,
                                          f"max_retries: 12, {FAST_YAML}"), out, "f.yaml")
        faults = sum(v for k, v in proxy.counts.items() if k != "ok")
        assert res.failed == 0 and faults > 0
        assert _outcomes(out) == _outcomes(clean)
        m = metrics(out)
        assert m["retries"] == faults  # litellm/openai SDK retry nothing themselves
        proxy.rate = 0.3
        out2 = tmp_path / "budget0"
        res2 = run(tmp_path, _litellm_yaml(proxy.base_url, proxy.base_url,
                                           f"max_retries: 0, {FAST_YAML}"), out2, "b.yaml")
    eps = episodes(out2)
    failed = [e for e in eps.values() if e["status"] == "failed"]
    assert res2.failed == len(failed) > 0
    assert all("via litellm" in e["error"] and "gave up after 0 retries" in e["error"]
               for e in failed)
    assert len([k for k in eps if k.startswith("screen/")]) == 2 * 8  # none lost
    clean_o = _outcomes(clean)
    for k, v in _outcomes(out2).items():  # done episodes are scored as without faults
        assert clean_o[k] == v, k


def test_retry_after_is_honoured_and_4xx_and_client_errors_are_not_retried(
        server: EchoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy(server.base_url, rate=1.0, kinds=["429_retry_after"],
                    retry_after_s=0.6) as proxy:
        t0 = time.perf_counter()
        [res] = _asks(proxy.base_url, 1, max_retries=1, **FAST)
        elapsed = time.perf_counter() - t0
    assert isinstance(res, str) and "HTTP 429" in res and "gave up after 1 retries" in res
    assert elapsed >= 0.55  # the header was read (litellm keeps it off exc.response)
    [res] = _asks(server.base_url.replace("/v1", "/nope"), 1, max_retries=3, **FAST)
    assert isinstance(res, str) and "HTTP 404" in res and "gave up" not in res
    # no key at all: litellm reports it as a 500, but it is not retried
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = BACKENDS.get("litellm")("h", {"base_url": server.base_url, "model": "openai/echo",
                                      "max_retries": 3, **FAST})
    turns = (ChatTurn(role="user", parts=(Text(text="hi"),)),)
    with pytest.raises(InfrastructureError, match="Missing credentials") as ei:
        anyio.run(lambda: b.generate(GenerateRequest(messages=turns)))
    assert ei.value.retries == 0 and "api_key_env" in str(ei.value)
