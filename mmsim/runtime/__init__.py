"""Running scenarios: structured concurrency, resumable episodes, batched store writes."""

from mmsim.runtime.runner import Progress, Runner, RunResult, default_run_dir, run_scenario

__all__ = ["Progress", "RunResult", "Runner", "default_run_dir", "run_scenario"]
