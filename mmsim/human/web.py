"""``web``: a local web page where one or several people review items from a shared queue.

Security: the server binds ``127.0.0.1`` by default (``human.host`` to change it; prefer
an SSH tunnel to binding a public address). Every run draws a fresh random token; the URL
printed at start (and written to ``human.url_file``) carries it as ``?token=``, the page
then keeps it in an ``HttpOnly; SameSite=Strict`` cookie and removes it from the address
bar. Any request without the token (query, cookie or ``X-Mmsim-Token`` header) gets 403.
Every lease operation (submit, release, heartbeat, an item's images) is accepted only from
the person who holds the lease; a request that names no person gets 400. No file path is
shown (item JSON has image URLs, not paths) or taken from a request. Responses carry
``no-store``, ``no-referrer``, ``DENY`` framing and a content security policy.

HTTP is aiohttp's (``aiohttp.web``, a core dependency): parsing, keep-alive and limits are
a well-kept library's, configured here: request line and each header at most 8 KiB
(:data:`MAX_LINE`), at most 64 headers, bodies at most 64 KiB (:data:`MAX_BODY`), idle
keep-alive connections closed after 15 s. This module keeps only the channel's logic.

Queue: each request for feedback becomes a pending item. ``GET /api/next`` leases the
oldest unleased item to the asking person for ``human.lease_s`` seconds (the same item
again while that person's lease lasts); ``POST /api/submit`` answers it, ``POST
/api/release`` gives it back. The page sends ``POST /api/heartbeat`` every 15 s while it
shows an item: a lease with no heartbeat (nor other request) for :data:`HEARTBEAT_S`
seconds (a closed tab, a dead laptop) is freed, so the item goes to someone else within
about a minute; the person, returning, gets a fresh item. An expired or freed lease
returns the item to the queue, and a late submission on it gets 409, so nothing is
recorded twice. The person's name is typed once and kept in a cookie (``mmsim_person``);
every answer records it.

The server runs in the event loop of the run (no thread).
"""

from __future__ import annotations

import hmac
import json
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
import structlog
from aiohttp import web
from anyio.abc import TaskStatus

from mmsim.data import safeio
from mmsim.errors import UserError
from mmsim.human.base import (
    ANNOTATE_VERDICTS,
    DEFAULT_TEXT,
    FEEDBACK_VERDICTS,
    HumanClosed,
    HumanItem,
    HumanOptions,
    HumanReply,
)
from mmsim.human.channel import HumanChannel
from mmsim.tasks.answers import extract_answer

log = structlog.get_logger("mmsim.human.web")

MAX_LINE = 8 * 1024  # the request line, and each header line
MAX_HEADERS = 64
MAX_BODY = 64 * 1024
MAX_TEXT = 5000
KEEPALIVE_S = 15.0
#: a lease with no request from its holder for this long is freed (the page went away)
HEARTBEAT_S = 60.0
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
_API_CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(slots=True, eq=False)
class _Pending:
    item: HumanItem
    event: anyio.Event = field(default_factory=anyio.Event)
    reply: HumanReply | None = None
    lease: str | None = None


@dataclass(slots=True)
class _Lease:
    lease_id: str
    pending: _Pending
    person: str
    expires: float
    seen: float = 0.0  # the holder's last request (heartbeat)


class WorkQueue:
    """Pending items and leases (single event loop: no locks needed)."""

    def __init__(self, lease_s: float, heartbeat_s: float = HEARTBEAT_S):
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.pending: dict[str, _Pending] = {}  # insertion order = queue order
        self.leases: dict[str, _Lease] = {}
        self.answered = 0
        self.expired = 0

    def sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for lid, lease in list(self.leases.items()):
            if lease.expires <= now or now - lease.seen > self.heartbeat_s:
                del self.leases[lid]
                lease.pending.lease = None
                self.expired += 1

    def next_for(self, person: str) -> _Lease | None:
        self.sweep()
        now = time.monotonic()
        for lease in self.leases.values():
            if lease.person == person:
                lease.seen = now
                return lease
        for p in self.pending.values():
            if p.lease is None:
                lid = secrets.token_urlsafe(12)
                lease = _Lease(lid, p, person, now + self.lease_s, now)
                p.lease = lid
                self.leases[lid] = lease
                return lease
        return None

    def held(self, lease_id: str, person: str) -> _Lease | None:
        """The live lease ``lease_id`` if ``person`` holds it (None when it expired, never
        existed or is someone else's); a request from its holder counts as a heartbeat."""
        self.sweep()
        lease = self.leases.get(lease_id)
        if lease is None or not person or not hmac.compare_digest(
                lease.person.encode(), person.encode()):
            return None
        lease.seen = time.monotonic()
        return lease

    def release(self, lease: _Lease) -> None:
        if self.leases.pop(lease.lease_id, None) is not None:
            lease.pending.lease = None

    def resolve(self, lease: _Lease, reply: HumanReply) -> None:
        self.leases.pop(lease.lease_id, None)
        p = lease.pending
        self.pending.pop(p.item.key, None)
        p.reply = reply
        self.answered += 1
        p.event.set()

    def drop(self, p: _Pending) -> None:
        self.pending.pop(p.item.key, None)
        if p.lease is not None:
            self.leases.pop(p.lease, None)


def _json(status: int, payload: Any) -> web.Response:
    return web.json_response(payload, status=status,
                             headers={**_HEADERS, "Content-Security-Policy": _API_CSP})


class WebChannel(HumanChannel):
    """Serves items to people through a local web page (see the module docstring)."""

    source = "human"

    def __init__(self, name: str, options: HumanOptions):
        super().__init__(name, options)
        self.token = secrets.token_urlsafe(24)
        self.queue = WorkQueue(options.lease_s)
        try:
            self._sock = socket.create_server((options.host, options.port), backlog=64)
        except OSError as exc:
            raise UserError(f"cannot listen on {options.host}:{options.port} "
                            f"({exc.strerror or exc})", field=f"{name}.human.port") from None
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        host = options.host if options.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        self.base_url = f"http://{host}:{self.port}"
        self.url = f"{self.base_url}/?token={self.token}"
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        self._served = False

    def describe(self) -> dict[str, Any]:
        return {"backend": "human", "channel": "web", "source": self.source,
                "simulated": False, "host": self.options.host,
                "lease_s": self.options.lease_s}

    # -- the run's side ------------------------------------------------------------------
    async def ask(self, item: HumanItem) -> HumanReply:
        if self._closed:
            raise HumanClosed("web: the feedback page is closed")
        p = _Pending(item)
        self.queue.pending[item.key] = p
        try:
            await p.event.wait()
        finally:
            if p.reply is None:
                self.queue.drop(p)
        assert p.reply is not None
        return p.reply

    def app(self) -> web.Application:
        """The aiohttp application (routes, the token check, limits)."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_route("*", "/api/next", self._next)
        app.router.add_get("/api/image/{lease}/{index:[0-9]+}", self._image)
        app.router.add_route("*", "/api/submit", self._submit)
        app.router.add_route("*", "/api/release", self._release)
        app.router.add_route("*", "/api/heartbeat", self._heartbeat)
        return app

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        if self._closed:
            task_status.started()
            return
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               max_line_size=MAX_LINE, max_field_size=MAX_LINE,
                               max_headers=MAX_HEADERS, keepalive_timeout=KEEPALIVE_S,
                               shutdown_timeout=1.0)
        await runner.setup()
        self._served = True
        try:
            await web.SockSite(runner, self._sock).start()
            if self.options.url_file:
                Path(self.options.url_file).write_text(self.url + "\n", encoding="utf-8")
            sys.stderr.write(f"mmsim: feedback page for {self.name}: {self.url}\n")
            sys.stderr.flush()
            with anyio.CancelScope() as scope:
                self._scope = scope
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
            self._sock.close()

    async def stop(self) -> None:
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        await self.stop()
        if not self._served:  # never served: the socket is still ours
            self._sock.close()

    # -- HTTP ------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The run's token on every request; a bad request never stops the run."""
        given = request.query.get("token", "")
        given = given or request.headers.get("X-Mmsim-Token", "") or \
            request.cookies.get("mmsim_token", "")
        if not (given and hmac.compare_digest(given.encode(), self.token.encode())):
            return _json(403, {"error": "forbidden: this page needs the run's token (see the "
                                        "URL mmsim printed)"})
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": "request body too large"})
        except web.HTTPException as exc:
            return _json(exc.status, {"error": exc.reason})
        except Exception as exc:  # a bad request must never stop the run
            log.warning("web.bad_request", provider=self.name, error=repr(exc))
            return _json(400, {"error": "bad request"})
        return resp

    @staticmethod
    def _person(request: web.Request, data: dict[str, Any] | None = None) -> str:
        return _person(request.query.get("person", "")
                       or request.headers.get("X-Mmsim-Person", "")
                       or unquote(request.cookies.get("mmsim_person", ""))
                       or str((data or {}).get("person", "") or ""))

    async def _page(self, request: web.Request) -> web.Response:
        nonce = secrets.token_urlsafe(12)
        headers = {**_HEADERS, "Content-Security-Policy":
                   f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; "
                   f"script-src 'nonce-{nonce}'; connect-src 'self'; form-action 'none'; "
                   "frame-ancestors 'none'; base-uri 'none'"}
        resp = web.Response(text=PAGE.replace("{{NONCE}}", nonce).replace(
            "{{NAME}}", _html(self.name)), content_type="text/html", headers=headers)
        if request.query.get("token"):  # (checked by the guard: the run's token)
            resp.set_cookie("mmsim_token", self.token, httponly=True, samesite="Strict",
                            path="/")
        return resp

    async def _status(self, request: web.Request) -> web.Response:
        q = self.queue
        q.sweep()
        return _json(200, {"pending": len(q.pending), "leased": len(q.leases),
                           "answered": q.answered, "closed": self._closed})

    async def _next(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return _json(405, {"error": "use GET"})
        person = self._person(request)
        if not person:
            return _json(400, {"error": "say who you are: the mmsim_person cookie or "
                                        "?person="})
        lease = self.queue.next_for(person)
        if lease is None:
            return web.Response(status=204, headers=_HEADERS)
        return _json(200, self._item_json(lease))

    def _item_json(self, lease: _Lease) -> dict[str, Any]:
        item = lease.pending.item
        s = item.sample
        return {
            "lease": lease.lease_id, "person": lease.person,
            "expires_in": max(0.0, lease.expires - time.monotonic()),
            "heartbeat_s": self.queue.heartbeat_s,
            "key": item.key, "mode": item.mode, "round": item.round,
            "max_rounds": item.max_rounds, "sample_id": s.id, "question": s.question,
            "images": [f"/api/image/{lease.lease_id}/{i}" for i in range(len(s.images))],
            "reference": s.answer_text if self.options.show_answer else None,
            "dialogue": item.dialogue()[1:] if item.mode == "feedback" else [],
            "response": item.response.text, "answer": item.proposal,
            "provider": self.name,
        }

    async def _image(self, request: web.Request) -> web.Response:
        lease = self.queue.held(request.match_info["lease"], self._person(request))
        if lease is None:  # an item's images are its holder's only
            return _json(404, {"error": "no such lease"})
        images = lease.pending.item.sample.images
        i = int(request.match_info["index"])
        if i >= len(images) or "://" in images[i].uri:
            return _json(404, {"error": "no such image"})
        try:
            data = safeio.read_bytes(images[i].uri, safeio.MAX_IMAGE_BYTES, what="image")
        except (OSError, UserError):
            return _json(404, {"error": "image file not readable"})
        return web.Response(body=data, content_type=images[i].mime,
                            headers={**_HEADERS, "Content-Security-Policy": _API_CSP})

    async def _lease_op(self, request: web.Request
                        ) -> tuple[_Lease | None, dict[str, Any], web.Response | None]:
        """The lease a POST acts on, if the person acting holds it; else the error."""
        if request.method != "POST":
            return None, {}, _json(405, {"error": "use POST"})
        try:
            data = _form(request.content_type, await request.read())
        except ValueError as exc:
            return None, {}, _json(400, {"error": f"bad body: {exc}"})
        person = self._person(request, data)
        if not person:
            return None, data, _json(400, {"error": "say who you are: the mmsim_person "
                                                   "cookie or ?person="})
        lease_id = str(data.get("lease", ""))
        lease = self.queue.held(lease_id, person)
        if lease is None:
            if lease_id in self.queue.leases:
                return None, data, _json(403, {"error": "this item is leased to someone "
                                                       "else"})
            return None, data, _json(409, {"error": "lease expired or unknown: the item "
                                                    "went back to the queue; ask for the "
                                                    "next item"})
        return lease, data, None

    async def _release(self, request: web.Request) -> web.Response:
        lease, _, err = await self._lease_op(request)
        if lease is None:
            assert err is not None
            return err
        self.queue.release(lease)
        return _json(200, {"ok": True})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        lease, _, err = await self._lease_op(request)
        if lease is None:
            assert err is not None
            return err
        return _json(200, {"ok": True, "expires_in": max(0.0, lease.expires
                                                         - time.monotonic())})

    async def _submit(self, request: web.Request) -> web.Response:
        lease, data, err = await self._lease_op(request)
        if lease is None:
            assert err is not None
            return err
        item = lease.pending.item
        verdict = str(data.get("verdict", ""))
        text = str(data.get("text", "") or "").strip()[:MAX_TEXT]
        allowed = ANNOTATE_VERDICTS if item.mode == "annotate" else FEEDBACK_VERDICTS
        if verdict not in allowed:
            return _json(400, {"error": f"verdict must be one of {', '.join(allowed)}"})
        who = lease.person
        reply: HumanReply
        if verdict == "feedback":
            if not text:
                return _json(400, {"error": "feedback text is empty"})
            reply = HumanReply(verdict="feedback", text=text, person=who, source=self.source)
        elif verdict in ("incorrect", "correct"):
            reply = HumanReply(verdict=verdict, text=text or DEFAULT_TEXT[verdict],  # type: ignore[arg-type]
                               person=who, source=self.source)
        elif verdict == "confirm":
            reply = HumanReply(verdict="confirm", text=item.proposal or "", person=who,
                               source=self.source, label=item.proposal)
        elif verdict == "edit":
            raw = str(data.get("label", "") or text).strip()[:200]
            if not raw:
                return _json(400, {"error": "the edited label is empty"})
            label = extract_answer(raw, item.sample.answer_format) or raw
            reply = HumanReply(verdict="edit", text=label, person=who, source=self.source,
                               label=label)
        else:
            reply = HumanReply(verdict="reject", text="", person=who, source=self.source)
        self.queue.resolve(lease, reply)
        return _json(200, {"ok": True})


def _person(name: str) -> str:
    return " ".join(name.split())[:64]


def _form(content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if "json" in content_type:
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}


def _html(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmsim feedback — {{NAME}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{NONCE}}">
body{font:15px/1.45 system-ui,sans-serif;max-width:860px;margin:1.5em auto;padding:0 1em}
.box{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:.8em 0}
img{max-width:100%;border:1px solid #ddd}.who{font-weight:600;color:#246}
pre{white-space:pre-wrap;margin:.2em 0}textarea,input[type=text]{width:100%;font:inherit}
button{font:inherit;margin:.3em .4em .3em 0;padding:.3em .8em}.muted{color:#777}
.hidden{display:none}
</style></head><body>
<h2>mmsim — feedback for <span>{{NAME}}</span></h2>
<div id="name" class="box hidden"><p>Your name (recorded with each answer):</p>
<input id="name-in" type="text" maxlength="64"><button id="name-ok">Start</button></div>
<div id="wait" class="box hidden muted">Waiting for items…</div>
<div id="item" class="hidden">
 <p class="muted" id="meta"></p><div id="images"></div>
 <div class="box"><b>Question</b><pre id="question"></pre></div>
 <p id="ref-row"><b>Reference answer:</b> <span id="reference"></span></p>
 <div class="box" id="dialogue-box"><b>Dialogue so far</b><div id="dialogue"></div></div>
 <p><b id="answer-label">Model's answer:</b> <span id="answer"></span></p>
 <div id="fb-form"><textarea id="text" rows="4" placeholder="Your feedback"></textarea><br>
  <button id="send">Send feedback</button><button id="incorrect">Just "incorrect"</button>
  <button id="correct">Mark it correct</button><button class="skip">Skip</button></div>
 <div id="an-form" class="hidden"><button id="confirm">Confirm</button>
  <input id="label" type="text" placeholder="corrected label"><button id="edit">Edit</button>
  <button id="reject">Reject</button><button class="skip">Skip</button></div>
</div><p id="err" class="muted"></p>
<script nonce="{{NONCE}}">
"use strict";
const $ = (id) => document.getElementById(id);
let cur = null;
function getName(){const m=document.cookie.match(/(?:^|; )mmsim_person=([^;]*)/);
  return m?decodeURIComponent(m[1]):"";}
function show(id,on){$(id).classList.toggle("hidden",!on);}
if (location.search.includes("token=")) history.replaceState(null,"","/");
async function next(){
  if(!getName()){show("name",true);show("wait",false);show("item",false);return;}
  let r; try{ r = await fetch("/api/next",{credentials:"same-origin"}); }
  catch(e){ $("err").textContent="The run has ended (server stopped)."; return; }
  if(r.status===204){cur=null;show("item",false);show("wait",true);setTimeout(next,2000);return;}
  if(!r.ok){$("err").textContent="Error "+r.status; setTimeout(next,4000); return;}
  cur = await r.json(); render(cur);
}
function render(it){
  show("wait",false);show("item",true);$("err").textContent="";
  $("meta").textContent = it.sample_id + (it.mode==="annotate" ? " · annotate" :
     " · round "+it.round+(it.max_rounds?" of "+it.max_rounds:""));
  const imgs=$("images"); imgs.replaceChildren();
  it.images.forEach((src,i)=>{const im=document.createElement("img");im.src=src;
     im.alt="image "+(i+1);imgs.appendChild(im);});
  $("question").textContent=it.question;
  show("ref-row", it.reference!==null); $("reference").textContent=it.reference||"";
  const d=$("dialogue"); d.replaceChildren();
  it.dialogue.forEach(([who,text])=>{const p=document.createElement("div");
     const w=document.createElement("span");w.className="who";w.textContent=who+": ";
     const t=document.createElement("pre");t.textContent=text;p.append(w,t);d.appendChild(p);});
  show("dialogue-box", it.mode!=="annotate");
  $("answer-label").textContent = it.mode==="annotate" ? "Proposed label:"
     : "Model's answer (graded incorrect):";
  $("answer").textContent = it.answer===null?"(no answer found)":it.answer;
  show("fb-form", it.mode!=="annotate"); show("an-form", it.mode==="annotate");
  $("text").value=""; $("label").value="";
}
async function post(path, body){
  const r = await fetch(path,{method:"POST",credentials:"same-origin",
     headers:{"Content-Type":"application/json"},body:JSON.stringify(body)});
  if(!r.ok){ const e=await r.json().catch(()=>({error:r.status})); $("err").textContent=e.error; }
  next();
}
function submit(verdict, extra){ if(cur) post("/api/submit",{lease:cur.lease,verdict,...extra}); }
setInterval(()=>{ if(cur) fetch("/api/heartbeat",{method:"POST",credentials:"same-origin",
   headers:{"Content-Type":"application/json"},body:JSON.stringify({lease:cur.lease})})
   .then(r=>{ if(r.status===409) next(); }).catch(()=>{}); }, 15000);
$("send").onclick=()=>{const t=$("text").value.trim(); if(t) submit("feedback",{text:t});};
$("incorrect").onclick=()=>submit("incorrect",{});
$("correct").onclick=()=>submit("correct",{});
$("confirm").onclick=()=>submit("confirm",{});
$("reject").onclick=()=>submit("reject",{});
$("edit").onclick=()=>{const l=$("label").value.trim(); if(l) submit("edit",{label:l});};
document.querySelectorAll(".skip").forEach(b=>b.onclick=()=>{
  if(cur) post("/api/release",{lease:cur.lease}); });
$("name-ok").onclick=()=>{const n=$("name-in").value.trim(); if(!n) return;
  document.cookie="mmsim_person="+encodeURIComponent(n)+
    "; SameSite=Strict; path=/; max-age=31536000";
  show("name",false); next();};
next();
</script></body></html>
"""
