"""The prompts an InterFeedback run sends, by hash (the manifest records them)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from mmsim.runtime.manifest import sha256_text

if TYPE_CHECKING:
    from mmsim.protocols.interfeedback.scenario import PromptsSpec


def prompt_template_hashes(policy_names: list[str] | None = None,
                           prompts: PromptsSpec | None = None) -> dict[str, str]:
    """sha256 of every prompt template the InterFeedback protocol sends: the answer
    instructions and re-ask line of the environment, the detailed-feedback prompt (the
    scenario's ``prompts:`` where it overrides them; ``prompts.overridden`` lists which), and
    the source of each feedback policy used (built-in policies write their texts inline)."""
    from mmsim.policies import POLICIES, builtin
    from mmsim.protocols.interfeedback import env

    instructions: dict[str, str] = dict(env.INSTRUCTIONS)
    if prompts is not None:
        instructions.update({str(k): v for k, v in prompts.instructions.items()})
    reask = env.REASK if prompts is None or prompts.reask is None else prompts.reask
    feedback = (prompts.feedback if prompts is not None and prompts.feedback
                else builtin.DETAILED_PROMPT)
    out = {f"env.instructions.{k}": sha256_text(v) for k, v in sorted(instructions.items())}
    out["env.reask"] = sha256_text(reask)
    out["policies.detailed_prompt"] = sha256_text(feedback)
    if prompts is not None:
        over = sorted([f"instructions.{k}" for k in prompts.instructions]
                      + [k for k in ("reask", "feedback") if getattr(prompts, k) is not None])
        if over:
            out["prompts.overridden"] = ",".join(over)
    for name in sorted(set(policy_names or [])):
        try:
            fn = POLICIES.get(name)
            src = inspect.getsource(fn)
        except Exception:  # no source (compiled, REPL) or not registered: skip it
            continue
        out[f"policy.{name}.source"] = sha256_text(src)
    return out


__all__ = ["prompt_template_hashes"]
