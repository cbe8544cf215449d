"""The supervised few-shot track: sinusoid family, benchmarks, harness and learners."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench.agents import DivergenceError, agent_class
from metarl_bench.baselines.fewshot.common import MLP, GradientAdapter, expand_params, params_of
from metarl_bench.baselines.fewshot.maml import SupervisedMAMLConfig, outer_loss
from metarl_bench.baselines.fewshot.metasgd import MetaSGDConfig, MetaSGDLearner
from metarl_bench.baselines.fewshot.metasgd import outer_loss as metasgd_outer_loss
from metarl_bench.baselines.fewshot.reptile import inner_loop, reptile_update_
from metarl_bench.envs.sinusoid import SinusoidFamily, SinusoidTask
from metarl_bench.results import load_record
from metarl_bench.supervised import (
    Episode,
    SinusoidProblem,
    SupervisedEvalContext,
    SupervisedTrainContext,
    adaptation_curve,
    evaluate_supervised,
    evaluation_episode,
    query_grid,
    take_support,
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


# --- family --------------------------------------------------------------------------------


def test_task_validation_and_round_trip():
    fam = metarl_bench.family("MetaRL/Sinusoid-v0")
    assert fam.kind == "supervised"
    tasks = fam.sample_tasks(20, np.random.default_rng(0))
    assert tasks == fam.sample_tasks(20, np.random.default_rng(0))
    for t in tasks:
        assert 0.1 <= t.amplitude <= 5.0 and 0.0 <= t.phase <= math.pi
        assert fam.task_from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(ValueError, match="amplitude"):
        SinusoidTask(amplitude=6.0, phase=0.0)
    with pytest.raises(ValueError, match="phase"):
        SinusoidTask(amplitude=1.0, phase=-0.1)
    with pytest.raises(TypeError, match="Generator"):
        fam.sample_inputs(3, np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supervised"):
        fam.make_env()


def test_support_sampler_and_targets():
    fam = SinusoidFamily()
    tasks = [SinusoidTask(2.0, 0.5), SinusoidTask(0.5, 3.0)]
    x, y = fam.sample_support(tasks, 7, np.random.default_rng(5))
    x2, _ = fam.sample_support(tasks, 7, np.random.default_rng(5))
    assert x.shape == y.shape == (2, 7) and np.array_equal(x, x2)
    assert x.min() >= -5 and x.max() <= 5
    np.testing.assert_allclose(y[1], 0.5 * np.sin(x[1] - 3.0))
    with pytest.raises(ValueError, match="k"):
        fam.sample_support(tasks, 0, np.random.default_rng(0))


def test_prior_mean_floor_is_exact():
    fam = SinusoidFamily()
    assert fam.prior_mean_mse() == pytest.approx(3.00567, abs=1e-4)  # the prior-mean predictor's floor: about 3.006
    # the closed form on U[-5, 5] agrees with a dense grid, and E[y | x] with a Monte Carlo average
    assert fam.prior_mean_mse(np.linspace(-5, 5, 200_001)) == pytest.approx(fam.prior_mean_mse(), abs=1e-4)
    tasks = fam.sample_tasks(40_000, np.random.default_rng(0))
    xs = np.array([-4.0, -1.0, 0.0, 2.5])
    ys = fam.targets(tasks, np.broadcast_to(xs, (len(tasks), 4)))
    np.testing.assert_allclose(ys.mean(axis=0), fam.prior_mean(xs), atol=0.05)  # 5 standard errors
    np.testing.assert_allclose(ys.var(axis=0), fam.prior_variance(xs), rtol=0.05)


# --- benchmarks ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 10, 20])
def test_benchmark_definitions(k):
    b = metarl_bench.benchmark(f"MetaRL/Sinusoid-K{k}-v0")
    assert b.protocol.shots == k and b.protocol.inner_steps == 10
    assert b.lower_is_better and b.headline == "final"
    assert len(b.test_tasks) >= 1000
    assert not set(b.train_tasks) & set(b.test_tasks)
    floor = SinusoidFamily.prior_mean_mse(query_grid())
    assert b.references["random"]["final"] == pytest.approx(floor) and floor == pytest.approx(3.0158, abs=1e-3)
    assert b.references["oracle"]["final"] == 0.0


def test_test_episode_fixed_by_benchmark():
    b = metarl_bench.benchmark(SMOKE)
    e1, e2 = evaluation_episode(b), evaluation_episode(b)
    n = len(b.test_tasks) * b.protocol.runs_per_task
    assert e1.support_x.shape == (n, 10, 1) and e1.query_x.shape == (n, 100, 1)
    assert torch.equal(e1.support_x, e2.support_x)
    assert not torch.equal(e1.support_x[0], e1.support_x[1])  # independent runs see different points


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


# --- references and the harness ------------------------------------------------------------


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


def test_record_layout_and_round_trip(tmp_path):
    agent = make("maml", iterations=5)
    rec = metarl_bench.evaluate(agent, SMOKE, seed=3, results=tmp_path)
    b = metarl_bench.benchmark(SMOKE)
    assert rec.returns.shape == (len(b.test_tasks), b.protocol.runs_per_task, 11)
    assert rec.x.tolist() == list(range(11)) and rec.phase == ["budget"] * 10 + ["final"]
    assert rec.curve["x"] == [float(i) for i in range(11)]
    assert rec.scores["final"]["value"] == pytest.approx(rec.returns[:, :, 10].mean())
    assert rec.scores["mse_1_step"]["value"] == pytest.approx(rec.returns[:, :, 1].mean())
    assert rec.scores["online"]["value"] == pytest.approx(rec.returns[:, :, :10].sum(axis=2).mean())
    assert rec.extra["x_label"] == "inner gradient steps" and rec.benchmark["lower_is_better"]
    assert rec.agent["config"]["iterations"] == 5 and rec.meta_train["env_steps"] == 5 * 25 * 20
    loaded = load_record(rec.path(tmp_path))
    np.testing.assert_allclose(loaded.returns, rec.returns, rtol=1e-6)
    assert loaded.scores["mse_1_step"] == rec.scores["mse_1_step"]


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


def test_k_larger_than_the_available_points():
    x, y = torch.zeros(3, 8, 1), torch.zeros(3, 8, 1)
    assert [t.shape[1] for t in take_support(x, y, 5)] == [5, 5, 3, 3]
    with pytest.raises(ValueError, match="K=9 support points requested but each task has only 8"):
        take_support(x, y, 9)


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


def test_meta_training_budget_is_enforced():
    fam = SinusoidFamily()
    problem = SinusoidProblem(fam, fam.sample_tasks(20, np.random.default_rng(0)))
    ctx = SupervisedTrainContext(problem, seed=0, shots=5, query_shots=5, budget_samples=1000)
    with pytest.raises(RuntimeError, match="budget"):
        make("maml", iterations=10).meta_train(ctx)


# --- learning and speed --------------------------------------------------------------------


@pytest.mark.slow
def test_maml_learns_sinusoids():
    b = metarl_bench.benchmark(SMOKE)
    agent = make("maml", iterations=1500)
    agent.configure(b)
    rec = evaluate_supervised(agent, b, seed=0)
    floor = b.references["random"]["final"]
    assert rec.scores["final"]["value"] < 0.5 * floor
    assert rec.curve["mean"][10] < rec.curve["mean"][1] < rec.curve["mean"][0]


def test_supervised_perf_reports_both_timings(capsys):
    from metarl_bench.perf.fewshot import supervised_perf

    out = supervised_perf(iterations=2, repeats=1, meta_batch_size=3, shots=4)
    assert out["maml_batched_ms"] > 0 and out["maml_loop_ms"] > 0
    assert "speed-up" in capsys.readouterr().out


def test_meta_sgd_adapter_stops_after_its_learned_steps():
    problem, ep = tiny_problem()
    ep = Episode(*(t.float() for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y)))
    agent = make("meta-sgd", iterations=3, inner_steps=1, test_steps=2)
    ctx = SupervisedTrainContext(problem, seed=0, shots=5, query_shots=5, budget_samples=10**6)
    agent.meta_train(ctx)
    loss = adaptation_curve(agent.adapter(SupervisedEvalContext(problem, 0, 5, 4)), ep, 4, "mse")["loss"]
    assert not np.allclose(loss[:, 0], loss[:, 1]) and not np.allclose(loss[:, 1], loss[:, 2])
    np.testing.assert_array_equal(loss[:, 2], loss[:, 4])  # no steps after test_steps
