"""The Meta-World families and benchmarks: ids, tasks, the env wrapper, Meta-World's goals, the
missing-extra errors. Skipped where the ``metaworld`` extra is not installed (except the
missing-extra checks, which hide it)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import metarl_bench
from metarl_bench.benchmark_defs_metaworld import MetaWorldBenchmark, metaworld_goals
from metarl_bench.benchmarks import benchmark_ids
from metarl_bench.checks import check_family, format_report
from metarl_bench.envs import metaworld as mwenv
from metarl_bench.envs.metaworld import ENV_NAMES, SPLITS, MetaWorldTask

metaworld = pytest.importorskip("metaworld")

REACH = "MetaRL/MetaWorld-reach-v0"


def _rand_vecs(tasks):
    return [tuple(float(v) for v in pickle.loads(t.data)["rand_vec"]) for t in tasks]


def test_env_names_and_splits_are_metaworlds():
    from metaworld import env_dict

    assert list(ENV_NAMES) == [k.removesuffix("-v3") for k in env_dict.ALL_V3_ENVIRONMENTS]
    for split, mw in (("ML10", env_dict.ML10_V3), ("ML45", env_dict.ML45_V3)):
        for part in ("train", "test"):
            assert list(SPLITS[split][part]) == [k.removesuffix("-v3") for k in mw[part]]


def test_every_env_and_split_has_a_family_and_benchmarks():
    fids = set(metarl_bench.family_ids())
    bids = set(benchmark_ids())
    for name in ENV_NAMES:
        assert f"MetaRL/MetaWorld-{name}-v0" in fids
        for tier in ("", "-quick", "-smoke"):
            assert f"MetaRL/MetaWorld-ML1-{name}{tier}-v0" in bids
    for split in SPLITS:
        assert f"MetaRL/MetaWorld-{split}-v0" in fids
        assert {f"MetaRL/MetaWorld-{split}{t}-v0" for t in ("", "-quick", "-smoke")} <= bids
    fam = metarl_bench.family(REACH)
    assert fam.horizon == 500
    assert "3.1.1" in (type(fam).__doc__ or "") and "v2 rewards" in (type(fam).__doc__ or "")


def test_check_env_passes_on_reach():
    results = check_family(REACH)
    assert all(r.passed for r in results), format_report(results, title=REACH)


def test_task_json_round_trip_and_bad_fields():
    task = MetaWorldTask(env_name="push", rand_vec=(0.0, 0.6, 0.02, 0.0, 0.85, 0.01), partially_observable=True)
    assert MetaWorldTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    with pytest.raises(ValueError, match=r"'pick-place'"):  # close matches of an unknown name
        MetaWorldTask(env_name="pick-plase", rand_vec=(0.0, 0.6, 0.02))
    with pytest.raises(ValueError, match="rand_vec"):
        MetaWorldTask(env_name="push", rand_vec=(0.0, 0.6))
    with pytest.raises(ValueError, match="partially_observable"):
        MetaWorldTask(env_name="push", rand_vec=(0.0, 0.6, 0.02), partially_observable=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'reach'"):
        mwenv.family_id("reech")


def test_set_task_converts_to_metaworlds_task_and_matches_metaworld_step_for_step():
    bench = metarl_bench.benchmark("MetaRL/MetaWorld-ML1-push-smoke-v0")
    task = bench.test_tasks[0]
    data = pickle.loads(task.to_metaworld().data)
    assert data["rand_vec"].tolist() == list(task.rand_vec) and data["partially_observable"] is True
    ours = gym.make("MetaRL/MetaWorld-push-v0", task=task)
    theirs = mwenv.env_class("push")()
    theirs.set_task(task.to_metaworld())
    o1, _ = ours.reset(seed=0)
    o2, _ = theirs.reset()
    np.testing.assert_array_equal(o1, o2)
    assert np.all(o1[-3:] == 0)  # the goal is hidden
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, 4)).astype(np.float32)
    for a in actions:
        s1, s2 = ours.step(a), theirs.step(a)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1] == s2[1] and s1[4]["success"] == float(s2[4]["success"])
    exposed = gym.make("MetaRL/MetaWorld-push-v0", task=task, expose_task=True)
    obs, _ = exposed.reset(seed=0)
    np.testing.assert_array_equal(obs[36:39], theirs._target_pos)  # the goal, filled in
    np.testing.assert_array_equal(obs[39:], task.features())
    visible = MetaWorldTask(env_name="push", rand_vec=task.rand_vec, partially_observable=False)
    obs, _ = gym.make("MetaRL/MetaWorld-push-v0", task=visible).reset(seed=0)
    np.testing.assert_array_equal(obs[36:39], theirs._target_pos)  # a task that shows its goal


def test_episodes_truncate_at_500_steps_with_success_in_info():
    env = gym.make(REACH)
    env.reset(seed=0)
    for t in range(1, 501):
        _, _, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))
        assert "success" in info and not terminated
        assert truncated == (t == 500)


def test_ml1_goals_are_metaworlds_with_its_seeds_and_train_test_disjoint():
    bench = metarl_bench.benchmark("MetaRL/MetaWorld-ML1-reach-v0")
    assert isinstance(bench, MetaWorldBenchmark) and bench.episode_score == "success"
    mw = metaworld.ML1("reach-v3", seed=bench.task_seed)
    assert [t.rand_vec for t in bench.train_tasks] == _rand_vecs(mw.train_tasks)
    assert [t.rand_vec for t in bench.test_tasks] == _rand_vecs(mw.test_tasks)
    assert len(bench.train_tasks) == len(bench.test_tasks) == 50
    assert not set(bench.train_tasks) & set(bench.test_tasks)
    quick = metarl_bench.benchmark("MetaRL/MetaWorld-ML1-reach-quick-v0")
    assert quick.test_tasks == bench.test_tasks[:10] and quick.train_tasks == bench.train_tasks
    assert quick.task_hash != bench.task_hash


def test_ml10_and_ml45_classes():
    for split, n_train in (("ML10", 10), ("ML45", 45)):
        bench = metarl_bench.benchmark(f"MetaRL/MetaWorld-{split}-v0")
        train, test = bench.classes  # type: ignore[attr-defined]
        assert len(set(train)) == n_train and len(set(test)) == 5 and not set(train) & set(test)
        assert (bench.n_train, bench.n_test) == (n_train * 50, 5 * 50)
    quick = metarl_bench.benchmark("MetaRL/MetaWorld-ML10-quick-v0")
    assert {t.env_name for t in quick.train_tasks} == set(SPLITS["ML10"]["train"])
    assert {t.env_name for t in quick.test_tasks} == set(SPLITS["ML10"]["test"])


@pytest.mark.slow
def test_ml10_and_ml45_goals_are_metaworlds():
    for split in ("ML10", "ML45"):
        bench = metarl_bench.benchmark(f"MetaRL/MetaWorld-{split}-v0")
        mw = getattr(metaworld, split)(seed=bench.task_seed)
        assert [t.rand_vec for t in bench.train_tasks] == _rand_vecs(mw.train_tasks)
        assert [t.rand_vec for t in bench.test_tasks] == _rand_vecs(mw.test_tasks)
        assert [t.env_name + "-v3" for t in bench.test_tasks] == [t.env_name for t in mw.test_tasks]


def test_goal_draws_leave_numpys_global_generator_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    metaworld_goals(("reach",), seed=0, per_class=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_a_task_outside_the_family_or_split_is_refused():
    push = MetaWorldTask(env_name="push", rand_vec=(0.0, 0.6, 0.02, 0.0, 0.85, 0.01))
    assembly = MetaWorldTask(env_name="assembly", rand_vec=(0.0, 0.6, 0.0, 0.0, 0.8, 0.1))
    with pytest.raises(ValueError, match="push"):
        metarl_bench.family(REACH).make_vector_env([push])
    with pytest.raises(ValueError, match="assembly"):
        metarl_bench.family("MetaRL/MetaWorld-ML10-v0").make_vector_env([assembly])
    with pytest.raises(ValueError, match="assembly"):
        gym.make("MetaRL/MetaWorld-ML10-v0").unwrapped.set_task(assembly)
    metarl_bench.family("MetaRL/MetaWorld-ML45-v0").check_task(assembly)  # in ML45's split


def test_the_ml10_family_switches_environments_with_the_task():
    env = gym.make("MetaRL/MetaWorld-ML10-v0")
    for name in ("drawer-open", "reach"):
        task = MetaWorldTask(env_name=name, rand_vec=mwenv.draw_rand_vec(name, np.random.default_rng(1)))
        env.unwrapped.set_task(task)
        env.reset(seed=0)
        assert type(env.unwrapped._mw).__name__ == type(mwenv.env_class(name)()).__name__  # private: the wrapped env


_HIDE = "import sys; sys.modules['metaworld'] = None\n"  # makes `import metaworld` fail


def _without_metaworld(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _HIDE + code], capture_output=True, text=True, timeout=120)


def test_without_the_extra_every_id_names_it_in_one_line():
    code = (
        "from metarl_bench.cli import main\n"
        "import sys\n"
        "codes = [main(['check-env', 'MetaRL/MetaWorld-reach-v0']),\n"
        "         main(['evaluate', '--benchmark', 'MetaRL/MetaWorld-ML1-push-v0', '--agent', 'random', '--no-save'])]\n"
        "import gymnasium as gym, metarl_bench.envs\n"
        "try:\n"
        "    gym.make('MetaRL/MetaWorld-ML45-v0')\n"
        "except Exception as exc:\n"
        "    print('gym:', exc, file=sys.stderr)\n"
        "print(codes)\n"
    )
    out = _without_metaworld(code)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 3, out.stderr
    for line, fid in zip(lines, ("MetaWorld-reach-v0", "MetaWorld-ML1-push-v0", "MetaWorld-ML45-v0")):
        assert fid in line and "pip install 'metarl-bench[metaworld]'" in line
    assert out.stdout.strip().endswith("[2, 2]")


def test_without_the_extra_list_shows_no_metaworld_id():
    out = _without_metaworld("from metarl_bench.cli import main; main(['list'])")
    assert out.returncode == 0, out.stderr
    assert "MetaWorld" not in out.stdout and "Bandit" in out.stdout


def test_list_does_not_import_metaworld():
    code = "import sys; from metarl_bench.cli import main; main(['list']); print('metaworld' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MetaRL/MetaWorld-ML1-reach-v0" in out.stdout
    assert out.stdout.strip().endswith("False")


def test_plate_slide_side_reads_its_task_though_random_play_does_not_show_it():
    # On plate-slide-side (and -back-side) random actions never touch the puck, so with the goal
    # hidden neither observation nor reward depends on it; the distance to the goal in info
    # does, which is what check-env's set_task check reads on these two (tested below).
    fid = "MetaRL/MetaWorld-plate-slide-side-v0"
    first, second = metarl_bench.family(fid).sample_tasks(2, np.random.default_rng(0))
    assert first != second
    seen = []
    for task in (first, second):
        env = gym.make(fid, task=task)
        env.reset(seed=0)
        seen.append(env.step(np.zeros(4, dtype=np.float32))[4]["obj_to_target"])
    assert seen[0] != seen[1]


def test_check_env_set_task_check_passes_on_plate_slide_side():
    from metarl_bench.checks import _check_set_task_persists

    fam = metarl_bench.family("MetaRL/MetaWorld-plate-slide-side-v0")
    assert "took effect at the next reset" in _check_set_task_persists(fam, 0)
