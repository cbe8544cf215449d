"""Families (a parameterised env plus its task distribution) and their registry.

A family class names its task dataclass, its single env, optionally its native batched
vector env, its horizon and its task distribution. ``register_family`` records it here
and registers the env with ``gymnasium.register`` so that ``gym.make(id)`` and
``gym.make_vec(id, vectorization_mode="vector_entry_point")`` work too.

Other packages add families through the ``metarl_bench.families`` entry-point group:
each entry point names a callable that calls ``register_family``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import re
from collections.abc import Callable, Sequence
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

    def task_from_dict(self, data: dict[str, Any]) -> Task:
        return self.task_cls.from_dict(data)

    def default_task(self) -> Task:
        """The task an env starts with before ``set_task`` (a fixed draw, seed 0)."""
        return self.distribution(np.random.default_rng(0))

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


def _vector_creator(family_cls: type[Family], fixed: dict[str, Any]) -> Callable[..., gym.vector.VectorEnv]:
    def make(num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
        assert family_cls.vector_env_cls is not None
        # gym.make_vec passes the spec's max_episode_steps; a batched env's horizon is built in.
        steps = kwargs.pop("max_episode_steps", None)
        horizon = family_cls.horizon if family_cls.truncates else None
        if steps is not None and steps != horizon:
            raise ValueError(
                f"{family_cls.id}: the batched env's horizon is fixed at {horizon} steps (changing it would make "
                f"another family version); got max_episode_steps={steps}. Drop the argument."
            )
        return family_cls.vector_env_cls(num_envs=num_envs, **{**fixed, **kwargs})  # type: ignore[call-arg]

    return make


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
            entry_point=family_cls.env_cls,  # type: ignore[arg-type]
            vector_entry_point=_vector_creator(family_cls, kwargs) if family_cls.vector_env_cls else None,
            max_episode_steps=family_cls.horizon if family_cls.truncates else None,
            kwargs=kwargs,
            disable_env_checker=True,  # check-env runs Gymnasium's full checker explicitly
        )


def load_plugins() -> None:
    """Import every package that registers families through the entry-point group."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        before = set(_REGISTRY)
        hook = ep.load()
        if callable(hook):
            hook()
        provider = ep.dist.name if ep.dist is not None else ep.name
        for fid in set(_REGISTRY) - before:
            _REGISTRY[fid].provider = provider


def family_ids() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def family_spec(id: str) -> FamilySpec:
    load_plugins()
    if id in _REGISTRY:
        return _REGISTRY[id]
    raise UnknownIdError("family", id, list(_REGISTRY))


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
