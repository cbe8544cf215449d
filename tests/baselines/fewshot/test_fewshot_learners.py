"""The few-shot learners (maml, fomaml, reptile, meta-sgd, pretrained, scratch and the
references): their meta-gradients against plain autograd, adapters, configs, divergence.
The track they run on is tested in core/test_supervised.py, learning in integration/."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import DivergenceError, agent_class
from metarl_bench.baselines.fewshot.common import GradientAdapter, expand_params, params_of
from metarl_bench.baselines.fewshot.maml import SupervisedMAMLConfig, outer_loss
from metarl_bench.baselines.fewshot.metasgd import MetaSGDConfig, MetaSGDLearner
from metarl_bench.baselines.fewshot.metasgd import outer_loss as metasgd_outer_loss
from metarl_bench.baselines.fewshot.reptile import inner_loop, reptile_update_
from metarl_bench.envs.sinusoid import SinusoidFamily
from metarl_bench.fewshot_nets import MLP
from metarl_bench.supervised import (
    Episode,
    SinusoidProblem,
    SupervisedEvalContext,
    SupervisedTrainContext,
    adaptation_curve,
    evaluate_supervised,
    query_grid,
)

torch.set_num_threads(1)

SMOKE = "MetaRL/Sinusoid-K10-smoke-v0"
LEARNERS = ["maml", "fomaml", "reptile", "meta-sgd", "pretrained", "scratch"]
SHORT = {"maml": {"iterations": 20}, "fomaml": {"iterations": 20}, "reptile": {"iterations": 20},
         "meta-sgd": {"iterations": 20}, "pretrained": {"iterations": 20}, "scratch": {}}


def make(name: str, **config):
    """The supervised implementation of ``name`` (names such as reptile also have an RL one)."""
    return agent_class(name, "supervised")(**config)


def tiny_problem() -> tuple[SinusoidProblem, Episode]:
    fam = SinusoidFamily()
    problem = SinusoidProblem(fam, fam.sample_tasks(50, np.random.default_rng(0)))
    ep = problem.sample(4, 5, 6, np.random.default_rng(1))
    ep = Episode(*(t.double() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y)))
    return problem, ep


def tiny_net() -> MLP:
    return MLP(1, (6, 5), 1, torch.Generator().manual_seed(4)).double()


# --- mathematics ---------------------------------------------------------------------------


def _loop_outer(net, ep, lr, steps, first_order):
    """Plain autograd, one task at a time: the reference for the batched meta-gradient."""
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    total = 0.0
    for i in range(ep.num_tasks):
        fast = params
        for _ in range(steps):
            out = torch.func.functional_call(net, dict(zip(names, fast)), (ep.support_x[i],))
            inner = ((out - ep.support_y[i]) ** 2).mean()
            grads = torch.autograd.grad(inner, fast, create_graph=not first_order)
            fast = [p - lr * g for p, g in zip(fast, grads)]
        out = torch.func.functional_call(net, dict(zip(names, fast)), (ep.query_x[i],))
        total = total + ((out - ep.query_y[i]) ** 2).mean()
    return total / ep.num_tasks


def _grads(loss, net):
    return torch.autograd.grad(loss, list(net.parameters()))


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_per_task_autograd(steps):
    _, ep = tiny_problem()
    net = tiny_net()
    cfg = SupervisedMAMLConfig(inner_lr=0.05, inner_steps=steps)
    batched = _grads(outer_loss(net, params_of(net), ep, "mse", cfg), net)
    reference = _grads(_loop_outer(net, ep, 0.05, steps, first_order=False), net)
    for a, b in zip(batched, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_second_order_meta_gradient_matches_finite_differences():
    _, ep = tiny_problem()
    net = tiny_net()
    cfg = SupervisedMAMLConfig(inner_lr=0.05, inner_steps=1)
    grads = _grads(outer_loss(net, params_of(net), ep, "mse", cfg), net)
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype)
                 for i, p in enumerate(net.parameters())]
    eps = 1e-6

    def at(sign):
        shifted = {n: (p.detach() + sign * eps * d).requires_grad_(True) for (n, p), d in zip(net.named_parameters(), direction)}
        return float(outer_loss(net, shifted, ep, "mse", cfg).detach())

    numeric = (at(1) - at(-1)) / (2 * eps)
    analytic = float(sum((g * d).sum() for g, d in zip(grads, direction)))
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_first_order_drops_exactly_the_second_order_term():
    _, ep = tiny_problem()
    net = tiny_net()
    lr = 0.05
    second = _grads(outer_loss(net, params_of(net), ep, "mse", SupervisedMAMLConfig(inner_lr=lr)), net)
    first = _grads(outer_loss(net, params_of(net), ep, "mse", SupervisedMAMLConfig(inner_lr=lr, first_order=True)), net)
    # first order: mean_i grad L_Q(theta_i'); the dropped term: -lr * mean_i H_S(theta) grad L_Q(theta_i')
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    fo_ref = [torch.zeros_like(p) for p in params]
    term = [torch.zeros_like(p) for p in params]
    for i in range(ep.num_tasks):
        def support_loss(*ps, i=i):
            out = torch.func.functional_call(net, dict(zip(names, ps)), (ep.support_x[i],))
            return ((out - ep.support_y[i]) ** 2).mean()

        g = torch.autograd.grad(support_loss(*params), params)
        fast = [p.detach() - lr * gi for p, gi in zip(params, g)]
        fast = [f.requires_grad_(True) for f in fast]
        out = torch.func.functional_call(net, dict(zip(names, fast)), (ep.query_x[i],))
        gq = torch.autograd.grad(((out - ep.query_y[i]) ** 2).mean(), fast)
        _, hvp = torch.autograd.functional.hvp(support_loss, tuple(p.detach() for p in params), gq)
        for j in range(len(params)):
            fo_ref[j] += gq[j] / ep.num_tasks
            term[j] += -lr * hvp[j] / ep.num_tasks
    for f, r in zip(first, fo_ref):
        torch.testing.assert_close(f, r, rtol=1e-10, atol=1e-12)
    for s, f, t in zip(second, first, term):
        torch.testing.assert_close(s - f, t, rtol=1e-8, atol=1e-12)
    assert max(float(t.abs().max()) for t in term) > 1e-4  # the term is not trivially zero here


def test_meta_sgd_with_equal_rates_is_maml():
    _, ep = tiny_problem()
    net = tiny_net()
    learner = MetaSGDLearner(net, 0.05, 0.05, torch.Generator().manual_seed(0)).double()
    a = _grads(metasgd_outer_loss(learner, ep, "mse", MetaSGDConfig()), net)
    b = _grads(outer_loss(net, params_of(net), ep, "mse", SupervisedMAMLConfig(inner_lr=0.05)), net)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    loss = metasgd_outer_loss(learner, ep, "mse", MetaSGDConfig())
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(loss, list(learner.alpha.parameters())))


def test_reptile_update_equals_its_formula():
    _, ep = tiny_problem()  # 5 support points per task: 5 inner steps of one point each
    net = tiny_net()
    lr, eps, steps = 0.1, 0.3, 5
    theta = {n: p.detach().clone() for n, p in net.named_parameters()}
    phi = inner_loop(net, params_of(net), ep, "mse", lr, steps)
    names = list(theta)
    expected_phi = []
    for i in range(ep.num_tasks):  # plain SGD, task by task
        w = [theta[n].clone() for n in names]
        for j in range(steps):
            w = [t.requires_grad_(True) for t in w]
            out = torch.func.functional_call(net, dict(zip(names, w)), (ep.support_x[i, j : j + 1],))
            g = torch.autograd.grad(((out - ep.support_y[i, j : j + 1]) ** 2).mean(), w)
            w = [(t - lr * gi).detach() for t, gi in zip(w, g)]
        expected_phi.append(w)
    for k, n in enumerate(names):
        torch.testing.assert_close(phi[n], torch.stack([e[k] for e in expected_phi]), rtol=1e-10, atol=1e-12)
    params = params_of(net)
    reptile_update_(params, phi, eps)
    for k, n in enumerate(names):
        mean_phi = torch.stack([e[k] for e in expected_phi]).mean(0)
        torch.testing.assert_close(params[n].detach(), theta[n] + eps * (mean_phi - theta[n]), rtol=1e-10, atol=1e-12)


def test_batched_adapter_matches_single_task_sgd():
    _, ep = tiny_problem()
    net = tiny_net()
    ad = GradientAdapter(net, params_of(net), 0.1, "mse")
    ad.reset(ep.support_x, ep.support_y)
    ad.adapt()
    ad.adapt()
    pred = ad.predict(ep.query_x)
    for i in range(ep.num_tasks):
        single = GradientAdapter(net, params_of(net), 0.1, "mse")
        single.reset(ep.support_x[i : i + 1], ep.support_y[i : i + 1])
        single.adapt()
        single.adapt()
        torch.testing.assert_close(single.predict(ep.query_x[i : i + 1])[0], pred[i])
    assert expand_params(params_of(net), 3)["w0"].shape == (3, 6, 1)


# --- references, determinism, configs ------------------------------------------------------------


def test_oracle_is_exact_for_two_or_more_shots():
    fam = SinusoidFamily()
    tasks = fam.sample_tasks(30, np.random.default_rng(2))
    problem = SinusoidProblem(fam, tasks)
    for k in (2, 5):
        xs, ys = fam.sample_support(tasks, k, np.random.default_rng(k))
        xq = np.tile(query_grid(), (30, 1))
        ep = Episode(*(torch.as_tensor(a, dtype=torch.float32).unsqueeze(-1) for a in (xs, ys, xq, fam.targets(tasks, xq))))
        ad = make("oracle").adapter(SupervisedEvalContext(problem, 0, k, 10))
        assert adaptation_curve(ad, ep, 2, "mse")["loss"].max() < 1e-8


def test_seeded_determinism():
    b = metarl_bench.benchmark(SMOKE)
    for name in ("maml", "reptile", "meta-sgd", "pretrained"):
        runs = []
        for seed in (0, 0, 1):
            agent = make(name, iterations=15)
            agent.configure(b)
            runs.append(evaluate_supervised(agent, b, seed=seed).returns)
        assert np.array_equal(runs[0], runs[1]), name
        assert not np.array_equal(runs[0], runs[2]), name


def test_supervised_agents_refuse_rl_benchmarks_and_vice_versa():
    bandit = metarl_bench.benchmark("MetaRL/Bandit-k5-n10-smoke-v0")
    assert "supervised" in make("maml").supports(bandit)
    assert metarl_bench.agent("random").supports(metarl_bench.benchmark(SMOKE)) is not None


def test_tuned_configs_load_per_benchmark():
    for name in LEARNERS:
        for k in (5, 10, 20):
            agent = make(name)
            cfg = agent.configure(metarl_bench.benchmark(f"MetaRL/Sinusoid-K{k}-v0"))
            assert cfg.hidden_sizes == (40, 40), name
    maml = make("maml")
    cfg = maml.configure(metarl_bench.benchmark("MetaRL/Sinusoid-K10-v0"))
    assert (cfg.meta_batch_size, cfg.inner_lr, cfg.outer_lr, cfg.first_order) == (25, 0.01, 0.001, False)
    assert make("maml", iterations=7).configure(metarl_bench.benchmark(SMOKE)).iterations == 7


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,field", [("maml", "inner_lr"), ("maml", "outer_lr"), ("fomaml", "inner_lr"),
                                        ("reptile", "inner_lr"), ("reptile", "outer_lr"), ("scratch", "inner_lr"),
                                        ("pretrained", "inner_lr")])
@pytest.mark.parametrize("value", [0.0, -0.01])
def test_non_positive_learning_rates_are_refused(name, field, value):
    with pytest.raises(ValueError, match=field):
        make(name, **{field: value})


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="inner_lr"):
        make("meta-sgd", inner_lr=(0.0, 0.1))
    with pytest.raises(ValueError, match="meta_batch_size"):
        make("maml", meta_batch_size=0)
    with pytest.raises(ValueError, match="hidden_sizes"):
        make("maml", hidden_sizes=())
    with pytest.raises(TypeError, match="inner_lr"):
        make("maml", inner_lr="fast")


class _PoisonedProblem(SinusoidProblem):
    """Targets turn NaN from the ``bad``-th batch on."""

    def __init__(self, *args, bad: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad, self.calls = bad, 0

    def sample(self, *args):
        ep = super().sample(*args)
        self.calls += 1
        if self.calls > self.bad:
            ep.query_y[:] = float("nan")
            ep.support_y[:] = float("nan")
        return ep


@pytest.mark.parametrize("name", ["maml", "fomaml", "meta-sgd", "reptile", "pretrained"])
def test_nan_loss_names_the_iteration_and_keeps_the_last_good_checkpoint(name, tmp_path):
    fam = SinusoidFamily()
    problem = _PoisonedProblem(fam, fam.sample_tasks(20, np.random.default_rng(0)), bad=3)
    ctx = SupervisedTrainContext(problem, seed=0, shots=5, query_shots=5, budget_samples=10**9)
    agent = make(name, iterations=10)
    with pytest.raises(DivergenceError, match="at iteration 4 of 10.*after iteration 3") as err:
        agent.meta_train(ctx)  # three clean samples: iterations 1-3 complete, the 4th diverges
    path = err.value.save(tmp_path, seed=0)  # what metarl_bench.evaluate does with the error
    assert path is not None and path.exists() and str(path) in str(err.value)
    saved = torch.load(path)
    assert saved["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state"].values())


# --- meta-sgd's learned steps --------------------------------------------------------------------


def test_meta_sgd_adapter_stops_after_its_learned_steps():
    problem, ep = tiny_problem()
    ep = Episode(*(t.float() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y)))
    agent = make("meta-sgd", iterations=3, inner_steps=1, test_steps=2)
    ctx = SupervisedTrainContext(problem, seed=0, shots=5, query_shots=5, budget_samples=10**6)
    agent.meta_train(ctx)
    loss = adaptation_curve(agent.adapter(SupervisedEvalContext(problem, 0, 5, 4)), ep, 4, "mse")["loss"]
    assert not np.allclose(loss[:, 0], loss[:, 1]) and not np.allclose(loss[:, 1], loss[:, 2])
    np.testing.assert_array_equal(loss[:, 2], loss[:, 4])  # no steps after test_steps
