"""Human proxies: web (real HTTP), terminal (a subprocess fed on stdin), replay, personas,
annotator-assist (docs/human.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image as PILImage

from mmsim.data.sample import Sample
from mmsim.errors import ScenarioError
from mmsim.human import HumanItem, HumanOptions, HumanReply
from mmsim.human.persona import Persona, parse_annotation
from mmsim.human.preview import halfblock, iterm, kitty
from mmsim.human.web import WebChannel
from mmsim.messages import AnswerFormat, ChatTurn, Image, Response, Text
from mmsim.metrics import compute
from mmsim.runtime import run_scenario
from mmsim.scenario import load_scenario
from mmsim.store import RunStore
from tests.conftest import run_cli

HUMAN = """
name: human-t
seed: 2
dataset: {{name: synthetic, size: {size}, seed: 4}}
receivers:
  - {{name: r1, backend: sim, params: {{skill: -0.6, uptake: {{detailed: 0.4}}}}}}
providers:
  - name: person
    kind: human
    channel: persona
    human: {{persona: expert}}
policies:
  - {{name: study, schedule: [human, human, reveal]}}
protocol: {{max_rounds: 3, test_set: all_wrong}}
run: {{concurrency: 8, bootstrap: 0}}
"""


def _scenario(tmp_path: Path, size: int = 30, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(HUMAN.format(size=size))
    return p


def _run(path: Path, out: Path, *sets: str, limit: int | None = None) -> dict[str, Any]:
    loaded = load_scenario(path, overrides=list(sets), limit=limit)
    anyio.run(lambda: run_scenario(loaded, out))
    store = RunStore.open(out, create=False)
    try:
        return compute(store, resamples=0)
    finally:
        store.close()


def _feedback(out: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """episode id -> [(feedback text, meta)] of a run."""
    store = RunStore.open(out, create=False)
    try:
        return {ep["episode_id"]: [(m["text"], m.get("meta") or {})
                                   for m in store.messages(ep["episode_id"])
                                   if m["kind"] == "feedback"]
                for ep in store.episodes() if ep["kind"] in ("feedback", "annotate")}
    finally:
        store.close()


# -- scenario ----------------------------------------------------------------------------
def test_scenario_human_fields(tmp_path: Path) -> None:
    p = _scenario(tmp_path)
    s = load_scenario(p, overrides=["providers.0.channel=web"]).scenario
    assert s.providers[0].kind == "human" and s.providers[0].channel == "web"
    with pytest.raises(ScenarioError, match=r"providers\.0.*human\.bogus"):
        load_scenario(p, overrides=["providers.0.human.bogus=1"])
    with pytest.raises(ScenarioError, match="human proxy"):
        load_scenario(p, overrides=["receivers.0.kind=human"])
    # the shipped scenarios validate, with every channel
    for ch in ("persona", "web", "terminal"):
        load_scenario(Path("scenarios/interfeedback-human.yaml"),
                      overrides=[f"providers.0.channel={ch}"])
    load_scenario(Path("scenarios/annotator-assist.yaml"))


# -- web ---------------------------------------------------------------------------------
def _sample(tmp_path: Path, i: int) -> Sample:
    img = tmp_path / f"im{i}.png"
    PILImage.new("RGB", (8, 6), (200, 30 * i, 10)).save(img)
    return Sample(id=f"s{i}", question=f"Question {i}?\nChoices:\nA: 1\nB: 2",
                  images=(Image.from_path(img),), answer="B",
                  answer_format=AnswerFormat(kind="choice", letters=("A", "B"),
                                             options=("1", "2")))


def _item(sample: Sample, mode: str = "feedback") -> HumanItem:
    resp = Response(run_id="r", episode_id=f"e/{sample.id}", turn=0, sender="m",
                    text="Answer: A", answer="A")
    first = ChatTurn(role="user", parts=(*sample.images, Text(text=sample.question)))
    return HumanItem(key=f"e/{sample.id}#{mode}", episode_id=f"e/{sample.id}", sample=sample,
                     conversation=(first,), responses=(resp,), feedback=(),
                     round=1 if mode == "feedback" else 0, mode=mode,  # type: ignore[arg-type]
                     prompt="", policy="human", provider="person", max_rounds=3)


def test_web_token_queue_leases(tmp_path: Path) -> None:
    samples = [_sample(tmp_path, i) for i in range(3)]
    replies: dict[str, HumanReply] = {}

    async def main() -> None:
        ch = WebChannel("person", HumanOptions(lease_s=0.5))
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: ch.run(task_status=task_status))

            async def ask(item: HumanItem) -> None:
                replies[item.sample.id] = await ch.ask(item)

            tg.start_soon(ask, _item(samples[0]))
            tg.start_soon(ask, _item(samples[1]))
            tg.start_soon(ask, _item(samples[2], mode="annotate"))
            await anyio.sleep(0.05)
            base, tok = ch.base_url, {"X-Mmsim-Token": ch.token}
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:
                # no token, a wrong token: 403 everywhere
                for path in ("/", "/api/next?person=x", "/api/status", "/api/image/x/0"):
                    assert (await c.get(path)).status_code == 403
                assert (await c.get("/?token=wrong")).status_code == 403
                assert (await c.post("/api/submit", json={})).status_code == 403
                # a malformed request gets an error, and the server keeps serving
                raw = await anyio.connect_tcp("127.0.0.1", ch.port)
                async with raw:
                    await raw.send(b"GARBAGE\r\n\r\n")
                    assert (await raw.receive()).split(b"\r\n")[0].endswith(b" 400 Bad Request")
                page = await c.get(f"/?token={ch.token}")
                assert page.status_code == 200 and "mmsim" in page.text
                assert "HttpOnly" in page.headers["set-cookie"]
                assert "nonce-" in page.headers["content-security-policy"]

                def who(p: str) -> dict[str, str]:
                    return {**tok, "Cookie": f"mmsim_person={p}"}

                a = (await c.get("/api/next", headers=who("alice"))).json()
                b = (await c.get("/api/next", headers=who("bob"))).json()
                d = (await c.get("/api/next", headers=who("dan"))).json()
                assert len({a["key"], b["key"], d["key"]}) == 3  # one person per item
                assert (await c.get("/api/next", headers=who("carol"))).status_code == 204
                again = (await c.get("/api/next", headers=who("alice"))).json()
                assert again["lease"] == a["lease"]  # the same item while the lease lasts
                img = await c.get(a["images"][0], headers=who("alice"))
                assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
                assert (await c.get("/api/image/nope/0", headers=who("alice"))
                        ).status_code == 404
                assert {x["mode"] for x in (a, b, d)} == {"feedback", "annotate"}
                # leases expire: the items go back to the queue
                await anyio.sleep(0.6)
                c1 = (await c.get("/api/next", headers=who("carol"))).json()
                assert c1["key"] in {a["key"], b["key"], d["key"]}
                old = next(x for x in (a, b, d) if x["key"] == c1["key"])
                late = await c.post("/api/submit", headers=who(old["person"]),
                                    json={"lease": old["lease"], "verdict": "feedback",
                                          "text": "late"})
                assert late.status_code == 409
                verdict = ({"verdict": "edit", "label": "b"} if c1["mode"] == "annotate"
                           else {"verdict": "feedback", "text": "Count again."})
                bad = await c.post("/api/submit", headers=who("carol"),
                                   json={"lease": c1["lease"], "verdict": "nonsense"})
                assert bad.status_code == 400
                ok = await c.post("/api/submit", headers=who("carol"),
                                  json={"lease": c1["lease"], **verdict})
                assert ok.status_code == 200
                # the rest, released once then answered by erin
                while True:
                    r = await c.get("/api/next", headers=who("erin"))
                    if r.status_code == 204:
                        break
                    it = r.json()
                    if it["mode"] == "annotate":
                        body = {"verdict": "edit", "label": "B"}
                    else:
                        body = {"verdict": "incorrect"}
                    rel = await c.post("/api/release", headers=who("erin"),
                                       json={"lease": it["lease"]})
                    assert rel.status_code == 200
                    it = (await c.get("/api/next", headers=who("erin"))).json()
                    r2 = await c.post("/api/submit", headers=who("erin"),
                                      json={"lease": it["lease"], **body})
                    assert r2.status_code == 200
            await anyio.sleep(0.05)
            await ch.stop()

    anyio.run(main)
    assert set(replies) == {"s0", "s1", "s2"}
    assert replies["s2"].verdict == "edit" and replies["s2"].label == "B"
    persons = {r.person for r in replies.values()}
    assert persons <= {"carol", "erin"} and "carol" in persons
    assert all(r.source == "human" for r in replies.values())
    assert {r.verdict for k, r in replies.items() if k != "s2"} <= {"feedback", "incorrect"}


def test_web_leases_belong_to_their_holder(tmp_path: Path) -> None:
    """Every lease operation checks that the person acting holds the lease: another
    person cannot release, answer or heartbeat it, nor fetch its images; an operation
    that names no person is refused; item JSON shows no server path; the server's limits
    are aiohttp's, configured (a 20 KB header is refused); a page that went away (no
    heartbeat) frees its item, and its late answer is not recorded."""
    samples = [_sample(tmp_path, i) for i in range(2)]
    replies: dict[str, HumanReply] = {}

    async def main() -> None:
        ch = WebChannel("person", HumanOptions(lease_s=60))
        ch.queue.heartbeat_s = 1.0
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: ch.run(task_status=task_status))

            async def ask(item: HumanItem) -> None:
                replies[item.sample.id] = await ch.ask(item)

            for s in samples:
                tg.start_soon(ask, _item(s))
            await anyio.sleep(0.05)
            tok = {"X-Mmsim-Token": ch.token}

            def who(p: str) -> dict[str, str]:
                return {**tok, "Cookie": f"mmsim_person={p}"}

            async with httpx.AsyncClient(base_url=ch.base_url, timeout=5) as c:
                r = await c.get("/api/next", headers=who("alice"))
                a = r.json()
                assert str(tmp_path) not in r.text and "image_paths" not in a
                assert a["images"] == [f"/api/image/{a['lease']}/0"]
                # someone else: no images, no release, no answer, no heartbeat
                assert (await c.get(a["images"][0], headers=who("mallory"))
                        ).status_code == 404
                assert (await c.get(a["images"][0], headers=tok)).status_code == 404
                for path, body in (("/api/release", {"lease": a["lease"]}),
                                   ("/api/heartbeat", {"lease": a["lease"]}),
                                   ("/api/submit", {"lease": a["lease"],
                                                    "verdict": "incorrect"})):
                    assert (await c.post(path, headers=who("mallory"), json=body)
                            ).status_code == 403, path
                    assert (await c.post(path, headers=tok, json=body)
                            ).status_code == 400, path  # no person named
                # a header over the limit: refused by aiohttp's parser, server still up
                big = await c.get("/api/status", headers={**tok, "X-Big": "x" * 20_000})
                assert big.status_code in (400, 431)
                assert (await c.get("/api/status", headers=tok)).status_code == 200
                page = await c.get("/", headers=tok)
                assert "default-src 'none'" in page.headers["content-security-policy"]
                assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
                # heartbeats keep alice's lease past heartbeat_s ...
                assert (await c.post("/api/heartbeat", headers=who("alice"),
                                     json={"lease": a["lease"]})).status_code == 200
                for _ in range(4):
                    await anyio.sleep(0.35)
                    hb = await c.post("/api/heartbeat", headers=who("alice"),
                                      json={"lease": a["lease"]})
                    assert hb.status_code == 200
                # ... and a page that went away frees it within heartbeat_s
                await anyio.sleep(1.3)
                b = (await c.get("/api/next", headers=who("bob"))).json()
                b2 = (await c.get("/api/next", headers=who("bob2"))).json()
                assert a["key"] in {b["key"], b2["key"]}
                late = await c.post("/api/submit", headers=who("alice"),
                                    json={"lease": a["lease"], "verdict": "incorrect"})
                assert late.status_code == 409  # not recorded twice
                back = (await c.get("/api/next", headers=who("alice")))
                assert back.status_code == 204  # nothing left: both items are leased
                for it, p in ((b, "bob"), (b2, "bob2")):
                    ok = await c.post("/api/submit", headers=who(p),
                                      json={"lease": it["lease"], "verdict": "incorrect"})
                    assert ok.status_code == 200
            await anyio.sleep(0.05)
            await ch.stop()

    anyio.run(main)
    assert {r.person for r in replies.values()} == {"bob", "bob2"}
    assert len(replies) == 2


def test_web_full_run_two_people(tmp_path: Path) -> None:
    url_file = tmp_path / "url.txt"
    p = _scenario(tmp_path, size=14)
    loaded = load_scenario(p, overrides=["providers.0.channel=web",
                                         f"providers.0.human.url_file={url_file}",
                                         "providers.0.human.lease_s=30"])
    out = tmp_path / "web"
    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["r"] = anyio.run(lambda: run_scenario(loaded, out))
        except BaseException as exc:  # surfaced by the assertions below
            result["e"] = exc

    t = threading.Thread(target=runner)
    t.start()
    deadline = time.monotonic() + 20
    while not url_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    url = url_file.read_text().strip()
    base = url.split("/?", 1)[0]
    token = url.split("token=", 1)[1]
    assert httpx.get(f"{base}/api/status", timeout=5).status_code == 403
    served: dict[str, list[str]] = {"alice": [], "bob": []}
    errors: list[str] = []

    def person(name: str) -> None:
        with httpx.Client(base_url=base, timeout=5,
                          headers={"X-Mmsim-Token": token},
                          cookies={"mmsim_person": name}) as c:
            n = 0
            while t.is_alive() and time.monotonic() < deadline + 20:
                try:
                    r = c.get("/api/next")
                except httpx.TransportError:
                    break  # the run ended and the server stopped
                if r.status_code == 204:
                    time.sleep(0.01)
                    continue
                it = r.json()
                served[name].append(it["key"])
                n += 1
                body = ({"verdict": "incorrect"} if n % 3 == 0 else
                        {"verdict": "feedback", "text": f"{name}: look again at the image"})
                s = c.post("/api/submit", json={"lease": it["lease"], **body})
                if s.status_code != 200:
                    errors.append(f"{name}: {s.status_code} {s.text}")

    people = [threading.Thread(target=person, args=(n,)) for n in served]
    for th in people:
        th.start()
    t.join(40)
    for th in people:
        th.join(10)
    assert "e" not in result, result.get("e")
    assert not errors
    r = result["r"]
    assert r.failed == 0 and r.played > 0
    keys = served["alice"] + served["bob"]
    assert len(keys) == len(set(keys))  # every item went to exactly one person, once
    fb = _feedback(out)
    human = [(text, meta) for lst in fb.values() for text, meta in lst
             if meta.get("source") == "human"]
    assert len(human) == len(keys) > 0
    by_person = {m["person"] for _, m in human}
    assert by_person <= {"alice", "bob"}
    assert all(text.startswith(m["person"]) for text, m in human if m["verdict"] == "feedback")
    store = RunStore.open(out, create=False)
    try:
        metrics = compute(store, resamples=0)
    finally:
        store.close()
    cell = metrics["human"]["feedback"][0]
    assert cell["n_feedback"] == len(keys) and cell["sources"] == {"human": len(keys)}
    assert [r["policy"] for r in cell["by_round"]] == ["human", "human", "reveal"]


# -- terminal ----------------------------------------------------------------------------
def test_terminal_channel_subprocess(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=8)
    out = tmp_path / "term"
    lines = ["/c", "", *[f"check the picture again ({i})" for i in range(60)]]
    env_input = "\n".join(lines) + "\n"
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "mmsim.cli", "run", str(p), "--out", str(out),
         "--set", "providers.0.channel=terminal", "--set", "providers.0.human.person=tess"],
        input=env_input, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Model's answer" in proc.stderr and "Reference answer" in proc.stderr
    fb = [meta for lst in _feedback(out).values() for _, meta in lst
          if meta.get("source") == "human"]
    assert proc.stderr.count("Model's answer") == len(fb) > 2
    verdicts = sorted(m["verdict"] for m in fb)
    assert verdicts.count("correct") == 1 and verdicts.count("incorrect") == 1
    assert verdicts.count("feedback") == len(fb) - 2
    assert {m["person"] for m in fb} == {"tess"}
    assert "Human feedback" in proc.stdout


def test_terminal_end_of_input_fails_clearly(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=8)
    proc = run_cli("run", str(p), "--out", str(tmp_path / "eof"),
                   "--set", "providers.0.channel=terminal")  # stdin: nothing (EOF)
    # the run finishes; its episodes that had no person failed: exit 4 (docs/cli.md)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "episodes failed permanently" in proc.stderr
    store = RunStore.open(tmp_path / "eof", create=False)
    try:
        errs = [e["error"] for e in store.episodes("feedback") if e["status"] == "failed"]
    finally:
        store.close()
    assert errs and all("end of input" in e for e in errs)


# -- replay ------------------------------------------------------------------------------
def _strip(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k not in ("tokens", "failed")} for c in cells]


def test_replay_reproduces_feedback_and_metrics(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=30)
    rec = _run(p, tmp_path / "rec")
    rep = _run(p, tmp_path / "rep", "providers.0.channel=replay",
               f"providers.0.human.replay_from={tmp_path / 'rec'}")
    a, b = _feedback(tmp_path / "rec"), _feedback(tmp_path / "rep")
    assert a.keys() == b.keys() and a
    for eid in a:
        assert [t for t, _ in a[eid]] == [t for t, _ in b[eid]]
    assert all(m["source"] == "replay" and m["original_source"] == "persona"
               for lst in b.values() for _, m in lst if "original_source" in m)
    assert _strip(rec["cells"]) == _strip(rep["cells"])
    hr, hp = rec["human"]["feedback"][0], rep["human"]["feedback"][0]
    assert hr["by_round"] == hp["by_round"] and hr["n_leaked"] == hp["n_leaked"]
    assert hp["sources"] == {"replay": hr["sources"]["persona"]}


def test_replay_miss_fails_or_falls_back(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=30)
    _run(p, tmp_path / "rec", limit=12)  # recorded on the first 12 items only
    src = f"providers.0.human.replay_from={tmp_path / 'rec'}"
    failed = _run(p, tmp_path / "fail", "providers.0.channel=replay", src)
    store = RunStore.open(tmp_path / "fail", create=False)
    try:
        errs = [e for e in store.episodes("feedback") if e["status"] == "failed"]
    finally:
        store.close()
    assert errs and all("replay miss" in e["error"] and "on_miss" in e["error"] for e in errs)
    assert all(int(e["sample_id"].split("-")[1]) >= 12 for e in errs)
    assert failed["human"]["feedback"][0]["failed"] == len(errs)
    fell = _run(p, tmp_path / "fallback", "providers.0.channel=replay", src,
                "providers.0.human.on_miss=binary")
    cell = fell["human"]["feedback"][0]
    assert cell["failed"] == 0 and cell["replay_misses"] > 0
    assert cell["sources"]["fallback"] == cell["replay_misses"] and cell["sources"]["replay"]
    with pytest.raises(Exception, match="on_miss"):
        _run(p, tmp_path / "bad", "providers.0.channel=replay", src,
             "providers.0.human.on_miss=nonexistent")


# -- personas ----------------------------------------------------------------------------
def test_personas_change_length_and_leaks(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=60)
    novice = _run(p, tmp_path / "nov", "providers.0.human.persona=novice-verbose",
                  "providers.0.human.leak_rate=0.4")
    expert = _run(p, tmp_path / "exp", "providers.0.human.persona=expert-terse",
                  "providers.0.human.leak_rate=0")
    n, e = novice["human"]["feedback"][0], expert["human"]["feedback"][0]
    assert n["n_feedback"] > 20 and e["n_feedback"] > 20
    assert n["mean_feedback_chars"] > e["mean_feedback_chars"] + 60
    assert n["leak_rate"] > 0.2 and e["leak_rate"] == 0
    assert novice["cells"][0]["n_leaked"] == n["n_leaked"]  # the same leak detector
    assert set(n["sources"]) == {"persona"}
    assert Persona.resolve(HumanOptions(persona="novice")).error_rate > \
        Persona.resolve(HumanOptions(persona="expert")).error_rate
    with pytest.raises(Exception, match="persona"):
        Persona.resolve(HumanOptions(persona="wizard"))


# -- annotator assist --------------------------------------------------------------------
def test_annotator_assist_shares(tmp_path: Path) -> None:
    p = _scenario(tmp_path, size=40)
    m = _run(p, tmp_path / "ann", "protocol.mode=annotate",
             "providers.0.human.error_rate=0", "providers.0.human.edit_rate=0.5")
    a = m["human"]["annotate"][0]
    assert a["n"] == 40 and a["failed"] == 0
    assert a["n_confirmed"] + a["n_edited"] + a["n_rejected"] == 40
    assert a["confirmed"] == pytest.approx(a["proposal_accuracy"])  # no errors: all right ones
    assert a["n_edited"] > 0 and a["n_rejected"] > 0
    assert a["confirmed_or_integrated"] == pytest.approx((a["n_confirmed"] + a["n_edited"]) / 40)
    assert a["final_accuracy"] == pytest.approx(a["confirmed_or_integrated"])
    # replayed annotations give the same shares
    r = _run(p, tmp_path / "ann-replay", "protocol.mode=annotate", "providers.0.channel=replay",
             f"providers.0.human.replay_from={tmp_path / 'ann'}")
    ra = r["human"]["annotate"][0]
    assert {k: ra[k] for k in ("n_confirmed", "n_edited", "n_rejected")} == \
        {k: a[k] for k in ("n_confirmed", "n_edited", "n_rejected")}
    fmt = AnswerFormat(kind="choice", letters=("A", "B"), options=("1", "2"))
    assert parse_annotation("CONFIRM", "A", fmt) == ("confirm", "A")
    assert parse_annotation("EDIT: B", "A", fmt) == ("edit", "B")
    assert parse_annotation("no idea", "A", fmt) == ("reject", None)


# -- previews ----------------------------------------------------------------------------
def test_previews(tmp_path: Path) -> None:
    img = tmp_path / "p.png"
    PILImage.new("RGB", (40, 40), (255, 0, 0)).save(img)
    t = halfblock(img, width=10)
    rows = t.plain.strip("\n").split("\n")
    assert len(rows) == 5 and all(len(r) == 10 for r in rows) and set(rows[0]) == {"▀"}
    assert "rgb(255,0,0)" in str(t.spans[0].style)
    assert kitty(img).startswith("\x1b_Ga=T,f=100") and iterm(img).startswith("\x1b]1337;File=")
