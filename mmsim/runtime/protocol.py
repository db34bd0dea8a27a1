"""What a protocol declares, and the registry where the kernel, scenario loading, the CLI
and reports find it (docs/protocols.md).

A protocol is an :class:`EvalProtocol` subclass registered with :func:`protocol`:

* ``name`` (the scenario's ``kind:``), ``scenario`` (its pydantic schema: ``mmsim
  validate`` checks it, with file:line errors) and ``agents`` (which scenario fields list
  agents, and the roles each plays: ``model``, ``provider``, ``judge``);
* ``load_data`` (its items, from the scenario's ``dataset``);
* ``run``: a :class:`ProtocolRun` subclass, made in every process that plays episodes.
  It declares its ``phases``, the jobs of each phase (names, never big objects: an
  executor may ship them to another machine), and the episode function ``play`` that
  plays one job against the actors and returns the episode's record;
* ``metrics`` (from the store) and ``print_table``; report sections register with
  :func:`mmsim.report.section`.

The kernel (:mod:`mmsim.runtime.kernel`) does everything else for every protocol: the run
directory's lock, ``servers:``, backends with their retries, concurrency limits and response
cache, the manifest, the store, resume, signals, progress, and the local and Ray executors.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from mmsim.backends.base import Backend, BackendFactory
from mmsim.data.sample import Sample, dataset_fingerprint
from mmsim.errors import UserError
from mmsim.metrics.compare import compare_outcomes
from mmsim.registry import Registry
from mmsim.runtime.pool import Jobs
from mmsim.runtime.progress import Progress
from mmsim.spec import LoadedScenario
from mmsim.store import EpisodeRecord, RunStore

if TYPE_CHECKING:
    from rich.console import Console

    from mmsim.actors import FeedbackProviderActor, JudgeActor, ModelActor

Role = Literal["model", "provider", "judge"]
S = TypeVar("S", bound=BaseModel)
D = TypeVar("D")


@dataclass(slots=True)
class Played:
    """What one episode produced: its ``record`` (stored), an ``output`` the phase keeps in
    the driver (:meth:`ProtocolRun.collect`, e.g. a screening answer later episodes start
    from) and how many model ``turns`` it took (throughput figures)."""

    record: EpisodeRecord
    output: Any = None
    turns: int = 1


@dataclass(slots=True)
class Actors:
    """The agents of one process, by role (a human proxy is only a provider)."""

    models: dict[str, ModelActor] = field(default_factory=dict)
    providers: dict[str, FeedbackProviderActor] = field(default_factory=dict)
    judges: dict[str, JudgeActor] = field(default_factory=dict)


@dataclass(slots=True)
class RunSetup(Generic[D]):
    """What a protocol's run starts from, in every process that plays it."""

    loaded: LoadedScenario
    run_id: str
    run_dir: Path
    data: D
    progress: Progress = field(default_factory=Progress)
    driver: bool = True  # the process that owns the store (False in a Ray worker)


class RunRefused(UserError):
    """A protocol refuses to go on after a phase (exit 2); the run is stored with ``status``
    (e.g. a judge that failed its calibration gate)."""

    status = "refused"


class ProtocolRun(Generic[S, D]):
    """One run of a protocol in one process: the driver plans the phases' jobs and keeps
    what they produce; every process (the driver, a Ray worker) plays jobs with
    :meth:`play`, a pure function of the job, the run's setup and the actors.

    ``phases``: the phases in order (a phase's jobs are planned once the previous phase
    has played, so they may depend on its results).
    """

    phases: tuple[str, ...] = ("episodes",)

    def __init__(self, setup: RunSetup[D]):
        self.setup = setup
        self.loaded = setup.loaded
        self.scn: S = setup.loaded.scenario
        self.run_id = setup.run_id
        self.data: D = setup.data

    def local_only(self) -> str | None:
        """Why this run cannot play on remote workers (e.g. a person at this terminal), or
        None."""
        return None

    def manifest(self) -> dict[str, Any]:
        """Protocol-specific manifest fields (driver only)."""
        return {}

    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[Any], int]:
        """The jobs of ``phase`` still to play (episode ids in ``done`` are finished) and
        how many the phase has in all (driver only; ``store`` is None when the run keeps no
        store)."""
        raise NotImplementedError

    async def play(self, phase: str, job: Any, actors: Actors) -> Played:
        """Play one job of ``phase``: an episode (an environment's reset/step loop against
        the actors) and its record. Failures of the infrastructure are recorded
        (``record.status = "failed"``), not raised."""
        raise NotImplementedError

    def collect(self, phase: str, job: Any, output: Any) -> None:
        """Keep ``output`` of a played job in the driver (default: nothing)."""

    def after_phase(self, phase: str, store: RunStore | None) -> None:
        """Called in the driver when ``phase`` has played; may raise :class:`RunRefused`."""

    def finish(self, run_dir: Path) -> list[str]:
        """After a finished run (the store closed): write what else the protocol writes,
        and return lines for the user (default: none)."""
        return []


class EvalProtocol(Generic[S, D]):
    """What a protocol declares (see the module docstring). Subclass it and register the
    subclass with :func:`protocol`."""

    name: ClassVar[str]
    #: one line for ``mmsim list``
    title: ClassVar[str] = ""
    #: the scenario schema (a pydantic model; :class:`mmsim.spec.ScenarioModel` gives it a
    #: canonical form and fingerprint)
    scenario: ClassVar[type[BaseModel]]
    #: whether the schema has a ``kind`` field (InterFeedback's, the default kind, has not)
    kind_field: ClassVar[bool] = True
    #: scenario field -> the roles its agents play
    agents: ClassVar[dict[str, tuple[Role, ...]]] = {"models": ("model",)}
    #: what ``backend: sim`` builds for this protocol (None: the generic sim backend)
    sim: ClassVar[BackendFactory | None] = None
    #: the Backend class ``sim`` builds (``mmsim validate`` runs its ``check_params``)
    sim_class: ClassVar[type[Backend] | None] = None
    #: the per-run class
    run: ClassVar[type[ProtocolRun[Any, Any]]]
    #: what the data's items are called in errors ("duplicate item id 'x'")
    item_noun: ClassVar[str] = "item"
    #: computes the run's figures from the store (what :meth:`metrics` returns)
    compute: ClassVar[Callable[[RunStore], dict[str, Any]] | None] = None
    #: prints those figures in the terminal (what :meth:`print_table` does)
    table: ClassVar[Callable[[dict[str, Any], Console], None] | None] = None
    #: the run's tables declared once, a :class:`mmsim.report.tabular.Document` built from
    #: those figures (what :meth:`tables` returns): the terminal (compact or ``--wide``),
    #: ``mmsim report --format markdown|latex|csv`` and the HTML headline all read it
    document: ClassVar[Callable[[dict[str, Any]], Any] | None] = None
    #: whether the HTML report's generic InterFeedback-shaped sections read this protocol's
    #: metrics (InterFeedback); other protocols bring their own sections
    generic_sections: ClassVar[bool] = False
    #: the protocol's own registries, for ``mmsim list``: (title, registry)
    registries: ClassVar[tuple[tuple[str, Registry[Any]], ...]] = ()

    def load_data(self, loaded: LoadedScenario, cache_dir: Path) -> D:
        """The run's data (``dataset:`` of the scenario). Raise a UserError naming the
        option (``field``) or the file and row (``where``) of bad input. Default: the
        loader ``dataset.name`` names in the registry of the scenario's dataset spec
        (``DatasetSpec.dataset_registry``), with the scenario's options."""
        spec = loaded.scenario.dataset
        loader = type(spec).dataset_registry.get(spec.name)
        data: D = loader(spec.options, base_dir=loaded.base_dir, cache_dir=cache_dir,
                         limit=loaded.limit, **self.loader_options(loaded.scenario))
        return data

    def loader_options(self, scn: S) -> dict[str, Any]:
        """Extra keyword arguments for the dataset loader (e.g. the scenario's seed)."""
        return {}

    def samples(self, data: D) -> Sequence[Sample]:
        """The data's items, for the checks every protocol gets (none, duplicate ids) and
        the dataset fingerprint (default: the data is a list of samples)."""
        return data  # type: ignore[return-value]

    def dataset_manifest(self, loaded: LoadedScenario, data: D) -> dict[str, Any]:
        """The manifest's ``dataset`` entry."""
        items = self.samples(data)
        return {"name": loaded.scenario.dataset.name, "n_samples": len(items),
                "fingerprint": dataset_fingerprint(items)}

    def actor_options(self, scn: S, role: Role) -> dict[str, Any]:
        """Extra keyword arguments of the actors of ``role`` (e.g. a judge's retries)."""
        return {}

    def agent_specs(self, scn: S) -> list[tuple[str, int, Any, tuple[Role, ...]]]:
        """Every agent as (scenario field, index, AgentSpec, roles); a field may hold a list
        of agents or one agent (index 0)."""
        return [(f, i, a, roles) for f, roles in self.agents.items()
                for i, a in enumerate(_listed(getattr(scn, f)))]

    def summary(self, loaded: LoadedScenario) -> str:
        """What ``mmsim validate`` prints after "ok —"."""
        scn = loaded.scenario
        counts = ", ".join(f"{len(_listed(getattr(scn, f)))} {f}" for f in self.agents)
        return f"{self.name}: {counts} on dataset {scn.dataset.name!r}"

    def metrics(self, store: RunStore) -> dict[str, Any]:
        """The run's figures (``mmsim report --format json``), from the store. Default:
        the class's ``compute`` function."""
        compute = type(self).compute  # read off the class: a plain function
        if compute is None:
            raise NotImplementedError(f"protocol {self.name!r} declares no metrics")
        return compute(store)

    def print_table(self, metrics: dict[str, Any], console: Console) -> None:
        """The run's figures in the terminal. Default: the class's ``table`` function, or
        the figures as JSON."""
        table = type(self).table
        if table is None:
            console.print_json(data=metrics)
        else:
            table(metrics, console)

    def tables(self, metrics: dict[str, Any]) -> Any:
        """The run's tables (a :class:`mmsim.report.tabular.Document`) or None when the
        protocol declares none (then :meth:`print_table` is all there is). Default: the
        class's ``document`` function."""
        document = type(self).document
        return None if document is None else document(metrics)

    def compare(self, store_a: RunStore, store_b: RunStore, *, resamples: int, seed: int,
                run_dir_a: str = "", run_dir_b: str = "") -> dict[str, Any]:
        """Run B minus run A (``mmsim compare``). Default: the share of episodes solved
        per agent x episode kind x condition, paired over shared items."""
        return compare_outcomes(store_a, store_b, resamples=resamples, seed=seed,
                                run_dir_a=run_dir_a, run_dir_b=run_dir_b)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


#: Protocols by ``kind``. mmsim's own register on first use (the registry imports their
#: packages); a user's register through ``--plugin FILE`` or the ``mmsim.plugins`` entry
#: points.
PROTOCOLS: Registry[EvalProtocol[Any, Any]] = Registry("protocol", builtins=(
    "mmsim.protocols.interfeedback", "mmsim.protocols.classification",
    "mmsim.protocols.dynamic", "mmsim.protocols.video"))

P = TypeVar("P", bound=type[EvalProtocol[Any, Any]])


def protocol(cls: P) -> P:
    """Register an :class:`EvalProtocol` subclass under its ``name`` (a class decorator)."""
    PROTOCOLS.register(cls.name, cls(), doc=cls.title or (cls.__doc__ or "").strip())
    return cls


def protocol_of(kind: str | None) -> EvalProtocol[Any, Any]:
    """The protocol of a run's ``manifest.kind`` (runs made before kinds were recorded are
    InterFeedback runs)."""
    return PROTOCOLS.get(kind or "interfeedback")


__all__ = ["PROTOCOLS", "Actors", "EvalProtocol", "Played", "ProtocolRun", "Role",
           "RunRefused", "RunSetup", "protocol", "protocol_of"]
