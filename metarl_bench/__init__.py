"""metarl-bench: meta-reinforcement-learning benchmark suite.

    import metarl_bench
    fam = metarl_bench.family("MetaRL/Navigation2D-v0")
    bench = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-v0")
    record = metarl_bench.evaluate(metarl_bench.agent("bayes-optimal"), bench, seed=0)
"""

from __future__ import annotations

from typing import Any

from metarl_bench.family import Family, TaskDistribution, UnknownIdError, family, family_ids, register_family
from metarl_bench.tasks import Task

__version__ = "0.1.0"

import metarl_bench.envs  # noqa: E402,F401  (registers the suite's families)

__all__ = [
    "Family",
    "Task",
    "TaskDistribution",
    "UnknownIdError",
    "agent",
    "benchmark",
    "evaluate",
    "family",
    "family_ids",
    "fewshot_image_benchmark",
    "register_family",
]


def benchmark(id: str, **kwargs: Any) -> Any:
    """The benchmark registered as ``id`` (see ``metarl-bench list``)."""
    from metarl_bench.benchmarks import benchmark as _benchmark

    return _benchmark(id, **kwargs)


def agent(name: str, **config: Any) -> Any:
    """A registered agent, configured by keyword arguments (unknown fields are refused)."""
    from metarl_bench.agents import agent as _agent

    return _agent(name, **config)


def evaluate(agent: Any, benchmark: Any, seed: int = 0, **kwargs: Any) -> Any:
    """Meta-train ``agent`` (if it learns) and run the evaluation protocol on ``benchmark``."""
    from metarl_bench.harness import evaluate as _evaluate

    return _evaluate(agent, benchmark, seed=seed, **kwargs)


def fewshot_image_benchmark(root: Any, **kwargs: Any) -> Any:
    """An N-way K-shot benchmark over a folder-per-class image set (see
    :func:`metarl_bench.fewshot_images.fewshot_image_benchmark`); run it with :func:`evaluate`."""
    from metarl_bench.fewshot_images import fewshot_image_benchmark as _build

    return _build(root, **kwargs)
