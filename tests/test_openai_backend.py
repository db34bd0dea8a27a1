"""The ``openai`` backend against a real local OpenAI-compatible server (no mocks)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import anyio
import pytest
from openai_helpers import episodes, forget_episodes, metrics, run, scenario_yaml
from PIL import Image as PILImage

from mmsim.backends import BACKENDS
from mmsim.backends.base import GenerateRequest
from mmsim.backends.openai import OpenAIBackend, aiohttp_available
from mmsim.errors import UserError
from mmsim.messages import ChatTurn, Image, Text
from mmsim.report.table import render
from mmsim.testing import EchoServer

CLIENTS = ["httpx", *(["aiohttp"] if aiohttp_available() else [])]


@pytest.fixture(scope="module")
def server() -> EchoServer:
    with EchoServer(record=True) as srv:
        yield srv  # type: ignore[misc]


def _image(tmp: Path, name: str, color: str) -> Image:
    p = tmp / name
    PILImage.new("RGB", (24, 16), color).save(p)
    return Image.from_path(p)


def _ask(b: OpenAIBackend, turns: tuple[ChatTurn, ...]) -> str:
    async def go() -> str:
        try:
            return (await b.generate(GenerateRequest(messages=turns))).text
        finally:
            await b.aclose()
    return anyio.run(go)


@pytest.mark.parametrize("client", CLIENTS)
def test_turn_k_body_extends_turn_k_minus_1_byte_for_byte(server: EchoServer, tmp_path: Path,
                                                         client: str) -> None:
    b = OpenAIBackend("r", {"base_url": server.base_url, "model": "echo", "temperature": 0,
                            "seed": 7, "system_prompt": "Be brief.", "http_client": client})
    im1, im2 = _image(tmp_path, "a.png", "red"), _image(tmp_path, "b.png", "blue")
    turns: tuple[ChatTurn, ...] = (ChatTurn(role="user", parts=(
        im1, im2, Text(text="Which is redder? 'Answer: <letter>'"))),)
    start = len(server.bodies)
    for k in range(4):
        reply = _ask(b, turns)
        turns += (ChatTurn(role="assistant", parts=(Text(text=reply),)),
                  ChatTurn(role="user", parts=(Text(text=f"Wrong ({k}). Again."),)))
    bodies = server.bodies[start:]
    assert len(bodies) == 4
    for prev, cur in itertools.pairwise(bodies):
        end = prev.rindex(b"]")  # the end of prev's messages array (no ']' after it)
        assert cur[:end] == prev[:end]  # the whole messages prefix, images included
        assert cur[end:end + 1] == b","
        assert json.loads(cur)["messages"][: len(json.loads(prev)["messages"])] == \
            json.loads(prev)["messages"]
    first = json.loads(bodies[0])
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = first["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[0]["image_url"]["url"] != parts[1]["image_url"]["url"]
    assert first["temperature"] == 0 and first["seed"] == 7
    assert len(b.encoder._media) == 2  # each image encoded once


def test_params_are_validated_and_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    make = BACKENDS.get("openai")
    cases = [({"model": "m"}, "r.params.base_url"),
             ({"base_url": "localhost:8000", "model": "m"}, "r.params.base_url"),
             ({"base_url": "http://x", "model": "m", "timeout_s": 0}, "r.params.timeout_s"),
             ({"base_url": "http://x", "model": "m", "image_transport": "s3"},
              "r.params.image_transport"),
             ({"base_url": "http://x", "model": "m", "temprature": 0}, "r.params.temprature"),
             ({"base_url": "http://x", "model": "m", "api_key": "sk-1"}, "r.params.api_key")]
    for params, field in cases:
        with pytest.raises(UserError) as ei:
            make("r", params)
        assert ei.value.field == field, params
    monkeypatch.delenv("MMSIM_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="MMSIM_TEST_KEY is not set"):
        make("r", {"base_url": "http://x", "model": "m", "api_key_env": "MMSIM_TEST_KEY"})
    with pytest.raises(UserError, match="NAME of an environment variable"):
        make("r", {"base_url": "http://x", "model": "m", "api_key_env": "sk-abc-123"})


def test_scenario_end_to_end_key_secret_cost_and_report(server: EchoServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    key = "sk-test-DO-NOT-LEAK-4242"
    monkeypatch.setenv("MMSIM_TEST_KEY", key)
    text = scenario_yaml(server.base_url, server.base_url,
                         receiver_extra="api_key_env: MMSIM_TEST_KEY",
                         agent_extra="prices: {input: 2.5, output: 10.0}")
    start = len(server.headers)
    out = tmp_path / "run"
    res = run(tmp_path, text, out)
    assert res.failed == 0 and res.played > 12
    assert any(h.get("authorization") == f"Bearer {key}" for h in server.headers[start:])
    for f in out.rglob("*"):  # the key is nowhere in the run directory
        assert f.is_dir() or key.encode() not in f.read_bytes(), f
    m = metrics(out)
    assert m["retries"] == 0 and m["cost"]["currency"] == "USD"
    assert m["cost"]["receiver"] > 0 and m["cost"]["provider"] > 0
    assert m["cost"]["judge"] is None
    assert m["cost"]["total"] == pytest.approx(m["cost"]["receiver"] + m["cost"]["provider"],
                                               abs=1e-5)
    r1 = next(a for a in m["agents"] if a["name"] == "r1")
    assert r1["retries"] == 0 and r1["cost"]["total"] > 0 and r1["cost"]["screening"] > 0
    assert not r1["simulated"] and not m["simulated"]
    cell = m["cells"][0]
    assert cell["retries"] == {"receiver": 0, "provider": 0} and cell["cost"]["total"] > 0
    manifest = json.dumps(m["manifest"])
    assert key not in manifest
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(render(m))
    shown = console.export_text()
    assert "retries" in shown and "cost by role" in shown


def test_rerun_uses_the_response_cache_not_the_server(server: EchoServer, tmp_path: Path
                                                      ) -> None:
    text = scenario_yaml(server.base_url, server.base_url)
    out = tmp_path / "run"
    h0 = server.hits
    run(tmp_path, text, out)
    first_hits = server.hits - h0
    before = {k: {c: e[c] for c in ("status", "solved", "corrected_round", "rounds")}
              for k, e in episodes(out).items()}
    m1 = metrics(out)
    assert first_hits > 12
    forget_episodes(out)  # a crash after the calls, before the episodes were committed
    h1 = server.hits
    res = run(tmp_path, text, out)
    assert server.hits == h1, "deterministic requests must come from the cache"
    assert res.played == len(before)
    after = {k: {c: e[c] for c in ("status", "solved", "corrected_round", "rounds")}
             for k, e in episodes(out).items()}
    assert after == before
    assert {k: v for k, v in metrics(out).items() if k != "status"} == \
        {k: v for k, v in m1.items() if k != "status"}
    # cache: false (per agent) calls the server again
    out2 = tmp_path / "run2"
    h2 = server.hits
    run(tmp_path, scenario_yaml(server.base_url, server.base_url, agent_extra="cache: false"),
        out2, "s2.yaml")
    uncached_hits = server.hits - h2
    # without the cache every call reaches the server, repeated bodies within the run too
    # (the cached run served those from the cache: at most as many hits)
    assert uncached_hits >= first_hits
    forget_episodes(out2)
    h3 = server.hits
    run(tmp_path, scenario_yaml(server.base_url, server.base_url, agent_extra="cache: false"),
        out2, "s2.yaml")
    assert server.hits - h3 == uncached_hits


def test_sampled_requests_are_not_cached_by_default(server: EchoServer, tmp_path: Path) -> None:
    text = scenario_yaml(server.base_url, server.base_url).replace("temperature: 0",
                                                                   "temperature: 0.7")
    out = tmp_path / "run"
    run(tmp_path, text, out)
    forget_episodes(out)
    h = server.hits
    run(tmp_path, text, out)
    assert server.hits > h


def test_litellm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmsim.backends.litellm as lit

    monkeypatch.setattr(lit.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"install mmsim\[litellm\]"):
        BACKENDS.get("litellm")("h", {"model": "openai/gpt-4o-mini"})


# the litellm backend's real call path: tests/test_litellm_backend.py
