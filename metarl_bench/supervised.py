"""The supervised few-shot track: protocol, harness and the sinusoid benchmarks.

Supervised few-shot learners follow every agent's two phases (docs/design.md, "Agents") with support and query
sets instead of environments:

- **meta-train** on the benchmark's train tasks through a :class:`SupervisedTrainContext`:
  ``ctx.sample(n_tasks, n_support, n_query)`` returns an :class:`Episode` (support and
  query sets of ``n_tasks`` train tasks) and counts every labelled example against the
  budget; ``ctx.problem`` says how to build the network (``make_net``) and score it
  (``task_losses``).
- **adapt** on test tasks through a :class:`SupervisedAdapter` driven by the harness:

      adapter.reset(support_x, support_y)  # (tasks, K, ...) tensors; forget task state
      adapter.predict(query_x)             # (tasks, Q, ...) -> predictions (tasks, Q, ...)
      adapter.adapt()                      # one inner gradient step on the support sets

The harness, not the agent, computes the query loss: before any step and after each of
``inner_steps`` calls to ``adapt()`` (:func:`adaptation_curve`). Every test task and
independent run is one row of the batch, so 1,000 tasks x runs adapt together.

Records (docs/design.md, "Records") reuse the RL layout: ``returns`` has shape ``(tasks, runs,
inner_steps + 1)`` and holds query MSE; ``x`` is the number of inner gradient steps of
each column (0..10); the columns 0..9 have phase ``"budget"`` and the 10-step column
``"final"``. Hence ``scores["final"]`` is the MSE after 10 steps (the headline, lower is
better), ``scores["online"]`` is the **summed** query MSE before each of the 10 steps
(x = 0..9; the analogue of total return over the budget; divide by 10 for the mean over
the curve) and ``scores["mse_1_step"]`` the MSE after one step. Support sets are fixed
by the benchmark (drawn from its task seed), so all agents and seeds adapt on the same
points; the seed only changes meta-training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, runtime_checkable
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from metarl_bench.agents import Agent, ProgressBar
from metarl_bench.benchmark_defs import INNER_STEPS, QUERY_POINTS, query_grid
from metarl_bench.benchmarks import Benchmark
from metarl_bench.fewshot_nets import MLP
from metarl_bench.recording import TensorBoardLog, build_record, progress_bar, thin_rows
from metarl_bench.results import Record

__all__ = ["INNER_STEPS", "QUERY_POINTS", "query_grid"]  # defined with the benchmarks, used here


# --- data ----------------------------------------------------------------------------------


@dataclass
class Episode:
    """Support and query sets of a batch of tasks; every tensor has leading dimension ``tasks``.

    Regression: inputs ``(tasks, points, 1)`` and targets ``(tasks, points, 1)`` (float32).
    Classification: inputs ``(tasks, points, C, H, W)`` and integer labels ``(tasks, points)``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.support_x.shape[0])


class FewShotProblem(TypingProtocol):
    """What a learner needs to know about a supervised family (sinusoids, image classes)."""

    name: str
    loss: str  # "mse" or "cross_entropy"

    def make_net(self, hidden_sizes: tuple[int, ...], generator: torch.Generator) -> torch.nn.Module:
        """A fresh network, initialised from ``generator``."""
        ...

    def sample(self, n_tasks: int, n_support: int, n_query: int, rng: np.random.Generator) -> Episode:
        """``n_tasks`` train tasks with ``n_support`` support and ``n_query`` query points each."""
        ...


def task_losses(loss: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss of each task, shape ``(tasks,)``, from predictions with leading dimension ``tasks``."""
    if loss == "mse":
        return ((pred - target) ** 2).flatten(1).mean(dim=1)
    if loss == "cross_entropy":
        t, n = target.shape[:2]
        ce = torch.nn.functional.cross_entropy(pred.reshape(t * n, -1), target.reshape(-1), reduction="none")
        return ce.view(t, n).mean(dim=1)
    raise ValueError(f"unknown loss {loss!r}; use 'mse' or 'cross_entropy'")


def task_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of correct labels of each task, shape ``(tasks,)`` (classification)."""
    return (pred.argmax(dim=-1) == target).float().mean(dim=1)


def take_support(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Split points ``(tasks, points, ...)`` into the first ``k`` (support) and the rest (query)."""
    available = int(x.shape[1])
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"K (support points per task) must be an integer >= 1, got {k!r}")
    if k > available:
        raise ValueError(
            f"K={k} support points requested but each task has only {available} points; "
            f"use K <= {available} or supply more points per task"
        )
    return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


class SinusoidProblem:
    """Few-shot sinusoid regression over a fixed list of train tasks (``x ~ U[-5, 5]``, fresh draws)."""

    loss = "mse"

    def __init__(self, family: Any, tasks: list[Any], name: str = "MetaRL/Sinusoid-v0") -> None:
        if not tasks:
            raise ValueError("SinusoidProblem needs at least one train task")
        self.family = family
        self.name = name
        self.amplitude, self.phase = family.task_arrays(tasks)

    def make_net(self, hidden_sizes: tuple[int, ...], generator: torch.Generator) -> torch.nn.Module:
        return MLP(1, tuple(hidden_sizes), 1, generator)

    def sample(self, n_tasks: int, n_support: int, n_query: int, rng: np.random.Generator) -> Episode:
        idx = rng.integers(0, len(self.amplitude), size=n_tasks)
        x = self.family.sample_inputs((n_tasks, n_support + n_query), rng)
        y = self.amplitude[idx, None] * np.sin(x - self.phase[idx, None])
        xt = torch.as_tensor(x, dtype=torch.float32).unsqueeze(-1)
        yt = torch.as_tensor(y, dtype=torch.float32).unsqueeze(-1)
        return Episode(xt[:, :n_support], yt[:, :n_support], xt[:, n_support:], yt[:, n_support:])

    # task knowledge for the reference agents (oracle, prior-mean)
    @staticmethod
    def basis(x: torch.Tensor) -> torch.Tensor:
        """``[sin x, cos x]``: every sinusoid is a linear combination of these two features."""
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)

    def prior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.family.prior_mean(x.double().numpy()), dtype=x.dtype)


# --- contexts and adapters -----------------------------------------------------------------


@dataclass
class SupervisedTrainContext:
    """What a supervised agent gets for meta-training (the counterpart of ``MetaTrainContext``)."""

    problem: FewShotProblem
    seed: int
    shots: int  # K: support points per task for the inner loop
    query_shots: int  # points per task for the outer (meta) loss; K in the MAML paper
    budget_samples: int  # labelled examples meta-training may draw
    benchmark: Benchmark | None = None
    progress: bool = False
    samples: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    tensorboard: TensorBoardLog | None = None

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.started = time.perf_counter()

    @property
    def name(self) -> str:
        return self.benchmark.id if self.benchmark is not None else self.problem.name

    def torch_generator(self, stream: int = 0) -> torch.Generator:
        """A ``torch.Generator`` seeded from this context's seed (``stream`` picks an independent one)."""
        seed = int(np.random.SeedSequence([self.seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(seed)

    def sample(self, n_tasks: int, n_support: int | None = None, n_query: int | None = None) -> Episode:
        """Support/query sets of ``n_tasks`` random train tasks; every point counts against the budget."""
        n_support = self.shots if n_support is None else n_support
        n_query = self.query_shots if n_query is None else n_query
        # classification problems count shots per class (points_per_shot = N ways)
        n = n_tasks * (n_support + n_query) * int(getattr(self.problem, "points_per_shot", 1))
        if self.samples + n > self.budget_samples:
            raise RuntimeError(
                f"meta-training would exceed {self.name}'s budget of {self.budget_samples:,} labelled examples "
                f"(used {self.samples:,}, asked {n:,}); lower the agent's iterations or meta_batch_size"
            )
        self.samples += n
        return self.problem.sample(n_tasks, n_support, n_query, self.rng)

    def record(self, **metrics: Any) -> None:
        """Log training metrics (kept in the record's ``extra.train_log``, thinned to ~100 rows;
        also written to TensorBoard when the run asked for it, x = labelled examples drawn)."""
        row = {"samples": self.samples, "wall_seconds": round(time.perf_counter() - self.started, 3)}
        row.update({k: round(float(v), 6) for k, v in metrics.items()})
        self.log.append(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row)

    def progress_bar(self, total: int | None, unit: str = "it", desc: str | None = None) -> ProgressBar:
        """A bar for the learner's training loop (``total`` steps of ``unit``), shown on stderr
        when the run asked for progress, else one that shows nothing."""
        return progress_bar(self.progress, total, desc or f"meta-training on {self.name}", unit)


@dataclass
class SupervisedEvalContext:
    """What a supervised adapter is built from."""

    problem: FewShotProblem
    seed: int
    shots: int
    inner_steps: int
    benchmark: Benchmark | None = None


class SupervisedAdapter:
    """Adaptation of a batch of test tasks from their support sets. See the module docstring."""

    def reset(self, support_x: torch.Tensor, support_y: torch.Tensor) -> None:
        """Start adapting to ``tasks`` new tasks from their support sets; forget all task state."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions for inputs ``(tasks, points, ...)`` with the current adapted model."""
        raise NotImplementedError

    def adapt(self) -> None:
        """One inner gradient step on the support sets (a no-op for closed-form adapters)."""


class SupervisedAgent(Agent[SupervisedTrainContext, SupervisedEvalContext, SupervisedAdapter]):
    """Base class of the supervised few-shot learners (``kind="supervised"`` in the registry)."""

    # Task knowledge a reference agent needs from the problem (the oracle: "basis"); a
    # benchmark over data (``SupervisedData``) that lacks it is refused by ``supports``.
    needs_task_knowledge: tuple[str, ...] = ()

    def supports(self, benchmark: Any) -> str | None:
        fam = benchmark.family
        if fam.kind != "supervised":
            return f"{self.name} is a supervised few-shot learner; {benchmark.id} is an RL benchmark"
        missing = [k for k in self.needs_task_knowledge if isinstance(fam, SupervisedData) and k not in fam.task_knowledge]
        if missing:
            return (f"{self.name} needs the tasks' {', '.join(missing)}, which {benchmark.id}'s data does not have; "
                    f"use a learner such as maml or scratch")
        return None

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        """Learn from ``ctx.sample(...)`` episodes (default: nothing)."""

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        raise NotImplementedError


def adaptation_curve(
    adapter: SupervisedAdapter, episode: Episode, steps: int, loss: str, accuracy: bool = False
) -> dict[str, np.ndarray]:
    """Query loss (and accuracy) of every task before and after each of ``steps`` ``adapt()`` calls.

    Returns ``{"loss": (tasks, steps + 1)}`` (plus ``"accuracy"`` when asked), measured by
    the harness from ``adapter.predict(query_x)``.
    """
    n = episode.num_tasks
    out = {"loss": np.zeros((n, steps + 1))}
    if accuracy:
        out["accuracy"] = np.zeros((n, steps + 1))
    adapter.reset(episode.support_x, episode.support_y)
    for s in range(steps + 1):
        with torch.no_grad():
            pred = adapter.predict(episode.query_x)
            if pred.shape[0] != n:
                raise ValueError(f"adapter.predict returned {pred.shape[0]} rows for {n} tasks")
            out["loss"][:, s] = task_losses(loss, pred.float(), episode.query_y).double().numpy()
            if accuracy:
                out["accuracy"][:, s] = task_accuracy(pred, episode.query_y).double().numpy()
        if s < steps:
            adapter.adapt()
    return out


# --- the harness for supervised benchmarks -------------------------------------------------


def evaluation_episode(bench: Benchmark) -> Episode:
    """The benchmark's fixed test data: ``tasks * runs`` rows (task-major), K support points
    drawn from the benchmark's task seed, and the query grid."""
    proto = bench.protocol
    fam: Any = bench.family  # a SinusoidFamily
    tasks = bench.test_tasks
    runs = proto.runs_per_task
    rows = [t for t in tasks for _ in range(runs)]
    rng = np.random.default_rng(np.random.SeedSequence([bench.task_seed, 1]))
    assert proto.shots is not None and proto.query_points is not None
    xs, ys = fam.sample_support(rows, proto.shots, rng)
    xq = np.broadcast_to(query_grid(proto.query_points), (len(rows), proto.query_points))
    yq = fam.targets(rows, xq)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32).unsqueeze(-1)

    return Episode(t(xs), t(ys), t(xq), t(yq))


def _round_significand(a: np.ndarray, bits: int = 12) -> np.ndarray:
    """Round float32 values to ``bits`` significand bits (relative error < 2**-bits).

    Records store query MSE this way: the dropped low bits are noise that zlib cannot
    compress, and 2.4e-4 relative precision is far below the standard errors.
    """
    f = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    drop = np.uint32(23 - bits)
    half = np.uint32(1 << (23 - bits - 1))
    rounded = ((f + half) >> drop) << drop
    return rounded.view(np.float32).astype(np.float64)


def evaluate_supervised(
    agent: Agent,
    bench: Benchmark,
    seed: int = 0,
    progress: bool = False,
    train: bool = True,
    on_trained: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: TensorBoardLog | None = None,
) -> Record:
    """Meta-train ``agent`` on ``bench``'s train tasks, adapt it on every test task and run, score it.

    Called by :func:`metarl_bench.harness.evaluate` for families of kind ``"supervised"``
    (the agent is already configured for ``bench``). Without ``train`` (an agent loaded
    from a save) meta-training is skipped; ``on_trained`` is called after it with the
    samples drawn and the seconds taken; ``tensorboard`` receives the training metrics.
    """
    proto = bench.protocol
    if proto.shots is None or proto.inner_steps is None or proto.query_points is None:
        raise ValueError(f"{bench.id}: a supervised benchmark's protocol needs shots, inner_steps and query_points")
    # One intra-op thread: the 1-40-40-1 network's operations are far too small to split,
    # and a second OpenMP thread only spin-waits (it halved throughput on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate_supervised(agent, bench, seed, progress, train, on_trained, tensorboard)
    finally:
        torch.set_num_threads(threads)


@runtime_checkable
class SupervisedData(TypingProtocol):
    """The family-like object of a supervised benchmark over data rather than a registered
    family (:func:`metarl_bench.fewshot_images.fewshot_image_benchmark`): it hands the
    harness the train problem, the fixed test episodes and the metric the record holds."""

    kind: str
    metric: str  # "accuracy": the record holds query accuracy (higher is better)
    task_knowledge: frozenset[str]  # what reference agents may use (e.g. "basis"); empty for images

    def train_problem(self, bench: Benchmark) -> FewShotProblem:
        """Meta-training's problem: episodes drawn afresh from the train classes."""
        ...

    def test_problem(self, bench: Benchmark) -> FewShotProblem:
        """The adapters' problem (loss, network builder) on the test classes."""
        ...

    def test_episode(self, bench: Benchmark) -> Episode:
        """Every test task once, in order, as one batch (``runs_per_task`` must be 1)."""
        ...


def _evaluate_supervised(
    agent: Agent,
    bench: Benchmark,
    seed: int,
    progress: bool,
    train: bool,
    on_trained: Callable[[dict[str, Any]], None] | None,
    tensorboard: TensorBoardLog | None,
) -> Record:
    proto = bench.protocol
    assert proto.shots is not None and proto.inner_steps is not None and proto.query_points is not None
    fam = bench.family
    data = fam if isinstance(fam, SupervisedData) else None
    if data is not None:
        problem, test_problem = data.train_problem(bench), data.test_problem(bench)
        metric, query_shots = data.metric, proto.query_points
    else:  # sinusoids: fresh draws from the train tasks; the query grid at test time
        problem = test_problem = SinusoidProblem(fam, bench.train_tasks, name=bench.id)
        metric, query_shots = "mse", proto.shots
    ss_train, ss_eval = np.random.SeedSequence(seed).spawn(2)
    ctx = SupervisedTrainContext(
        problem,
        seed=int(ss_train.generate_state(1)[0]),
        shots=proto.shots,
        query_shots=query_shots,
        budget_samples=bench.meta_train_steps,
        benchmark=bench,
        progress=progress,
        tensorboard=tensorboard,
    )
    t0 = time.perf_counter()
    if train:  # not for an agent loaded from a save: the evaluation seed is the same either way
        agent.meta_train(ctx)  # type: ignore[arg-type]
    train_wall = time.perf_counter() - t0
    if on_trained is not None:
        on_trained({"env_steps": ctx.samples, "wall_seconds": round(train_wall, 3)})

    ectx = SupervisedEvalContext(
        test_problem, seed=int(ss_eval.generate_state(1)[0]), shots=proto.shots, inner_steps=proto.inner_steps,
        benchmark=bench,
    )
    t1 = time.perf_counter()
    adapter: SupervisedAdapter = agent.adapter(ectx)  # type: ignore[arg-type,assignment]
    episode = data.test_episode(bench) if data is not None else evaluation_episode(bench)
    measured = adaptation_curve(adapter, episode, proto.inner_steps, test_problem.loss, accuracy=metric == "accuracy")
    eval_wall = time.perf_counter() - t1
    loss_curve = measured["loss"]
    if not np.all(np.isfinite(loss_curve)):
        raise FloatingPointError(
            f"{agent.name} on {bench.id}: non-finite query loss during adaptation; lower its inner_lr"
        )
    n_tasks, runs = len(bench.test_tasks), proto.runs_per_task
    shape = (n_tasks, runs, proto.inner_steps + 1)
    if metric == "accuracy":  # fractions of Q*N labels: kept exact
        returns = measured["accuracy"].reshape(shape)
        labels = {"y_label": "query accuracy",
                  "online_definition": "sum of query accuracy before each of the inner steps (x = 0..inner_steps-1)"}
    else:
        returns = _round_significand(loss_curve).reshape(shape)
        labels = {"y_label": "query MSE",
                  "online_definition": "sum of query MSE before each of the inner steps (x = 0..inner_steps-1)"}
    x = np.arange(proto.inner_steps + 1, dtype=np.float64)
    phase = ["budget"] * proto.inner_steps + ["final"]
    record = build_record(
        agent,
        bench,
        seed,
        returns,
        x,
        phase,
        meta_train={
            "env_steps": ctx.samples,  # labelled examples drawn (the supervised analogue of env steps)
            "wall_seconds": round(train_wall, 3),
        },
        evaluation={
            "env_steps": 0,
            "wall_seconds": round(eval_wall, 3),
            "adaptations": n_tasks * runs,
            "inner_steps": proto.inner_steps,
            "shots": proto.shots,
            "query_points": proto.query_points,
        },
        extra={
            "x_label": "inner gradient steps",
            **labels,
            **({"train_log": thin_rows(ctx.log, 100)} if ctx.log else {}),
        },
    )
    if metric == "accuracy":
        record.scores["query_loss_final"] = _mean_se(loss_curve[:, -1].reshape(n_tasks, runs).mean(axis=1))
    else:
        record.scores["mse_1_step"] = _mean_se(returns[:, :, 1].mean(axis=1))
    return record


def _mean_se(per_task: np.ndarray) -> dict[str, float]:
    return {
        "value": float(per_task.mean()),
        "se": float(per_task.std(ddof=1) / math.sqrt(len(per_task))) if len(per_task) > 1 else float("nan"),
    }
