"""Few-shot image classification from a folder of images (N-way K-shot episodes).

The folder uses the usual one-folder-per-class layout, as Omniglot is distributed
(``images_background/<alphabet>/<character>/*.png``): every directory that directly
contains image files is one class, named by its path relative to the root, so both flat
(``root/<class>/*.png``) and nested layouts work. Nothing is downloaded.

An episode (task) draws N classes, gives them labels 0..N-1 in random order, and K
support and Q query images per class. The supervised learners of ``baselines/`` run on it
unchanged through :class:`FewShotImageProblem` (the same :class:`~metarl_bench.supervised.
FewShotProblem` interface as the sinusoids, with a cross-entropy loss), and
:func:`evaluate_fewshot_images` meta-trains an agent on the train classes and reports its
query accuracy on episodes of disjoint test classes after 0..``inner_steps`` steps.

    from metarl_bench.fewshot_images import evaluate_fewshot_images
    import metarl_bench
    out = evaluate_fewshot_images(metarl_bench.agent("maml", iterations=2000), "omniglot/images_background",
                                  n_way=5, k_shot=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl_bench.supervised import (
    Episode,
    SupervisedEvalContext,
    SupervisedTrainContext,
    adaptation_curve,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageClasses:
    """Every class of an image folder, loaded: ``images[i]`` has shape ``(n_i, C, H, W)``, values in [0, 1]."""

    root: Path
    names: list[str]
    images: list[torch.Tensor]

    def counts(self) -> dict[str, int]:
        return {n: int(im.shape[0]) for n, im in zip(self.names, self.images)}


def load_image_folder(
    root: str | Path, image_size: tuple[int, int] = (28, 28), grayscale: bool = True
) -> ImageClasses:
    """Load a one-folder-per-class image directory (nested class folders allowed), resized to ``image_size``.

    Omniglot convention: dark strokes on white; images are inverted when ``grayscale`` so
    strokes are 1 and the background 0.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected root/<class>/<image files>)")
    by_dir: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(s.startswith(".") for s in p.parts):
            by_dir.setdefault(p.parent, []).append(p)
    if not by_dir:
        raise ValueError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in class sub-folders")
    if root in by_dir:
        raise ValueError(
            f"image folder {root} has {len(by_dir[root])} images directly in it; put each class's images in its "
            f"own sub-folder (root/<class>/<image>)"
        )
    names, images = [], []
    w, h = int(image_size[1]), int(image_size[0])
    for d, files in sorted(by_dir.items()):
        arrs = []
        for f in files:
            with Image.open(f) as raw:
                im = raw.convert("L" if grayscale else "RGB").resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
            arrs.append(1.0 - a[None] if grayscale else a.transpose(2, 0, 1))
        names.append(d.relative_to(root).as_posix())
        images.append(torch.as_tensor(np.stack(arrs)))
    return ImageClasses(root, names, images)


def split_classes(n_classes: int, n_test: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Disjoint train and test class indices (``n_test`` classes held out, chosen by ``rng``)."""
    if not 0 < n_test < n_classes:
        raise ValueError(f"split_classes: need 0 < n_test < {n_classes} classes, got n_test={n_test}")
    perm = rng.permutation(n_classes)
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())


class FewShotImageProblem:
    """N-way episodes over a subset of an :class:`ImageClasses`; the learners' ``FewShotProblem``.

    ``sample(n_tasks, n_support, n_query, rng)`` counts support and query images **per
    class**. Support images are ordered shot-major (all classes' first shot, then the
    second, ...), so any contiguous block of ``N * k`` support points holds k shots of
    every class (Reptile's mini-batches rely on it). Inputs ``(tasks, points, C, H, W)``,
    labels ``(tasks, points)``.
    """

    loss = "cross_entropy"

    def __init__(
        self, classes: ImageClasses, class_ids: list[int], n_way: int, net: str = "conv", name: str | None = None
    ) -> None:
        if isinstance(n_way, bool) or not isinstance(n_way, int) or n_way < 2:
            raise ValueError(f"n_way must be an integer >= 2, got {n_way!r}")
        if net not in ("conv", "mlp"):
            raise ValueError(f"net must be 'conv' or 'mlp', got {net!r}")
        if len(class_ids) < n_way:
            raise ValueError(
                f"{classes.root}: {n_way}-way episodes need at least {n_way} classes, but this split has "
                f"{len(class_ids)} ({[classes.names[i] for i in class_ids]}); add class folders or lower n_way"
            )
        self.classes = classes
        self.class_ids = list(class_ids)
        self.n_way = n_way
        self.points_per_shot = n_way
        self.net = net
        self.name = name or f"{classes.root.name} {n_way}-way"
        self.image_shape = tuple(classes.images[0].shape[1:])

    def make_net(self, hidden_sizes: tuple[int, ...], generator: torch.Generator) -> torch.nn.Module:
        from metarl_bench.baselines.fewshot.common import ConvNet, FlatMLP

        if self.net == "conv":
            return ConvNet(self.image_shape[0], tuple(hidden_sizes), self.n_way, generator)
        return FlatMLP(int(np.prod(self.image_shape)), tuple(hidden_sizes), self.n_way, generator)

    def check_counts(self, n_support: int, n_query: int) -> None:
        """Raise ``ValueError`` naming the first class with fewer than ``n_support + n_query`` images."""
        need = n_support + n_query
        for i in self.class_ids:
            have = int(self.classes.images[i].shape[0])
            if have < need:
                raise ValueError(
                    f"class {self.classes.names[i]!r} in {self.classes.root} has {have} images but "
                    f"{n_support}-shot episodes with {n_query} query images per class need {need}; "
                    f"lower k_shot/n_query or drop the class"
                )

    def sample(self, n_tasks: int, n_support: int, n_query: int, rng: np.random.Generator) -> Episode:
        self.check_counts(n_support, n_query)
        n = self.n_way
        xs, ys, xq, yq = [], [], [], []
        for _ in range(n_tasks):
            chosen = rng.choice(self.class_ids, size=n, replace=False)  # position = label
            per_class = []
            for c in chosen:
                imgs = self.classes.images[int(c)]
                per_class.append(imgs[torch.as_tensor(rng.choice(len(imgs), size=n_support + n_query, replace=False))])
            stack = torch.stack(per_class, dim=1)  # (K + Q, N, C, H, W)
            labels = torch.arange(n).expand(n_support + n_query, n)
            xs.append(stack[:n_support].reshape(n_support * n, *self.image_shape))
            ys.append(labels[:n_support].reshape(-1))
            xq.append(stack[n_support:].reshape(n_query * n, *self.image_shape))
            yq.append(labels[n_support:].reshape(-1))
        return Episode(torch.stack(xs), torch.stack(ys), torch.stack(xq), torch.stack(yq))


def evaluate_fewshot_images(
    agent: Any,
    root: str | Path,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 5,
    n_test_classes: int | None = None,
    test_episodes: int = 200,
    inner_steps: int = 5,
    image_size: tuple[int, int] = (28, 28),
    net: str = "conv",
    seed: int = 0,
    budget_samples: int = 10**12,
) -> dict[str, Any]:
    """Meta-train ``agent`` on the train classes of ``root``, then score N-way K-shot test episodes.

    ``n_test_classes`` (default: a fifth, at least ``n_way``) are held out. Returns query
    accuracy and loss, averaged over ``test_episodes`` episodes, after 0..``inner_steps``
    adaptation steps, plus the chance level.
    """
    classes = load_image_folder(root, image_size)
    n_classes = len(classes.names)
    n_test = n_test_classes if n_test_classes is not None else max(n_way, n_classes // 5)
    if n_classes - n_test < n_way or n_test < n_way:
        raise ValueError(
            f"{root}: {n_classes} classes cannot give {n_way}-way train and test episodes from disjoint classes "
            f"(with {n_test} test classes); add classes or lower n_way"
        )
    ss_split, ss_train, ss_eval = np.random.SeedSequence(seed).spawn(3)
    train_ids, test_ids = split_classes(n_classes, n_test, np.random.default_rng(ss_split))
    train = FewShotImageProblem(classes, train_ids, n_way, net, name=f"{Path(root).name} train")
    test = FewShotImageProblem(classes, test_ids, n_way, net, name=f"{Path(root).name} test")
    test.check_counts(k_shot, n_query)
    ctx = SupervisedTrainContext(
        train, seed=int(ss_train.generate_state(1)[0]), shots=k_shot, query_shots=n_query, budget_samples=budget_samples
    )
    agent.meta_train(ctx)
    eval_seed = int(ss_eval.generate_state(1)[0])
    episode = test.sample(test_episodes, k_shot, n_query, np.random.default_rng(eval_seed))
    adapter = agent.adapter(SupervisedEvalContext(test, eval_seed, k_shot, inner_steps))
    curve = adaptation_curve(adapter, episode, inner_steps, test.loss, accuracy=True)
    acc, loss = curve["accuracy"], curve["loss"]
    return {
        "agent": agent.name,
        "n_way": n_way,
        "k_shot": k_shot,
        "n_query": n_query,
        "train_classes": [classes.names[i] for i in train_ids],
        "test_classes": [classes.names[i] for i in test_ids],
        "steps": list(range(inner_steps + 1)),
        "accuracy": acc.mean(axis=0).tolist(),
        "accuracy_se": (acc.std(axis=0, ddof=1) / np.sqrt(len(acc))).tolist() if len(acc) > 1 else None,
        "loss": loss.mean(axis=0).tolist(),
        "final_accuracy": float(acc[:, -1].mean()),
        "chance": 1.0 / n_way,
        "meta_train_samples": ctx.samples,
    }
