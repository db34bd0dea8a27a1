"""Inline image previews for terminals.

* ``halfblock``: each character cell shows two pixels stacked (``▀`` with the top pixel as
  foreground and the bottom one as background colour): works in any true-colour terminal;
* ``kitty``: the kitty graphics protocol (kitty, WezTerm, Ghostty);
* ``iterm``: the iTerm2 inline-image protocol (iTerm2, WezTerm).

``auto`` picks kitty or iTerm when the environment says so (``KITTY_WINDOW_ID``,
``TERM=xterm-kitty``, ``TERM_PROGRAM=iTerm.app``/``WezTerm``), else half blocks when the
output is a colour terminal, else nothing (the image path is always shown).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image as PILImage
from rich.console import Console
from rich.style import Style
from rich.text import Text


def detect(console: Console, env: Mapping[str, str] | None = None) -> str:
    """The preview method ``auto`` stands for on this console."""
    env = os.environ if env is None else env
    if not console.is_terminal:
        return "none"
    if env.get("KITTY_WINDOW_ID") or env.get("TERM") == "xterm-kitty":
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    if console.color_system in ("truecolor", "256"):
        return "halfblock"
    return "none"


def halfblock(path: str | Path, width: int = 48) -> Text:
    """A coarse colour rendering of the image, ``width`` cells wide."""
    with PILImage.open(path) as im:
        rgb = im.convert("RGB")
    w = max(1, width)
    h = max(2, round(rgb.height * w / rgb.width / 2) * 2)  # two pixels per cell row
    small = rgb.resize((w, h), PILImage.Resampling.BILINEAR)
    raw = small.tobytes()  # RGB, row-major

    def px(x: int, y: int) -> bytes:
        i = 3 * (y * w + x)
        return raw[i:i + 3]

    out = Text()
    for y in range(0, h, 2):
        for x in range(w):
            top, bottom = px(x, y), px(x, y + 1)
            out.append("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                  bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
        out.append("\n")
    return out


def _png(path: str | Path, max_px: int = 512) -> bytes:
    with PILImage.open(path) as src:
        im = src.convert("RGB")
    im.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def kitty(path: str | Path) -> str:
    """The kitty graphics protocol escape sequence that draws the image."""
    data = base64.standard_b64encode(_png(path)).decode()
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [""]
    out = []
    for i, chunk in enumerate(chunks):
        more = 1 if i < len(chunks) - 1 else 0
        head = f"a=T,f=100,m={more}" if i == 0 else f"m={more}"
        out.append(f"\x1b_G{head};{chunk}\x1b\\")
    return "".join(out) + "\n"


def iterm(path: str | Path) -> str:
    """The iTerm2 inline-image escape sequence that draws the image."""
    png = _png(path)
    data = base64.standard_b64encode(png).decode()
    return f"\x1b]1337;File=inline=1;size={len(png)};preserveAspectRatio=1:{data}\x07\n"
