"""Meta-World's scripted expert policies as the ``oracle`` of the Meta-World families.

``metaworld.policies.ENV_POLICY_MAP`` holds one hand-written policy per v3 environment,
which reads the goal from the observation. The oracle sees the task (``sees_task``), so its
envs fill in the goal (Meta-World's fully observable mode) and append the task's features,
whose one-hot part names each sub-env's environment; every sub-env is driven by the
policy of its own class, exactly as Meta-World runs them (float64 observations, the
policy's float32 actions). The policies are stateless, so nothing adapts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl_bench.agents import Adapter
from metarl_bench.envs.metaworld import ENV_NAMES, METAWORLD_VERSION
from metarl_bench.harness import EvalContext

OBS_DIM = 39  # Meta-World's observation; the task's features follow it


def expert_policy(name: str) -> Any:
    """Meta-World's scripted policy for env ``name`` (without ``-v3``)."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[name + "-v3"]()  # type: ignore[abstract]  # the map's values are concrete subclasses


class MetaWorldExpertAdapter(Adapter):
    """Each sub-env acts with the scripted policy of its environment (read from the task features)."""

    def __init__(self, ctx: EvalContext) -> None:
        self.benchmark_id = ctx.benchmark.id
        self.policies: dict[int, Any] = {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape[1] < OBS_DIM + len(ENV_NAMES):
            raise ValueError(
                f"oracle on {self.benchmark_id}: needs the task features after Meta-World's {OBS_DIM} observations "
                f"(expose_task=True), got {obs.shape[1]} columns"
            )
        classes = np.argmax(obs[:, OBS_DIM : OBS_DIM + len(ENV_NAMES)], axis=1)
        actions = np.zeros((len(obs), 4), dtype=np.float32)
        for i, c in enumerate(classes):
            policy = self.policies.get(int(c))
            if policy is None:
                policy = self.policies[int(c)] = expert_policy(ENV_NAMES[int(c)])
            actions[i] = policy.get_action(obs[i, :OBS_DIM])
        return actions


DESCRIPTION = f"Meta-World {METAWORLD_VERSION}'s scripted expert of the task's class (metaworld.policies)"
