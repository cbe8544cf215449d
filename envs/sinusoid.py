"""Sinusoid regression, the supervised few-shot family (Finn et al. 2017, MAML, section 5.1).

This family has no Gymnasium env (``kind = "supervised"``): a task is a function
``y = amplitude * sin(x - phase)``, a learner sees K noise-free support points
``(x, y)`` with ``x ~ U[-5, 5]`` and is scored by its mean squared error on query points.
The benchmarks built on it live in :mod:`metarl_bench.supervised`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl_bench.family import Family, TaskDistribution
from metarl_bench.tasks import Task, check_number

AMPLITUDE_LOW, AMPLITUDE_HIGH = 0.1, 5.0
PHASE_LOW, PHASE_HIGH = 0.0, math.pi
X_LOW, X_HIGH = -5.0, 5.0


@dataclass(frozen=True)
class SinusoidTask(Task):
    """``y = amplitude * sin(x - phase)`` with amplitude in [0.1, 5] and phase in [0, pi]."""

    amplitude: float = 1.0
    phase: float = 0.0

    def validate(self) -> None:
        check_number("SinusoidTask", "amplitude", self.amplitude, AMPLITUDE_LOW, AMPLITUDE_HIGH)
        check_number("SinusoidTask", "phase", self.phase, PHASE_LOW, PHASE_HIGH)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The task's function evaluated at ``x`` (any shape)."""
        return self.amplitude * np.sin(np.asarray(x, dtype=np.float64) - self.phase)


class UniformSinusoid(TaskDistribution):
    """amplitude ~ U[0.1, 5], phase ~ U[0, pi] (Finn et al. 2017)."""

    def __call__(self, rng: np.random.Generator) -> SinusoidTask:
        amplitude, phase = rng.uniform((AMPLITUDE_LOW, PHASE_LOW), (AMPLITUDE_HIGH, PHASE_HIGH))
        return SinusoidTask(amplitude=float(amplitude), phase=float(phase))

    def describe(self) -> str:
        return "amplitude ~ U[0.1,5], phase ~ U[0,pi]"


class SinusoidFamily(Family):
    """Sinusoid regression tasks (Finn et al. 2017, section 5.1).

    | task | data | horizon |
    |---|---|---|
    | amplitude ~ U[0.1,5], phase ~ U[0,pi] | y = A sin(x - phase), x ~ U[-5,5], noise-free; K support and K query points | n/a |

    Input: a scalar ``x`` in [-5, 5]. Target: ``amplitude * sin(x - phase)``. Loss: mean
    squared error. Task parameters: ``amplitude`` and ``phase``.

    Without adaptation the best predictor (in expected MSE) is the prior mean
    ``E[A] E[sin(x - phase)] = -(2/pi) E[A] cos(x)``; its MSE over ``x ~ U[-5, 5]`` is
    about 3.006 (:meth:`prior_mean_mse`). With K >= 2 points, least squares on
    ``[sin x, cos x]`` recovers the task exactly (MSE 0).

    Version history:
        v0: initial release (MAML's sinusoid distribution).
    """

    id = "MetaRL/Sinusoid-v0"
    task_cls = SinusoidTask
    env_cls = None
    kind = "supervised"
    horizon = None
    source = "Finn et al. 2017 (MAML), section 5.1"

    @property
    def distribution(self) -> UniformSinusoid:
        return UniformSinusoid()

    # -- data --------------------------------------------------------------------------
    def sample_inputs(self, shape: int | Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """Inputs ``x ~ U[-5, 5]`` of ``shape`` (e.g. ``(tasks, K)``) from an explicit generator."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"sample_inputs needs an explicit numpy.random.Generator (e.g. np.random.default_rng(0)), "
                f"got {type(rng).__name__}"
            )
        return rng.uniform(X_LOW, X_HIGH, size=shape)

    @staticmethod
    def task_arrays(tasks: Sequence[SinusoidTask]) -> tuple[np.ndarray, np.ndarray]:
        """``(amplitude, phase)`` arrays of shape ``(tasks,)``."""
        amp = np.array([t.amplitude for t in tasks], dtype=np.float64)
        phase = np.array([t.phase for t in tasks], dtype=np.float64)
        return amp, phase

    def targets(self, tasks: Sequence[SinusoidTask], x: np.ndarray) -> np.ndarray:
        """``y[i, ...] = tasks[i](x[i, ...])`` for ``x`` of shape ``(tasks, ...)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] != len(tasks):
            raise ValueError(f"targets: x has leading dimension {x.shape[0]} for {len(tasks)} tasks")
        amp, phase = self.task_arrays(tasks)
        extra = (1,) * (x.ndim - 1)
        y: np.ndarray = amp.reshape(-1, *extra) * np.sin(x - phase.reshape(-1, *extra))
        return y

    def sample_support(
        self, tasks: Sequence[SinusoidTask], k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``k`` support points per task: ``x ~ U[-5, 5]`` and ``y``, each of shape ``(tasks, k)``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"sample_support: k (support points per task) must be an integer >= 1, got {k!r}")
        x = self.sample_inputs((len(tasks), int(k)), rng)
        return x, self.targets(tasks, x)

    # -- references ---------------------------------------------------------------------
    @staticmethod
    def prior_mean(x: np.ndarray) -> np.ndarray:
        """``E[y | x]`` under the task distribution: ``E[A] * E[sin(x - phase)]``.

        With phase ~ U[0, pi], ``E[sin(x - phase)] = (cos(x - pi) - cos x) / pi = -2 cos(x) / pi``.
        """
        mean_amp = (AMPLITUDE_LOW + AMPLITUDE_HIGH) / 2
        return mean_amp * (-2.0 / math.pi) * np.cos(np.asarray(x, dtype=np.float64))

    @staticmethod
    def prior_variance(x: np.ndarray) -> np.ndarray:
        """``Var[y | x]``: the expected squared error of the prior-mean prediction at ``x``.

        ``E[y^2] = E[A^2] E[sin^2(x - phase)] = E[A^2] / 2`` (sin^2 averages to 1/2 over any
        interval of length pi), minus ``E[y]^2`` (:meth:`prior_mean`).
        """
        lo, hi = AMPLITUDE_LOW, AMPLITUDE_HIGH
        mean_amp_sq = (hi**3 - lo**3) / (3 * (hi - lo))
        return mean_amp_sq / 2 - SinusoidFamily.prior_mean(x) ** 2

    @classmethod
    def prior_mean_mse(cls, x: np.ndarray | None = None) -> float:
        """Expected MSE of the prior-mean predictor, averaged over ``x`` (a grid of query points).

        With ``x=None``, the exact value for ``x ~ U[-5, 5]``: about 3.006.
        """
        if x is None:
            lo, hi = AMPLITUDE_LOW, AMPLITUDE_HIGH
            mean_amp_sq = (hi**3 - lo**3) / (3 * (hi - lo))
            mean_cos_sq = 0.5 + math.sin(2 * X_HIGH) / (2 * (X_HIGH - X_LOW))
            return float(mean_amp_sq / 2 - ((lo + hi) / 2 * 2 / math.pi) ** 2 * mean_cos_sq)
        return float(np.mean(cls.prior_variance(x)))

    # -- no environments ----------------------------------------------------------------
    def make_env(self, task: Task | None = None, **kwargs: Any) -> Any:
        raise TypeError(f"{self.id} is a supervised family and has no Gymnasium env; use its benchmarks' data")

    def make_vector_env(self, tasks: Sequence[Task], **kwargs: Any) -> Any:
        raise TypeError(f"{self.id} is a supervised family and has no Gymnasium env; use its benchmarks' data")
