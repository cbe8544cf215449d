"""Sweep processes: pool workers die with their parent, SIGTERM stops a sweep as Ctrl-C does,
``--workers`` and ``--seeds`` are checked, a job is claimed before it runs, and a Ray that
does not start is a message rather than a hang.

Every subprocess test is bounded in time and kills whatever it started in a ``finally``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import metarl_bench
from metarl_bench import harness, sweep
from metarl_bench.cli import main
from metarl_bench.results import load_all
from metarl_bench.sweep import Job, JobBusy, claim, job_path, plan, pool_size, run_sweep

CLI = Path(sys.executable).with_name("metarl-bench")
SMOKE = "MetaRL/Bandit-k5-n10-smoke-v0"
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_pool_sweep(results: Path, log: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A 2-worker ``run`` of 400 quick jobs, once its two workers exist (or fail the test)."""
    args = [str(CLI), "run", "--benchmark", SMOKE, "--agent", "random", "thompson", "--seeds",
            *map(str, range(200)), "--workers", "2", "--results", str(results)]
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [p for p in _children(proc.pid) if _alive(p)]
        if len(workers) >= 2 and next(results.rglob("seed-*.json"), None) is not None:
            return proc, workers
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"the pool never started (rc {proc.poll()}):\n{log.read_text()}")


def _kill_all(proc: subprocess.Popen[bytes], workers: list[int]) -> None:
    for pid in [proc.pid, *workers]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@linux_only
def test_workers_die_when_the_parent_is_killed(tmp_path):
    proc, workers = _start_pool_sweep(tmp_path / "r", tmp_path / "log")
    try:
        proc.kill()  # SIGKILL: the parent gets no chance to stop its pool
        proc.wait(timeout=10)
        assert _gone_within(workers, 5.0) == [], "pool workers outlived their parent"
        _, errors = load_all(tmp_path / "r")
        assert errors == []
    finally:
        _kill_all(proc, workers)


@linux_only
def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path):
    proc, workers = _start_pool_sweep(tmp_path / "r", tmp_path / "log")
    try:
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # to the parent alone, as `kill PID` does
        rc = proc.wait(timeout=10)
        assert rc == 143 and time.monotonic() - t < 5.0, (rc, (tmp_path / "log").read_text()[-2000:])
        assert "finished records are kept" in (tmp_path / "log").read_text()
        assert _gone_within(workers, 5.0) == []
        records, errors = load_all(tmp_path / "r")
        assert errors == [] and 0 < len(records) < 400
    finally:
        _kill_all(proc, workers)


# --- --workers and --seeds --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_bad_worker_counts_are_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--benchmark", SMOKE, "--agent", "random", "--workers", value, "--results", str(tmp_path)])
    assert exc.value.code == 2
    assert "--workers" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_worker_counts_are_capped_at_jobs_and_cpus(monkeypatch):
    monkeypatch.setattr(sweep, "cpu_count", lambda: 4)
    assert pool_size(1000, 3) == 3
    assert pool_size(1000, 50) == 4
    assert pool_size(2, 50) == 2
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="--workers must be an integer >= 1"):
            pool_size(bad, 3)


def test_a_sweep_forks_no_more_workers_than_jobs(tmp_path, monkeypatch):
    sizes = []

    class Pool(sweep.ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kw: object) -> None:
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(sweep, "cpu_count", lambda: 64)
    jobs, _ = plan([SMOKE], ["random"], [0, 1, 2])
    written, failed = run_sweep(jobs, tmp_path, workers=1000)
    assert sizes == [3] and len(written) == 3 and failed == []


def test_repeated_seeds_run_once_and_say_so(tmp_path, capsys):
    args = ["run", "--benchmark", SMOKE, "--agent", "random", "--seeds", "0", "0", "0", "--workers", "1",
            "--results", str(tmp_path)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "1 jobs" in out and "--seeds repeats 0" in err


def test_a_negative_seed_is_refused_up_front_by_name(tmp_path, capsys):
    args = ["run", "--benchmark", SMOKE, "--agent", "random", "--seeds", "1", "-1", "--workers", "1",
            "--results", str(tmp_path)]
    assert main(args) == 2
    assert "seed -1 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "MetaRL").exists()
    assert main(["evaluate", "--benchmark", SMOKE, "--agent", "random", "--seed", "-2", "--no-save"]) == 2
    assert "seed -2 is not allowed" in capsys.readouterr().err
    for bad in (-1, 0.5, True, "1"):
        with pytest.raises(ValueError, match=f"seed {bad!r} is not allowed"):
            metarl_bench.evaluate(metarl_bench.agent("random"), SMOKE, seed=bad)  # type: ignore[arg-type]


# --- claims -----------------------------------------------------------------------------------


def test_a_claimed_job_is_busy_for_others(tmp_path):
    job = Job(SMOKE, "random", 0)
    with claim(job_path(job, tmp_path), wait=False):
        with pytest.raises(JobBusy, match=f"pid {os.getpid()}"):
            with claim(job_path(job, tmp_path), wait=False):
                pass
    with claim(job_path(job, tmp_path), wait=False):  # released: free again
        pass


@linux_only
def test_the_claim_of_a_killed_process_is_taken_over(tmp_path):
    path = job_path(Job(SMOKE, "random", 0), tmp_path)
    code = (f"from pathlib import Path; import time; from metarl_bench.sweep import claim\n"
            f"with claim(Path({str(path)!r}), wait=False):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        with pytest.raises(JobBusy, match=f"pid {proc.pid}"):
            with claim(path, wait=False):
                pass
        proc.kill()
        proc.wait(timeout=10)
        with claim(path, wait=False):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_job_claimed_elsewhere_is_not_run_twice(tmp_path, monkeypatch):
    """Another process (here a thread with its own claim) is computing job 0: the sweep runs
    job 1 first, then waits for job 0 and finds its record instead of computing it again."""
    real = harness.evaluate
    job0, job1 = Job(SMOKE, "random", 0), Job(SMOKE, "random", 1)
    held, release = threading.Event(), threading.Event()

    def other_process() -> None:
        with claim(job_path(job0, tmp_path), wait=False):
            held.set()
            release.wait(10)
            real(metarl_bench.agent("random"), SMOKE, seed=0, results=tmp_path)

    ran: list[int] = []

    def counting(agent, benchmark, seed=0, **kw):
        ran.append(seed)
        release.set()
        return real(agent, benchmark, seed=seed, **kw)

    monkeypatch.setattr(harness, "evaluate", counting)
    t = threading.Thread(target=other_process)
    t.start()
    try:
        assert held.wait(10)
        written, failed = run_sweep([job0, job1], tmp_path, workers=1)
    finally:
        release.set()
        t.join(20)
    assert failed == [] and ran == [1]
    assert sorted(Path(p).name for p in written) == ["seed-0.json", "seed-1.json"]


# --- Ray ---------------------------------------------------------------------------------------


def test_a_ray_that_does_not_start_is_a_message(tmp_path, monkeypatch, capsys):
    stop = threading.Event()
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda address=None: stop.wait(30))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(sweep, "RAY_INIT_TIMEOUT_S", 0.3)
    monkeypatch.setenv("RAY_ADDRESS", "ray://nowhere:10001")
    args = ["run", "--benchmark", SMOKE, "--agent", "random", "--backend", "ray", "--workers", "2",
            "--results", str(tmp_path)]
    try:
        t = time.monotonic()
        assert main(args) == 1
        assert time.monotonic() - t < 10
    finally:
        stop.set()
    err = capsys.readouterr().err
    assert "--workers is ignored with --backend ray" in err
    assert "Ray did not start within 0.3 s (RAY_ADDRESS='ray://nowhere:10001')" in err


def _slow_job(job, results, wait=True, force=False, checkpoints=None):
    time.sleep(30)
    return ""


def test_an_interrupt_while_jobs_are_being_queued_stops_at_once(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM can arrive while the jobs are still being submitted (workers start at
    the first submit): the queued jobs are dropped and the workers ended, not waited for."""
    calls = {"n": 0}
    real_submit = sweep.ProcessPoolExecutor.submit

    def submit(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_submit(self, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_job", _slow_job)  # the forked workers inherit it
    monkeypatch.setattr(sweep.ProcessPoolExecutor, "submit", submit)
    monkeypatch.setattr(sweep, "is_done", lambda job, results: False)
    jobs = [Job(SMOKE, "random", s) for s in range(8)]
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, tmp_path, workers=2)
    assert time.monotonic() - t < 10.0  # the 4 queued 30-second jobs were not waited for


@linux_only
def test_an_interrupt_while_claiming_a_job_leaves_no_claim_file(tmp_path, monkeypatch):
    """A sweep is often stopped right after it writes a record, as it claims the next job:
    a Ctrl-C between creating the claim file and locking it must not leave the file."""
    import fcntl

    real, calls = fcntl.flock, {"n": 0}

    def flock(fd, op):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(KeyboardInterrupt):
        with claim(tmp_path / "seed-0.json", wait=False):
            pass
    assert list(tmp_path.iterdir()) == []
    with claim(tmp_path / "seed-0.json", wait=False):  # and the job can be claimed again
        pass
    assert list(tmp_path.iterdir()) == []
