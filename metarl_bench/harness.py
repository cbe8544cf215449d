"""The evaluation harness: it, not the agent, owns the measurement.

For each test task and independent run it runs stages of E parallel episodes until the
experience budget B is spent, calling ``adapter.adapt()`` after each stage, then V final
evaluation episodes (rounded up to whole stages) with no adaptation. Every episode is
recorded with x = episodes of experience its run had before it started. All test tasks x
runs x the E episodes of a stage step together in one batched vector env; the harness
counts every environment step itself, in meta-training too.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_bench.agents import Adapter, Agent, DivergenceError, ProgressBar, Transition, checkpoint_folder
from metarl_bench.benchmarks import Benchmark
from metarl_bench.benchmarks import benchmark as get_benchmark
from metarl_bench.family import Family
from metarl_bench.recording import (
    TensorBoardLog,
    build_record,
    check_tensorboard,
    progress_bar,
    tensorboard_run_dir,
    thin_rows,
)
from metarl_bench.results import (
    Record,
    RecordError,
    as_json,
    check_variant_name,
    config_differences,
    encode_array,
    format_differences,
    load_record,
    record_path,
    variant_name,
)
from metarl_bench.tasks import Task


class MetaTrainBudgetExceeded(RuntimeError):
    """An agent asked for more meta-training environment steps than the benchmark allows."""


class NotSupported(ValueError):
    """The agent cannot run on this benchmark (e.g. a bandit algorithm on navigation)."""


class _CountingVectorEnv(gym.vector.VectorWrapper):
    def __init__(self, env: gym.vector.VectorEnv, ctx: MetaTrainContext) -> None:
        super().__init__(env)
        self._ctx = ctx

    def step(self, actions: Any) -> Any:
        self._ctx.count(self.num_envs)
        return self.env.step(actions)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        self.env.set_tasks(tasks)  # type: ignore[attr-defined]


class _CountingEnv(gym.Wrapper):
    def __init__(self, env: gym.Env, ctx: MetaTrainContext) -> None:
        super().__init__(env)
        self._ctx = ctx

    def step(self, action: Any) -> Any:
        self._ctx.count(1)
        return self.env.step(action)


@dataclass
class MetaTrainContext:
    """What an agent gets for meta-training: train tasks, counted envs, its budget, seeds.

    ``progress_bar(total, unit)`` gives the learner a bar for its training loop (shown when
    the run asked for progress); ``record(**metrics)`` logs a row of training metrics.
    """

    benchmark: Benchmark
    seed: int
    progress: bool = False
    steps: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    tensorboard: TensorBoardLog | None = None

    def __post_init__(self) -> None:
        self.rng: np.random.Generator = np.random.default_rng(self.seed)
        self.started: float = time.perf_counter()

    @property
    def family(self) -> Family:
        return self.benchmark.family

    @property
    def train_tasks(self) -> list[Task]:
        return self.benchmark.train_tasks

    @property
    def budget_steps(self) -> int:
        return self.benchmark.meta_train_steps

    @property
    def steps_left(self) -> int:
        return self.budget_steps - self.steps

    def count(self, n: int) -> None:
        if self.steps + n > self.budget_steps:
            raise MetaTrainBudgetExceeded(
                f"meta-training would exceed {self.benchmark.id}'s budget of {self.budget_steps:,} env steps "
                f"(used {self.steps:,}, asked {n:,}); lower the agent's iterations or batch sizes"
            )
        self.steps += n

    def make_vector_env(self, tasks: Sequence[Task], **kwargs: Any) -> gym.vector.VectorEnv:
        """A batched env over ``tasks`` whose every step is counted against the budget."""
        return _CountingVectorEnv(self.family.make_vector_env(tasks, **kwargs), self)

    def make_env(self, task: Task | None = None, **kwargs: Any) -> gym.Env:
        return _CountingEnv(self.family.make_env(task, **kwargs), self)

    def record(self, **metrics: Any) -> None:
        """Log training metrics (kept in the record's ``extra.train_log``, thinned to ~200 rows;
        also written to TensorBoard when the run asked for it, x = env steps)."""
        row = {"env_steps": self.steps, "wall_seconds": round(time.perf_counter() - self.started, 3), **metrics}
        row = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in row.items()}
        self.log.append(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row)

    def progress_bar(self, total: int | None, unit: str = "it", desc: str | None = None) -> ProgressBar:
        """A bar for the learner's training loop (``total`` steps of ``unit``), shown on stderr
        when the run asked for progress, else one that shows nothing."""
        return progress_bar(self.progress, total, desc or f"meta-training on {self.benchmark.id}", unit)


@dataclass
class EvalContext:
    """What an adapter is built from: spaces, horizon, protocol and its own seed."""

    benchmark: Benchmark
    seed: int
    observation_space: gym.Space
    action_space: gym.Space

    def __post_init__(self) -> None:
        self.rng: np.random.Generator = np.random.default_rng(self.seed)

    @property
    def family(self) -> Family:
        return self.benchmark.family

    @property
    def horizon(self) -> int | None:
        return self.benchmark.family.horizon


class RecordConflict(ValueError):
    """Saving would replace a record of another agent or configuration."""


def check_seed(seed: Any) -> int:
    """``seed`` as an int if it is an integer >= 0, else ``ValueError`` naming it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed {seed!r} is not allowed: seeds are integers >= 0")
    return int(seed)


@dataclass(frozen=True)
class Identity:
    """What a record of ``agent`` on ``benchmark`` is, besides the benchmark and seed: the
    agent's name, its resolved config, the variant (folder and row) name, and whether that
    name was chosen by the user rather than derived from the config."""

    agent: str
    config: dict[str, Any]
    variant: str
    named: bool
    changed: dict[str, Any]  # the settings that differ from the benchmark's default config
    field_defaults: dict[str, Any]


def _default_config(agent: Agent, bench: Benchmark) -> dict[str, Any]:
    """The config ``agent``'s class resolves on ``bench`` with no overrides.

    A registered agent is built afresh by name. Any other agent is copied (shallowly) with
    its overrides cleared rather than built again, because its constructor may need
    arguments (a model it wraps, say); the copy's ``configure`` runs the class's own
    resolution, and ``agent`` itself is left as it was.
    """
    from metarl_bench.agents import agent as make_agent
    from metarl_bench.agents import agent_names

    if agent.name in agent_names():
        default = make_agent(agent.name)
    else:
        default = copy.copy(agent)
        default.overrides = {}
    default.configure(bench)
    return as_json(default.resolved_config())


def resolve_identity(agent: Agent, bench: Benchmark, name: str | None = None) -> Identity:
    """The identity of ``agent``'s record on ``bench``; configures ``agent`` for ``bench``.

    The config is compared with the one the same agent gets with no overrides (dataclass
    defaults, then the benchmark's tuned values); the settings that differ name the
    variant (``ucb1@c=0.5``) unless ``name`` is given. An override equal to the default
    gives the default record, named after the agent.
    """
    agent.configure(bench)
    config = as_json(agent.resolved_config())
    base = _default_config(agent, bench)
    changed = {k: v for k, v in config.items() if base.get(k, object()) != v}
    field_defaults: dict[str, Any] = {}
    if dataclasses.is_dataclass(agent.config):
        for f in dataclasses.fields(agent.config):
            if f.default is not dataclasses.MISSING:
                field_defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                field_defaults[f.name] = f.default_factory()
    if name is None or (name == agent.name and not changed):
        return Identity(agent.name, config, variant_name(agent.name, changed), False, changed,
                        as_json(field_defaults))
    from metarl_bench.agents import agent_names

    check_variant_name(name)
    if name == agent.name:
        raise ValueError(
            f"--name {name!r} is the default configuration's name, but this config differs from it "
            f"({', '.join(sorted(changed))}); choose another name"
        )
    if name in agent_names():
        raise ValueError(f"--name {name!r} is the name of another agent; choose another name")
    return Identity(agent.name, config, name, True, changed, as_json(field_defaults))


def check_slot(path: Path, ident: Identity, replace: bool = False) -> str | None:
    """Whether a record of ``ident`` may be written at ``path``.

    Returns None when the place is free, holds an unreadable file, or holds a record of
    the same agent and config (a rerun); a note when it holds a record of the same agent
    whose config differs in a place named after the config (the benchmark's defaults
    changed since, so that record is stale and is replaced); raises
    :class:`RecordConflict` when it holds another agent's record, or another config
    under a user-chosen name (unless ``replace``).
    """
    if not path.exists():
        return None
    try:
        old = load_record(path)
    except RecordError:
        return None  # unreadable: the new record replaces it
    if old.agent_name != ident.agent:
        raise RecordConflict(
            f"{path} holds a record of agent {old.agent_name!r}; it is never replaced by agent "
            f"{ident.agent!r}. Choose another --name."
        )
    diff = config_differences(old.agent.get("config") or {}, ident.config, ident.field_defaults)
    if not diff:
        return None
    if ident.named and not replace:
        raise RecordConflict(
            f"{path} holds {ident.variant!r} with another config ({format_differences(diff)}); "
            f"choose another --name, or pass --force to replace it"
        )
    return f"{path} was written with another config ({format_differences(diff)}); it is replaced"


def evaluate(
    agent: Agent,
    benchmark: Benchmark | str,
    seed: int | None = None,
    progress: bool = False,
    results: str | Path | None = None,
    name: str | None = None,
    replace: bool = False,
    checkpoints: str | Path | None = None,
    save_agent: str | Path | None = None,
    tensorboard: str | Path | None = None,
) -> Record:
    """Meta-train ``agent`` on ``benchmark``'s train tasks, then run the protocol on its test tasks.

    ``seed`` (default 0, or the seed a loaded agent was trained with) seeds meta-training
    and evaluation alike (two independent streams spawned from it).

    With ``results`` set, the record is also written (atomically) under that folder, at
    ``<results>/<benchmark id>/<variant>/seed-<n>.json``: the variant is the agent's name
    for its default config on the benchmark, else ``name`` or a name derived from the
    settings that differ (see :func:`resolve_identity`). Before any work, the place is
    checked (:func:`check_slot`: a record of another agent, or of another config under a
    chosen ``name`` unless ``replace``, is never overwritten) and the folder is checked
    to be writable.

    With ``save_agent`` (a folder), the meta-trained agent is saved there after
    meta-training (see :mod:`metarl_bench.saving`); :func:`metarl_bench.saving.load_agent`
    restores it. An agent so loaded is not meta-trained again: its record counts 0
    meta-training steps, says where it was loaded from, and with the same ``seed`` its
    scores are those of the run that saved it. It is refused on another benchmark (id or
    task lists), and with ``results`` on another seed than its own (a record's seed is its
    meta-training seed).

    With ``tensorboard`` (a folder), the training metrics the agent records also go to
    TensorBoard, in Stable-Baselines3's layout (:func:`~metarl_bench.recording.tensorboard_run_dir`), x = env
    steps (labelled examples on the supervised track).
    With ``progress``, meta-training and evaluation show progress bars on stderr.

    If meta-training diverges, the agent's last good parameters are saved (see
    :class:`~metarl_bench.agents.DivergenceError`) in ``checkpoints``, else in
    ``<results>/.checkpoints``, else in the system's temporary folder, and the error names the file.
    """
    from metarl_bench import saving

    loaded = agent.loaded_from
    seed = check_seed((loaded.seed if loaded is not None else 0) if seed is None else seed)
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    reason = agent.supports(bench)
    if reason is not None:
        raise NotSupported(f"agent {agent.name!r} does not run on {bench.id}: {reason}")
    if loaded is not None:
        loaded.check_benchmark(bench)
        if results is not None and seed != loaded.seed:
            raise ValueError(
                f"the agent loaded from {loaded.folder} was meta-trained with seed {loaded.seed}, and a record's seed "
                f"is its meta-training seed; evaluate it with seed={loaded.seed}, or without results to try seed {seed}"
            )
        if save_agent is not None:
            raise ValueError(
                f"the agent was loaded from {loaded.folder}, which already holds it; copy that folder instead of "
                "saving it again"
            )
        if name is None and loaded.named:
            name = loaded.variant
    ident = resolve_identity(agent, bench, name)
    path = record_path(results, bench.id, ident.variant, seed) if results is not None else None
    if path is not None:
        check_slot(path, ident, replace)
        check_writable(path.parent)
    agent.configure(bench)
    agent.check_benchmark(bench)  # a config that cannot run here fails before meta-training
    on_trained = None
    if save_agent is not None:
        why = agent.check_savable()
        if why is not None:
            raise ValueError(why)
        saving.check_save_folder(save_agent)
        folder = save_agent

        def on_trained(meta_train: dict[str, Any]) -> None:
            saving.save_agent(agent, folder, bench, seed, ident, meta_train)

    tb = None
    if tensorboard is not None and loaded is None:
        check_tensorboard()
        x_key = "samples" if bench.family.kind == "supervised" else "env_steps"
        tb = TensorBoardLog(tensorboard_run_dir(tensorboard, bench.id, ident.variant, seed), x_key=x_key)
    try:
        if bench.family.kind == "supervised":
            # imported here, not at the top, because the supervised track loads torch (about a
            # second) that RL evaluations of reference agents and the tools importing this module need not
            from metarl_bench.supervised import evaluate_supervised

            record = evaluate_supervised(agent, bench, seed=seed, progress=progress, train=loaded is None,
                                         on_trained=on_trained, tensorboard=tb)
        else:
            record = _evaluate_rl(agent, bench, seed, progress, train=loaded is None, on_trained=on_trained,
                                  tensorboard=tb)
    except DivergenceError as exc:  # keep the last good parameters where the records are
        exc.save(checkpoint_folder(results, checkpoints), seed, ident.variant)
        raise
    finally:
        if tb is not None:
            tb.close()
    if loaded is not None:
        record.meta_train = loaded.meta_train_summary()
    record.agent["config"] = ident.config
    if ident.variant != agent.name:
        record.agent["variant"] = ident.variant
        record.agent["changed"] = ident.changed
    if path is not None:
        check_slot(path, ident, replace)  # again: another process may have written it meanwhile
        record.save(results)  # type: ignore[arg-type]
    return record


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it, so a read-only or full disk fails before the work."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=".tmp-", dir=folder) as f:
        f.write(b"x")
        f.flush()


def _evaluate_rl(
    agent: Agent,
    bench: Benchmark,
    seed: int,
    progress: bool,
    train: bool = True,
    on_trained: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: TensorBoardLog | None = None,
) -> Record:
    ss_train, ss_eval = np.random.SeedSequence(seed).spawn(2)
    ctx = MetaTrainContext(bench, seed=int(ss_train.generate_state(1)[0]), progress=progress, tensorboard=tensorboard)
    t0 = time.perf_counter()
    if train:  # not for an agent loaded from a save: the evaluation seed is the same either way
        agent.meta_train(ctx)
    train_wall = time.perf_counter() - t0
    if on_trained is not None:
        on_trained({"env_steps": ctx.steps, "wall_seconds": round(train_wall, 3)})

    proto = bench.protocol
    fam = bench.family
    probe = fam.make_vector_env(bench.test_tasks[:1], expose_task=agent.sees_task)
    eval_seed = int(ss_eval.generate_state(1)[0])
    ectx = EvalContext(bench, eval_seed, probe.single_observation_space, probe.single_action_space)
    adapter = agent.adapter(ectx)
    stage = min(int(adapter.episodes_per_stage), proto.budget_episodes)
    if stage < 1 or proto.budget_episodes % stage:
        raise ValueError(
            f"agent {agent.name!r} adapts every {adapter.episodes_per_stage} episodes, which does not divide "
            f"{bench.id}'s budget of {proto.budget_episodes} episodes; choose a stage size that divides it"
        )
    n_budget = proto.budget_episodes // stage
    n_final = math.ceil(proto.final_episodes / stage)
    t1 = time.perf_counter()
    chunks, env_steps = [], 0
    by_success = bench.episode_score == "success"  # score each episode by success (Meta-World), not return
    success_chunks: list[np.ndarray] = []
    tasks = bench.test_tasks
    per_chunk = max(1, proto.max_envs // (proto.runs_per_task * stage))
    bar = _progress(progress, math.ceil(len(tasks) / per_chunk) * (n_budget + n_final), f"{agent.name} on {bench.id}")
    for c, start in enumerate(range(0, len(tasks), per_chunk)):
        chunk_seed = eval_seed + 1_000_003 * c
        ret, steps = run_chunk(
            adapter, fam, tasks[start : start + per_chunk], proto.runs_per_task, stage, n_budget, n_final,
            chunk_seed, agent.sees_task, bar, success_out=success_chunks if by_success else None,
        )
        chunks.append(ret)
        env_steps += steps
    if bar is not None:
        bar.close()
    returns = np.concatenate(chunks, axis=0)  # (tasks, runs, episodes)
    eval_wall = time.perf_counter() - t1
    x = np.concatenate([np.repeat(np.arange(n_budget) * stage, stage), np.full(n_final * stage, n_budget * stage)])
    phase = ["budget"] * (n_budget * stage) + ["final"] * (n_final * stage)
    extra: dict[str, Any] = {"train_log": thin_rows(ctx.log, 200)} if ctx.log else {}
    scored = returns
    if by_success:  # the record's episodes hold successes (0/1); the returns are kept beside them
        scored = np.concatenate(success_chunks, axis=0)
        budget = np.array([p == "budget" for p in phase])
        extra["episode_returns"] = encode_array(returns)
        extra["return_scores"] = {
            "online": float(returns[:, :, budget].sum(axis=2).mean()),
            "final": float(returns[:, :, ~budget].mean()) if (~budget).any() else float("nan"),
        }
    record = build_record(
        agent,
        bench,
        seed,
        scored,
        x,
        phase,
        meta_train={"env_steps": ctx.steps, "wall_seconds": round(train_wall, 3)},
        evaluation={"env_steps": env_steps, "wall_seconds": round(eval_wall, 3), "episodes_per_stage": stage},
        extra=extra,
    )
    if by_success:
        record.benchmark["episode_score"] = "success"
    return record


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    return progress_bar(True, total, desc, unit="stage")


def run_chunk(
    adapter: Adapter,
    fam: Family,
    tasks: list[Task],
    runs: int,
    stage: int,
    n_budget: int,
    n_final: int,
    seed: int,
    sees_task: bool,
    bar: Any,
    success_out: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Run every stage of ``tasks`` x ``runs``; return the episode returns ``(tasks, runs,
    episodes)`` and the env steps. With ``success_out``, also append whether each episode
    succeeded (``info["success"]`` 1 at any of its steps; same shape, 0 or 1) to it."""
    n_groups = len(tasks) * runs
    groups = np.repeat(np.arange(n_groups), stage)
    sub_tasks = [tasks[g // runs] for g in groups]
    venv = fam.make_vector_env(sub_tasks, expose_task=sees_task)
    n = venv.num_envs
    horizon = fam.horizon or 100_000
    returns = np.zeros((n_groups, (n_budget + n_final) * stage))
    successes = np.zeros_like(returns)
    adapter.reset(groups)
    # Families with costly physics let finished sub-envs wait for the stage's end unstepped.
    pause = getattr(venv, "pause_until_reset", None) if getattr(fam, "pause_finished", False) else None  # duck-typed families may lack it
    env_steps = 0
    for s in range(n_budget + n_final):
        obs, _ = venv.reset(seed=seed if s == 0 else None)
        active = np.ones(n, dtype=bool)
        ret = np.zeros(n)
        hit = np.zeros(n, dtype=bool)
        t = 0
        while active.any():
            if t > horizon:
                raise RuntimeError(f"{fam.id}: an episode ran past the horizon {horizon}; the env never ended it")
            action = adapter.act(obs)
            next_obs, reward, terminated, truncated, info = venv.step(action)
            reward = np.asarray(reward, dtype=np.float64)
            if success_out is not None and "success" in info:
                flag = np.asarray(info["success"], dtype=np.float64) >= 1.0
                hit |= active & flag & np.asarray(info.get("_success", True), dtype=bool)
            adapter.observe(
                Transition(obs, action, reward, next_obs, terminated, truncated, active, np.full(n, t), s >= n_budget)
            )
            ret += np.where(active, reward, 0.0)
            env_steps += int(active.sum())
            active = active & ~(terminated | truncated)
            if pause is not None:
                pause(~active)
            obs = next_obs
            t += 1
        returns[:, s * stage : (s + 1) * stage] = ret.reshape(n_groups, stage)
        successes[:, s * stage : (s + 1) * stage] = hit.reshape(n_groups, stage)
        if s < n_budget:
            adapter.adapt()
        if bar is not None:
            bar.update(1)
    venv.close()
    if success_out is not None:
        success_out.append(successes.reshape(len(tasks), runs, -1))
    return returns.reshape(len(tasks), runs, -1), env_steps
