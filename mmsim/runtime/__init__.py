"""The kernel: plays any protocol's scenario (structured concurrency, resumable episodes,
batched store writes, servers, executors)."""

from mmsim.runtime.kernel import Kernel, default_run_dir, run_scenario
from mmsim.runtime.progress import Progress, RunResult
from mmsim.runtime.protocol import (
    PROTOCOLS,
    Actors,
    EvalProtocol,
    Played,
    ProtocolRun,
    RunRefused,
    RunSetup,
    protocol,
)

__all__ = ["PROTOCOLS", "Actors", "EvalProtocol", "Kernel", "Played", "Progress",
           "ProtocolRun", "RunRefused", "RunResult", "RunSetup", "default_run_dir",
           "protocol", "run_scenario"]
