"""Few-shot learners end to end: meta-training then evaluation through ``metarl_bench.evaluate``
on sinusoid regression and on image classification, and the learning checks (slow: run by
``make bench``) that they learn what their papers claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import agent_class
from metarl_bench.fewshot_images import fewshot_image_benchmark
from metarl_bench.supervised import evaluate_supervised

torch.set_num_threads(1)

SMOKE = "MetaRL/Sinusoid-K10-smoke-v0"
LEARNERS = ["maml", "fomaml", "reptile", "meta-sgd", "pretrained", "scratch"]
SHORT = {"maml": {"iterations": 20}, "fomaml": {"iterations": 20}, "reptile": {"iterations": 20},
         "meta-sgd": {"iterations": 20}, "pretrained": {"iterations": 20}, "scratch": {}}
SIZE = 8  # the side of the images write_images draws (tests/conftest.py)


def make(name: str, **config):
    """The supervised implementation of ``name`` (names such as reptile also have an RL one)."""
    return agent_class(name, "supervised")(**config)


# --- sinusoid regression ---------------------------------------------------------------------------


def test_no_agent_beats_the_oracle_or_the_prior_floor_without_adaptation():
    b = metarl_bench.benchmark(SMOKE)
    prior = evaluate_supervised(make("prior-mean"), b, seed=0)
    prior_mse = prior.returns[:, :, 0]
    assert prior.scores["normalized_final"]["value"] == pytest.approx(0.0, abs=3 * prior.scores["normalized_final"]["se"])
    oracle = evaluate_supervised(make("oracle"), b, seed=0)
    assert oracle.scores["final"]["value"] < 1e-8 and oracle.scores["normalized_final"]["value"] == pytest.approx(1.0)
    for name in LEARNERS:
        agent = make(name, **SHORT[name])
        agent.configure(b)
        rec = evaluate_supervised(agent, b, seed=0)
        assert rec.returns.min() >= 0.0  # no MSE below the oracle's 0
        # before any step, no predictor beats the prior mean on average (paired, 3 standard errors)
        diff = (rec.returns[:, :, 0] - prior_mse).mean(axis=1)
        assert diff.mean() > -3 * diff.std(ddof=1) / math.sqrt(len(diff)), name


@pytest.mark.slow
def test_maml_learns_sinusoids():
    b = metarl_bench.benchmark(SMOKE)
    agent = make("maml", iterations=1500)
    agent.configure(b)
    rec = evaluate_supervised(agent, b, seed=0)
    floor = b.references["random"]["final"]
    assert rec.scores["final"]["value"] < 0.5 * floor
    assert rec.curve["mean"][10] < rec.curve["mean"][1] < rec.curve["mean"][0]


# --- image classification --------------------------------------------------------------------------


def test_maml_adapts_in_one_step_where_scratch_does_not(tmp_path, write_images):
    """MAML's claim: a meta-learned initialisation makes one gradient step enough. Same
    network, same step size (0.1), one step, unseen classes: MAML vs a random init."""
    write_images(tmp_path / "omni", classes=9, per_class=8)
    bench = fewshot_image_benchmark(tmp_path / "omni", ways=3, shots=1, queries=3, test_classes=3,
                                    test_episodes=100, inner_steps=1, image_size=(SIZE, SIZE), net="mlp")
    maml = metarl_bench.evaluate(
        metarl_bench.agent("maml", iterations=150, meta_batch_size=4, inner_lr=0.1, outer_lr=0.005, hidden_sizes=(32,)),
        bench, seed=0)
    scratch = metarl_bench.evaluate(metarl_bench.agent("scratch", inner_lr=0.1, hidden_sizes=(32,)), bench, seed=0)
    acc, base = maml.curve["mean"], scratch.curve["mean"]
    # 3-way 1-shot: chance (1/3) before adaptation for both
    assert acc[0] < 0.45 and base[0] < 0.45
    # after the one step maml is above scratch by more than 4 standard errors of the difference
    se = float(np.hypot(maml.scores["final"]["se"], scratch.scores["final"]["se"]))
    assert acc[1] - base[1] > 4 * se


@pytest.mark.slow
def test_maml_learns_to_classify_blobs(tmp_path, write_images):
    write_images(tmp_path / "omni", classes=9, per_class=8)
    bench = fewshot_image_benchmark(tmp_path / "omni", ways=3, shots=1, queries=3, test_classes=3,
                                    test_episodes=100, inner_steps=3, image_size=(SIZE, SIZE), net="mlp")
    record = metarl_bench.evaluate(
        metarl_bench.agent("maml", iterations=150, meta_batch_size=4, inner_lr=0.5, outer_lr=0.005, hidden_sizes=(32,)),
        bench, seed=0)
    # 3-way 1-shot on unseen classes: chance (1/3) before adaptation, well above after three steps
    assert record.curve["mean"][0] < 0.45
    assert record.curve["mean"][-1] > 0.6
