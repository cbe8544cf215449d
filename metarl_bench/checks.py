"""``metarl-bench check-env ID``: the checks every family must pass.

The checks cover Gymnasium's API (``check_env``), seeding determinism, the task contract
(``set_task`` takes effect at the next reset and never in the middle of an episode, reset
never resamples the task), the task sampler and JSON round trip, the batched env against
single envs, and the errors for bad tasks.

Each check returns a :class:`CheckResult`; a check that crashes is a failed check whose
message is the exception, never a traceback. The same checks run in the test suite over
every registered id::

    results = check_family("MetaRL/Navigation2D-v0")
    print(format_report(results))
    assert all(r.passed for r in results)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_bench.family import BatchTolerance, Family, UnknownIdError, family
from metarl_bench.tasks import Task

# Draws tried to find a task that differs from the first one before a family is declared degenerate.
DISTINCT_TASK_DRAWS = 100
# check_env warnings that Gymnasium's own tests/envs/test_envs.py ignores: unbounded Box
# observations (positions, exposed task features) and its advice to normalise Box actions.
ADVISORY_WARNINGS = (
    "space minimum value is -infinity",
    "space maximum value is infinity",
    "we recommend using a symmetric and normalized space",
)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: its ``name``, whether it ``passed`` and a readable ``message``."""

    name: str
    passed: bool
    message: str


class CheckFailed(AssertionError):
    """Raised inside a check with the reason it failed."""


@dataclass(frozen=True)
class _ForeignTask(Task):
    """A task of no registered family, for the type-error check."""

    family_name = "foreign"
    level: float = 0.0


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# --- helpers -----------------------------------------------------------------------------


def _steps(fam: Family, episodes: int = 3, cap: int = 1200) -> int:
    """Enough steps for ``episodes`` episodes under random actions (autoresets included)."""
    horizon = fam.horizon or 100
    return min(episodes * (horizon + 1) + 2, cap)


def _tasks(fam: Family, n: int, seed: int) -> list[Task]:
    return fam.sample_tasks(n, np.random.default_rng(seed))


def _two_tasks(fam: Family, seed: int) -> tuple[Task, Task]:
    """The first task drawn with ``seed`` and the first later draw that differs from it."""
    rng = np.random.default_rng(seed)
    first = fam.sample_tasks(1, rng)[0]
    for _ in range(DISTINCT_TASK_DRAWS):
        other = fam.sample_tasks(1, rng)[0]
        if other != first:
            return first, other
    raise CheckFailed(
        f"{DISTINCT_TASK_DRAWS + 1} draws from the task distribution all gave {_short(first)}; "
        f"set_task cannot be checked without two different tasks"
    )


def _short(task: Task, width: int = 48) -> str:
    text = repr(task)
    return text if len(text) <= width else text[: width - 3] + "..."


def _actions(space: gym.Space, n: int, seed: int) -> list[Any]:
    """``n`` fixed actions sampled from a seeded copy of ``space``."""
    space = _copy_space(space)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _copy_space(space: gym.Space) -> gym.Space:
    # Families may share a space object between instances; seeding a copy leaves theirs alone.
    return copy.deepcopy(space)


def _rollout(env: gym.Env, seed: int, actions: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Obs, reward, terminated, truncated of every step; resets (unseeded) when an episode ends."""
    obs, _ = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(np.array(obs, copy=True),)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        numeric = sorted((k, float(v)) for k, v in info.items() if isinstance(v, (int, float, np.number)))
        out.append((np.array(obs, copy=True), float(reward), bool(terminated), bool(truncated),
                    np.array([v for _, v in numeric])))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((np.array(obs, copy=True),))
    return out


def _same(a: Any, b: Any) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for u, v in zip(x, y):
            if not np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True):
                return False
    return True


def _features(task: Task) -> np.ndarray:
    return np.asarray(task.features(), dtype=np.float32)


def _nan_like(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_nan_like(v) for v in value]
    return math.nan


# --- the checks --------------------------------------------------------------------------


def _check_env_api(fam: Family, seed: int, expose_task: bool) -> str:
    from gymnasium.utils.env_checker import check_env

    env = fam.make_env(_tasks(fam, 1, seed)[0], expose_task=expose_task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    env.close()
    # Gymnasium's checker reports through gymnasium.logger ("WARN: ..."); other libraries'
    # deprecation notices are not the family's fault.
    notes = sorted({_plain(w.message) for w in caught if "WARN:" in str(w.message)})
    advisory = [m for m in notes if any(a in m for a in ADVISORY_WARNINGS)]
    other = [m for m in notes if m not in advisory]
    _require(not other, "Gymnasium's check_env warned: " + " | ".join(other))
    return "gymnasium.utils.env_checker.check_env passed" + (
        f" ({len(advisory)} advisory warnings ignored, as Gymnasium's own test suite does)" if advisory else ""
    )


def _plain(message: Any) -> str:
    # Gymnasium colours its warnings with ANSI escapes; strip them for a readable report.
    return re.sub(r"\x1b\[[0-9;]*m", "", str(message)).replace("WARN: ", "").strip()


def _check_sampler(fam: Family, seed: int) -> str:
    a, b = _tasks(fam, 16, seed), _tasks(fam, 16, seed)
    _require(a == b, "sample_tasks with two generators seeded alike gave different tasks")
    _require(len(set(a)) > 1, "16 sampled tasks are all the same task; the distribution is degenerate")
    for t in a:
        _require(isinstance(t, fam.task_cls), f"the distribution returned a {type(t).__name__}, not a {fam.task_cls.__name__}")
        hash(t)
    c = _tasks(fam, 16, seed + 1)
    _require(a != c, "different seeds gave identical task lists")
    return f"reproducible from an explicit Generator; {len(set(a))} distinct hashable tasks in 16 draws"


def _check_seed_determinism(fam: Family, seed: int) -> str:
    task = _tasks(fam, 1, seed)[0]
    n = _steps(fam)
    envs = [fam.make_env(task) for _ in range(2)]
    actions = _actions(envs[0].action_space, n, seed)
    first, second = (_rollout(e, seed, actions) for e in envs)
    again = _rollout(envs[0], seed, actions)  # the same env object, re-seeded
    for e in envs:
        e.close()
    _require(_same(first, second), "two envs reset with the same seed gave different rollouts under the same actions")
    _require(_same(first, again), "re-seeding an env with its first seed did not reproduce its rollout")
    episodes = sum(1 for r in first if len(r) == 1)
    return f"identical rollouts over {n} steps ({episodes} episodes) for the same seed"


def _episode(
    fam: Family, first: Task, seed: int, actions: Sequence[Any], switch: tuple[int, Task] | None = None
) -> list[tuple[Any, ...]]:
    """One episode of a fresh single env given ``first``, reset with ``seed``, under ``actions``.

    With ``switch = (k, task)``, ``set_task(task)`` is called after ``k`` steps (``k = 0``:
    right after the reset). Returns obs, reward, terminated, truncated and the numeric entries
    of ``info`` of every step: an env whose hidden task shows in neither observation nor
    reward early on (a goal that only matters once an object is touched) still reports it
    there, e.g. a distance to the goal.
    """
    env = fam.make_env(first)
    obs, _ = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(np.array(obs, copy=True),)]
    for i, a in enumerate(actions):
        if switch is not None and i == switch[0]:
            env.unwrapped.set_task(switch[1])  # type: ignore[attr-defined]
        obs, reward, terminated, truncated, info = env.step(a)
        numeric = sorted((k, float(v)) for k, v in info.items() if isinstance(v, (int, float, np.number)))
        out.append((np.array(obs, copy=True), float(reward), bool(terminated), bool(truncated),
                    np.array([v for _, v in numeric])))
        if terminated or truncated:
            break
    env.close()
    return out


def _check_set_task_persists(fam: Family, seed: int) -> str:
    t1, t2 = _two_tasks(fam, seed)
    env = fam.make_env(expose_task=True)
    env.unwrapped.set_task(t1)  # type: ignore[attr-defined]
    k = len(_features(t1))
    obs, _ = env.reset(seed=seed)
    actions = _actions(env.action_space, _steps(fam), seed)
    resets = 1
    for i, a in enumerate(actions):
        _require(env.unwrapped.task == t1, f"env.unwrapped.task changed after {resets} resets")  # type: ignore[attr-defined]
        _require(np.array_equal(obs[-k:], _features(t1)), f"the task in effect changed after {resets} resets")
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + i if i % 2 else None)
            resets += 1
    _require(resets >= 3, f"only {resets} episodes ran; the check needs at least 3")
    env.reset()
    env.unwrapped.set_task(t2)  # type: ignore[attr-defined]
    _require(env.unwrapped.task == t2, "env.unwrapped.task does not read back the task just set")  # type: ignore[attr-defined]
    obs, *_ = env.step(actions[0])
    _require(np.array_equal(obs[-k:], _features(t1)), "set_task took effect before the next reset")
    obs, _ = env.reset()
    _require(np.array_equal(obs[-k:], _features(t2)), "set_task did not take effect at the next reset")
    env.close()

    # Behaviour, not only the exposed features: find an episode (seed and actions) in which
    # the two tasks behave differently, then call set_task(t2) during a t1 episode.
    space = _copy_space(fam.make_env(t1).action_space)
    n = _steps(fam, episodes=1)
    for j in range(20):
        actions = _actions(space, n, seed + j)
        under_t1 = _episode(fam, t1, seed + j, actions)
        if not _same(under_t1, _episode(fam, t2, seed + j, actions)):
            break
    else:
        raise CheckFailed(
            f"{_short(t1)} and {_short(t2)} gave identical episodes for 20 seeds and action sequences; "
            f"the env does not seem to read its task, so set_task cannot be checked"
        )
    for at in sorted({0, 1, (len(under_t1) - 1) // 2} & set(range(len(under_t1) - 1))):
        switched = _episode(fam, t1, seed + j, actions, switch=(at, t2))
        _require(
            _same(switched, under_t1),
            f"set_task({_short(t2)}) after step {at} changed the running episode of {_short(t1)}; "
            f"a new task must take effect only at the next reset",
        )
    return (
        f"the task set persisted over {resets} resets (seeded and unseeded); set_task({_short(t2)}) "
        f"during an episode of {_short(t1)} left that episode unchanged and took effect at the next reset"
    )


def _check_reset_keeps_task(fam: Family, seed: int) -> str:
    env = fam.make_env(expose_task=True)
    t0 = env.unwrapped.task  # type: ignore[attr-defined]
    k = len(_features(t0))
    for s in [seed, seed + 1, None, seed + 2, None]:
        obs, _ = env.reset(seed=s)
        _require(env.unwrapped.task == t0, f"reset(seed={s}) replaced the env's task")  # type: ignore[attr-defined]
        _require(np.array_equal(obs[-k:], _features(t0)), f"reset(seed={s}) changed the task in effect")
    env.close()
    tasks = _tasks(fam, 3, seed)
    venv = fam.make_vector_env(tasks, expose_task=True)
    feats = np.stack([_features(t) for t in tasks])
    acts = _actions(venv.action_space, _steps(fam, episodes=2, cap=400), seed)
    for s in (seed, None, seed + 7):
        obs, _ = venv.reset(seed=s)
        _require(venv.tasks == tasks, f"vector reset(seed={s}) replaced the tasks")  # type: ignore[attr-defined]
        _require(np.array_equal(obs[:, -k:], feats), f"vector reset(seed={s}) changed the tasks in effect")
    for a in acts:
        obs, *_ = venv.step(a)
        _require(np.array_equal(obs[:, -k:], feats), "an autoreset changed a sub-env's task")
    venv.close()
    return "reset and autoreset never resample the task (single and vector env)"


def _check_json_round_trip(fam: Family, seed: int) -> str:
    tasks = [*_tasks(fam, 5, seed), fam.default_task()]
    for t in tasks:
        text = json.dumps(t.to_dict(), sort_keys=True)
        back = fam.task_from_dict(json.loads(text))
        _require(back == t and hash(back) == hash(t), f"{t!r} came back from JSON as {back!r}")
        _require(json.dumps(back.to_dict(), sort_keys=True) == text, "the JSON of a round-tripped task differs")
    return f"{len(tasks)} tasks survive json.dumps/json.loads exactly"


def _compare_step(
    i: int, got: Any, want: Any, what: str, tol: BatchTolerance, floats: np.ndarray | None = None
) -> None:
    """Exact for integer and boolean arrays (discrete observations, flags); floats within ``tol``.

    ``floats`` masks the sub-envs whose float values are compared at this step (those within
    ``tol.steps`` of their episode start); None compares all.
    """
    got, want = np.asarray(got), np.asarray(want)
    _require(got.shape == want.shape, f"step {i}: {what} has shape {got.shape}, single envs give {want.shape}")
    if np.issubdtype(got.dtype, np.inexact) or np.issubdtype(want.dtype, np.inexact):
        g, w = got.astype(np.float64), want.astype(np.float64)
        close = np.isclose(g, w, rtol=tol.rtol, atol=tol.atol, equal_nan=True) if not tol.exact else (
            (g == w) | (np.isnan(g) & np.isnan(w))
        )
        if floats is not None:
            close = close | ~floats.reshape(-1, *([1] * (close.ndim - 1)))
    else:
        close = got == want
    close = close.reshape(len(got), -1).all(axis=1) if got.ndim else close.reshape(1)
    if not close.all():
        bad = np.flatnonzero(~close)
        hint = (
            "; a batched env that evaluates sin, cos, exp or power through NumPy's vectorised kernels "
            "may state a Family.batch_tolerance derived from their error"
            if tol.exact and np.issubdtype(got.dtype, np.inexact)
            else ""
        )
        raise CheckFailed(
            f"step {i}: batched {what} differs from the single envs in sub-envs {bad[:5].tolist()} "
            f"(batched {got[bad[0]].tolist()}, single {want[bad[0]].tolist()}; required: {tol.describe()}){hint}"
        )


def _check_batched_vs_single(fam: Family, seed: int, expose_task: bool) -> str:
    n_envs = 4
    tol = fam.batch_tolerance
    tasks = _tasks(fam, n_envs, seed)
    later = _tasks(fam, n_envs, seed + 1)
    batched = fam.make_vector_env(tasks, expose_task=expose_task)
    singles = gym.vector.SyncVectorEnv(
        [lambda t=t: fam.make_env(t, expose_task=expose_task) for t in tasks],  # type: ignore[misc]
    )
    n = _steps(fam, episodes=3, cap=max(1000, 2 * (fam.horizon or 0) + 3))  # at least two whole episodes
    actions = _actions(batched.action_space, n, seed)
    ob, _ = batched.reset(seed=seed)
    os_, _ = singles.reset(seed=seed)
    _compare_step(0, ob, os_, "reset observation", tol)
    episodes = np.zeros(n_envs, dtype=int)
    # Steps since each sub-env's last reset (Gymnasium's next-step autoreset: the step after an
    # episode ends is a reset, which restores identical states).
    since = np.zeros(n_envs, dtype=int)
    done = np.zeros(n_envs, dtype=bool)
    for i, a in enumerate(actions, start=1):
        if i == n // 2:
            batched.set_tasks(later)  # type: ignore[attr-defined]
            for env, t in zip(singles.envs, later):
                env.unwrapped.set_task(t)  # type: ignore[attr-defined]
        b = batched.step(a)
        s = singles.step(a)
        since = np.where(done, 0, since + 1)
        floats = None if tol.steps is None else since <= tol.steps
        for what, j in (("observation", 0), ("reward", 1), ("terminated", 2), ("truncated", 3)):
            _compare_step(i, b[j], s[j], what, tol, floats)
        done = np.asarray(s[2]) | np.asarray(s[3])
        episodes += done
    batched.close()
    singles.close()
    _require(episodes.min() >= 2, f"a sub-env finished only {episodes.min()} episodes; the check needs autoresets")
    kind = "native batched env" if fam.batched else "SyncVectorEnv fallback"
    return (
        f"{kind} matches {n_envs} single envs {tol.describe()} ({n} steps, {int(episodes.sum())} episodes, "
        f"autoresets and a mid-run set_tasks included)"
    )


def _check_foreign_task(fam: Family, seed: int) -> str:
    foreign = _ForeignTask()
    env = fam.make_env()
    expected = fam.task_cls.__name__
    for where, call in (
        ("env.unwrapped.set_task", lambda: env.unwrapped.set_task(foreign)),  # type: ignore[attr-defined]
        ("make_vector_env", lambda: fam.make_vector_env([foreign])),
        ("vector set_tasks", lambda: fam.make_vector_env(_tasks(fam, 1, seed)).set_tasks([foreign])),  # type: ignore[attr-defined]
    ):
        try:
            call()
        except TypeError as exc:
            msg = str(exc)
            _require(
                expected in msg and "_ForeignTask" in msg,
                f"{where}: the TypeError should name {expected} and _ForeignTask, got {msg!r}",
            )
        else:
            raise CheckFailed(f"{where} accepted a task of another family (expected TypeError)")
    env.close()
    return f"a task of another family raises TypeError naming {expected} and the foreign task"


def _check_invalid_tasks(fam: Family, seed: int) -> str:
    valid = _tasks(fam, 1, seed)[0].to_dict()
    cases = 0
    for f in dataclasses.fields(fam.task_cls):
        for label, bad in (("NaN", _nan_like(valid[f.name])), ("a string", "oops")):
            try:
                fam.task_from_dict({**valid, f.name: bad})
            except ValueError as exc:
                _require(f.name in str(exc), f"the ValueError for {label} in {f.name!r} does not name it: {exc}")
            else:
                raise CheckFailed(f"{fam.task_cls.__name__} accepted {label} as {f.name!r} (expected ValueError)")
            cases += 1
    for label, data in (("an unknown field", {**valid, "nonsense": 1}), ("a missing field", {})):
        try:
            fam.task_from_dict(data)
        except ValueError:
            cases += 1
        else:
            raise CheckFailed(f"task_from_dict accepted a dict with {label} (expected ValueError)")
    return f"{cases} invalid task dicts raise ValueError naming the field"


# --- the runner --------------------------------------------------------------------------

_RL_CHECKS: list[tuple[str, Callable[[Family, int], str]]] = [
    ("check_env", lambda f, s: _check_env_api(f, s, expose_task=False)),
    ("check_env(expose_task=True)", lambda f, s: _check_env_api(f, s, expose_task=True)),
    ("seed determinism", _check_seed_determinism),
    ("set_task: at the next reset, then persists", _check_set_task_persists),
    ("reset never resamples the task", _check_reset_keeps_task),
    ("batched vs single envs", lambda f, s: _check_batched_vs_single(f, s, expose_task=False)),
    ("batched vs single envs (expose_task=True)", lambda f, s: _check_batched_vs_single(f, s, expose_task=True)),
]
_TASK_CHECKS: list[tuple[str, Callable[[Family, int], str]]] = [
    ("task sampler", _check_sampler),
    ("task JSON round trip", _check_json_round_trip),
    ("invalid task -> ValueError", _check_invalid_tasks),
]


def _run(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except CheckFailed as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:  # a crashing check is a failed check, reported with its exception
        return CheckResult(name, False, f"crashed with {type(exc).__name__}: {exc}")


def check_family(id: str, seed: int = 0) -> list[CheckResult]:
    """Run every check on the family registered as ``id``.

    Unknown ids raise :class:`~metarl_bench.family.UnknownIdError` (listing close
    matches); everything else, including a family that cannot be constructed, is
    reported as failed checks.
    """
    try:
        fam = family(id)
    except UnknownIdError:
        raise
    except Exception as exc:
        return [CheckResult("construct family", False, f"family({id!r}) crashed with {type(exc).__name__}: {exc}")]
    checks = list(_TASK_CHECKS)
    if fam.kind == "rl":
        checks = _TASK_CHECKS[:2] + _RL_CHECKS + [
            ("task of another family -> TypeError", _check_foreign_task),
            _TASK_CHECKS[2],
        ]
    return [_run(name, lambda fn=fn: fn(fam, seed)) for name, fn in checks]  # type: ignore[misc]


def format_report(results: Sequence[CheckResult], title: str | None = None) -> str:
    """A plain-text report: one line per check, then a summary line."""
    width = max((len(r.name) for r in results), default=0)
    lines = [title] if title else []
    for r in results:
        lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.name.ljust(width)}  {r.message}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed}/{len(results)} checks passed" + (f", {failed} failed" if failed else ""))
    return "\n".join(lines)
