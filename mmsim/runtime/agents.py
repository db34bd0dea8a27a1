"""The agents of a run, for every protocol: their params checked as their backends take
them (``mmsim validate``), their backends built (``server:`` references resolved, a
protocol's own ``sim``), and their actors spawned by role.

Retries, concurrency limits and the response cache live here, once: every backend is
wrapped in an actor with the agent's ``concurrency`` and gets the run's cache
(:meth:`Backend.attach_cache`), so a protocol or a plugin backend writes none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsim.actors import ActorSystem, JudgeActor, ModelActor
from mmsim.actors.human import make_provider
from mmsim.backends import BACKENDS, Backend
from mmsim.backends.base import BackendFactory, check_backend_params
from mmsim.backends.managed import managed
from mmsim.errors import PluginError, UserError
from mmsim.human import backend_factory
from mmsim.runtime.protocol import Actors, EvalProtocol, Role
from mmsim.runtime.servers import resolve_params
from mmsim.spec import AgentSpec, LoadedScenario, ServerSpec


def agents_of(proto: EvalProtocol[Any, Any], scn: Any
              ) -> dict[str, tuple[str, int, AgentSpec, tuple[Role, ...]]]:
    """Agent name -> (scenario field, index, spec, roles), the roles of an agent listed in
    several fields merged (an InterFeedback agent may receive and provide)."""
    out: dict[str, tuple[str, int, AgentSpec, tuple[Role, ...]]] = {}
    for f, i, spec, roles in proto.agent_specs(scn):
        if spec.name in out:
            f0, i0, s0, r0 = out[spec.name]
            out[spec.name] = (f0, i0, s0, (*r0, *(r for r in roles if r not in r0)))
        else:
            out[spec.name] = (f, i, spec, roles)
    return out


def _located(exc: UserError, loaded: LoadedScenario, group: str, i: int,
             name: str) -> UserError:
    """``exc`` (about agent ``name``'s params) re-pointed at the scenario line."""
    rest = (exc.field or "").removeprefix(f"{name}.").split(".")
    if "params" in rest:
        rest = rest[rest.index("params"):]
    rest = rest if rest[0] in ("params", "human") else ["params"]
    return type(exc)(exc.message, where=loaded.where(group, i, *rest),
                     field=".".join([group, str(i), *rest]))


def _factory(proto: EvalProtocol[Any, Any], spec: AgentSpec) -> BackendFactory:
    if spec.kind == "human":
        return backend_factory(spec.channel or "terminal", spec.human, spec.backend)
    sim = type(proto).sim  # read off the class: a plain function, not a bound method
    if spec.backend == "sim" and sim is not None:
        return sim
    return BACKENDS.get(spec.backend)


def check_agents(proto: EvalProtocol[Any, Any], loaded: LoadedScenario) -> None:
    """What ``mmsim validate`` checks of the agents: each one's ``params`` as its backend
    would take them (``Backend.check_params``), building nothing. Human agents and plugin
    backends registered without ``cls=`` are not checked. A ``server:`` reference stands
    for its server's URL and model (the server is not started)."""
    scn = loaded.scenario
    servers: dict[str, ServerSpec] = {sv.name: sv for sv in getattr(scn, "servers", [])}
    for name, (group, i, spec, _) in agents_of(proto, scn).items():
        if spec.kind == "human":
            continue
        params = dict(spec.params)
        sv = servers.get(str(params.pop("server", "")))
        if sv is not None:
            params["base_url"] = f"http://{sv.host}:1/v1"  # checked as a URL, never used
            if "model" not in params and sv.model is not None:
                params["model"] = sv.model
        try:
            if spec.backend == "sim" and proto.sim_class is not None:
                proto.sim_class.check_params(name, params)
            else:
                check_backend_params(BACKENDS.get(spec.backend), name, params)
        except UserError as exc:
            if exc.where is not None:
                raise
            raise _located(exc, loaded, group, i, name) from None


def agent_params(proto: EvalProtocol[Any, Any], scn: Any,
                 servers: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every agent's params with ``server: NAME`` resolved against the running servers."""
    return {name: resolve_params(dict(spec.params), dict(servers or {}))
            for name, (_, _, spec, _) in agents_of(proto, scn).items()}


def build_backends(proto: EvalProtocol[Any, Any], loaded: LoadedScenario,
                   params: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Backend]:
    """The agents' backends (``params``: from :func:`agent_params`, default the scenario's
    own). A bad ``params`` error names the scenario line and the field
    (``scn.yaml:9: receivers.0.params.skil: ...``); a plugin backend's crash is named."""
    out: dict[str, Backend] = {}
    for name, (group, i, spec, _) in agents_of(proto, loaded.scenario).items():
        p = dict(params[name]) if params is not None else dict(spec.params)
        try:
            out[name] = managed(_factory(proto, spec)(name, p))
        except UserError as exc:
            if exc.where is not None:
                raise
            raise _located(exc, loaded, group, i, name) from None
        except Exception as exc:  # a backend plugin's bug: name it, no traceback
            raise PluginError(f"backend {spec.backend!r} raised {type(exc).__name__}: {exc}",
                              where=loaded.where(group, i, "backend"),
                              field=f"{group}.{i}.backend") from exc
    return out


def spawn_actors(proto: EvalProtocol[Any, Any], scn: Any, system: ActorSystem,
                 backends: Mapping[str, Backend]) -> Actors:
    """The actors of every agent, by the roles its scenario fields give it: a model actor
    per answering agent (not a person), a provider actor (a human proxy for a person), a
    judge actor; each with the agent's ``concurrency``."""
    actors = Actors()
    for name, (_, _, spec, roles) in agents_of(proto, scn).items():
        b = backends[name]
        if "model" in roles and spec.kind != "human":
            actors.models[name] = system.spawn(ModelActor(
                name, b, concurrency=spec.concurrency, **proto.actor_options(scn, "model")))
        if "provider" in roles:
            actors.providers[name] = system.spawn(make_provider(
                name, b, concurrency=spec.concurrency, **proto.actor_options(scn, "provider")))
        if "judge" in roles:
            actors.judges[name] = system.spawn(JudgeActor(
                name, b, concurrency=spec.concurrency, **proto.actor_options(scn, "judge")))
    return actors


__all__ = ["agent_params", "agents_of", "build_backends", "check_agents", "spawn_actors"]
