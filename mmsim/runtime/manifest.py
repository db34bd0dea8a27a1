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
import inspect
import re
from collections.abc import Mapping
from typing import Any

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
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value


def redact_scenario(canonical: dict[str, Any]) -> dict[str, Any]:
    """A scenario as stored with its run: every agent's ``params`` redacted (the rest of the
    scenario is kept verbatim; scenario validation already refuses literal credentials)."""
    out = dict(canonical)
    for role in ("receivers", "providers", "judges"):
        agents = out.get(role)
        if isinstance(agents, list):
            out[role] = [{**a, "params": redact(a.get("params") or {})}
                         if isinstance(a, dict) else a for a in agents]
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


def prompt_template_hashes(policy_names: list[str] | None = None) -> dict[str, str]:
    """sha256 of every prompt template the InterFeedback protocol sends: the answer
    instructions and re-ask line of the environment, the detailed-feedback prompt, and the
    source of each feedback policy used (built-in policies write their texts inline)."""
    from mmsim.env import interfeedback as env
    from mmsim.policies import POLICIES, builtin

    out = {f"env.instructions.{k}": sha256_text(v) for k, v in sorted(env.INSTRUCTIONS.items())}
    out["env.reask"] = sha256_text(env.REASK)
    out["policies.detailed_prompt"] = sha256_text(builtin.DETAILED_PROMPT)
    for name in sorted(set(policy_names or [])):
        try:
            fn = POLICIES.get(name)
            src = inspect.getsource(fn)
        except Exception:  # no source (compiled, REPL) or not registered: skip it
            continue
        out[f"policy.{name}.source"] = sha256_text(src)
    return out


__all__ = ["REDACTED", "describe_agent", "is_secret_name", "prompt_template_hashes", "redact",
           "redact_scenario"]
