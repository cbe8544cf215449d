"""Few-shot image classification: the folder loader, N-way K-shot episodes, learners on images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from metarl_bench.agents import agent_class
from metarl_bench.fewshot_images import (
    FewShotImageProblem,
    evaluate_fewshot_images,
    load_image_folder,
    split_classes,
)
from metarl_bench.supervised import SupervisedTrainContext

torch.set_num_threads(1)

SIZE = 8


def write_images(root, classes: int = 8, per_class: int = 6, nested: bool = True, seed: int = 0) -> None:
    """A tiny Omniglot-like set: class c is a dark 3x3 blob at its own position on white, plus noise.

    Nested as ``alphabet_<a>/character_<c>/<i>.png`` (Omniglot's layout) when ``nested``.
    """
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"alphabet_{c % 2}" / f"character_{c:02d}" if nested else root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        r, q = divmod(c, 3)
        for i in range(per_class):
            img = np.full((SIZE, SIZE), 255.0)
            img[2 * r : 2 * r + 3, 2 * q + 1 : 2 * q + 4] = 0.0
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
            Image.fromarray(img.astype(np.uint8), mode="L").save(folder / f"{i}.png")


@pytest.fixture
def image_root(tmp_path):
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


def test_flat_layout_and_resize(tmp_path):
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


def test_too_few_images_names_the_class_and_counts(tmp_path):
    write_images(tmp_path / "omni", classes=4, per_class=6)
    (tmp_path / "omni" / "alphabet_1" / "character_03" / "5.png").unlink()
    classes = load_image_folder(tmp_path / "omni", image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, [0, 1, 2, 3], n_way=2)
    with pytest.raises(ValueError, match=r"class 'alphabet_1/character_03' .* has 5 images but 1-shot episodes "
                                         r"with 5 query images per class need 6"):
        problem.sample(1, 1, 5, np.random.default_rng(0))
    problem.sample(1, 1, 4, np.random.default_rng(0))  # 5 images are enough for 1 + 4


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path / "empty")
    write_images(tmp_path / "loose", classes=2, per_class=1, nested=False)
    Image.new("L", (4, 4)).save(tmp_path / "loose" / "stray.png")
    with pytest.raises(ValueError, match="own sub-folder"):
        load_image_folder(tmp_path / "loose")


def test_evaluate_needs_enough_classes_for_disjoint_splits(image_root):
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_fewshot_images(make("scratch"), image_root, n_way=5, image_size=(SIZE, SIZE))


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "meta-sgd", "pretrained", "scratch"])
@pytest.mark.parametrize("net", ["conv", "mlp"])
def test_every_learner_runs_on_images(image_root, name, net):
    config = {} if name == "scratch" else {"iterations": 3, "meta_batch_size": 2}
    hidden = {"hidden_sizes": (4, 4)} if net == "conv" else {"hidden_sizes": (16,)}
    agent = make(name, **config, **hidden)
    out = evaluate_fewshot_images(agent, image_root, n_way=3, k_shot=1, n_query=2, n_test_classes=3,
                                  test_episodes=5, inner_steps=2, image_size=(SIZE, SIZE), net=net)
    assert out["steps"] == [0, 1, 2] and len(out["accuracy"]) == 3
    assert all(0.0 <= a <= 1.0 for a in out["accuracy"]) and all(np.isfinite(out["loss"]))
    assert out["chance"] == pytest.approx(1 / 3)
    assert not set(out["train_classes"]) & set(out["test_classes"])
    per_point = 3 * (1 + 2) if name != "reptile" else 3 * 1 * 5  # reptile: K shots per inner step, 5 steps
    assert out["meta_train_samples"] == (0 if name == "scratch" else 3 * 2 * per_point)


def test_reference_agents_refuse_images(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, list(range(8)), n_way=3)
    from metarl_bench.supervised import SupervisedEvalContext

    for name in ("oracle", "prior-mean"):
        with pytest.raises(ValueError, match="needs a problem"):
            make(name).adapter(SupervisedEvalContext(problem, 0, 1, 1))


def test_image_training_counts_shots_per_class(image_root):
    classes = load_image_folder(image_root, image_size=(SIZE, SIZE))
    problem = FewShotImageProblem(classes, list(range(8)), n_way=4)
    ctx = SupervisedTrainContext(problem, seed=0, shots=1, query_shots=2, budget_samples=10**6)
    ctx.sample(5)
    assert ctx.samples == 5 * 4 * 3


@pytest.mark.slow
def test_maml_learns_to_classify_blobs(tmp_path):
    write_images(tmp_path / "omni", classes=9, per_class=8)
    out = evaluate_fewshot_images(
        make("maml", iterations=150, meta_batch_size=4, inner_lr=0.5, outer_lr=0.005, hidden_sizes=(32,)),
        tmp_path / "omni", n_way=3, k_shot=1, n_query=3, n_test_classes=3, test_episodes=100, inner_steps=3,
        image_size=(SIZE, SIZE), net="mlp",
    )
    # 3-way 1-shot on unseen classes: chance (1/3) before adaptation, about 0.8 after three steps
    assert out["accuracy"][0] < 0.45
    assert out["accuracy"][-1] > 0.6
