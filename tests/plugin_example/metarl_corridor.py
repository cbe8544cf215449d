"""metarl-bench plugin: a 1-D corridor; actions 0/1 step left/right from 0; reaching -3 or 3 pays 1 at the task's goal end."""
from dataclasses import dataclass

import metarl_bench
import numpy as np
from gymnasium import spaces
from metarl_bench.envbase import MetaEnv

@dataclass(frozen=True)
class CorridorTask(metarl_bench.Task):
    goal: int = 1  # -1: the left end pays, +1: the right end pays
    def validate(self) -> None:
        if self.goal not in (-1, 1):
            raise ValueError(f"CorridorTask.goal must be -1 or 1, got {self.goal!r}")

class GoalSide(metarl_bench.TaskDistribution):
    def __call__(self, rng: np.random.Generator) -> CorridorTask:
        return CorridorTask(goal=int(rng.choice([-1, 1])))

class CorridorEnv(MetaEnv):
    task_cls, metadata = CorridorTask, {"render_modes": []}
    def __init__(self, expose_task: bool = False) -> None:
        self.action_space = spaces.Discrete(2)
        self._init_task(CorridorTask(), expose_task, spaces.Box(-3.0, 3.0, (1,), np.float32))
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._begin_reset(seed)  # seeds the env's streams, swaps in the task given to set_task
        self.pos = 0
        return self._observe(np.array([0.0])), {}
    def step(self, action):
        self.pos += 1 if action == 1 else -1
        done = abs(self.pos) == 3
        return self._observe(np.array([self.pos])), float(done and self.pos // 3 == self._task.goal), done, False, {}

class CorridorFamily(metarl_bench.Family):
    id, task_cls, env_cls, horizon, distribution = "MyLab/Corridor-v0", CorridorTask, CorridorEnv, 20, GoalSide()

def register() -> None:  # the entry point named in pyproject.toml
    metarl_bench.register_family(CorridorFamily)
