"""The agent/adapter protocol and the agent registry.

An :class:`Agent` has two phases. ``meta_train(ctx)`` learns from the benchmark's train
tasks through environments the harness hands out and counts (a no-op for references).
``adapter(ctx)`` returns an :class:`Adapter` that the harness drives on test tasks:

    adapter.reset(groups)     # sub-env i belongs to independent run groups[i]; forget task state
    a = adapter.act(obs)      # batched over sub-envs
    adapter.observe(tr)       # a Transition batch (tr.active marks sub-envs still in their episode)
    adapter.adapt()           # after each stage of ``episodes_per_stage`` parallel episodes

Configs are typed dataclasses. ``metarl_bench.agent(name, **overrides)`` validates the
overrides at once; the harness resolves the final config per benchmark as
``dataclass defaults <- tuned YAML[benchmark id] <- overrides``, the tuned YAML being
``baselines/configs/<name>.yaml`` for the suite's agents, or the file an agent class names
as ``tuned_configs`` (a plugin ships its own; see :func:`tuned_config_file`).

``Agent`` is generic in the contexts it takes and the adapter it returns, so a learner
states its track in its base class and mypy checks its use of the contexts:
``Agent[MetaTrainContext, EvalContext, Adapter]`` for reinforcement learning (contexts in
:mod:`metarl_bench.harness`), ``Agent[SupervisedTrainContext, SupervisedEvalContext,
SupervisedAdapter]`` for supervised few-shot learning (in :mod:`metarl_bench.supervised`).
Both kinds of context satisfy :class:`TrainContext` and :class:`AdaptContext`, what every
track offers. A bare ``Agent`` subclass leaves the three open (typed ``Any``).

A meta-trained agent can be saved and loaded (``evaluate(..., save_agent=DIR)``,
:func:`metarl_bench.saving.load_agent`) through its ``state_dict`` / ``load_state_dict``
(see :class:`Agent`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import re
import sys
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
import yaml

from metarl_bench.family import UnknownIdError

if TYPE_CHECKING:
    from metarl_bench.benchmarks import Benchmark
    from metarl_bench.saving import SavedAgent


@dataclass
class Transition:
    """One step of every sub-env, arrays with leading dimension ``num_envs``."""

    obs: npt.NDArray[Any]
    action: npt.NDArray[Any]
    reward: npt.NDArray[np.float64]
    next_obs: npt.NDArray[Any]
    terminated: npt.NDArray[np.bool_]
    truncated: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]  # False for sub-envs whose episode of this stage already ended
    step: npt.NDArray[np.integer[Any]]  # time step within the episode (0 for the first action)
    final: bool = False  # True during the final evaluation episodes (no adapt() follows)

    @property
    def done(self) -> npt.NDArray[np.bool_]:
        return self.terminated | self.truncated


class Adapter:
    """Adaptation to one batch of test tasks. Subclass and override what you need."""

    episodes_per_stage: int = 1
    groups: npt.NDArray[np.integer[Any]]
    num_runs: int

    def reset(self, groups: npt.NDArray[np.integer[Any]]) -> None:
        """Start new adaptation runs: sub-env ``i`` belongs to run ``groups[i]``."""
        self.groups = np.asarray(groups)
        self.num_runs = int(self.groups.max()) + 1 if self.groups.size else 0

    def act(self, obs: npt.NDArray[Any]) -> npt.NDArray[Any]:  # pragma: no cover - abstract
        """Actions for the batch of observations ``obs`` (leading dimension ``num_envs``)."""
        raise NotImplementedError

    def observe(self, transition: Transition) -> None:
        pass

    def adapt(self) -> None:
        pass


@dataclass
class AgentConfig:
    """Base of agent configs (typed dataclasses; one docstring line per field)."""

    nonfinite_fields: ClassVar[tuple[str, ...]] = ()
    """Float fields that accept inf or nan (documented per field); every other float must be finite."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for values out of range."""


@runtime_checkable
class TrainContext(Protocol):
    """What every meta-training context offers, whatever the track.

    Each track's context adds its own way to draw experience within the budget
    (``MetaTrainContext.make_vector_env``, ``SupervisedTrainContext.sample``).
    """

    seed: int
    rng: np.random.Generator  # seeded from ``seed``

    @property
    def benchmark(self) -> Benchmark | None:
        """The benchmark being trained for (``None`` for a supervised problem run on its own)."""
        ...

    def record(self, **metrics: Any) -> None:
        """Log training metrics into the record's ``extra.train_log`` (and TensorBoard when asked)."""
        ...

    def progress_bar(self, total: int | None, unit: str = "it", desc: str | None = None) -> ProgressBar:
        """A progress bar of meta-training (``update(n)``, ``set_postfix(...)``, ``close()``,
        a context manager); one that shows nothing unless the run asked for progress."""
        ...


class ProgressBar(Protocol):
    """What :meth:`TrainContext.progress_bar` returns: a ``tqdm`` bar or one that does nothing."""

    total: float | None

    def update(self, n: float | None = 1) -> bool | None: ...

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class AdaptContext(Protocol):
    """What every context an adapter is built from offers, whatever the track."""

    seed: int

    @property
    def benchmark(self) -> Benchmark | None:
        """The benchmark being evaluated (``None`` for a supervised problem run on its own)."""
        ...


TrainCtxT = TypeVar("TrainCtxT", bound=TrainContext)
AdaptCtxT = TypeVar("AdaptCtxT", bound=AdaptContext)
AdapterT = TypeVar("AdapterT")


class Agent(Generic[TrainCtxT, AdaptCtxT, AdapterT]):
    """Base class. Subclasses set ``name``, ``config_cls`` and implement ``adapter``.

    The type parameters are the meta-training context, the adaptation context and the
    adapter of the agent's track (see the module docstring).

    **Saving and loading.** ``evaluate(agent, benchmark, save_agent=DIR)`` saves what
    ``meta_train`` learned, and :func:`metarl_bench.saving.load_agent` restores it, through
    two methods that every agent whose ``learns`` is True implements:

    - ``state_dict() -> dict``: the learned state, called once after ``meta_train``. Its
      values are tensors, numbers, strings, booleans, ``None``, and lists, tuples and dicts
      of these (what ``torch.load(..., weights_only=True)`` reads back), e.g.
      ``{"policy": self.policy.state_dict()}``; the harness writes it at once, so live
      tensors need no copy. The config is saved beside it and is not part of it.
    - ``load_state_dict(state)``: restore it on a fresh instance built with the saved
      config (``cls(**config)``), before ``configure``. Afterwards ``adapter(ctx)`` must
      work without ``meta_train`` and behave exactly as it did after the meta-training that
      produced ``state``: the same evaluation seed then gives the same scores. A network
      whose shape depends on the spaces may be kept as state and built in ``adapter(ctx)``,
      which gives them. Raise ``ValueError`` (or ``KeyError``) for a state that does not fit.

    The defaults suit agents that learn nothing (references): ``state_dict()`` is ``{}`` and
    ``load_state_dict({})`` does nothing. An agent that learns but keeps the defaults cannot
    be saved (:meth:`check_savable` says so before any training).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[AgentConfig]] = AgentConfig
    sees_task: ClassVar[bool] = False  # oracle / multi-task agents get task-exposing envs
    learns: ClassVar[bool] = False  # True when meta_train does real work
    description: ClassVar[str] = ""
    # The tuned per-benchmark configs (a YAML file as in baselines/configs/): a path relative
    # to the folder of the module that sets it (a plugin's package data), or absolute; None:
    # baselines/configs/<name>.yaml, the suite's own (see tuned_config_file).
    tuned_configs: ClassVar[str | Path | None] = None
    loaded_from: SavedAgent | None = None  # set by load_agent: where the agent was loaded from

    def __init__(self, **overrides: Any) -> None:
        self.overrides = check_overrides(self.config_cls, overrides, self.name)
        self.config = build_config(self.config_cls, {}, self.overrides, self.name)

    def configure(self, benchmark: Benchmark) -> AgentConfig:
        """Resolve the config for ``benchmark``: defaults <- tuned YAML (the class's
        :func:`tuned_config_file`) <- overrides (types and ranges checked; whether it can run
        on ``benchmark`` is :meth:`check_benchmark`'s)."""
        tuned = tuned_config(self.name, benchmark.id, self.config_cls, path=tuned_config_file(type(self)))
        self.config = build_config(self.config_cls, tuned, self.overrides, self.name)
        return self.config

    def check_benchmark(self, benchmark: Benchmark) -> None:
        """Raise ``ValueError`` if the config resolved by :meth:`configure` cannot run on
        ``benchmark`` (e.g. a stage size that does not divide its budget, or a meta-training
        step that does not fit its budget). The harness calls it before any work."""

    def supports(self, benchmark: Benchmark) -> str | None:
        """``None`` if the agent runs on ``benchmark``, else the reason it does not."""
        return None

    def meta_train(self, ctx: TrainCtxT) -> None:
        """Learn from the train tasks within the context's budget (default: nothing)."""

    def adapter(self, ctx: AdaptCtxT) -> AdapterT:  # pragma: no cover - abstract
        """The adapter the harness drives on test tasks."""
        raise NotImplementedError

    def resolved_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    # -- saving (see the class docstring) ------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What ``meta_train`` learned, for saving (default: ``{}``, for agents that learn nothing)."""
        reason = self.check_savable()
        if reason is not None:
            raise NotImplementedError(reason)
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (default: accepts only ``{}``)."""
        if state:
            raise ValueError(
                f"agent {self.name!r} keeps no learned state, but the saved state has {sorted(state)}; "
                "it was saved by another agent"
            )

    def check_savable(self) -> str | None:
        """``None`` if :meth:`state_dict` captures what ``meta_train`` learns, else why it does not."""
        if self.learns and type(self).state_dict is Agent.state_dict:
            return (
                f"agent {self.name!r} learns in meta_train but does not implement state_dict and load_state_dict, "
                "so it cannot be saved; implement them (see the Agent docstring)"
            )
        return None


# --- configs -------------------------------------------------------------------------------

def _config_dir() -> Path:
    import metarl_bench.baselines as b

    return Path(b.__file__).resolve().parent / "configs"


class ConfigFileError(ValueError):
    """A learner's YAML config file cannot be used (the message names the file and the place)."""


class ConfigLoader(yaml.SafeLoader):
    """YAML's safe schema, with numbers read as a user writes them: ``1e-3``, ``1e10``,
    ``10_000``, ``inf`` and ``nan`` are numbers (PyYAML's YAML 1.1 rules read the first two
    as strings), and integers are decimal (``010`` is 10, not octal; ``1:30`` is text)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Integers first: a string both patterns match ("10") is an int.
ConfigLoader.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)$"), list("-+0123456789")
)
ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
              |[-+]?\.?(?:inf|Inf|INF)
              |\.?(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789.iInN"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    return sign * int(body, {"0x": 16, "0o": 8}.get(body[:2], 10))


ConfigLoader.add_constructor(_INT, _construct_int)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def parse_value(text: str) -> Any:
    """A config value written as text (``--set key=value``): ``1e-3`` and ``inf`` are floats,
    ``20`` an int, ``[64, 64]`` a list, ``true`` a bool, other text a string (see :class:`ConfigLoader`)."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValueError(
            f"cannot read {text!r} as a value ({_yaml_problem(exc)}); write numbers as 1e-3 or 20, "
            "lists as [64, 64], text as is"
        ) from None


def _read_config_file(path: Path) -> tuple[Any, dict[str, int]]:
    """The data of a YAML config file and the line of each top-level key; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}{where}: invalid YAML: {_yaml_problem(exc)}") from None
    finally:
        loader.dispose()
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return data, lines


def config_entries(path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """The entries of a tuned-config file: key -> (where, mapping), checked.

    The file maps benchmark ids (or ``default``) to mappings of config field -> value. A
    key that names no registered benchmark, or an entry that is not a mapping, is a
    :class:`ConfigFileError` naming the file, the line and the key.
    """
    data, lines = _read_config_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping of benchmark id -> config, got {type(data).__name__}")
    from metarl_bench.benchmarks import benchmark_ids

    known = benchmark_ids()
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, entry in data.items():
        where = f"{path}, line {lines[str(key)]}" if str(key) in lines else str(path)
        if key != "default" and key not in known:
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigFileError(
                f"{where}: key {key!r} matches no registered benchmark.{hint} Keys are benchmark ids "
                "(`metarl-bench list benchmarks`) or 'default'"
            )
        if entry is None:  # an empty entry: the defaults
            entry = {}
        if not isinstance(entry, dict):
            raise ConfigFileError(
                f"{where}: entry {key!r} must be a mapping of config field -> value, got {type(entry).__name__} {entry!r}"
            )
        out[str(key)] = (where, entry)
    return out


def tuned_config(
    agent_name: str, benchmark_id: str, config_cls: type[AgentConfig] | None = None, path: Path | None = None
) -> dict[str, Any]:
    """The tuned config of ``agent_name`` for ``benchmark_id`` from its YAML file, if any:
    ``path``, or by default the suite's ``baselines/configs/<agent_name>.yaml``.

    Keys of the YAML file are benchmark ids; ``default`` applies to the rest. A smoke-tier
    benchmark (``...-smoke-vN``) falls back to its quick-tier id. With ``config_cls`` the
    fields of every entry used are checked, and an error names the file, line and key.
    """
    if path is None:
        path = _config_dir() / f"{agent_name}.yaml"
    if not path.exists():
        return {}
    entries = config_entries(path)
    base = benchmark_id.replace("-smoke-v", "-v")
    out: dict[str, Any] = {}
    for key in dict.fromkeys(["default", base, benchmark_id]):
        if key not in entries:
            continue
        where, entry = entries[key]
        if config_cls is not None:
            try:
                check_overrides(config_cls, entry, agent_name)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}, entry {key!r}: {exc}") from None
        out.update(entry)
    return out


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _integral_float(value: Any) -> bool:
    """A float a user wrote for a whole number (``1e4``): finite with no fractional part."""
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def _item_types(tp: Any, n: int) -> list[Any]:
    args = typing.get_args(tp)
    if not args:
        return [Any] * n
    if len(args) == 1 or Ellipsis in args:
        return [args[0]] * n
    return [args[i] if i < len(args) else Any for i in range(n)]


def _type_ok(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if _is_union(tp):
        return any(_type_ok(a, value) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        return all(_type_ok(t, v) for t, v in zip(_item_types(tp, len(value)), value))
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) or _integral_float(value)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _coerce(tp: Any, value: Any) -> Any:
    if _is_union(tp):
        for arg in typing.get_args(tp):
            if _type_ok(arg, value):
                return _coerce(arg, value)
        return value
    if tp is float and not isinstance(value, bool):
        return float(value)
    if tp is int and _integral_float(value):
        return int(value)
    origin = typing.get_origin(tp)
    if origin in (tuple, list) and isinstance(value, (tuple, list)):
        items = [_coerce(t, v) for t, v in zip(_item_types(tp, len(value)), value)]
        return tuple(items) if origin is tuple else items
    return value


def _nonfinite(value: Any) -> bool:
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return any(_nonfinite(v) for v in value)
    return False


def check_overrides(config_cls: type[AgentConfig], overrides: dict[str, Any], agent_name: str) -> dict[str, Any]:
    """``overrides`` checked against ``config_cls``'s fields and types, numbers coerced to the
    field's type; unknown fields are a ``TypeError``, non-finite numbers a ``ValueError``
    (unless the field is listed in ``config_cls.nonfinite_fields``)."""
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out = {}
    for key, value in overrides.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise TypeError(f"agent {agent_name!r} has no config field {key!r}.{hint} Its fields: {names}")
        if not _type_ok(hints[key], value):
            raise TypeError(
                f"agent {agent_name!r}: config field {key!r} must be {_type_name(hints[key])}, "
                f"got {value!r} ({type(value).__name__})"
            )
        if _nonfinite(value) and key not in config_cls.nonfinite_fields:
            raise ValueError(f"agent {agent_name!r}: config field {key!r} must be a finite number, got {value!r}")
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
    """Config validation helper: every named value must be a finite number > 0."""
    for key, value in fields.items():
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            raise ValueError(f"agent {agent!r}: config field {key!r} must be a finite number, got {value!r}")
        if not value > 0:
            raise ValueError(f"agent {agent!r}: config field {key!r} must be > 0, got {value!r}")


# --- divergence ----------------------------------------------------------------------------


def config_digest(config: Mapping[str, Any]) -> str:
    """A short hash of a resolved config (what a checkpoint's name tells configs apart by);
    ``checkpoint_dir``, a place rather than a setting, is left out."""
    settings = {k: v for k, v in config.items() if k != "checkpoint_dir"}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def checkpoint_folder(results: str | Path | None = None, checkpoints: str | Path | None = None) -> Path:
    """Where divergence checkpoints go: ``checkpoints`` if given, else ``<results>/.checkpoints``
    beside the records, else (no results folder) ``metarl-bench-checkpoints`` in the system's
    temporary folder."""
    if checkpoints is not None:
        return Path(checkpoints)
    if results is not None:
        return Path(results) / ".checkpoints"
    return Path(tempfile.gettempdir()) / "metarl-bench-checkpoints"


def checkpoint_path(folder: str | Path, benchmark_id: str, agent: str, config: Mapping[str, Any], seed: int) -> Path:
    """``<folder>/<benchmark id>/<agent>/seed-<seed>-config-<digest>.last-good.pt``, laid out as
    the records are (``agent``: the record's variant name), with the run's own seed and the hash
    of the agent's resolved config."""
    return Path(folder) / benchmark_id / agent / f"seed-{seed}-config-{config_digest(config)}.last-good.pt"


def _rebuild_divergence(cls: type[DivergenceError], fields: dict[str, Any]) -> DivergenceError:
    err = cls.__new__(cls)
    err.__dict__.update(fields)
    err.args = (str(err),)
    return err


class DivergenceError(FloatingPointError):
    """Meta-training produced a NaN or inf (loss, gradient or parameters) and stopped.

    ``iteration`` is the diverging iteration, counted from 1, so ``state`` holds the
    parameters after ``iteration - 1`` completed iterations (0: the initial ones), the
    last finite ones. :func:`metarl_bench.evaluate` saves them with :meth:`save` (beside
    the results, or where its ``checkpoints`` argument says) and the message names the
    file; ``torch.load`` reads it back: a dict with ``state`` and what produced it.
    """

    def __init__(
        self,
        agent: str,
        benchmark_id: str,
        what: str,
        iteration: int,
        total: int | None,
        state: Mapping[str, Any] | None,
        fix: str,
        config: Mapping[str, Any] | None = None,
        unit: str = "iteration",
        folder: str | Path | None = None,
    ) -> None:
        self.agent, self.benchmark_id, self.what = agent, benchmark_id, what
        self.iteration, self.total, self.unit, self.fix = int(iteration), total, unit, fix
        self.config = dict(config or {})
        self.state = _snapshot(state) if state is not None else None
        self.folder = Path(folder) if folder else None  # an agent's own choice, else the caller's
        self.path: Path | None = None
        self.save_error: str | None = None
        super().__init__(str(self))

    @property
    def completed(self) -> int:
        """Iterations completed before the divergence: the saved parameters are after this many."""
        return self.iteration - 1

    def __str__(self) -> str:
        of = f" of {self.total}" if self.total else ""
        head = f"{self.agent} on {self.benchmark_id}: non-finite {self.what} at {self.unit} {self.iteration}{of}; training stopped."
        last = f"after {self.unit} {self.completed}" if self.completed > 0 else f"the initial ones, before {self.unit} 1"
        if self.path is not None:
            kept = f"The last good parameters ({last}) are saved in {self.path} (torch.load it)."
        elif self.save_error is not None:
            kept = f"The last good parameters ({last}) could not be saved: {self.save_error}."
        else:
            kept = (f"The last good parameters ({last}) are in this error's .state (metarl_bench.evaluate saves "
                    "them beside the results).")
        return f"{head} {kept} {self.fix}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (process pools) despite the keyword fields
        return _rebuild_divergence, (type(self), dict(self.__dict__))

    def save(self, folder: str | Path, seed: int, variant: str | None = None) -> Path | None:
        """Write the last good parameters to :func:`checkpoint_path` under ``folder`` (or the
        folder the agent chose) for run ``seed`` (``variant``: the record's agent folder name,
        default the agent's name), atomically; returns the path (None if writing failed: the
        message then says why). The state is dropped from the error once written."""
        if self.state is None:
            return self.path
        path = checkpoint_path(self.folder or folder, self.benchmark_id, variant or self.agent, self.config, seed)
        import torch

        payload = {
            "state": self.state,
            "iteration": self.completed,  # completed iterations: the parameters are after this many
            "diverged_at": self.iteration,
            "what": self.what,
            "agent": self.agent,
            "benchmark": self.benchmark_id,
            "seed": int(seed),
            "config": self.config,
        }
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            self.save_error = f"{type(exc).__name__}: {exc} (writing {path}); pass another checkpoint folder"
            if tmp.parent.is_dir():
                tmp.unlink(missing_ok=True)
            self.args = (str(self),)
            return None
        self.path, self.state = path, None
        self.args = (str(self),)
        return path


def _snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of a state dict (tensors cloned, nested dicts copied)."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if hasattr(v, "detach"):
            out[k] = v.detach().clone()
        elif isinstance(v, Mapping):
            out[k] = _snapshot(v)
        else:
            out[k] = v
    return out


# --- registry ------------------------------------------------------------------------------

# name -> {family kind ("rl" | "supervised") -> "module:Class" or the class}. A name such as
# "reptile" or "oracle" may have one implementation per kind; the harness picks the one
# matching the benchmark.
_AGENTS: dict[str, dict[str, str | type[Agent]]] = {}
# name -> where the agent comes from: "metarl-bench", a plugin's distribution, or the
# top-level package (or script) that registered it
_AGENT_SOURCES: dict[str, str] = {}
AGENT_KINDS = ("rl", "supervised")
# Installed packages add agents through this entry-point group (see :func:`load_agent_plugins`).
AGENT_ENTRY_POINT_GROUP = "metarl_bench.agents"
_AGENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_PLUGINS_LOADED = False


def _source_of(target: str | type[Agent]) -> str:
    module = target.__module__ if isinstance(target, type) else target.partition(":")[0]
    top = module.split(".")[0]
    return "metarl-bench" if top == "metarl_bench" else top


def register_agent(name: str, target: str | type[Agent], kind: str = "rl") -> None:
    """Make an agent usable by name: ``metarl_bench.agent(name)``, ``metarl-bench run --agent
    NAME``, ``metarl-bench list agents``.

    ``target`` is the :class:`Agent` subclass itself, or ``"module:Class"``, imported on first
    use. ``kind`` is the kind of benchmark it runs on, ``"rl"`` or ``"supervised"``; a name may
    have one implementation of each kind. The class's ``name`` must be ``name`` (records are
    filed under it). Another package registers its agents through the ``metarl_bench.agents``
    entry-point group (see :func:`load_agent_plugins`); a name another package already
    registered for the same kind is refused, so no plugin replaces a built-in agent.
    """
    if kind not in AGENT_KINDS:
        raise ValueError(f"register_agent: kind must be 'rl' or 'supervised', got {kind!r}")
    if not isinstance(name, str) or not _AGENT_NAME_RE.fullmatch(name):
        raise ValueError(
            f"register_agent: agent name {name!r} must start with a letter or digit and hold only letters, "
            "digits and ._+- (no '@' or '/': records are filed under the name)"
        )
    if isinstance(target, type):
        if not issubclass(target, Agent):
            raise TypeError(f"register_agent({name!r}): {target.__qualname__} is not a subclass of metarl_bench.Agent")
        _check_class_name(name, target)
    elif not (isinstance(target, str) and target.count(":") == 1 and all(target.split(":"))):
        raise TypeError(f"register_agent({name!r}): target must be an Agent subclass or 'module:Class', got {target!r}")
    source = _source_of(target)
    known = _AGENTS.get(name, {})
    if kind in known and known[kind] != target and _AGENT_SOURCES.get(name, source) != source:
        raise ValueError(
            f"register_agent: the {kind} agent {name!r} is already registered by {_AGENT_SOURCES[name]}; "
            "register yours under another name"
        )
    _AGENTS.setdefault(name, {})[kind] = target
    _AGENT_SOURCES.setdefault(name, source)


def _check_class_name(name: str, cls: type[Agent]) -> None:
    own = getattr(cls, "name", None)
    if own != name:
        raise ValueError(
            f"agent {name!r}: its class {cls.__module__}.{cls.__qualname__} has name = {own!r}; set the class "
            f"attribute name = {name!r} (records are filed under it)"
        )


def _kind_of(cls: type[Agent]) -> str:
    """The kind of benchmark an agent class runs on: its ``kind`` attribute if it has one, else
    ``"supervised"`` for a :class:`~metarl_bench.supervised.SupervisedAgent`, else ``"rl"``."""
    kind = getattr(cls, "kind", None)
    if kind in AGENT_KINDS:
        return str(kind)
    supervised = sys.modules.get("metarl_bench.supervised")  # a SupervisedAgent subclass has imported it
    if supervised is not None and issubclass(cls, supervised.SupervisedAgent):
        return "supervised"
    return "rl"


def _load_agent_plugin(ep: importlib.metadata.EntryPoint) -> None:
    """Run one entry point of the agents group; on failure undo what it registered and report it."""
    from metarl_bench.family import entry_point_provider, plugin_failed

    agents = {n: dict(k) for n, k in _AGENTS.items()}
    sources = dict(_AGENT_SOURCES)
    try:
        obj = ep.load()
        if isinstance(obj, type):
            if not issubclass(obj, Agent):
                raise TypeError(f"{ep.value} is neither an Agent subclass nor a function that registers agents")
            register_agent(ep.name, obj, kind=_kind_of(obj))
        elif callable(obj):
            obj()
        else:
            raise TypeError(f"{ep.value} is neither an Agent subclass nor a function that registers agents")
    except Exception as exc:  # any failure in third-party code: report it, keep the rest usable
        _AGENTS.clear()
        _AGENTS.update(agents)
        _AGENT_SOURCES.clear()
        _AGENT_SOURCES.update(sources)
        plugin_failed(ep, AGENT_ENTRY_POINT_GROUP, exc)
        return
    provider = entry_point_provider(ep)
    for name in set(_AGENTS) - set(agents):
        _AGENT_SOURCES[name] = provider


def load_agent_plugins() -> None:
    """Register the suite's agents, then every installed package's, once per process.

    An entry point of the ``metarl_bench.agents`` group names either an :class:`Agent`
    subclass, registered under the entry point's name (which must be the class's ``name``)
    for the kind :func:`_kind_of` gives, or a function that calls :func:`register_agent`.
    A plugin that fails to import or register is skipped: one line on stderr names it, its
    distribution and the error, :func:`metarl_bench.family.plugin_errors` lists it, and what
    it registered before failing is removed.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    import metarl_bench.baselines  # noqa: F401  (the suite's agents first: a plugin cannot take their names)

    for ep in importlib.metadata.entry_points(group=AGENT_ENTRY_POINT_GROUP):
        _load_agent_plugin(ep)


def agent_names() -> list[str]:
    load_agent_plugins()
    return sorted(_AGENTS)


def agent_kinds(name: str) -> dict[str, str | type[Agent]]:
    """The registered implementations of agent ``name``: kind -> ``"module:Class"`` or the class."""
    load_agent_plugins()
    if name not in _AGENTS:
        raise UnknownIdError("agent", name, list(_AGENTS))
    return dict(_AGENTS[name])


def agent_source(name: str) -> str:
    """Where agent ``name`` comes from: ``metarl-bench``, the distribution of the plugin that
    registered it, or the package (or script) that called :func:`register_agent`."""
    agent_kinds(name)
    return _AGENT_SOURCES.get(name, "?")


def tuned_config_file(agent: str | type[Agent]) -> Path:
    """Where an agent's tuned per-benchmark configs live: the file its class names as
    ``tuned_configs`` (relative to the folder of the module that sets it), else the suite's
    ``baselines/configs/<name>.yaml``, which need not exist (then the dataclass defaults
    apply on every benchmark). ``agent`` is an agent class, or a registered name (its class
    for the first of its kinds, see :func:`agent_class`).

    A file a class names must exist: a missing one is a ``ValueError`` naming it (a plugin
    that forgot to ship it as package data), not a silent fall back to the defaults.
    """
    cls = agent_class(agent) if isinstance(agent, str) else agent
    own = getattr(cls, "tuned_configs", None)
    if own is None:
        return _config_dir() / f"{cls.name}.yaml"
    path = Path(own)
    if not path.is_absolute():
        owner = next(k for k in cls.__mro__ if "tuned_configs" in vars(k))
        module_file = getattr(sys.modules.get(owner.__module__), "__file__", None)
        if module_file is None:
            raise ValueError(
                f"agent {cls.name!r}: tuned_configs={str(own)!r} is relative, but module {owner.__module__} has no "
                "file to be relative to; give an absolute path"
            )
        path = Path(module_file).resolve().parent / path
    if not path.is_file():
        raise ValueError(
            f"agent {cls.name!r}: its tuned_configs file {path} does not exist; ship it with the agent's "
            "package (as package data) or set tuned_configs = None"
        )
    return path


def _load(target: str | type[Agent], name: str | None = None) -> type[Agent]:
    if isinstance(target, type):
        return target
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(f"agent {name or attr!r}: {target} is not a subclass of metarl_bench.Agent")
    if name is not None:
        _check_class_name(name, cls)
    return cls


def agent_class(name: str, kind: str | None = None) -> type[Agent]:
    kinds = agent_kinds(name)
    if kind is None:
        kind = "rl" if "rl" in kinds else next(iter(kinds))
    if kind not in kinds:
        raise UnknownIdError("agent", name, [n for n, k in _AGENTS.items() if kind in k])
    return _load(kinds[kind], name)


class _ByKind(Agent):
    """An agent name with one implementation per family kind, chosen per benchmark."""

    def __init__(self, name: str, targets: dict[str, str | type[Agent]], overrides: dict[str, Any]) -> None:
        self.name = name  # type: ignore[misc]
        self._targets = targets
        self._overrides = overrides
        errors = {}
        self._impl: Agent | None = None
        self._by_kind: dict[str, Agent] = {}
        for kind, target in targets.items():
            try:
                self._by_kind[kind] = _load(target, name)(**overrides)
            except (TypeError, ValueError) as exc:
                errors[kind] = exc
        if not self._by_kind:
            raise next(iter(errors.values()))

    def _pick(self, benchmark: Any) -> Agent:
        kind = benchmark.family.kind
        if kind not in self._by_kind:
            if kind in self._targets:  # the overrides were invalid for this kind
                _load(self._targets[kind], self.name)(**self._overrides)
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

    def check_benchmark(self, benchmark: Any) -> None:
        assert self._impl is not None, "configure(benchmark) first"
        self._impl.check_benchmark(benchmark)

    def meta_train(self, ctx: Any) -> None:
        assert self._impl is not None, "configure(benchmark) first"
        self._impl.meta_train(ctx)

    def adapter(self, ctx: Any) -> Adapter:
        assert self._impl is not None, "configure(benchmark) first"
        return self._impl.adapter(ctx)

    def state_dict(self) -> dict[str, Any]:
        assert self._impl is not None, "configure(benchmark) first"
        return self._impl.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert self._impl is not None, "configure(benchmark) first"
        self._impl.load_state_dict(state)

    def check_savable(self) -> str | None:
        assert self._impl is not None, "configure(benchmark) first"
        return self._impl.check_savable()

    def __getattr__(self, item: str) -> Any:
        impl = self.__dict__.get("_impl")
        if impl is None:
            raise AttributeError(item)
        return getattr(impl, item)


def agent(name: str, **config: Any) -> Agent:
    """A registered agent configured by ``config`` (unknown or ill-typed fields are refused)."""
    kinds = agent_kinds(name)
    if len(kinds) == 1:
        return _load(next(iter(kinds.values())), name)(**config)
    return _ByKind(name, kinds, config)
