"""Providers and judges see the image: request bodies captured by a real local
OpenAI-compatible server (mmsim.testing.EchoServer), no mocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai_helpers import run

from mmsim.messages import ChatTurn, Feedback, Text
from mmsim.policies import FeedbackContext, policy
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from mmsim.testing import EchoServer


@policy("test-own-messages")
async def _own_messages(ctx: FeedbackContext) -> Feedback:
    """A policy that writes the provider's whole conversation itself."""
    text = await ctx.ask_provider([
        ChatTurn(role="system", parts=(Text(text="You grade homework."),)),
        ChatTurn(role="user", parts=ctx.with_visuals(f"Q: {ctx.sample.question}")),
        ChatTurn(role="assistant", parts=(Text(text="Ready."),)),
        ChatTurn(role="user", parts=(Text(text=f"The student said: {ctx.response.text}"),)),
    ])
    return ctx.feedback(text, kind="detailed")


def _scenario(url: str, policies: str, *, size: int = 6) -> str:
    return f"""
name: mm-provider
seed: 4
dataset: {{name: synthetic, size: {size}, seed: 5}}
receivers:
  - {{name: r1, backend: openai, params: {{base_url: "{url}", model: echo-r, temperature: 0}}}}
providers:
  - {{name: p1, backend: openai, params: {{base_url: "{url}", model: echo-p, temperature: 0}}}}
policies: {policies}
protocol: {{max_rounds: 2, test_set: all_wrong}}
run: {{concurrency: 4, bootstrap: 0}}
"""


def _bodies(server: EchoServer, model: str, start: int = 0) -> list[dict[str, Any]]:
    out = [json.loads(b) for b in server.bodies[start:]]
    return [b for b in out if b.get("model") == model]


def _urls(content: Any) -> list[str]:
    if isinstance(content, str):
        return []
    return [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


@pytest.fixture(scope="module")
def server() -> Any:
    with EchoServer(record=True) as srv:
        yield srv


def test_detailed_feedback_request_carries_the_image(server: EchoServer, tmp_path: Path
                                                     ) -> None:
    start = len(server.bodies)
    res = run(tmp_path, _scenario(server.base_url, "[detailed]"), tmp_path / "out")
    assert res.failed == 0
    receiver = _bodies(server, "echo-r", start)
    provider = _bodies(server, "echo-p", start)
    # every item the receiver got wrong had feedback, and every feedback request was seen
    fb = [b for b in provider if "explain briefly" in _text(b["messages"][-1]["content"]).lower()]
    assert fb, "no detailed-feedback request reached the server"
    item_images = {u for b in receiver for u in _urls(b["messages"][0]["content"])}
    assert item_images
    for body in fb:
        msgs = body["messages"]
        assert len(msgs) == 1 and msgs[0]["role"] == "user"  # one multimodal message
        content = msgs[0]["content"]
        kinds = [p["type"] for p in content]
        assert kinds[-1] == "text" and "image_url" in kinds  # images first, then the prompt
        urls = _urls(content)
        assert urls and set(urls) <= item_images  # the very image the receiver saw
        text = _text(content)
        assert "Question:" in text and "Student's answer:" in text


def test_feedback_bodies_are_deterministic(server: EchoServer, tmp_path: Path) -> None:
    """The same run twice (fresh stores, no cache reuse) sends byte-identical provider
    bodies: prefix caches hit and the response cache keys on them."""
    got = []
    for i in range(2):
        start = len(server.bodies)
        run(tmp_path, _scenario(server.base_url, "[detailed]"), tmp_path / f"out{i}",
            name=f"s{i}.yaml")
        got.append(sorted(b for b in server.bodies[start:] if b"echo-p" in b))
    assert got[0] and got[0] == got[1]


def test_show_image_false_and_own_message_list(server: EchoServer, tmp_path: Path) -> None:
    start = len(server.bodies)
    pols = ("[{name: plain, policy: detailed, options: {show_image: false, history: true}},"
            " test-own-messages]")
    res = run(tmp_path, _scenario(server.base_url, pols), tmp_path / "out")
    assert res.failed == 0
    provider = _bodies(server, "echo-p", start)
    plain = [b for b in provider if len(b["messages"]) == 1
             and "explain briefly" in _text(b["messages"][0]["content"]).lower()]
    own = [b for b in provider if len(b["messages"]) == 4]
    assert plain and own
    for b in plain:
        assert _urls(b["messages"][0]["content"]) == []  # text alone
        assert "The conversation so far:" in _text(b["messages"][0]["content"])
    for b in own:
        assert [m["role"] for m in b["messages"]] == ["system", "user", "assistant", "user"]
        assert _urls(b["messages"][1]["content"])  # the policy put the image there
        assert b["messages"][3]["content"] in (
            [{"type": "text", "text": _text(b["messages"][3]["content"])}],
            _text(b["messages"][3]["content"]))


def test_prompts_from_the_scenario_reach_receiver_and_provider(server: EchoServer,
                                                               tmp_path: Path) -> None:
    start = len(server.bodies)
    text = _scenario(server.base_url, "[detailed]") + """
prompts:
  instructions: {choice: "Reply with 'Answer: <letter>' only (custom)."}
  reask: "Try once more (custom)."
  feedback: "CUSTOM FEEDBACK PROMPT. Q={question} A={answer} S={given}"
"""
    res = run(tmp_path, text, tmp_path / "out")
    assert res.failed == 0
    receiver = _bodies(server, "echo-r", start)
    firsts = [_text(b["messages"][0]["content"]) for b in receiver]
    assert any("(custom)" in t for t in firsts)  # choice items: the custom instruction
    assert not any("Answer with the letter" in t for t in firsts)  # the default's gone
    assert any("Answer: <number>" in t for t in firsts)  # numeric items keep theirs
    later = [b for b in receiver if len(b["messages"]) > 1]
    assert later and all("Try once more (custom)." in _text(b["messages"][-1]["content"])
                         for b in later)
    provider = _bodies(server, "echo-p", start)
    fb = [b for b in provider if "CUSTOM FEEDBACK PROMPT" in _text(b["messages"][0]["content"])]
    assert fb and all(_urls(b["messages"][0]["content"]) for b in fb)
    store = RunStore.open(tmp_path / "out", create=False)
    try:
        hashes = (store.run() or {})["manifest"]["prompt_templates"]
    finally:
        store.close()
    assert hashes["prompts.overridden"] == "feedback,instructions.choice,reask"


def test_a_bad_prompt_template_is_refused_at_validate(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(_scenario("http://127.0.0.1:9/v1", "[detailed]")
                 + "prompts: {feedback: 'Q={question} {solution}'}\n")
    from mmsim.errors import UserError
    with pytest.raises(UserError, match=r"prompts.feedback.*solution"):
        load_scenario(p)


def _dyn(url: str, sees: str) -> str:
    return f"""
kind: dynamic
name: mm-judge
seed: 1
dataset: {{name: synthetic-scenes, size: 6, seed: 0}}
tasks: [qa, caption]
models:
  - {{name: m, backend: sim, params: {{skill: 1.0}}}}
judges:
  - {{name: j, backend: openai, params: {{base_url: "{url}", model: echo-j, temperature: 0}}}}
judge:
  min_auroc: 0.0
  sees_image: {sees}
  calibration: {{items: 2, paraphrases: 1, corruptions: 1, runs: 1}}
run: {{concurrency: 4, bootstrap: 0}}
"""


def _judge_answer(messages: list[Any], digest: bytes) -> str:
    return f"Score: {digest[0] % 6}\nReason: looked."


@pytest.mark.parametrize("sees", ["auto", "never", "always"])
def test_dynamic_judge_sees_the_image_where_the_task_needs_it(tmp_path: Path,
                                                              sees: str) -> None:
    with EchoServer(record=True, answer=_judge_answer) as srv:
        p = tmp_path / "d.yaml"
        p.write_text(_dyn(srv.base_url, sees))
        res = anyio.run(lambda: run_scenario(load_scenario(p), tmp_path / "out"))
        assert res.failed == 0
        judged = [json.loads(b) for b in srv.bodies]
    assert judged
    for b in judged:
        content = b["messages"][-1]["content"]
        text = _text(content)
        caption = "Describe the image" in text
        want = {"never": False, "always": True, "auto": caption}[sees]
        assert bool(_urls(content)) is want, (sees, text[:80])
    if sees == "auto":
        assert any("Describe the image" in _text(b["messages"][-1]["content"]) for b in judged)


# --------------------------------------------------------------------------------------
# A model-based extractor (extractors:) reads what the strict extractor leaves unparsed
# --------------------------------------------------------------------------------------

def _prose_answer(messages: list[Any], digest: bytes) -> str:
    """Receiver replies without an answer marker: strict reads none, lenient reads B."""
    return "Hmm, I would go with B probably, given the figure."


def test_model_extractor_fills_unparsed_replies_and_is_reported_apart(tmp_path: Path) -> None:
    with EchoServer(record=True, answer=_prose_answer) as srv:
        text = f"""
name: mx
seed: 2
dataset: {{name: synthetic, size: 16, seed: 3}}
receivers:
  - {{name: r1, backend: openai, params: {{base_url: "{srv.base_url}", model: echo-r,
                                        temperature: 0}}}}
providers:
  - {{name: p1, backend: sim, params: {{skill: 3.0}}}}
extractors:
  - {{name: x1, backend: sim}}
policies: [binary]
protocol: {{max_rounds: 1, test_set: all_wrong}}
run: {{concurrency: 4, bootstrap: 0}}
"""
        res = run(tmp_path, text, tmp_path / "out")
        assert res.failed == 0
    store = RunStore.open(tmp_path / "out", create=False)
    try:
        from mmsim.metrics import compute
        m = compute(store, resamples=0)
        screen = [e for e in store.episodes("screen") if e["model"] == "r1"]
        extractions = {e["episode_id"]: [x for x in store.messages(e["episode_id"])
                                         if x["kind"] == "extraction"] for e in screen}
        fb_extractions = {e["episode_id"]: [x for x in store.messages(e["episode_id"])
                                            if x["kind"] == "extraction"]
                          for e in store.episodes("feedback")}
    finally:
        store.close()
    c = m["cells"][0]
    # every reply is prose: the strict extractor reads none, so every item is in the test set
    assert c["n_wrong"] == c["n"] == 16 and c["accuracy"]["value"] == 0.0
    fig = c["model_extractors"]["x1"]
    # the extractor read B from each choice reply (numeric items: none), stored as messages
    choice = [e for e in screen if e["n_options"]]
    assert choice and all(len(extractions[e["episode_id"]]) == 1 for e in screen)
    assert fig["filled_screening"] == len(choice)
    # its accuracy: the choice items whose answer is B, computed from the stored readings
    right = sum(extractions[e["episode_id"]][0]["correct"] for e in screen)
    assert right == sum(x[0]["answer"] == "B" and x[0]["correct"] for x in extractions.values())
    assert fig["accuracy"]["k"] == right and fig["accuracy"]["n"] == 16
    # under the extractor, items it read right leave the test set; the rest say B again in
    # round 1 (still wrong): none corrected
    assert fig["correction"]["n"] == 16 - right and fig["correction"]["k"] == 0
    fb_readings = [x for ms in fb_extractions.values() for x in ms]
    assert fig["filled_feedback"] == sum(x["answer"] is not None for x in fb_readings) > 0
    assert fig["calls"] == len(fb_readings) + sum(len(v) for v in extractions.values())
    assert fig["errors"] == 0 and fig["tokens"] > 0
    # the deterministic figures are untouched by the model's readings
    assert c["extractor"]["strict"]["accuracy"]["k"] == 0
    assert c["extractor"]["lenient"]["accuracy"]["k"] == right


def _prose_then_marker(messages: list[Any], digest: bytes) -> str:
    """The first reply names B in prose (strict: unparsed, lenient: B); after feedback the
    reply carries a marker (both read B)."""
    if len([m for m in messages if m.get("role") == "user"]) > 1:
        return "Let me look again.\nAnswer: B"
    return "Hmm, I would go with B probably, given the figure."


@pytest.mark.parametrize("primary", ["strict", "lenient"])
def test_extractor_sensitivity_is_computed_from_both_readings(tmp_path: Path,
                                                              primary: str) -> None:
    with EchoServer(answer=_prose_then_marker) as srv:
        text = f"""
name: sens
seed: 2
dataset: {{name: synthetic, size: 20, seed: 3}}
receivers:
  - {{name: r1, backend: openai, params: {{base_url: "{srv.base_url}", model: echo-r,
                                        temperature: 0}}}}
providers:
  - {{name: p1, backend: sim, params: {{skill: 3.0}}}}
policies: [binary]
protocol: {{max_rounds: 1, test_set: all_wrong, extractor: {primary}}}
run: {{concurrency: 4, bootstrap: 0}}
"""
        res = run(tmp_path, text, tmp_path / "out")
        assert res.failed == 0
    store = RunStore.open(tmp_path / "out", create=False)
    try:
        from mmsim.metrics import compute
        m = compute(store, resamples=0)
        screen = list(store.episodes("screen"))
        answers = {e["sample_id"]: e for e in screen if e["model"] == "r1"}
    finally:
        store.close()
    c = m["cells"][0]
    ex = c["extractor"]
    alt = "lenient" if primary == "strict" else "strict"
    assert (ex["primary"], ex["alternative"]) == (primary, alt)
    n = len(answers)
    choice = [e for e in answers.values() if e["n_options"]]
    # the choice items whose answer is B: lenient reads them right at round 0
    b_right = [e for e in choice if (e["alt_correct_round"] == 0 if primary == "strict"
                                     else bool(e["first_correct"]))]
    # screening: every choice reply is read differently by the two extractors
    assert ex["screening_disagree"]["k"] == len(choice) and ex["screening_disagree"]["n"] == n
    # the run's own figures are the cell's figures
    assert ex[primary]["accuracy"]["k"] == c["n"] - c["n_wrong"]
    assert ex[primary]["correction"]["k"] == c["n_corrected"]
    assert ex[primary]["correction"]["n"] == c["n_test"]
    # strict reads no screening answer; lenient reads B on every choice item
    assert ex["strict"]["accuracy"]["k"] == 0
    assert ex["lenient"]["accuracy"]["k"] == len(b_right) > 0
    if primary == "strict":
        # every wrong item is tested; its round-0 reply disagrees, its round-1 reply does
        # not: exactly one disagreeing reply per choice episode
        assert c["n_test"] == n
        assert ex["disagree"]["k"] == len(choice) and ex["disagree"]["n"] == n
        # under lenient the items it read right at round 0 leave the test set
        assert ex["lenient"]["correction"]["n"] == n - len(b_right)
