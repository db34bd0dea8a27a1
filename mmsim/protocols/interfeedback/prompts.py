"""The prompts an InterFeedback run sends, by hash (the manifest records them)."""

from __future__ import annotations

import inspect

from mmsim.runtime.manifest import sha256_text


def prompt_template_hashes(policy_names: list[str] | None = None) -> dict[str, str]:
    """sha256 of every prompt template the InterFeedback protocol sends: the answer
    instructions and re-ask line of the environment, the detailed-feedback prompt, and the
    source of each feedback policy used (built-in policies write their texts inline)."""
    from mmsim.policies import POLICIES, builtin
    from mmsim.protocols.interfeedback import env

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


__all__ = ["prompt_template_hashes"]
