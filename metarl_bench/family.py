"""Families (a parameterised env plus its task distribution) and their registry.

A family class names its task dataclass, its single env, optionally its native batched
vector env, its horizon and its task distribution. ``register_family`` records it here
and registers the env with ``gymnasium.register``, so that ``gym.make(id, task=...)`` and
``gym.make_vec(id, num_envs=n, tasks=[...])`` work too; without ``task``/``tasks`` the
envs start with the family's :meth:`Family.default_task`.

Other packages add families through the ``metarl_bench.families`` entry-point group:
each entry point names a callable that calls ``register_family``. A plugin that fails to
import or to register is reported once on stderr, listed by :func:`plugin_errors`, and
skipped; whatever it registered before failing is removed again. The agent and benchmark
registries load their entry-point groups (``metarl_bench.agents``,
``metarl_bench.benchmarks``) the same way and report failures through
:func:`plugin_failed`, so every broken plugin is listed in one place.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from metarl_bench.tasks import Task

ENTRY_POINT_GROUP = "metarl_bench.families"
_ID_RE = re.compile(r"^(?P<ns>[\w:.-]+)/(?P<name>[\w:.-]+?)-v(?P<version>\d+)$")


class TaskDistribution:
    """A task distribution: called with an explicit ``numpy.random.Generator``."""

    def __call__(self, rng: np.random.Generator) -> Task:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class BatchTolerance:
    """How closely ``check-env`` requires a family's batched env to reproduce its single envs.

    Integer and boolean values (discrete observations, ``terminated``, ``truncated``) must
    always match exactly. Float observations and rewards must satisfy
    ``numpy.isclose(batched, single, rtol=rtol, atol=atol)`` on the first ``steps`` steps of
    every episode (``None``: on every step). The default, ``rtol = atol = 0`` on every step,
    is bit-for-bit equality: right for batched envs that run the same IEEE operations as the
    single env (``+ - * /`` and ``sqrt`` are correctly rounded on every code path). A batched
    env that evaluates ``sin``, ``cos``, ``exp`` or ``power`` through NumPy's vectorised
    kernels, which may differ from the scalar path by a few ulp, states a tolerance derived
    from that error; if its dynamics amplify such differences (chaotic systems), it also
    bounds ``steps``, since states agree exactly again after every reset.
    """

    rtol: float = 0.0
    atol: float = 0.0
    steps: int | None = None

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError(f"BatchTolerance: rtol and atol must be >= 0, got rtol={self.rtol}, atol={self.atol}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"BatchTolerance.steps must be >= 1 or None, got {self.steps}")

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0 and self.steps is None

    def describe(self) -> str:
        if self.exact:
            return "bit for bit"
        where = "" if self.steps is None else f" on the first {self.steps} steps of each episode"
        return f"within rtol={self.rtol:.3g}, atol={self.atol:.3g}{where}"


EXACT = BatchTolerance()


class Family:
    """Base class of a task family. Subclasses set the class attributes below.

    Instances are bound to constructor keyword arguments (e.g. ``k`` arms); those same
    arguments are passed to the env and vector env constructors.
    """

    id: ClassVar[str]
    task_cls: ClassVar[type[Task]]
    env_cls: ClassVar[type[gym.Env] | None] = None
    vector_env_cls: ClassVar[type[gym.vector.VectorEnv] | None] = None
    horizon: ClassVar[int | None] = None
    kind: ClassVar[str] = "rl"  # "rl" or "supervised"
    truncates: ClassVar[bool] = True  # episodes are cut at ``horizon`` by Gymnasium's TimeLimit
    source: ClassVar[str] = ""  # the paper or implementation the distribution follows
    # how closely check-env requires the batched env to match single envs (see BatchTolerance)
    batch_tolerance: ClassVar[BatchTolerance] = EXACT
    # a handful of tasks (forward/backward): benchmarks may share them between train and test
    finite_task_set: ClassVar[bool] = False
    # the harness stops stepping a sub-env whose episode of the stage has ended (costly physics)
    pause_finished: ClassVar[bool] = False
    # `metarl-bench perf`: sub-envs to time (None: the command's default) and the required
    # ratio over SyncVectorEnv (None: no target)
    perf_num_envs: ClassVar[int | None] = None
    perf_target_ratio: ClassVar[float | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = dict(kwargs)
        self.family_id = self.id

    # -- tasks ---------------------------------------------------------------------------
    @property
    def distribution(self) -> TaskDistribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"sample_tasks needs an explicit numpy.random.Generator (e.g. np.random.default_rng(0)), "
                f"got {type(rng).__name__}"
            )
        if n < 0:
            raise ValueError(f"sample_tasks: n must be >= 0, got {n}")
        dist = self.distribution
        return [dist(rng) for _ in range(n)]

    def task_from_dict(self, data: Mapping[str, Any]) -> Task:
        return self.task_cls.from_dict(data)

    def default_task(self) -> Task:
        """The task an env starts with when it is given none: a fixed draw from the distribution.

        It is the first task of ``sample_tasks(1, np.random.default_rng(0))``, so a plain
        ``gym.make(id)`` gives an ordinary task of the family (never a placeholder such as a
        goal at the start position), the same one every time.
        """
        try:
            key: Any = (type(self), tuple(sorted(self.kwargs.items())))
            hash(key)
        except TypeError:  # unhashable constructor arguments: draw it afresh
            return self.sample_tasks(1, np.random.default_rng(0))[0]
        if key not in _DEFAULT_TASKS:
            _DEFAULT_TASKS[key] = self.sample_tasks(1, np.random.default_rng(0))[0]
        return _DEFAULT_TASKS[key]

    def as_task(self, task: Task | Mapping[str, Any]) -> Task:
        """``task`` itself (type-checked) or the task its dict describes (``Task.to_dict()`` form)."""
        if isinstance(task, Mapping):
            return self.task_from_dict(task)
        if not isinstance(task, Task):
            raise TypeError(
                f"{self.id} takes a {self.task_cls.__name__} or its dict (task.to_dict()), got {type(task).__name__}"
            )
        return self.check_task(task)

    def check_task(self, task: Task) -> Task:
        if not isinstance(task, self.task_cls):
            raise TypeError(
                f"{self.id} takes a {self.task_cls.__name__}, got a {type(task).__name__} "
                f"(a task of another family)"
            )
        return task

    # -- environments --------------------------------------------------------------------
    def make_env(self, task: Task | None = None, **kwargs: Any) -> gym.Env:
        env = gym.make(self.id, **{**self.kwargs, **kwargs})
        if task is not None:
            env.unwrapped.set_task(task)  # type: ignore[attr-defined]
        return env

    def make_vector_env(self, tasks: Sequence[Task], **kwargs: Any) -> gym.vector.VectorEnv:
        """A batched env with one sub-env per task (native numpy where the family has one)."""
        tasks = list(tasks)
        if not tasks:
            raise ValueError("make_vector_env needs at least one task")
        for t in tasks:
            self.check_task(t)
        kw = {**self.kwargs, **kwargs}
        if self.vector_env_cls is not None:
            venv: Any = self.vector_env_cls(num_envs=len(tasks), **kw)  # type: ignore[call-arg]
        else:
            venv = gym.vector.SyncVectorEnv([lambda: gym.make(self.id, **kw) for _ in tasks])
            venv = _SyncTaskVectorEnv(venv)
        venv.set_tasks(tasks)
        return venv

    @property
    def batched(self) -> bool:
        return self.vector_env_cls is not None

    def describe(self) -> dict[str, Any]:
        import dataclasses

        return {
            "id": self.id,
            "kind": self.kind,
            "task": self.task_cls.__name__,
            "task_parameters": [f.name for f in dataclasses.fields(self.task_cls)],
            "distribution": self.distribution.describe(),
            "horizon": self.horizon,
            "batched": self.batched,
            "kwargs": self.kwargs,
            "source": self.source,
        }


class _SyncTaskVectorEnv(gym.vector.VectorWrapper):
    """Gymnasium's SyncVectorEnv with ``set_tasks`` for families without a native batch."""

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks got {len(tasks)} tasks for {self.num_envs} sub-envs")
        for env, task in zip(self.env.envs, tasks):  # type: ignore[attr-defined]
            env.unwrapped.set_task(task)

    @property
    def tasks(self) -> list[Task]:
        return [env.unwrapped.task for env in self.env.envs]  # type: ignore[attr-defined]


_DEFAULT_TASKS: dict[Any, Task] = {}  # tasks are immutable, so each family's default is drawn once


# --- registry ----------------------------------------------------------------------------


@dataclass
class FamilySpec:
    id: str
    family_cls: type[Family]
    kwargs: dict[str, Any] = field(default_factory=dict)
    provider: str = "metarl-bench"

    def make(self, **kwargs: Any) -> Family:
        fam = self.family_cls(**{**self.kwargs, **kwargs})
        fam.family_id = self.id
        return fam


_REGISTRY: dict[str, FamilySpec] = {}
_PLUGINS_LOADED = False


def _bound_family(family_cls: type[Family], kwargs: dict[str, Any]) -> Family:
    """The family instance for env constructor ``kwargs`` (those its constructor accepts)."""
    params = inspect.signature(family_cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return family_cls(**kwargs)


@dataclass(frozen=True)
class _EnvCreator:
    """``gym.make``'s entry point: the family's env, started with ``task`` or the default task.

    A module-level class rather than a closure, so that envs and their specs still pickle.
    """

    family_cls: type[Family]
    fid: str

    def __call__(self, task: Task | Mapping[str, Any] | None = None, **kwargs: Any) -> gym.Env:
        if "tasks" in kwargs:
            raise TypeError(
                f"{self.fid}: gym.make takes one task=...; tasks=[...] (one per sub-env) is for "
                f"gym.make_vec(id, num_envs=n, tasks=[...])"
            )
        assert self.family_cls.env_cls is not None
        fam = _bound_family(self.family_cls, kwargs)
        start = fam.default_task() if task is None else fam.as_task(task)
        env = self.family_cls.env_cls(**kwargs)
        env.set_task(start)  # type: ignore[attr-defined]
        return env


def _start_tasks(
    fam: Family, fid: str, num_envs: int, task: Task | Mapping[str, Any] | None, tasks: Sequence[Any] | None
) -> list[Task]:
    if task is not None and tasks is not None:
        raise TypeError(f"{fid}: give gym.make_vec either task= (one for every sub-env) or tasks= (one each), not both")
    if tasks is not None:
        if isinstance(tasks, (Task, Mapping)) or not isinstance(tasks, Sequence):
            raise TypeError(f"{fid}: tasks= takes a list with one task per sub-env, got {type(tasks).__name__}")
        if len(tasks) != num_envs:
            raise ValueError(
                f"{fid}: gym.make_vec got {len(tasks)} tasks for num_envs={num_envs}; pass one task per sub-env"
            )
        return [fam.as_task(t) for t in tasks]
    return [fam.default_task() if task is None else fam.as_task(task)] * num_envs


@dataclass(frozen=True)
class _VectorCreator:
    """``gym.make_vec``'s entry point: the native batched env, or single envs under SyncVectorEnv."""

    family_cls: type[Family]
    fid: str

    def __call__(
        self,
        num_envs: int = 1,
        task: Task | Mapping[str, Any] | None = None,
        tasks: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> gym.vector.VectorEnv:
        family_cls, fid = self.family_cls, self.fid
        # gym.make_vec passes the spec's max_episode_steps; a batched env's horizon is built in.
        steps = kwargs.pop("max_episode_steps", None)
        fam = _bound_family(family_cls, kwargs)
        start = _start_tasks(fam, fid, num_envs, task, tasks)
        venv: Any
        if family_cls.vector_env_cls is None:
            limit = {} if steps is None else {"max_episode_steps": steps}
            venv = _SyncTaskVectorEnv(
                gym.vector.SyncVectorEnv([lambda: gym.make(fid, **limit, **kwargs) for _ in range(num_envs)])
            )
        else:
            horizon = family_cls.horizon if family_cls.truncates else None
            if steps is not None and steps != horizon:
                raise ValueError(
                    f"{fid}: the batched env's horizon is fixed at {horizon} steps (changing it would make "
                    f"another family version); got max_episode_steps={steps}. Drop the argument."
                )
            venv = family_cls.vector_env_cls(num_envs=num_envs, **kwargs)  # type: ignore[call-arg]
        venv.set_tasks(start)
        return venv  # type: ignore[no-any-return]


def register_family(
    family_cls: type[Family], id: str | None = None, kwargs: dict[str, Any] | None = None, provider: str | None = None
) -> None:
    """Register a family under ``id`` (default ``family_cls.id``) with fixed constructor kwargs."""
    fid = id or family_cls.id
    if not _ID_RE.match(fid):
        raise ValueError(f"family id {fid!r} must look like 'Namespace/Name-vN' (e.g. 'MyLab/Maze-v0')")
    kwargs = dict(kwargs or {})
    _REGISTRY[fid] = FamilySpec(fid, family_cls, kwargs, provider or family_cls.__module__.split(".")[0])
    if family_cls.kind == "rl" and family_cls.env_cls is not None:
        if fid in gym.registry:
            del gym.registry[fid]
        gym.register(
            id=fid,
            entry_point=_EnvCreator(family_cls, fid),
            vector_entry_point=_VectorCreator(family_cls, fid),
            max_episode_steps=family_cls.horizon if family_cls.truncates else None,
            kwargs=kwargs,
            disable_env_checker=True,  # check-env runs Gymnasium's full checker explicitly
        )


@dataclass(frozen=True)
class PluginError:
    """A plugin that failed to load: its entry-point ``name``, the ``provider`` distribution, the
    ``error``, and the entry-point ``group`` it was in (families, agents or benchmarks)."""

    name: str
    provider: str
    error: str
    group: str = ENTRY_POINT_GROUP

    @property
    def what(self) -> str:
        """What the plugin would have registered: ``families``, ``agents`` or ``benchmarks``."""
        return self.group.rpartition(".")[2]

    def message(self) -> str:
        return (
            f"metarl-bench: warning: skipped the plugin {self.name!r} (entry point in {self.group!r} of "
            f"the distribution {self.provider}): {self.error}. Its {self.what} are not registered; fix or "
            f"uninstall it (pip uninstall {self.provider})."
        )


_PLUGIN_ERRORS: list[PluginError] = []


def entry_point_provider(ep: importlib.metadata.EntryPoint) -> str:
    """The name of the distribution that declares ``ep`` (what ``pip uninstall`` takes)."""
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else f"(unknown distribution; entry point {ep.value})"


def plugin_failed(ep: importlib.metadata.EntryPoint, group: str, exc: BaseException) -> PluginError:
    """Record that entry point ``ep`` of ``group`` failed with ``exc``: kept for
    :func:`plugin_errors` and reported once, in one line, on stderr."""
    err = PluginError(ep.name, entry_point_provider(ep), f"{type(exc).__name__}: {exc}", group)
    _PLUGIN_ERRORS.append(err)
    print(err.message(), file=sys.stderr)
    return err


def _load_plugin(ep: importlib.metadata.EntryPoint) -> None:
    """Run one entry point; on failure undo what it registered and record the error."""
    provider = entry_point_provider(ep)
    families = dict(_REGISTRY)
    envs = {k: v for k, v in gym.registry.items()}
    try:
        hook = ep.load()
        if callable(hook):
            hook()
    except Exception as exc:  # any failure in third-party code: report it, keep the rest usable
        _REGISTRY.clear()
        _REGISTRY.update(families)
        for eid in [k for k in gym.registry if k not in envs]:
            del gym.registry[eid]
        gym.registry.update(envs)
        plugin_failed(ep, ENTRY_POINT_GROUP, exc)
        return
    for fid in set(_REGISTRY) - set(families):
        _REGISTRY[fid].provider = provider


def load_plugins() -> None:
    """Import every package that registers families through the entry-point group.

    A plugin whose module fails to import, or whose hook raises, is skipped: the error is
    printed once on stderr, kept in :func:`plugin_errors`, and anything the plugin had
    registered before failing is removed, so no half-registered plugin is left behind.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _load_plugin(ep)


def plugin_errors(group: str | None = ENTRY_POINT_GROUP) -> list[PluginError]:
    """The plugins of ``group`` that failed to load (entry-point name, provider distribution,
    error), in load order; ``group=None``: those of every group loaded so far (the family
    plugins are loaded first)."""
    load_plugins()
    return [e for e in _PLUGIN_ERRORS if group is None or e.group == group]


def family_ids() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def family_spec(id: str) -> FamilySpec:
    load_plugins()
    if id in _REGISTRY:
        return _REGISTRY[id]
    missing = missing_extra_error(id)
    if missing is not None:
        raise missing
    raise UnknownIdError("family", id, list(_REGISTRY))


# id prefix -> the error for an id under it whose optional dependency is not installed
# (e.g. the Meta-World families without the ``metaworld`` extra: the error names the extra)
_MISSING_EXTRAS: dict[str, Callable[[str], Exception]] = {}


def register_missing_extra(prefix: str, error: Callable[[str], Exception], gym_ids: Sequence[str] = ()) -> None:
    """Make ids starting with ``prefix`` raise ``error(id)`` (e.g. "install the extra") instead
    of the unknown-id error, in family and benchmark lookups; and ``gym.make`` of each of
    ``gym_ids`` raise it too."""
    _MISSING_EXTRAS[prefix] = error
    for gid in gym_ids:
        if gid not in gym.registry:
            gym.register(id=gid, entry_point=_MissingEntryPoint(gid, error), disable_env_checker=True)


@dataclass(frozen=True)
class _MissingEntryPoint:
    """A ``gym.make`` entry point that raises the missing-dependency error of its id."""

    id: str
    error: Callable[[str], Exception]

    def __call__(self, **_: Any) -> gym.Env:
        raise self.error(self.id)


def missing_extra_error(id: str) -> Exception | None:
    """The error of :func:`register_missing_extra` for ``id``, if its prefix has one."""
    for prefix, error in _MISSING_EXTRAS.items():
        if id.startswith(prefix):
            return error(id)
    return None


def family(id: str, **kwargs: Any) -> Family:
    """The family registered as ``id`` (e.g. ``"MetaRL/Navigation2D-v0"``), bound to ``kwargs``."""
    return family_spec(id).make(**kwargs)


class UnknownIdError(KeyError):
    """An unknown or unversioned id; the message lists the close matches."""

    def __init__(self, what: str, name: str, known: Sequence[str]) -> None:
        self.what, self.name = what, name
        m = _ID_RE.match(name)
        hint = ""
        if m is None:
            base = name.rstrip("-")
            versions = sorted(k for k in known if k.startswith(base + "-v"))
            if versions:
                hint = f" It has no version: use one of {versions}."
        close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
        if not hint and close:
            hint = f" Did you mean {close}?"
        if not close and not hint:
            hint = f" Known {what}s: {sorted(known)}."
        super().__init__(f"unknown {what} {name!r}.{hint} Run `metarl-bench list` to see every {what}.")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])
