"""Sweeps: benchmarks x agents x seeds, resumable, in a local process pool or on Ray.

A job whose record already exists, validates, and matches the benchmark's current task
hash is skipped; every other job runs and writes its record atomically when it finishes,
so killing a sweep loses only the jobs in flight and rerunning continues where it stopped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl_bench.results import RecordError, load_record, record_path


@dataclass(frozen=True)
class Job:
    benchmark: str
    agent: str
    seed: int
    config: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return f"{self.agent} on {self.benchmark} seed {self.seed}"


def plan(
    benchmarks: Iterable[str], agents: Iterable[str], seeds: Iterable[int], config: dict[str, Any] | None = None
) -> tuple[list[Job], list[str]]:
    """All (benchmark, agent, seed) jobs the agents support, and the skipped pairs with reasons."""
    from metarl_bench.agents import agent as make_agent
    from metarl_bench.benchmarks import benchmark as get_benchmark

    jobs: list[Job] = []
    skipped: list[str] = []
    cfg = tuple(sorted((config or {}).items()))
    for b in benchmarks:
        bench = get_benchmark(b)
        for a in agents:
            reason = make_agent(a, **dict(cfg)).supports(bench)
            if reason is not None:
                skipped.append(f"{a} on {b}: {reason}")
                continue
            jobs.extend(Job(b, a, int(s), cfg) for s in seeds)
    return jobs, skipped


def is_done(job: Job, results: str | Path) -> bool:
    """True when a valid record of ``job`` for the benchmark's current task lists exists."""
    from metarl_bench.benchmarks import benchmark as get_benchmark

    path = record_path(results, job.benchmark, job.agent, job.seed)
    if not path.exists():
        return False
    try:
        rec = load_record(path)
    except RecordError:
        return False  # unreadable: rerun (the new record replaces it atomically)
    return bool(rec.benchmark.get("task_hash") == get_benchmark(job.benchmark).task_hash)


def run_job(job: Job, results: str) -> str:
    """Evaluate one job and write its record; returns the record path."""
    import metarl_bench
    from metarl_bench.harness import evaluate

    if os.environ.get("METARL_BENCH_WORKER") == "1":
        import torch

        torch.set_num_threads(1)
    agent = metarl_bench.agent(job.agent, **dict(job.config))
    rec = evaluate(agent, job.benchmark, seed=job.seed, results=results)
    return str(rec.path(results))


def _init_worker() -> None:
    os.environ["METARL_BENCH_WORKER"] = "1"
    # Ctrl-C reaches the whole process group. Only the parent acts on it (it stops the pool);
    # a worker would otherwise report KeyboardInterrupt as its job's failure and take the next job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: drop the queued jobs and end the workers (their jobs in flight are lost).

    Without this, leaving the ``with`` block on KeyboardInterrupt waits for every queued job.
    A worker ended mid-write leaves at most a ``.tmp-*`` file, which the loaders ignore.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def run_sweep(
    jobs: list[Job],
    results: str | Path,
    workers: int = 1,
    force: bool = False,
    backend: str = "local",
    on_done: Callable[[Job, str | None, BaseException | None], None] | None = None,
) -> tuple[list[str], list[tuple[Job, BaseException]]]:
    """Run ``jobs`` (skipping finished ones unless ``force``). Returns written paths and failures."""
    results = str(results)
    todo = [j for j in jobs if force or not is_done(j, results)]
    written: list[str] = []
    failed: list[tuple[Job, BaseException]] = []

    def done(job: Job, path: str | None, err: BaseException | None) -> None:
        if err is None and path is not None:
            written.append(path)
        elif err is not None:
            failed.append((job, err))
        if on_done is not None:
            on_done(job, path, err)

    if backend == "ray":
        _run_ray(todo, results, done)
    elif workers <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                done(job, run_job(job, results), None)
            except Exception as exc:  # noqa: BLE001 - reported per job, the sweep goes on
                done(job, None, exc)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures: dict[Future[str], Job] = {pool.submit(run_job, j, results): j for j in todo}
            pending = set(futures)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        err = fut.exception()
                        done(futures[fut], None if err else fut.result(), err)
            except BaseException:  # KeyboardInterrupt, SystemExit: finished records are kept
                _stop_pool(pool)
                raise
    return written, failed


def _run_ray(todo: list[Job], results: str, done: Callable[[Job, str | None, BaseException | None], None]) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install 'metarl-bench[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"))  # a cluster if RAY_ADDRESS is set, else local
    remote = ray.remote(num_cpus=1)(run_job)
    refs = {remote.remote(j, results): j for j in todo}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        job = refs[ready[0]]
        try:
            done(job, ray.get(ready[0]), None)
        except Exception as exc:  # noqa: BLE001
            done(job, None, exc)
