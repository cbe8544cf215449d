"""The agent/adapter protocol (DESIGN section 4) and the agent registry.

An :class:`Agent` has two phases. ``meta_train(ctx)`` learns from the benchmark's train
tasks through environments the harness hands out and counts (a no-op for references).
``adapter(ctx)`` returns an :class:`Adapter` that the harness drives on test tasks:

    adapter.reset(groups)     # sub-env i belongs to independent run groups[i]; forget task state
    a = adapter.act(obs)      # batched over sub-envs
    adapter.observe(tr)       # a Transition batch (tr.active marks sub-envs still in their episode)
    adapter.adapt()           # after each stage of ``episodes_per_stage`` parallel episodes

Configs are typed dataclasses. ``metarl_bench.agent(name, **overrides)`` validates the
overrides at once; the harness resolves the final config per benchmark as
``dataclass defaults <- baselines/configs/<name>.yaml[benchmark id] <- overrides``.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from metarl_bench.family import UnknownIdError


@dataclass
class Transition:
    """One step of every sub-env, arrays with leading dimension ``num_envs``."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    active: np.ndarray  # False for sub-envs whose episode of this stage already ended
    step: np.ndarray  # time step within the episode (0 for the first action)
    final: bool = False  # True during the final evaluation episodes (no adapt() follows)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class Adapter:
    """Adaptation to one batch of test tasks. Subclass and override what you need."""

    episodes_per_stage: int = 1

    def reset(self, groups: np.ndarray) -> None:
        """Start new adaptation runs: sub-env ``i`` belongs to run ``groups[i]``."""
        self.groups = np.asarray(groups)
        self.num_runs = int(self.groups.max()) + 1 if self.groups.size else 0

    def act(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, transition: Transition) -> None:
        pass

    def adapt(self) -> None:
        pass


@dataclass
class AgentConfig:
    """Base of agent configs (typed dataclasses; one docstring line per field)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for values out of range."""


class Agent:
    """Base class. Subclasses set ``name``, ``config_cls`` and implement ``adapter``."""

    name: ClassVar[str]
    config_cls: ClassVar[type[AgentConfig]] = AgentConfig
    sees_task: ClassVar[bool] = False  # oracle / multi-task agents get task-exposing envs
    learns: ClassVar[bool] = False  # True when meta_train does real work
    description: ClassVar[str] = ""

    def __init__(self, **overrides: Any) -> None:
        self.overrides = check_overrides(self.config_cls, overrides, self.name)
        self.config = build_config(self.config_cls, {}, self.overrides, self.name)

    def configure(self, benchmark: Any) -> AgentConfig:
        """Resolve the config for ``benchmark``: defaults <- tuned YAML <- overrides."""
        tuned = tuned_config(self.name, benchmark.id)
        self.config = build_config(self.config_cls, tuned, self.overrides, self.name)
        return self.config

    def supports(self, benchmark: Any) -> str | None:
        """``None`` if the agent runs on ``benchmark``, else the reason it does not."""
        return None

    def meta_train(self, ctx: Any) -> None:
        """Learn from ``ctx.train_tasks`` within ``ctx.budget_steps`` (default: nothing)."""

    def adapter(self, ctx: Any) -> Adapter:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolved_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


# --- configs -------------------------------------------------------------------------------

def _config_dir() -> Path:
    import metarl_bench.baselines as b

    return Path(b.__file__).resolve().parent / "configs"


def tuned_config(agent_name: str, benchmark_id: str) -> dict[str, Any]:
    """The tuned config of ``agent_name`` for ``benchmark_id`` from its YAML file, if any.

    Keys of the YAML file are benchmark ids; ``default`` applies to the rest. A smoke-tier
    benchmark (``...-smoke-vN``) falls back to its quick-tier id.
    """
    import yaml

    path = _config_dir() / f"{agent_name}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of benchmark id -> config, got {type(data).__name__}")
    base = benchmark_id.replace("-smoke-v", "-v")
    out: dict[str, Any] = dict(data.get("default") or {})
    out.update(data.get(base) or {})
    if base != benchmark_id:
        out.update(data.get(benchmark_id) or {})
    return out


def _type_ok(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(a, value) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return all(_type_ok(args[0], v) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _coerce(tp: Any, value: Any) -> Any:
    if tp is float and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_overrides(config_cls: type[AgentConfig], overrides: dict[str, Any], agent_name: str) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out = {}
    for key, value in overrides.items():
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise TypeError(f"agent {agent_name!r} has no config field {key!r}.{hint} Its fields: {names}")
        if not _type_ok(hints[key], value):
            raise TypeError(
                f"agent {agent_name!r}: config field {key!r} must be {_type_name(hints[key])}, "
                f"got {value!r} ({type(value).__name__})"
            )
        out[key] = _coerce(hints[key], value)
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build_config(
    config_cls: type[AgentConfig], tuned: dict[str, Any], overrides: dict[str, Any], agent_name: str
) -> AgentConfig:
    merged = {**check_overrides(config_cls, tuned, agent_name), **overrides}
    cfg = config_cls(**merged)
    cfg.validate()
    return cfg


def positive(agent: str, **fields: float) -> None:
    """Config validation helper: every named value must be > 0."""
    for key, value in fields.items():
        if not value > 0:
            raise ValueError(f"agent {agent!r}: config field {key!r} must be > 0, got {value!r}")


# --- registry ------------------------------------------------------------------------------

# name -> {family kind ("rl" | "supervised") -> "module:Class"}. A name such as
# "reptile" or "oracle" may have one implementation per kind; the harness picks the one
# matching the benchmark.
_AGENTS: dict[str, dict[str, str]] = {}


def register_agent(name: str, target: str, kind: str = "rl") -> None:
    """Register ``name`` -> ``"module:Class"`` (imported lazily) for benchmarks of ``kind``."""
    if kind not in ("rl", "supervised"):
        raise ValueError(f"kind must be 'rl' or 'supervised', got {kind!r}")
    _AGENTS.setdefault(name, {})[kind] = target


def agent_names() -> list[str]:
    import metarl_bench.baselines  # noqa: F401  (registers the suite's agents)

    return sorted(_AGENTS)


def agent_kinds(name: str) -> dict[str, str]:
    import metarl_bench.baselines  # noqa: F401

    if name not in _AGENTS:
        raise UnknownIdError("agent", name, list(_AGENTS))
    return dict(_AGENTS[name])


def _load(target: str) -> type[Agent]:
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def agent_class(name: str, kind: str | None = None) -> type[Agent]:
    kinds = agent_kinds(name)
    if kind is None:
        kind = "rl" if "rl" in kinds else next(iter(kinds))
    if kind not in kinds:
        raise UnknownIdError("agent", name, [n for n, k in _AGENTS.items() if kind in k])
    return _load(kinds[kind])


class _ByKind(Agent):
    """An agent name with one implementation per family kind, chosen per benchmark."""

    def __init__(self, name: str, targets: dict[str, str], overrides: dict[str, Any]) -> None:
        self.name = name  # type: ignore[misc]
        self._targets = targets
        self._overrides = overrides
        errors = {}
        self._impl: Agent | None = None
        self._by_kind: dict[str, Agent] = {}
        for kind, target in targets.items():
            try:
                self._by_kind[kind] = _load(target)(**overrides)
            except (TypeError, ValueError) as exc:
                errors[kind] = exc
        if not self._by_kind:
            raise next(iter(errors.values()))

    def _pick(self, benchmark: Any) -> Agent:
        kind = benchmark.family.kind
        if kind not in self._by_kind:
            if kind in self._targets:  # the overrides were invalid for this kind
                _load(self._targets[kind])(**self._overrides)
            raise ValueError(f"agent {self.name!r} has no implementation for {kind} benchmarks such as {benchmark.id}")
        return self._by_kind[kind]

    def supports(self, benchmark: Any) -> str | None:
        if benchmark.family.kind not in self._targets:
            return f"no {benchmark.family.kind} implementation"
        return self._pick(benchmark).supports(benchmark)

    def configure(self, benchmark: Any) -> AgentConfig:
        self._impl = self._pick(benchmark)
        self.sees_task = self._impl.sees_task  # type: ignore[misc]
        self.config = self._impl.configure(benchmark)
        return self.config

    def meta_train(self, ctx: Any) -> None:
        assert self._impl is not None, "configure(benchmark) first"
        self._impl.meta_train(ctx)

    def adapter(self, ctx: Any) -> Adapter:
        assert self._impl is not None, "configure(benchmark) first"
        return self._impl.adapter(ctx)

    def __getattr__(self, item: str) -> Any:
        impl = self.__dict__.get("_impl")
        if impl is None:
            raise AttributeError(item)
        return getattr(impl, item)


def agent(name: str, **config: Any) -> Agent:
    """A registered agent configured by ``config`` (unknown or ill-typed fields are refused)."""
    kinds = agent_kinds(name)
    if len(kinds) == 1:
        return _load(next(iter(kinds.values())))(**config)
    return _ByKind(name, kinds, config)
