"""Few-shot image classification (:mod:`metarl_bench.fewshot_images`): the folder loader, N-way
K-shot episodes, the benchmark over a folder, and every learner on it through ``evaluate``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import metarl_bench
from metarl_bench import stats
from metarl_bench.agents import agent_class
from metarl_bench.fewshot_images import (
    FewShotImageProblem,
    ImageEpisodeTask,
    fewshot_image_benchmark,
    load_image_folder,
    split_classes,
)
from metarl_bench.harness import NotSupported
from metarl_bench.results import Record, load_record
from metarl_bench.supervised import SupervisedTrainContext

torch.set_num_threads(1)

SIZE = 8  # the side of the images write_images draws (tests/conftest.py)


@pytest.fixture
def image_root(tmp_path, write_images):
    write_images(tmp_path / "omni")
    return tmp_path / "omni"


def make(name: str, **config):
    return agent_class(name, "supervised")(**config)


def test_loader_reads_nested_class_folders(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    assert len(classes.names) == 8 and classes.names[0] == "alphabet_0/character_00"
    assert set(classes.counts().values()) == {6}
    im = classes.images[0]
    assert im.shape == (6, 1, SIZE, SIZE) and im.dtype == torch.float32
    assert 0.0 <= float(im.min()) and float(im.max()) <= 1.0
    # strokes (dark on white) become 1 on 0
    assert float(im[:, 0, 0:3, 1:4].mean()) > 0.8 and float(im[:, 0, 6:, 6:].mean()) < 0.2


def test_flat_layout_and_resize(tmp_path, write_images):
    write_images(tmp_path / "flat", classes=3, per_class=2, nested=False)
    classes = load_image_folder(tmp_path / "flat", image_size=(5, 4))
    assert classes.names == ["class_00", "class_01", "class_02"]
    assert classes.images[2].shape == (2, 1, 5, 4)


def test_episodes_have_n_way_k_shot_structure(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, list(range(8)), n_way=3)
    ep = problem.sample(4, 2, 3, np.random.default_rng(0))
    assert ep.support_x.shape == (4, 6, 1, SIZE, SIZE) and ep.query_x.shape == (4, 9, 1, SIZE, SIZE)
    assert ep.support_y.dtype == torch.int64
    # shot-major order: every block of N support points holds each label once
    assert ep.support_y[0].tolist() == [0, 1, 2, 0, 1, 2]
    assert sorted(ep.query_y[0].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # images of one label come from one class folder: same blob position
    for t in range(4):
        blobs = [int(ep.support_x[t, i, 0].flatten().argmax()) for i in range(6)]
        for lab in range(3):
            pos = {blobs[i] for i in range(6) if ep.support_y[t, i] == lab}
            assert len(pos) <= 2
    again = problem.sample(4, 2, 3, np.random.default_rng(0))
    assert torch.equal(ep.support_x, again.support_x) and torch.equal(ep.query_y, again.query_y)


def test_class_split_is_disjoint():
    train, test = split_classes(10, 3, np.random.default_rng(0))
    assert len(train) == 7 and len(test) == 3 and not set(train) & set(test)
    with pytest.raises(ValueError, match="n_test"):
        split_classes(4, 4, np.random.default_rng(0))


def test_too_few_classes_is_an_error_with_counts(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    with pytest.raises(ValueError, match="5-way episodes need at least 5 classes, but this split has 3"):
        FewShotImageProblem(classes, [0, 1, 2], n_way=5)


def test_too_few_images_names_the_class_and_counts(tmp_path, write_images):
    write_images(tmp_path / "omni", classes=4, per_class=6)
    (tmp_path / "omni" / "alphabet_1" / "character_03" / "5.png").unlink()
    classes = load_image_folder(tmp_path / "omni", image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, [0, 1, 2, 3], n_way=2)
    with pytest.raises(ValueError, match=r"class 'alphabet_1/character_03' .* has 5 images but 1-shot episodes "
                                         r"with 5 query images per class need 6"):
        problem.sample(1, 1, 5, np.random.default_rng(0))
    problem.sample(1, 1, 4, np.random.default_rng(0))  # 5 images are enough for 1 + 4


def test_bad_folders(tmp_path, write_images):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path / "empty")
    write_images(tmp_path / "loose", classes=2, per_class=1, nested=False)
    Image.new("L", (4, 4)).save(tmp_path / "loose" / "stray.png")
    with pytest.raises(ValueError, match="own sub-folder"):
        load_image_folder(tmp_path / "loose")


def small_bench(root, **kw):
    args = dict(ways=3, shots=1, queries=2, test_classes=3, test_episodes=5, inner_steps=2, image_size=(SIZE, SIZE))
    return fewshot_image_benchmark(root, **{**args, **kw})


def test_benchmark_needs_enough_classes_for_disjoint_splits(image_root):
    with pytest.raises(ValueError, match="disjoint"):
        fewshot_image_benchmark(image_root, ways=5, image_size=(SIZE, SIZE))


def test_benchmark_splits_classes_and_hashes_them(image_root, tmp_path, write_images):
    bench = small_bench(image_root)
    assert bench.family.kind == "supervised" and bench.headline == "final" and not bench.lower_is_better
    assert bench.id == "Images/omni-3way-1shot-v0" and bench.version == 0
    train = {t.name for t in bench.train_tasks}
    test_classes = {c for t in bench.test_tasks for c in t.classes}
    assert len(train) == 5 and len(bench.test_tasks) == 5
    assert not train & test_classes and len(test_classes) <= 3
    # a fresh benchmark over the same folder and seed has the same task hash
    assert small_bench(image_root).task_hash == bench.task_hash
    # another seed draws another split / other episodes
    assert small_bench(image_root, seed=1).task_hash != bench.task_hash
    # the hash changes with the folder: one more class, or one changed image
    copy = tmp_path / "copy"
    write_images(copy)
    assert small_bench(copy).task_hash == bench.task_hash  # the folder's name is not part of it
    (copy / "alphabet_0" / "character_99").mkdir()
    for i in range(6):
        Image.new("L", (SIZE, SIZE), color=3 * i).save(copy / "alphabet_0" / "character_99" / f"{i}.png")
    assert small_bench(copy).task_hash != bench.task_hash
    write_images(tmp_path / "edited")
    first_train = bench.train_tasks[0].name
    Image.new("L", (SIZE, SIZE), color=7).save(tmp_path / "edited" / first_train / "0.png")
    assert small_bench(tmp_path / "edited").task_hash != bench.task_hash


def test_test_episode_holds_each_tasks_images(image_root):
    """Row t of the harness's batch is test task t: label l's images are class t.classes[l]'s files."""
    bench = small_bench(image_root, shots=2)
    ep = bench.family.test_episode(bench)
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    assert ep.support_x.shape == (5, 6, 1, SIZE, SIZE) and ep.query_x.shape == (5, 6, 1, SIZE, SIZE)
    for t, task in enumerate(bench.test_tasks):
        assert isinstance(task, ImageEpisodeTask)
        for label, name in enumerate(task.classes):
            imgs = classes.images[classes.names.index(name)]
            for shot, j in enumerate(task.support[label]):  # shot-major: point = shot * N + label
                assert int(ep.support_y[t, shot * 3 + label]) == label
                assert torch.equal(ep.support_x[t, shot * 3 + label], imgs[j])
            for q, j in enumerate(task.query[label]):
                assert int(ep.query_y[t, q * 3 + label]) == label
                assert torch.equal(ep.query_x[t, q * 3 + label], imgs[j])
            assert not set(task.support[label]) & set(task.query[label])


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "meta-sgd", "pretrained", "scratch"])
@pytest.mark.parametrize("net", ["conv", "mlp"])
def test_every_learner_runs_on_images_through_evaluate(image_root, name, net):
    config = {} if name == "scratch" else {"iterations": 3, "meta_batch_size": 2}
    hidden = {"hidden_sizes": (4, 4)} if net == "conv" else {"hidden_sizes": (16,)}
    bench = small_bench(image_root, net=net)
    record = metarl_bench.evaluate(metarl_bench.agent(name, **config, **hidden), bench, seed=0)
    assert isinstance(record, Record)
    assert record.returns.shape == (5, 1, 3) and record.curve["x"] == [0.0, 1.0, 2.0]
    assert np.all((record.returns >= 0) & (record.returns <= 1))
    # every accuracy is a whole number of the 3 x 2 query labels of an episode
    assert np.allclose(record.returns * 6, np.round(record.returns * 6), atol=1e-5)
    final = record.scores["final"]["value"]
    assert final == pytest.approx(record.returns[:, 0, -1].mean())
    # normalised by chance (1/3) and perfect accuracy (1)
    assert record.scores["normalized_final"]["value"] == pytest.approx((final - 1 / 3) / (1 - 1 / 3))
    assert np.isfinite(record.scores["query_loss_final"]["value"])
    assert record.benchmark["task_hash"] == bench.task_hash and record.benchmark["lower_is_better"] is False
    assert record.extra["y_label"] == "query accuracy"
    per_point = 3 * (1 + 2) if name != "reptile" else 3 * 1 * 5  # reptile: K shots per inner step, 5 steps
    assert record.meta_train["env_steps"] == (0 if name == "scratch" else 3 * 2 * per_point)


def test_records_save_and_feed_stats_and_plots_but_not_the_leaderboard(image_root, tmp_path):
    from metarl_bench import leaderboard, plots

    bench = small_bench(image_root)
    recs = [metarl_bench.evaluate(metarl_bench.agent("scratch"), bench, seed=s, results=tmp_path / "res")
            for s in (0, 1)]
    path = tmp_path / "res" / "Images" / "omni-3way-1shot-v0" / "scratch" / "seed-1.json"
    again = load_record(path)
    assert np.array_equal(again.returns, recs[1].returns)
    agg = stats.aggregate(recs, bench, which="final")
    assert agg.scores.shape == (2, 5) and agg.normalized
    out = plots.plot_benchmark({"scratch": recs}, bench.id, tmp_path / "plots", bench=bench, formats=("png",))
    assert out and all(p.exists() for p in out)
    res = leaderboard.collect(tmp_path / "res")
    assert any("no benchmark of that name is registered" in p.message for p in res.problems)


def test_reference_agents_refuse_images(image_root):
    bench = small_bench(image_root)
    for name in ("oracle", "prior-mean"):  # refused before any work, naming what the data lacks
        with pytest.raises(NotSupported, match="needs the tasks'"):
            metarl_bench.evaluate(metarl_bench.agent(name), bench, seed=0)


def test_supports_refuses_agents_needing_knowledge_images_lack(image_root):
    class NeedsBasis(agent_class("scratch", "supervised")):  # type: ignore[misc,valid-type]
        needs_task_knowledge = ("basis",)

    bench = small_bench(image_root)
    assert "basis" in NeedsBasis().supports(bench)
    with pytest.raises(NotSupported, match="needs the tasks' basis"):
        metarl_bench.evaluate(NeedsBasis(), bench, seed=0)
    assert NeedsBasis().supports(metarl_bench.benchmark("MetaRL/Sinusoid-K5-smoke-v0")) is None


def test_image_training_counts_shots_per_class(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, list(range(8)), n_way=4)
    ctx = SupervisedTrainContext(problem, seed=0, shots=1, query_shots=2, budget_samples=10**6)
    ctx.sample(5)
    assert ctx.samples == 5 * 4 * 3


def test_a_budget_too_small_for_the_images_is_refused_before_training(image_root):
    # maml draws a support and a query set of K shots per task and iteration, and a shot of a
    # 3-way task is 3 images: 5 iterations x 2 tasks x 2 x 1 shot x 3 ways = 60 images > 59.
    bench = small_bench(image_root, meta_train_examples=59)
    agent = metarl_bench.agent("maml", iterations=5, meta_batch_size=2)
    with pytest.raises(ValueError, match="over the meta-training budget"):
        metarl_bench.evaluate(agent, bench, seed=0)
