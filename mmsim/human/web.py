"""``web``: a local web page where one or several people review items from a shared queue.

Security: the server binds ``127.0.0.1`` by default (``human.host`` to change it; prefer
an SSH tunnel to binding a public address). Every run draws a fresh random token; the URL
printed at start (and written to ``human.url_file``) carries it as ``?token=``, the page
then keeps it in an ``HttpOnly; SameSite=Strict`` cookie and removes it from the address
bar. Any request without the token (query, cookie or ``X-Mmsim-Token`` header) gets 403.
Only the images of items currently leased can be fetched; no file path comes from a
request. Responses carry ``no-store``, ``no-referrer``, ``DENY`` framing and a content
security policy; bodies are limited to 64 KiB and each connection to 30 s.

Queue: each request for feedback becomes a pending item. ``GET /api/next`` leases the
oldest unleased item to the asking person for ``human.lease_s`` seconds (the same item
again while that person's lease lasts); ``POST /api/submit`` answers it, ``POST
/api/release`` gives it back. An expired lease returns the item to the queue, and a late
submission on it gets 409. The person's name is typed once and kept in a cookie
(``mmsim_person``); every answer records it.

The server runs in the event loop of the run (anyio streams; no thread, no dependency).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import structlog
from anyio.abc import SocketListener, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

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

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_TEXT = 5000
CONNECTION_TIMEOUT_S = 30.0
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            413: "Payload Too Large"}


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


class WorkQueue:
    """Pending items and leases (single event loop: no locks needed)."""

    def __init__(self, lease_s: float):
        self.lease_s = lease_s
        self.pending: dict[str, _Pending] = {}  # insertion order = queue order
        self.leases: dict[str, _Lease] = {}
        self.answered = 0
        self.expired = 0

    def sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for lid, lease in list(self.leases.items()):
            if lease.expires <= now:
                del self.leases[lid]
                lease.pending.lease = None
                self.expired += 1

    def next_for(self, person: str) -> _Lease | None:
        self.sweep()
        for lease in self.leases.values():
            if lease.person == person:
                return lease
        for p in self.pending.values():
            if p.lease is None:
                lid = secrets.token_urlsafe(9)
                lease = _Lease(lid, p, person, time.monotonic() + self.lease_s)
                p.lease = lid
                self.leases[lid] = lease
                return lease
        return None

    def take(self, lease_id: str) -> _Lease | None:
        """The live lease ``lease_id`` (None when it expired or never existed)."""
        self.sweep()
        return self.leases.get(lease_id)

    def release(self, lease_id: str) -> bool:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return False
        lease.pending.lease = None
        return True

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

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        if self._closed:
            task_status.started()
            return
        listener = await SocketListener.from_socket(self._sock)
        if self.options.url_file:
            Path(self.options.url_file).write_text(self.url + "\n", encoding="utf-8")
        sys.stderr.write(f"mmsim: feedback page for {self.name}: {self.url}\n")
        sys.stderr.flush()
        with anyio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            async with listener:
                await listener.serve(self._connection)

    async def stop(self) -> None:
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        await self.stop()
        if self._scope is None:  # never served: the socket is still ours
            self._sock.close()

    # -- HTTP ------------------------------------------------------------------------------
    async def _connection(self, stream: SocketStream) -> None:
        async with stream:
            with anyio.move_on_after(CONNECTION_TIMEOUT_S):
                try:
                    await self._serve_one(stream)
                except (anyio.IncompleteRead, anyio.DelimiterNotFound, anyio.EndOfStream,
                        anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                except Exception as exc:  # a bad request must never stop the run
                    log.warning("web.bad_request", provider=self.name, error=repr(exc))
                    with contextlib.suppress(Exception):
                        await self._send(stream, 400, {"error": "bad request"})

    async def _serve_one(self, stream: SocketStream) -> None:
        buf = BufferedByteReceiveStream(stream)
        head = (await buf.receive_until(b"\r\n\r\n", MAX_HEAD)).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        if n < 0 or n > MAX_BODY:
            await self._send(stream, 413, {"error": "request body too large"})
            return
        body = await buf.receive_exactly(n) if n else b""
        status, payload, extra = self._route(method.upper(), target, headers, body)
        await self._send(stream, status, payload, extra)

    async def _send(self, stream: SocketStream, status: int, payload: Any,
                    extra: dict[str, str] | None = None) -> None:
        hdrs = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Connection": "close", **(extra or {})}
        if isinstance(payload, bytes):
            body = payload
        elif payload is None:
            body = b""
        else:
            body = json.dumps(payload).encode()
            hdrs.setdefault("Content-Type", "application/json")
        hdrs["Content-Length"] = str(len(body))
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        await stream.send(head.encode("latin-1") + body)

    def _authorized(self, query: dict[str, list[str]], headers: dict[str, str],
                    cookies: dict[str, str]) -> tuple[bool, bool]:
        """(authorized, the token came in the query string)."""
        given = query.get("token", [""])[0]
        in_query = bool(given)
        given = given or headers.get("x-mmsim-token", "") or cookies.get("mmsim_token", "")
        ok = bool(given) and hmac.compare_digest(given.encode(), self.token.encode())
        return ok, in_query and ok

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, Any, dict[str, str] | None]:
        url = urlsplit(target)
        query = parse_qs(url.query)
        cookies = _cookies(headers.get("cookie", ""))
        ok, from_query = self._authorized(query, headers, cookies)
        if not ok:
            return 403, {"error": "forbidden: this page needs the run's token (see the URL "
                                  "mmsim printed)"}, None
        path = url.path
        person = _person(query.get("person", [""])[0] or headers.get("x-mmsim-person", "")
                         or unquote(cookies.get("mmsim_person", "")))
        if path == "/" and method == "GET":
            nonce = secrets.token_urlsafe(12)
            extra = {"Content-Type": "text/html; charset=utf-8",
                     "Content-Security-Policy": f"default-src 'none'; img-src 'self'; "
                     f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                     "connect-src 'self'; form-action 'none'; frame-ancestors 'none'"}
            if from_query:
                extra["Set-Cookie"] = (f"mmsim_token={self.token}; HttpOnly; "
                                       "SameSite=Strict; Path=/")
            page = PAGE.replace("{{NONCE}}", nonce).replace("{{NAME}}", _html(self.name))
            return 200, page.encode(), extra
        if path == "/api/status" and method == "GET":
            q = self.queue
            q.sweep()
            return 200, {"pending": len(q.pending), "leased": len(q.leases),
                         "answered": q.answered, "closed": self._closed}, None
        if path == "/api/next":
            if method != "GET":
                return 405, {"error": "use GET"}, None
            if not person:
                return 400, {"error": "say who you are: the mmsim_person cookie or ?person="}, None
            lease = self.queue.next_for(person)
            if lease is None:
                return 204, None, None
            return 200, self._item_json(lease), None
        if path.startswith("/api/image/") and method == "GET":
            return self._image(path)
        if path in ("/api/submit", "/api/release"):
            if method != "POST":
                return 405, {"error": "use POST"}, None
            try:
                data = _form(headers.get("content-type", ""), body)
            except ValueError as exc:
                return 400, {"error": f"bad body: {exc}"}, None
            lease_id = str(data.get("lease", ""))
            if path == "/api/release":
                return (200, {"ok": True}, None) if self.queue.release(lease_id) else \
                    (409, {"error": "no such lease (expired or answered)"}, None)
            return self._submit(lease_id, person or _person(str(data.get("person", ""))),
                                data)
        return 404, {"error": "not found"}, None

    def _item_json(self, lease: _Lease) -> dict[str, Any]:
        item = lease.pending.item
        s = item.sample
        return {
            "lease": lease.lease_id, "person": lease.person,
            "expires_in": max(0.0, lease.expires - time.monotonic()),
            "key": item.key, "mode": item.mode, "round": item.round,
            "max_rounds": item.max_rounds, "sample_id": s.id, "question": s.question,
            "images": [f"/api/image/{lease.lease_id}/{i}" for i in range(len(s.images))],
            "image_paths": [im.uri for im in s.images],
            "reference": s.answer_text if self.options.show_answer else None,
            "dialogue": item.dialogue()[1:] if item.mode == "feedback" else [],
            "response": item.response.text, "answer": item.proposal,
            "provider": self.name,
        }

    def _image(self, path: str) -> tuple[int, Any, dict[str, str] | None]:
        parts = path.split("/")
        if len(parts) != 5 or not parts[4].isdigit():
            return 404, {"error": "not found"}, None
        lease = self.queue.leases.get(parts[3])
        if lease is None:
            return 404, {"error": "no such lease"}, None
        images = lease.pending.item.sample.images
        i = int(parts[4])
        if i >= len(images) or "://" in images[i].uri:
            return 404, {"error": "no such image"}, None
        try:
            data = Path(images[i].uri).read_bytes()
        except OSError:
            return 404, {"error": "image file not readable"}, None
        return 200, data, {"Content-Type": images[i].mime}

    def _submit(self, lease_id: str, person: str, data: dict[str, Any]
                ) -> tuple[int, Any, dict[str, str] | None]:
        lease = self.queue.take(lease_id)
        if lease is None:
            return 409, {"error": "lease expired or unknown: the item went back to the "
                                  "queue; ask for the next item"}, None
        if person and person != lease.person:
            return 409, {"error": "this item is leased to someone else"}, None
        item = lease.pending.item
        verdict = str(data.get("verdict", ""))
        text = str(data.get("text", "") or "").strip()[:MAX_TEXT]
        allowed = ANNOTATE_VERDICTS if item.mode == "annotate" else FEEDBACK_VERDICTS
        if verdict not in allowed:
            return 400, {"error": f"verdict must be one of {', '.join(allowed)}"}, None
        who = lease.person
        reply: HumanReply
        if verdict == "feedback":
            if not text:
                return 400, {"error": "feedback text is empty"}, None
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
                return 400, {"error": "the edited label is empty"}, None
            label = extract_answer(raw, item.sample.answer_format) or raw
            reply = HumanReply(verdict="edit", text=label, person=who, source=self.source,
                               label=label)
        else:
            reply = HumanReply(verdict="reject", text="", person=who, source=self.source)
        self.queue.resolve(lease, reply)
        return 200, {"ok": True}, None


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k] = v
    return out


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
     im.alt=it.image_paths[i];imgs.appendChild(im);});
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
