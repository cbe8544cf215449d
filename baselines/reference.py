"""Reference agents that work on every RL family: ``random``."""

from __future__ import annotations

from typing import Any

import numpy as np
from metarl_bench.baselines.common import sample_actions

from metarl_bench.agents import Adapter, Agent


class _RandomAdapter(Adapter):
    def __init__(self, ctx: Any) -> None:
        self.space = ctx.action_space
        self.rng = ctx.rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        return sample_actions(self.space, len(obs), self.rng)


class RandomAgent(Agent):
    """Uniformly random actions; no meta-training, no adaptation (the normalisation floor)."""

    name = "random"
    description = "uniform random actions"

    def supports(self, benchmark: Any) -> str | None:
        return None if benchmark.family.kind == "rl" else "random is an RL reference"

    def adapter(self, ctx: Any) -> Adapter:
        return _RandomAdapter(ctx)
