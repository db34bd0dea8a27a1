"""One redaction pass for every text mmsim stores or prints.

Whatever reaches the run store (an episode's ``error``, its messages, the manifest), a log
line, a report, an export or the one-line error on stderr goes through :func:`scrub` first.
It replaces, with ``<redacted>``:

* **known secrets**: the values of the environment variables an agent names with
  ``*_env`` (``api_key_env: OPENAI_API_KEY``), a server's ``env_from`` variables, and every
  environment variable whose name looks like a credential (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*PASSWORD*``...); values shorter than 8 characters are not secrets
  worth the false positives and are left alone;
* ``Authorization: ...`` headers and ``Bearer ...`` / ``Basic ...`` credentials;
* ``--api-key X`` / ``--api-key=X`` / ``--token X`` style arguments, ``api_key=X`` in query
  strings, ``"api_key": "X"`` in JSON text;
* strings in the format of common keys: OpenAI/Anthropic (``sk-...``), Hugging Face
  (``hf_...``), GitHub (``ghp_``/``gho_``/``github_pat_``), Slack (``xoxb-``/``xoxp-``),
  AWS access key ids (``AKIA...``), Google API keys (``AIza...``).

The patterns never match a double quote or a backslash, so scrubbing JSON text keeps it
valid JSON. This module is ground: it imports only the standard library.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
#: the shortest value registered as a known secret (shorter ones match too much text)
MIN_SECRET_LEN = 8

_V = r"[^\s\"'\\,;<>]"  # a character of a credential value (never ends a JSON string)
# (pattern, substrings of which one must be in the text, lower-cased or not, for the
# pattern to be worth running: a plain substring test is ~50x cheaper than a regex scan)
_PATTERNS: list[tuple[str, tuple[str, ...], bool]] = [
    # a header: the whole credential after the name (and a scheme), the name kept
    (rf"(?i:(authorization\"?\s*[:=]\s*\"?(?:(?:bearer|basic|token)\s+|"
     rf"(?!(?:bearer|basic|token)\s)))){_V}+", ("authorization",), True),
    (rf"(?i:\b((?:bearer|basic)\s+)){_V}{{8,}}", ("bearer", "basic"), True),
    (rf"(?i:(?<![\w-])(--?(?:api[-_]?key|token|access[-_]?token|secret|password|"
     rf"auth[-_]?token)(?:=|\s+)))(?!-){_V}+",
     ("-api", "-token", "-access", "-secret", "-password", "-auth"), True),
    (r"(?i:(?<=[?&])((?:api[-_]?key|apikey|access[-_]?token|token|key|secret|password)=))"
     r"[^&\s\"'\\]+", ("key=", "token=", "secret=", "password="), True),
    (r"(?i:(\"(?:api[-_]?key|apikey|access[-_]?token|secret|password|token)\"\s*:\s*\"))"
     r"[^\"\\]+", ('"api', '"secret', '"password', '"token', '"access'), True),
    (rf"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{{8,}}{_V}*", ("sk-",), False),
    (rf"\b[sr]k_(?:live|test)_{_V}{{8,}}", ("k_live_", "k_test_"), False),
    (r"\bhf_[A-Za-z0-9]{8,}", ("hf_",), False),
    (r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{16,}", ("gh",), False),
    (r"\bgithub_pat_[A-Za-z0-9_]{16,}", ("github_pat_",), False),
    (r"\bxox[abprs]-[A-Za-z0-9-]{8,}", ("xox",), False),
    (r"\bAKIA[0-9A-Z]{16}\b", ("AKIA",), False),
    (r"\bAIza[0-9A-Za-z_-]{30,}", ("AIza",), False),
]
_COMPILED = [(re.compile(p), triggers, lower) for p, triggers, lower in _PATTERNS]
_PATTERN = re.compile("|".join(f"(?:{p})" for p, _, _ in _PATTERNS))

#: environment variable names whose values are secrets
SECRET_ENV_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|APIKEY|KEY|TOKEN|ACCESS_TOKEN|SECRET|SECRET_KEY|PASSWORD|PASSWD|"
    r"CREDENTIALS?|AUTHORIZATION|BEARER)(?:$|_)", re.IGNORECASE)

_lock = threading.Lock()
_known: set[str] = set()
_known_list: list[str] = []  # longest first
_env_scanned = False


def _keep_prefix(m: re.Match[str]) -> str:
    """A match with its kept prefix (``Authorization: ``, ``--api-key=``) and the
    credential replaced."""
    for g in m.groups():
        if g is not None:
            return g + REDACTED
    return REDACTED


def register_secret(value: object) -> None:
    """Treat ``value`` (a string) as a secret wherever it appears from now on."""
    global _known_list
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LEN:
        return
    forms = {value.strip(), json.dumps(value.strip())[1:-1]}
    with _lock:
        if forms <= _known:
            return
        _known.update(forms)
        _known_list = sorted(_known, key=len, reverse=True)


def register_env(names: Iterable[str]) -> None:
    """The values of the environment variables ``names`` are secrets."""
    for name in names:
        register_secret(os.environ.get(str(name)))


def register_secret_env(*, again: bool = False) -> None:
    """Every environment variable whose name looks like a credential is a secret (once
    per process, or ``again``: a scenario is loaded after the environment changed)."""
    global _env_scanned
    if _env_scanned and not again:
        return
    _env_scanned = True
    register_env(n for n in os.environ if SECRET_ENV_NAME.search(n))


def register_env_params(params: object) -> None:
    """Values of the variables named by ``*_env`` params and by ``env_from`` mappings (at any
    depth) are secrets."""
    if isinstance(params, Mapping):
        for k, v in params.items():
            if str(k).endswith("_env") and isinstance(v, str):
                register_env([v])
            elif str(k) == "env_from" and isinstance(v, Mapping):
                register_env(str(x) for x in v.values())
            else:
                register_env_params(v)
    elif isinstance(params, list | tuple):
        for v in params:
            register_env_params(v)


def scrub_known(text: str) -> str:
    """``text`` with every known secret (not the key-like patterns) replaced: a few
    substring tests, for text that is large and seldom holds a secret (model replies)."""
    register_secret_env()
    for k in _known_list:
        if k in text:
            text = text.replace(k, REDACTED)
    return text


def scrub(text: str) -> str:
    """``text`` with every known secret and key-like string replaced by ``<redacted>``."""
    text = scrub_known(text)
    lowered = None
    for pattern, triggers, lower in _COMPILED:
        if lower:
            if lowered is None:
                lowered = text.lower()
            hay = lowered
        else:
            hay = text
        if any(t in hay for t in triggers):
            text = pattern.sub(_keep_prefix, text)
            lowered = None
    return text


def scrub_obj(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: scrub_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_obj(v) for v in value]
    return value


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds something :func:`scrub` would replace."""
    return scrub(value) != value


__all__ = ["MIN_SECRET_LEN", "REDACTED", "SECRET_ENV_NAME", "looks_secret", "register_env",
           "register_env_params", "register_secret", "register_secret_env", "scrub",
           "scrub_known", "scrub_obj"]
