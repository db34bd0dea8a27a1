"""What a run records about itself: the run manifest.

Every run stores, in its ``runs`` row, the scenario file and its hash, the mmsim version,
the git commit (when mmsim runs from a checkout), the seeds, each agent's model id,
endpoint, sampling parameters and other parameters (never secrets), the dataset
fingerprint and the hashes of the prompt templates the protocol sends. Reports show it.

Secrets: a parameter is dropped, at any depth, when its name contains ``key``, ``secret``,
``password``, ``passwd``, ``credential``, ``authorization`` or ``token`` — except the
plural ``tokens`` of count-like names (``max_tokens``, ``tokens_per_char``), which are
sampling parameters, not credentials. String values that look like bearer keys
(``sk-...``, ``hf_...``, ``Bearer ...``) are replaced by ``"<redacted>"`` whatever their
name.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmsim.redaction import looks_secret

_SECRET_NAME = re.compile(
    r"key|secret|passw(or)?d|credential|authorization|cookie|token(?!s)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|hf_|ghp_|gho_|xox[bp]-|Bearer\s)\S{8,}", re.IGNORECASE)
REDACTED = "<redacted>"

MODEL_KEYS = ("model", "model_id", "model_name", "model_path", "deployment")
ENDPOINT_KEYS = ("base_url", "api_base", "endpoint", "url", "host", "server")
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "max_new_tokens",
                 "max_completion_tokens", "seed", "n", "presence_penalty",
                 "frequency_penalty", "repetition_penalty", "stop", "do_sample",
                 "num_beams", "timeout", "retries", "max_retries")


def is_secret_name(name: str) -> bool:
    """True when a parameter called ``name`` must never be stored."""
    return bool(_SECRET_NAME.search(name))


def redact(value: Any) -> Any:
    """``value`` with every secret-named key dropped and key-like strings redacted."""
    if isinstance(value, Mapping):
        return {str(k): redact(v) for k, v in value.items() if not is_secret_name(str(k))}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and (_SECRET_VALUE.match(value) or looks_secret(value)):
        return REDACTED
    return value


def redact_scenario(canonical: dict[str, Any]) -> dict[str, Any]:
    """A scenario as stored with its run: the ``params`` of every listed agent (receivers,
    providers, models, judges, whatever the protocol calls them) redacted; the rest of the
    scenario is kept verbatim (scenario validation already refuses literal credentials)."""
    out = dict(canonical)
    def agent(a: Any) -> Any:
        return {**a, "params": redact(a.get("params") or {})} \
            if isinstance(a, dict) and "params" in a else a

    for key, value in canonical.items():
        out[key] = [agent(a) for a in value] if isinstance(value, list) else agent(value)
    return out


def _pick(params: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: params[k] for k in keys if k in params}


def describe_agent(spec_params: Mapping[str, Any], described: Mapping[str, Any],
                   *, backend: str, concurrency: int | None = None) -> dict[str, Any]:
    """One agent's manifest entry: the backend's own description merged with the
    scenario's parameters, with model id, endpoint and sampling parameters pulled out."""
    params = redact(dict(spec_params))
    own = redact(dict(described))
    merged = {**params, **(own.get("params") or {})} if isinstance(own.get("params"),
                                                                    dict) else params
    out: dict[str, Any] = {**own, "backend": own.get("backend", backend),
                           "backend_name": backend}
    model = _pick(merged, MODEL_KEYS)
    endpoint = _pick(merged, ENDPOINT_KEYS)
    out["model"] = next(iter(model.values()), None) if model else own.get("model")
    out["endpoint"] = next(iter(endpoint.values()), None) if endpoint else own.get("endpoint")
    sampling = _pick(merged, SAMPLING_KEYS)
    if isinstance(merged.get("sampling"), dict):
        sampling.update(merged["sampling"])
    out["sampling"] = sampling
    out["params"] = merged
    if concurrency is not None:
        out["concurrency"] = concurrency
    return out


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit() -> str | None:
    """The commit of the checkout mmsim runs from, if it runs from one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=2, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


__all__ = ["REDACTED", "describe_agent", "git_commit", "is_secret_name", "redact",
           "redact_scenario", "sha256_text"]
