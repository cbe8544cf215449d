"""metarl-bench: meta-reinforcement-learning benchmark suite.

    import metarl_bench
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    record = metarl_bench.evaluate(metarl_bench.agent("bayes-optimal"), bench, seed=0)

Bring your own agent: subclass :class:`Agent` (its ``adapter`` returns an :class:`Adapter`
the harness drives), give it a ``name`` and, if it has settings, an :class:`AgentConfig`
dataclass; evaluate it with :func:`evaluate`, or :func:`register_agent` it to use it by name.
The classes, contexts and registration functions are loaded on first use, so ``import
metarl_bench`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metarl_bench.family import Family, TaskDistribution, UnknownIdError, family, family_ids, register_family
from metarl_bench.tasks import Task

__version__ = "0.1.0"

import metarl_bench.envs  # noqa: E402,F401  (registers the suite's families)

if TYPE_CHECKING:
    from metarl_bench.agents import (
        AdaptContext,
        Adapter,
        Agent,
        AgentConfig,
        TrainContext,
        Transition,
        register_agent,
    )
    from metarl_bench.benchmarks import Benchmark, Protocol, register_benchmark
    from metarl_bench.harness import EvalContext, MetaTrainContext

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "Agent": "metarl_bench.agents",
    "Adapter": "metarl_bench.agents",
    "AgentConfig": "metarl_bench.agents",
    "Transition": "metarl_bench.agents",
    "TrainContext": "metarl_bench.agents",
    "AdaptContext": "metarl_bench.agents",
    "register_agent": "metarl_bench.agents",
    "Benchmark": "metarl_bench.benchmarks",
    "Protocol": "metarl_bench.benchmarks",
    "register_benchmark": "metarl_bench.benchmarks",
    "MetaTrainContext": "metarl_bench.harness",
    "EvalContext": "metarl_bench.harness",
}

__all__ = [
    "AdaptContext",
    "Adapter",
    "Agent",
    "AgentConfig",
    "Benchmark",
    "EvalContext",
    "Family",
    "MetaTrainContext",
    "Protocol",
    "Task",
    "TaskDistribution",
    "TrainContext",
    "Transition",
    "UnknownIdError",
    "agent",
    "benchmark",
    "evaluate",
    "family",
    "family_ids",
    "fewshot_image_benchmark",
    "load_agent",
    "register_agent",
    "register_benchmark",
    "register_family",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metarl_bench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def benchmark(id: str, **kwargs: Any) -> Any:
    """The benchmark registered as ``id`` (see ``metarl-bench list``)."""
    from metarl_bench.benchmarks import benchmark as _benchmark

    return _benchmark(id, **kwargs)


def agent(name: str, **config: Any) -> Any:
    """A registered agent, configured by keyword arguments (unknown fields are refused)."""
    from metarl_bench.agents import agent as _agent

    return _agent(name, **config)


def evaluate(agent: Any, benchmark: Any, seed: int | None = None, **kwargs: Any) -> Any:
    """Meta-train ``agent`` (if it learns) and run the evaluation protocol on ``benchmark``
    (``seed``: default 0, or the seed a loaded agent was trained with; the other keyword
    arguments are :func:`metarl_bench.harness.evaluate`'s)."""
    from metarl_bench.harness import evaluate as _evaluate

    return _evaluate(agent, benchmark, seed=seed, **kwargs)


def load_agent(path: Any) -> Any:
    """The meta-trained agent saved in folder ``path`` (by ``evaluate(..., save_agent=path)`` or
    ``metarl-bench train --save``), ready for :func:`evaluate` without meta-training again."""
    from metarl_bench.saving import load_agent as _load_agent

    return _load_agent(path)


def fewshot_image_benchmark(root: Any, **kwargs: Any) -> Any:
    """An N-way K-shot benchmark over a folder-per-class image set (see
    :func:`metarl_bench.fewshot_images.fewshot_image_benchmark`); run it with :func:`evaluate`."""
    from metarl_bench.fewshot_images import fewshot_image_benchmark as _build

    return _build(root, **kwargs)
