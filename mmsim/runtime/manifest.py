"""What a run records about itself: the run manifest.

Every run stores, in its ``runs`` row, the scenario file and its hash, the mmsim version,
the git commit (from the checkout mmsim runs from, or recorded when its wheel was built),
Python, the platform and the versions of the packages that shaped the results, the
seeds, each agent's model id, endpoint, sampling parameters and other parameters (never
secrets), the dataset fingerprint and the hashes of the prompt templates the protocol
sends. Reports show it.

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


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=2,
                             cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _checkout_info() -> dict[str, Any] | None:
    """The commit of the git checkout mmsim runs from (an editable install, PYTHONPATH),
    when the checkout's top is the folder holding the ``mmsim`` package: an installed
    copy inside someone else's repository (a venv in a project) is not mistaken for it."""
    pkg = Path(__file__).resolve().parents[1]
    top = _git("rev-parse", "--show-toplevel", cwd=pkg)
    if not top or Path(top).resolve() != pkg.parent:
        return None
    commit = _git("rev-parse", "HEAD", cwd=pkg)
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=pkg)
    return {"git_commit": commit, "git_dirty": bool(status), "commit_source": "checkout"}


def build_info() -> dict[str, Any]:
    """mmsim's version and the git commit it runs from: the checkout's (when mmsim runs
    from one), else the one recorded when its wheel was built (``mmsim/_build_info.py``,
    written by the build hook ``hatch_build.py``), else None."""
    from mmsim._version import __version__

    info: dict[str, Any] = {"version": __version__, "git_commit": None, "git_dirty": None,
                            "commit_source": None}
    live = _checkout_info()
    if live is not None:
        return {**info, **live}
    try:
        from mmsim import _build_info  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return info
    return {**info, "git_commit": getattr(_build_info, "GIT_COMMIT", None),
            "git_dirty": getattr(_build_info, "GIT_DIRTY", None),
            "built_at": getattr(_build_info, "BUILT_AT", None), "commit_source": "build"}


def git_commit() -> str | None:
    """The commit mmsim runs from (see :func:`build_info`)."""
    commit = build_info()["git_commit"]
    return str(commit) if commit else None


#: distributions whose versions can shape a run's figures, always recorded
CORE_PACKAGES = ("pydantic", "numpy", "pillow", "anyio", "httpx", "aiohttp", "tenacity",
                 "pyyaml")
#: recorded when their module was imported by the run (a backend, an encoder, a reader)
OPTIONAL_PACKAGES = {"torch": "torch", "transformers": "transformers", "vllm": "vllm",
                     "openai": "openai", "litellm": "litellm", "tokenizers": "tokenizers",
                     "sentence_transformers": "sentence-transformers", "av": "av",
                     "pyarrow": "pyarrow", "ray": "ray", "datasets": "datasets",
                     "pandas": "pandas", "safetensors": "safetensors"}


def package_versions() -> dict[str, str]:
    """Versions of the packages that shaped the results: the core ones installed and the
    optional ones this process imported."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    names = [*CORE_PACKAGES, *(dist for mod, dist in OPTIONAL_PACKAGES.items()
                               if mod in sys.modules)]
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def provenance() -> dict[str, Any]:
    """The manifest's code and environment entries: mmsim's version, commit (and whether
    the checkout had changes, and where the commit came from), Python, the platform and
    package versions."""
    import platform

    info = build_info()
    return {"mmsim_version": info["version"], "git_commit": info["git_commit"],
            "git_dirty": info["git_dirty"], "commit_source": info["commit_source"],
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(),
            "packages": package_versions()}


__all__ = ["REDACTED", "build_info", "describe_agent", "git_commit", "is_secret_name",
           "package_versions", "provenance", "redact",
           "redact_scenario", "sha256_text"]
