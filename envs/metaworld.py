"""Meta-World v3 (``metaworld`` 3.1.1, reward function version ``v2``) as task families.

One family per Meta-World v3 environment, ``MetaRL/MetaWorld-<name>-v0`` wrapping
``<name>-v3`` (e.g. ``MetaRL/MetaWorld-reach-v0`` wraps ``reach-v3``), and two families
over several environments, ``MetaRL/MetaWorld-ML10-v0`` and ``MetaRL/MetaWorld-ML45-v0``
(the environments of Meta-World's ML10 and ML45 splits, train and test classes together).

A task (:class:`MetaWorldTask`) is plain JSON: the environment's name without ``-v3``,
Meta-World's ``rand_vec`` (the object and goal positions its env's ``reset`` places,
3 or 6 floats) and ``partially_observable`` (True: the goal is zeroed in the observation,
as in Meta-World's ML benchmarks). It is converted to Meta-World's own task,
``metaworld.types.Task(env_name, data=pickle.dumps({...}))``, only inside the env, when it
takes effect (at the next ``reset``); the suite never stores a pickle.

Observation: Meta-World's 39 floats (hand, gripper, objects, the previous frame's hand,
gripper and objects, the goal), float64. With ``expose_task=True`` the goal is filled in
(Meta-World's fully observable mode) and the task's features are appended.
Action: ``Box(-1, 1, (4,))`` (hand displacement and gripper effort). Reward: Meta-World's
v2 reward (0 to 10 per step). Horizon: 500 steps (Meta-World's ``max_path_length``);
episodes never terminate early. ``info["success"]`` is Meta-World's success flag (1.0
when the object or hand is within the task's tolerance of the goal), which the
Meta-World benchmarks score (see :mod:`metarl_bench.benchmark_defs_metaworld`).

The task distribution draws an environment uniformly from the family's, then its
``rand_vec`` the way Meta-World's ``reset`` does (uniform over the env's reset space,
redrawn while the goal is too close to the object), from the given generator.

``metaworld`` is an optional dependency (``pip install 'metarl-bench[metaworld]'``). The
families are registered when it is installed, without importing it (importing Meta-World
takes a noticeable part of a second, which ``metarl-bench list`` should not pay); it is
imported when an env is built or a task is drawn. Without it, every Meta-World id raises
a one-line error that names the extra to install.

Version history:
    v0: initial release (Meta-World 3.1.1, v3 environments, v2 rewards, horizon 500).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from metarl_bench.envbase import MetaEnv
from metarl_bench.family import (
    Family,
    TaskDistribution,
    UnknownIdError,
    register_family,
    register_missing_extra,
)
from metarl_bench.tasks import Task

METAWORLD_VERSION = "3.1.1"
REWARD_VERSION = "v2"
HORIZON = 500  # Meta-World's max_path_length
EXTRA = "pip install 'metarl-bench[metaworld]'"
ID_PREFIX = "MetaRL/MetaWorld-"

# Meta-World's v3 environments, in the order of metaworld.env_dict.ALL_V3_ENVIRONMENTS
# (without "-v3"; a test checks the list against the installed package). Listed here so
# that the ids are known without importing Meta-World.
ENV_NAMES: tuple[str, ...] = (
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown",
    "button-press-topdown-wall", "button-press", "button-press-wall", "coffee-button", "coffee-pull",
    "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-open", "door-unlock",
    "hand-insert", "drawer-close", "drawer-open", "faucet-open", "faucet-close", "hammer",
    "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
    "pick-place-wall", "pick-out-of-hole", "pick-place", "plate-slide", "plate-slide-side",
    "plate-slide-back", "plate-slide-back-side", "peg-insert-side", "peg-unplug-side", "soccer",
    "stick-push", "stick-pull", "push", "push-wall", "push-back", "reach", "reach-wall",
    "shelf-place", "sweep-into", "sweep", "window-open", "window-close",
)  # fmt: skip

# Meta-World's ML10 and ML45 splits (metaworld.env_dict.ML10_V3 / ML45_V3), in its order.
SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "ML10": {
        "train": ("reach", "push", "pick-place", "door-open", "drawer-close", "button-press-topdown",
                  "peg-insert-side", "window-open", "sweep", "basketball"),
        "test": ("drawer-open", "door-close", "shelf-place", "sweep-into", "lever-pull"),
    },
    "ML45": {
        "train": ("assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press",
                  "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn", "disassemble",
                  "door-close", "door-open", "drawer-close", "drawer-open", "faucet-open", "faucet-close", "hammer",
                  "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
                  "pick-place-wall", "pick-out-of-hole", "push-back", "pick-place", "plate-slide",
                  "plate-slide-side", "plate-slide-back", "plate-slide-back-side", "peg-insert-side",
                  "peg-unplug-side", "soccer", "stick-push", "stick-pull", "push-wall", "push", "reach-wall",
                  "reach", "shelf-place", "sweep-into", "sweep", "window-open", "window-close"),
        "test": ("bin-picking", "box-close", "hand-insert", "door-lock", "door-unlock"),
    },
}  # fmt: skip

RAND_VEC_SIZES = (3, 6)
RAND_VEC_MAX = 10.0  # |entries| of any v3 env's reset space are below 1.1; a loose sanity bound
N_FEATURES = len(ENV_NAMES) + max(RAND_VEC_SIZES) + 1


class MetaWorldMissing(UnknownIdError):
    """A Meta-World id was used but the ``metaworld`` extra is not installed (an ``UnknownIdError``,
    so the CLI prints it as one line, without a traceback)."""

    def __init__(self, id: str) -> None:
        self.what, self.name = "family", id
        KeyError.__init__(self, f"{id} needs Meta-World {METAWORLD_VERSION}, which is not installed: {EXTRA}")


def available() -> bool:
    """Whether ``metaworld`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("metaworld") is not None
    except (ImportError, ValueError):  # a blocked or half-imported module
        return False


def _metaworld() -> Any:
    """The ``metaworld`` module, imported on first use (or the one-line error naming the extra)."""
    try:
        import metaworld
    except ImportError as exc:
        raise MetaWorldMissing(f"Meta-World ({exc})") from None
    return metaworld


def unknown_env_message(name: str, known: Sequence[str] = ENV_NAMES) -> str:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f" Did you mean {close}?" if close else f" Known: {sorted(known)}."
    return f"MetaWorldTask.env_name {name!r} is not a Meta-World v3 environment (name without '-v3').{hint}"


@dataclass(frozen=True)
class MetaWorldTask(Task):
    """A Meta-World v3 task: the environment (``env_name``, without ``-v3``), the positions its
    reset places (``rand_vec``, 3 or 6 floats, Meta-World's ``_last_rand_vec``) and whether the
    goal is hidden from the observation (``partially_observable``)."""

    env_name: str = "reach"
    rand_vec: tuple[float, ...] = (0.0, 0.6, 0.02, 0.0, 0.85, 0.175)
    partially_observable: bool = True

    def validate(self) -> None:
        if not isinstance(self.env_name, str):
            raise ValueError(f"MetaWorldTask.env_name must be a string, got {self.env_name!r}")
        if self.env_name not in ENV_NAMES:
            raise ValueError(unknown_env_message(self.env_name))
        rv = self.rand_vec
        if not isinstance(rv, tuple) or len(rv) not in RAND_VEC_SIZES:
            raise ValueError(f"MetaWorldTask.rand_vec must be a list of 3 or 6 numbers, got {rv!r}")
        for v in rv:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > RAND_VEC_MAX:
                raise ValueError(f"MetaWorldTask.rand_vec entries must be finite numbers in [-10, 10], got {rv!r}")
        if not isinstance(self.partially_observable, bool):
            raise ValueError(
                f"MetaWorldTask.partially_observable must be true or false, got {self.partially_observable!r}"
            )

    def features(self) -> np.ndarray:
        """One-hot of the environment (Meta-World's order), ``rand_vec`` padded to 6, the flag."""
        out = np.zeros(N_FEATURES, dtype=np.float32)
        out[ENV_NAMES.index(self.env_name)] = 1.0
        out[len(ENV_NAMES) : len(ENV_NAMES) + len(self.rand_vec)] = self.rand_vec
        out[-1] = float(self.partially_observable)
        return out

    def to_metaworld(self, expose_goal: bool = False) -> Any:
        """Meta-World's ``Task`` for this one (``data`` is Meta-World's pickle; never stored)."""
        mw = _metaworld()
        name = self.env_name + "-v3"
        data = {
            "rand_vec": np.array(self.rand_vec, dtype=np.float64),
            "env_cls": mw.env_dict.ALL_V3_ENVIRONMENTS[name],
            "partially_observable": self.partially_observable and not expose_goal,
        }
        return mw.types.Task(env_name=name, data=pickle.dumps(data))


def env_class(name: str) -> Any:
    """Meta-World's env class for ``name`` (without ``-v3``)."""
    return _metaworld().env_dict.ALL_V3_ENVIRONMENTS[name + "-v3"]


_SAMPLERS: dict[str, Any] = {}


def _sampler(name: str) -> Any:
    """One Meta-World env per class, kept for drawing ``rand_vec``s through its own ``reset``."""
    if name not in _SAMPLERS:
        env = env_class(name)(reward_function_version=REWARD_VERSION)
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        _SAMPLERS[name] = env
    return _SAMPLERS[name]


def draw_rand_vec(name: str, rng: np.random.Generator) -> tuple[float, ...]:
    """A ``rand_vec`` of env ``name`` drawn as Meta-World's ``reset`` draws one, from ``rng``."""
    env = _sampler(name)
    env._np_random = np.random.default_rng(int(rng.integers(2**63 - 1)))
    env.reset()
    return tuple(float(v) for v in env._last_rand_vec)


class MetaWorldGoals(TaskDistribution):
    """An environment uniformly from ``env_names``, then its ``rand_vec`` as Meta-World's reset draws it."""

    def __init__(self, env_names: Sequence[str]) -> None:
        self.env_names = tuple(env_names)

    def __call__(self, rng: np.random.Generator) -> MetaWorldTask:
        name = self.env_names[int(rng.integers(len(self.env_names)))] if len(self.env_names) > 1 else self.env_names[0]
        return MetaWorldTask(env_name=name, rand_vec=draw_rand_vec(name, rng), partially_observable=True)

    def describe(self) -> str:
        what = self.env_names[0] if len(self.env_names) == 1 else f"one of {len(self.env_names)} envs"
        return f"{what}; rand_vec as Meta-World's reset draws it"


_HAND_LOW = np.array([-0.525, 0.348, -0.0525])
_HAND_HIGH = np.array([0.525, 1.025, 0.7])


def _obs_space() -> spaces.Box:
    """Meta-World's observation bounds (hand, gripper, objects unbounded), the goal unbounded
    so that one space holds every env's goal, hidden (zeros) or not."""
    frame_low = np.concatenate([_HAND_LOW, [-1.0], np.full(14, -np.inf)])
    frame_high = np.concatenate([_HAND_HIGH, [1.0], np.full(14, np.inf)])
    low = np.concatenate([frame_low, frame_low, np.full(3, -np.inf)])
    high = np.concatenate([frame_high, frame_high, np.full(3, np.inf)])
    return spaces.Box(low, high, dtype=np.float64)


_OBS_SPACE = _obs_space()
_ACT_SPACE = spaces.Box(-1.0, 1.0, (4,), np.float32)


class MetaWorldEnv(MetaEnv):
    """One Meta-World v3 env at a time, the one of the task in effect (see the module docstring).

    Subclasses (one per family) set ``env_names``, the environments whose tasks they take,
    and ``family_cls``.
    """

    task_cls = MetaWorldTask
    env_names: ClassVar[tuple[str, ...]] = ENV_NAMES
    family_cls: ClassVar[type[MetaWorldFamily]]
    metadata = {"render_modes": []}
    _task: MetaWorldTask

    def __init__(self, expose_task: bool = False) -> None:
        self.action_space = _ACT_SPACE
        self._init_task(self.family_cls().default_task(), False, _OBS_SPACE)
        self.expose_task = bool(expose_task)
        if self.expose_task:  # float64 like Meta-World's own observations, the task's features appended
            unbounded = np.full(N_FEATURES, np.inf)
            self.observation_space = spaces.Box(
                np.concatenate([_OBS_SPACE.low, -unbounded]), np.concatenate([_OBS_SPACE.high, unbounded]), dtype=np.float64
            )
        self._mw: Any = None
        self._mw_name: str | None = None
        self._applied: MetaWorldTask | None = None

    def _validate_task(self, task: Any) -> Task:
        task = super()._validate_task(task)
        assert isinstance(task, MetaWorldTask)
        if task.env_name not in self.env_names:
            raise ValueError(
                f"{type(self).__name__} takes tasks of {list(self.env_names) if len(self.env_names) < 8 else 'its split'}; "
                f"{unknown_env_message(task.env_name, self.env_names)}"
            )
        return task

    def _apply(self, task: MetaWorldTask) -> None:
        if self._mw_name != task.env_name:
            if self._mw is not None:
                self._mw.close()
            self._mw = env_class(task.env_name)(reward_function_version=REWARD_VERSION)
            self._mw_name = task.env_name
        size = int(self._mw._random_reset_space.low.size)
        if len(task.rand_vec) != size:
            raise ValueError(f"MetaWorldTask.rand_vec of {task.env_name} must have {size} entries, got {len(task.rand_vec)}")
        self._mw.set_task(task.to_metaworld(expose_goal=self.expose_task))
        self._applied = task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        task = self._begin_reset(seed)
        if task is not self._applied:
            self._apply(task)  # type: ignore[arg-type]
        obs, info = self._mw.reset()
        return self._obs(obs), dict(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._mw.step(np.asarray(action).reshape(4))
        info = dict(info)
        info["success"] = float(info.get("success", 0.0))
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), info

    def _obs(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64).ravel()
        if self.expose_task:
            return np.concatenate([raw, self._task.features().astype(np.float64)])
        return raw

    def close(self) -> None:
        if self._mw is not None:
            self._mw.close()
            self._mw = None
            self._mw_name = None
            self._applied = None


class MetaWorldFamily(Family):
    """Base of the Meta-World families (subclassed once per family below)."""

    id: ClassVar[str] = "MetaRL/MetaWorld-v0"
    task_cls = MetaWorldTask
    horizon = HORIZON
    env_names: ClassVar[tuple[str, ...]] = ENV_NAMES
    source = f"Meta-World {METAWORLD_VERSION}, v3 envs, {REWARD_VERSION} rewards"

    @property
    def distribution(self) -> TaskDistribution:
        return MetaWorldGoals(self.env_names)

    def check_task(self, task: Task) -> Task:
        task = super().check_task(task)
        if task.env_name not in self.env_names:  # type: ignore[attr-defined]
            raise ValueError(f"{self.id}: {unknown_env_message(task.env_name, self.env_names)}")  # type: ignore[attr-defined]
        return task


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _define(key: str, fid: str, env_names: tuple[str, ...], doc: str) -> type[MetaWorldFamily]:
    """A family class and its env class, kept as module attributes (so both pickle)."""
    module = sys.modules[__name__]
    fam: type[MetaWorldFamily] = type(f"MetaWorld{key}Family", (MetaWorldFamily,), {
        "id": fid, "env_names": env_names, "__doc__": doc, "__module__": __name__,
    })  # fmt: skip
    env = type(f"MetaWorld{key}Env", (MetaWorldEnv,), {
        "env_names": env_names, "family_cls": fam, "__module__": __name__,
        "__doc__": f"{doc} (the single env; see MetaWorldEnv).",
    })  # fmt: skip
    fam.env_cls = env
    setattr(module, fam.__name__, fam)
    setattr(module, env.__name__, env)
    return fam


FAMILIES: dict[str, type[MetaWorldFamily]] = {}
for _name in ENV_NAMES:
    _fam = _define(_camel(_name), f"{ID_PREFIX}{_name}-v0", (_name,),
                   f"Meta-World {METAWORLD_VERSION}'s {_name}-v3 ({REWARD_VERSION} rewards).")
    FAMILIES[_fam.id] = _fam
for _split, _classes in SPLITS.items():
    _fam = _define(_split, f"{ID_PREFIX}{_split}-v0", _classes["train"] + _classes["test"],
                   f"Meta-World {METAWORLD_VERSION}'s {_split} environments, train and test ({REWARD_VERSION} rewards).")
    FAMILIES[_fam.id] = _fam


def family_id(name: str) -> str:
    """The family id of Meta-World env ``name`` (without ``-v3``)."""
    if name not in ENV_NAMES:
        raise ValueError(unknown_env_message(name))
    return f"{ID_PREFIX}{name}-v0"


def is_metaworld_id(id: str) -> bool:
    return id.startswith(ID_PREFIX)


def register() -> None:
    """Register the Meta-World families if ``metaworld`` is installed (without importing it);
    else make their ids (in ``gym.make`` too) raise the one-line error naming the extra."""
    if available():
        for fam in FAMILIES.values():
            register_family(fam)
        return
    register_missing_extra(ID_PREFIX, MetaWorldMissing, gym_ids=list(FAMILIES))
