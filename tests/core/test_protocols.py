"""The agent boundary's context protocols: what the harness hands an agent on each track.

``Agent`` is typed over ``TrainContext``/``AdaptContext``; these tests check at run time that
the contexts the harness really passes, on the RL and the supervised track, offer what the
protocols promise, and that the protocols are not so loose that anything passes.
"""

import numpy as np
import torch

import metarl_bench
from metarl_bench.agents import AdaptContext, Adapter, Agent, TrainContext
from metarl_bench.harness import EvalContext, MetaTrainContext
from metarl_bench.supervised import (
    SupervisedAdapter,
    SupervisedAgent,
    SupervisedEvalContext,
    SupervisedTrainContext,
)


class _FirstArm(Adapter):
    def act(self, obs):
        return np.zeros(len(obs), dtype=np.int64)


class _RLSpy(Agent[MetaTrainContext, EvalContext, Adapter]):
    name = "rl-protocol-spy"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, object] = {}

    def meta_train(self, ctx: MetaTrainContext) -> None:
        self.seen["train"] = ctx

    def adapter(self, ctx: EvalContext) -> Adapter:
        self.seen["adapt"] = ctx
        return _FirstArm()


class _ZeroPredictor(SupervisedAdapter):
    def reset(self, support_x, support_y):
        pass

    def predict(self, x):
        return torch.zeros_like(x)


class _SupervisedSpy(SupervisedAgent):
    name = "supervised-protocol-spy"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, object] = {}

    def meta_train(self, ctx: SupervisedTrainContext) -> None:
        self.seen["train"] = ctx

    def adapter(self, ctx: SupervisedEvalContext) -> SupervisedAdapter:
        self.seen["adapt"] = ctx
        return _ZeroPredictor()


def test_rl_harness_hands_over_contexts_that_satisfy_the_protocols():
    spy = _RLSpy()
    metarl_bench.evaluate(spy, "MetaRL/Bandit-k5-n10-smoke-v0", seed=0)
    train, adapt = spy.seen["train"], spy.seen["adapt"]
    assert isinstance(train, MetaTrainContext) and isinstance(train, TrainContext)
    assert isinstance(adapt, EvalContext) and isinstance(adapt, AdaptContext)
    assert train.benchmark.id == adapt.benchmark.id == "MetaRL/Bandit-k5-n10-smoke-v0"


def test_supervised_harness_hands_over_contexts_that_satisfy_the_protocols():
    spy = _SupervisedSpy()
    metarl_bench.evaluate(spy, "MetaRL/Sinusoid-K10-smoke-v0", seed=0)
    train, adapt = spy.seen["train"], spy.seen["adapt"]
    assert isinstance(train, SupervisedTrainContext) and isinstance(train, TrainContext)
    assert isinstance(adapt, SupervisedEvalContext) and isinstance(adapt, AdaptContext)


def test_protocols_refuse_what_lacks_their_members():
    # an adaptation context cannot record training metrics: it is no TrainContext
    spy = _RLSpy()
    metarl_bench.evaluate(spy, "MetaRL/Bandit-k5-n10-smoke-v0", seed=0)
    assert not isinstance(spy.seen["adapt"], TrainContext)
    assert not isinstance(object(), AdaptContext)
