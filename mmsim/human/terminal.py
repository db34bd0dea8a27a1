"""``terminal``: a person at this terminal reviews each item in turn.

The prompt (on standard error, so standard output keeps the results) shows the question,
the image (its path, and an inline preview where the terminal supports it), the reference
answer (``show_answer``), the dialogue so far and the model's answer. The person types one
line on standard input:

* feedback mode: feedback text; an empty line or ``/w`` for "incorrect" only; ``/c`` to
  mark the answer correct (a dispute of the automatic grade);
* annotate mode: an empty line or ``/c`` to confirm the proposal; ``/r`` to reject it;
  anything else is the corrected label.

Items are shown one at a time however many episodes run at once. End of input fails the
remaining episodes with a clear reason (they can be resumed).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from mmsim.human import preview
from mmsim.human.base import DEFAULT_TEXT, HumanClosed, HumanItem, HumanOptions, HumanReply
from mmsim.human.channel import HumanChannel
from mmsim.messages import Image
from mmsim.tasks.answers import extract_answer


class TerminalChannel(HumanChannel):
    """Asks the person at this terminal (see the module docstring)."""

    source = "human"
    uses_terminal = True

    def __init__(self, name: str, options: HumanOptions, *, stdin: TextIO | None = None,
                 console: Console | None = None):
        super().__init__(name, options)
        self.stdin = stdin
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.person = options.person or _login()
        self._lock = anyio.Lock()
        self._closed = False
        self.asked = 0

    def describe(self) -> dict[str, Any]:
        return {"backend": "human", "channel": "terminal", "source": self.source,
                "simulated": False, "person": self.person}

    async def ask(self, item: HumanItem) -> HumanReply:
        async with self._lock:  # one item on screen at a time
            if self._closed:
                raise HumanClosed("terminal: end of input (no person to ask)")
            self._show(item)
            line = await anyio.to_thread.run_sync(self._readline, abandon_on_cancel=True)
            if line is None:
                self._closed = True
                raise HumanClosed("terminal: end of input (no person to ask)")
            self.asked += 1
            return self._reply(item, line.strip())

    def _readline(self) -> str | None:
        stream = self.stdin or sys.stdin
        line = stream.readline()
        return None if line == "" else line

    def _reply(self, item: HumanItem, line: str) -> HumanReply:
        cmd = line.lower()
        if item.mode == "annotate":
            if cmd in ("", "/c", "/confirm"):
                return HumanReply(verdict="confirm", text=item.proposal or "",
                                  person=self.person, source=self.source,
                                  label=item.proposal)
            if cmd in ("/r", "/reject"):
                return HumanReply(verdict="reject", text="", person=self.person,
                                  source=self.source)
            label = extract_answer(line, item.sample.answer_format) or line
            return HumanReply(verdict="edit", text=label, person=self.person,
                              source=self.source, label=label)
        if cmd in ("/c", "/correct"):
            return HumanReply(verdict="correct", text=DEFAULT_TEXT["correct"],
                              person=self.person, source=self.source)
        if cmd in ("", "/w", "/wrong", "/incorrect"):
            return HumanReply(verdict="incorrect", text=DEFAULT_TEXT["incorrect"],
                              person=self.person, source=self.source)
        return HumanReply(verdict="feedback", text=line, person=self.person,
                          source=self.source)

    def _show(self, item: HumanItem) -> None:
        c = self.console
        s = item.sample
        head = (f"annotate · {s.id}" if item.mode == "annotate" else
                f"{s.id} · round {item.round}" + (f" of {item.max_rounds}"
                                                   if item.max_rounds else ""))
        c.print(Rule(f"[bold]{escape(self.name)}[/] — {escape(head)}"))
        method: str = self.options.preview
        if method == "auto":
            method = preview.detect(c)
        for part in s.images:
            c.print(f"[dim]image:[/] {escape(part.uri)}")
            self._preview(part, method)
        c.print(f"[bold]Question:[/] {escape(s.question)}")
        if self.options.show_answer:
            c.print(f"[bold]Reference answer:[/] {escape(s.answer_text)}")
        if item.mode == "feedback":
            c.print("[bold]Dialogue so far:[/]")
            for who, text in item.dialogue()[1:]:
                c.print(f"  [cyan]{who}:[/] {escape(text)}")
        else:
            c.print(f"[bold]Model's reply:[/] {escape(item.response.text)}")
        proposal = item.proposal if item.proposal is not None else "(no answer found)"
        if item.mode == "annotate":
            c.print(f"[bold]Model's proposed label:[/] {escape(proposal)}")
            c.print("Enter = confirm · /r = reject · or type the correct label")
        else:
            c.print(f"[bold]Model's answer:[/] {escape(proposal)}  "
                    "[dim](graded incorrect)[/]")
            c.print("Type feedback · Enter or /w = just 'incorrect' · /c = mark it correct")
        c.print("> ", end="")
        c.file.flush()

    def _preview(self, image: Image, method: str) -> None:
        if method == "none" or "://" in image.uri:
            return
        try:
            if method == "halfblock":
                self.console.print(preview.halfblock(image.uri, self.options.preview_width))
            elif method == "kitty":
                self.console.file.write(preview.kitty(image.uri))
            elif method == "iterm":
                self.console.file.write(preview.iterm(image.uri))
        except OSError as exc:  # a missing or unreadable file: the path is still shown
            self.console.print(f"[dim](no preview: {escape(str(exc))})[/]")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in containers without a passwd entry
        return "terminal"
