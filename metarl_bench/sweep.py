"""Sweeps: benchmarks x agents x seeds, resumable, in a local process pool or on Ray.

A job is done when its place (``<results>/<benchmark>/<variant>/seed-<n>.json``) holds a
valid record of the same agent with the same resolved config, for the benchmark's
current task lists. Every other job runs and writes its record atomically when it
finishes, so killing a sweep loses only the jobs in flight and rerunning continues where
it stopped. A record in the job's place whose config differs is stale (the benchmark's
defaults changed since it was written) and is redone; one of another agent, or of
another config under a user-chosen ``--name``, is never overwritten.

Before running a job a process claims it with an exclusive ``flock`` on a hidden
``.seed-<n>.claim`` file beside the record. The kernel drops the lock when the process
ends, however it ends, so a claim never goes stale; two sweeps sharing a results folder
never run the same job twice: a job claimed elsewhere is put back to the end of the
queue, then waited for, and skipped if the other process wrote its record.

Pool workers end with their parent: on Linux the kernel sends them SIGTERM when the
parent dies (``PR_SET_PDEATHSIG``), and elsewhere a watcher thread in each worker exits
once the parent is gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl_bench.recording import check_tensorboard
from metarl_bench.results import (
    RecordError,
    config_differences,
    format_differences,
    load_record,
    record_path,
    signals_deferred,
)

RAY_INIT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Job:
    benchmark: str
    agent: str
    seed: int
    config: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    name: str | None = None  # a user-chosen variant name (``--name``); None: derived from the config
    replace: bool = False  # replace a record of another config under ``name`` (``--force``)

    def key(self) -> str:
        """A hashable key (the config may hold lists)."""
        return json.dumps([self.benchmark, self.agent, self.seed, self.config, self.name], default=str)

    def __str__(self) -> str:
        who = self.agent if self.name is None else f"{self.agent} ({self.name})"
        return f"{who} on {self.benchmark} seed {self.seed}"


class JobBusy(RuntimeError):
    """The job is claimed by another live process."""


class BackendError(RuntimeError):
    """The sweep's backend (Ray) is missing or did not start."""


def check_seeds(seeds: Iterable[Any]) -> tuple[list[int], list[int]]:
    """The distinct seeds in order, and the repeated ones; ``ValueError`` naming a bad seed."""
    from metarl_bench.harness import check_seed

    out: list[int] = []
    repeated: list[int] = []
    for s in seeds:
        s = check_seed(s)
        (repeated if s in out else out).append(s)
    return out, sorted(set(repeated))


def plan(
    benchmarks: Iterable[str],
    agents: Iterable[str],
    seeds: Iterable[int],
    config: dict[str, Any] | None = None,
    name: str | None = None,
    replace: bool = False,
) -> tuple[list[Job], list[str]]:
    """All (benchmark, agent, seed) jobs the agents support, and the skipped pairs with reasons.

    Seeds must be integers >= 0 (``ValueError`` naming the first that is not); a repeated
    seed gives one job. ``name`` (a variant name of the user's) needs exactly one agent;
    ``replace`` lets its jobs replace records of another config stored under that name.
    """
    from metarl_bench.agents import agent as make_agent
    from metarl_bench.benchmarks import benchmark as get_benchmark

    seeds, _ = check_seeds(seeds)
    agents = list(dict.fromkeys(agents))
    if name is not None and len(agents) != 1:
        raise ValueError(f"--name {name!r} names one agent's config; give one --agent, not {len(agents)}")
    jobs: list[Job] = []
    skipped: list[str] = []
    cfg = tuple(sorted((config or {}).items()))
    for b in dict.fromkeys(benchmarks):
        bench = get_benchmark(b)
        for a in agents:
            reason = make_agent(a, **dict(cfg)).supports(bench)
            if reason is not None:
                skipped.append(f"{a} on {b}: {reason}")
                continue
            jobs.extend(Job(b, a, s, cfg, name, replace) for s in seeds)
    return jobs, skipped


_IDENTITIES: dict[str, Any] = {}


def identity(job: Job) -> Any:
    """The job's record identity (:class:`metarl_bench.harness.Identity`), cached per config."""
    from metarl_bench.agents import agent as make_agent
    from metarl_bench.benchmarks import benchmark as get_benchmark
    from metarl_bench.harness import resolve_identity

    key = json.dumps([job.benchmark, job.agent, job.config, job.name], default=str)
    if key not in _IDENTITIES:
        agent = make_agent(job.agent, **dict(job.config))
        _IDENTITIES[key] = resolve_identity(agent, get_benchmark(job.benchmark), job.name)
    return _IDENTITIES[key]


def job_path(job: Job, results: str | Path) -> Path:
    return record_path(results, job.benchmark, identity(job).variant, job.seed)


def job_status(job: Job, results: str | Path) -> tuple[bool, str | None]:
    """``(done, why not)``: done when the job's place holds a valid record of the same agent
    and config for the benchmark's current task lists; otherwise a note on what is there
    (None when nothing is)."""
    from metarl_bench.benchmarks import benchmark as get_benchmark

    ident = identity(job)
    path = job_path(job, results)
    if not path.exists():
        return False, None
    try:
        rec = load_record(path)
    except RecordError as exc:
        return False, f"{exc}; it is rewritten"  # unreadable: the new record replaces it atomically
    if rec.agent_name != ident.agent:
        return False, f"{path} holds a record of agent {rec.agent_name!r}, which is never replaced"
    diff = config_differences(rec.agent.get("config") or {}, ident.config, ident.field_defaults)
    if diff:
        return False, f"{path} was written with another config ({format_differences(diff)})"
    if rec.benchmark.get("task_hash") != get_benchmark(job.benchmark).task_hash:
        return False, f"{path} is for an older task list of {job.benchmark}; it is redone"
    return True, None


def is_done(job: Job, results: str | Path) -> bool:
    """True when a valid record of ``job`` (same agent and config) for the current task lists exists."""
    return job_status(job, results)[0]


# --- claims ----------------------------------------------------------------------------------


@contextmanager
def claim(path: Path, wait: bool) -> Iterator[None]:
    """Hold an exclusive claim on the job whose record goes to ``path`` while the block runs.

    The claim is an ``flock`` on ``.<record name>.claim`` beside the record (holding the
    claimant's host and pid, for messages). Without ``wait``, a claim held by another
    process raises :class:`JobBusy`; with it, the call blocks until that process is done.
    Where ``fcntl`` is missing (Windows), jobs are not claimed.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = path.with_name(f".{path.stem}.claim")
    lock.parent.mkdir(parents=True, exist_ok=True)

    def is_current(fd: int) -> bool:  # the file we locked is still the claim (not removed by its holder)
        try:
            return os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            return False

    fd: int | None = None
    held = False
    # One try around acquiring too: a Ctrl-C between creating the claim file and locking it
    # (a sweep is often stopped right after a record is written, as the next claim starts)
    # must not leave the file behind.
    try:
        while True:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                fd = None
                raise JobBusy(f"{path} is being computed by {holder}") from None
            if is_current(fd):
                held = True
                break
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
            fd = None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        if fd is not None:
            if not held:  # interrupted before the lock was ours: remove the file only if nobody holds it
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = is_current(fd)
                except OSError:
                    pass
            if held:
                try:
                    os.unlink(lock)
                except FileNotFoundError:
                    pass
            os.close(fd)


def run_job(
    job: Job,
    results: str,
    wait: bool = True,
    force: bool = False,
    checkpoints: str | None = None,
    tensorboard: str | None = None,
) -> str:
    """Claim the job, evaluate it unless it is done by now (or ``force``), and write its record;
    returns its path. Without ``wait``, raises :class:`JobBusy` when another process holds the claim.
    A diverging learner's last good parameters go to ``checkpoints`` (default: beside the records);
    with ``tensorboard`` (a folder), its training metrics also go to TensorBoard there
    (``<tensorboard>/<benchmark id>/<variant>_seed<n>_<k>``, as :func:`metarl_bench.evaluate` writes them).
    """
    import metarl_bench
    from metarl_bench.harness import evaluate

    if os.environ.get("METARL_BENCH_WORKER") == "1":
        import torch

        torch.set_num_threads(1)
    path = job_path(job, results)
    with claim(path, wait):
        if not force and is_done(job, results):  # written by another process while we planned or waited
            return str(path)
        agent = metarl_bench.agent(job.agent, **dict(job.config))
        rec = evaluate(agent, job.benchmark, seed=job.seed, results=results, name=job.name, replace=job.replace,
                       checkpoints=checkpoints, tensorboard=tensorboard)
        return str(rec.path(results))


# --- the process pool -----------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` ends: the kernel's parent-death signal on Linux, and a
    watcher thread (also on Linux, in case the parent died before the signal was set)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no usable libc: the watcher does it
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="metarl-bench-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    os.environ["METARL_BENCH_WORKER"] = "1"
    # Ctrl-C reaches the whole process group. Only the parent acts on it (it stops the pool);
    # a worker would otherwise report KeyboardInterrupt as its job's failure and take the next job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's SIGTERM handler is not inherited in effect
    _die_with_parent(parent)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: drop the queued jobs and end the workers (their jobs in flight are lost).

    Without this, shutting the pool down on KeyboardInterrupt would wait for every queued job.
    A worker ended mid-write leaves at most a ``.tmp-*`` file, which the loaders ignore.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pool_size(workers: int, jobs: int) -> int:
    """``workers`` capped at the number of jobs and of CPUs; ``ValueError`` unless it is >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be an integer >= 1, got {workers!r}")
    return max(1, min(workers, jobs, cpu_count()))


def run_sweep(
    jobs: list[Job],
    results: str | Path,
    workers: int = 1,
    force: bool = False,
    backend: str = "local",
    on_done: Callable[[Job, str | None, BaseException | None], None] | None = None,
    checkpoints: str | None = None,
    tensorboard: str | Path | None = None,
) -> tuple[list[str], list[tuple[Job, BaseException]]]:
    """Run ``jobs`` (skipping finished ones unless ``force``). Returns written paths and failures.
    ``checkpoints`` is where diverging learners leave their last good parameters (default:
    ``<results>/.checkpoints``). With ``tensorboard`` (a folder), every job that runs writes
    its training metrics there too, one run folder per job (see :func:`run_job`); without
    the tensorboard package that is refused before any job runs.

    Jobs claimed by another process are run (or, once that process wrote them, skipped)
    after the rest.
    """
    results = str(results)
    if tensorboard is not None:
        check_tensorboard()
        tensorboard = str(tensorboard)
    todo = list({j.key(): j for j in jobs if force or not is_done(j, results)}.values())
    n_workers = pool_size(workers, max(1, len(todo)))
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
        _run_ray(todo, results, done, force, checkpoints, tensorboard)
    elif n_workers <= 1:
        busy: list[Job] = []
        for job in todo:
            try:
                done(job, run_job(job, results, wait=False, force=force, checkpoints=checkpoints,
                                   tensorboard=tensorboard), None)
            except JobBusy:
                busy.append(job)
            except Exception as exc:  # noqa: BLE001 - reported per job, the sweep goes on
                done(job, None, exc)
        for job in busy:
            try:
                done(job, run_job(job, results, wait=True, force=force, checkpoints=checkpoints,
                                   tensorboard=tensorboard), None)
            except Exception as exc:  # noqa: BLE001
                done(job, None, exc)
    else:
        pool = ProcessPoolExecutor(max_workers=n_workers, initializer=_init_worker, initargs=(os.getpid(),))
        # Not a `with` block: its exit waits for every queued job, and a signal can arrive at any
        # point from the first submit on (workers start and finish jobs while the rest are queued).
        try:
            futures: dict[Future[str], Job] = {}
            # submit holds the pool's shutdown lock, which stopping the pool takes again: a signal
            # raised inside it would deadlock the stop, so signals wait until the jobs are queued.
            with signals_deferred():
                for j in todo:
                    futures[pool.submit(run_job, j, results, False, force, checkpoints, tensorboard)] = j
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    err = fut.exception()
                    job = futures[fut]
                    if isinstance(err, JobBusy):  # claimed elsewhere: wait for it after the rest
                        with signals_deferred():
                            again = pool.submit(run_job, job, results, True, force, checkpoints, tensorboard)
                        futures[again] = job
                        pending.add(again)
                        continue
                    done(job, None if err else fut.result(), err)
        except BaseException:  # KeyboardInterrupt, SystemExit: finished records are kept
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
    return written, failed


def _run_ray(
    todo: list[Job],
    results: str,
    done: Callable[[Job, str | None, BaseException | None], None],
    force: bool = False,
    checkpoints: str | None = None,
    tensorboard: str | None = None,
) -> None:
    try:
        import ray
    except ImportError:
        raise BackendError("the ray backend needs Ray: pip install 'metarl-bench[ray]'") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")  # a cluster if RAY_ADDRESS is set, else local
        errors: list[BaseException] = []

        def init() -> None:
            try:
                ray.init(address=address)
            except Exception as exc:  # noqa: BLE001 - re-raised below in the caller's thread
                errors.append(exc)

        t = threading.Thread(target=init, name="metarl-bench-ray-init", daemon=True)
        t.start()
        t.join(RAY_INIT_TIMEOUT_S)
        if t.is_alive():
            raise BackendError(
                f"Ray did not start within {RAY_INIT_TIMEOUT_S:g} s (RAY_ADDRESS={address!r}); check that the "
                f"cluster is up and the address is right, or unset RAY_ADDRESS for a local Ray"
            )
        if errors:
            raise BackendError(f"Ray did not start (RAY_ADDRESS={address!r}): {errors[0]}") from errors[0]
    remote = ray.remote(num_cpus=1)(run_job)
    refs = {remote.remote(j, results, True, force, checkpoints, tensorboard): j for j in todo}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        job = refs[ready[0]]
        try:
            done(job, ray.get(ready[0]), None)
        except Exception as exc:  # noqa: BLE001
            done(job, None, exc)
