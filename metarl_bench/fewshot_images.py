"""Few-shot image classification from a folder of images (N-way K-shot episodes).

The folder uses the usual one-folder-per-class layout, as Omniglot is distributed
(``images_background/<alphabet>/<character>/*.png``): every directory that directly
contains image files is one class, named by its path relative to the root, so both flat
(``root/<class>/*.png``) and nested layouts work. Nothing is downloaded.

An episode (task) draws N classes, gives them labels 0..N-1 in random order, and K
support and Q query images per class. :func:`fewshot_image_benchmark` turns a folder into
a :class:`~metarl_bench.benchmarks.Benchmark` of kind ``"supervised"`` that
:func:`metarl_bench.evaluate` runs like any other: the supervised learners meta-train on
episodes of the train classes (:class:`FewShotImageProblem`, the same
:class:`~metarl_bench.supervised.FewShotProblem` interface as the sinusoids, with a
cross-entropy loss) and are scored on fixed episodes of disjoint test classes.

    import metarl_bench
    bench = metarl_bench.fewshot_image_benchmark("omniglot/images_background", ways=5, shots=1)
    record = metarl_bench.evaluate(metarl_bench.agent("maml", iterations=2000), bench, seed=0)
    record.scores["final"]  # query accuracy after bench.protocol.inner_steps steps
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metarl_bench.benchmarks import Benchmark, Protocol
from metarl_bench.fewshot_nets import ConvNet, FlatMLP
from metarl_bench.supervised import Episode
from metarl_bench.tasks import Task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageClasses:
    """Every class of an image folder, loaded: ``images[i]`` has shape ``(n_i, C, H, W)``, values in [0, 1]."""

    root: Path
    names: list[str]
    images: list[torch.Tensor]
    digests: list[str] = field(default_factory=list)  # sha256 (16 hex) of each class's file names and bytes

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
    names: list[str] = []
    images: list[torch.Tensor] = []
    digests: list[str] = []
    w, h = int(image_size[1]), int(image_size[0])
    for d, files in sorted(by_dir.items()):
        arrs = []
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
            with Image.open(f) as raw:
                im = raw.convert("L" if grayscale else "RGB").resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
            arrs.append(1.0 - a[None] if grayscale else a.transpose(2, 0, 1))
        names.append(d.relative_to(root).as_posix())
        images.append(torch.as_tensor(np.stack(arrs)))
        digests.append(digest.hexdigest()[:16])
    return ImageClasses(root, names, images, digests)


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


@dataclass(frozen=True)
class ImageClassTask(Task):
    """A train class of an image benchmark: its name, image count and content digest."""

    name: str = ""
    images: int = 0
    digest: str = ""


@dataclass(frozen=True)
class ImageEpisodeTask(Task):
    """A test episode: the class of each label 0..N-1 (name and content digest), and the
    indices (in the class folder's sorted file order) of its K support and Q query images."""

    classes: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    support: tuple[tuple[int, ...], ...] = ()
    query: tuple[tuple[int, ...], ...] = ()


class ImageFolderFamily:
    """The family-like object of an image benchmark (a :class:`~metarl_bench.supervised.SupervisedData`).

    It is not a registered family: :func:`fewshot_image_benchmark` hands it to the
    benchmark, which draws its train tasks (the train classes) and test tasks (episodes
    of the disjoint test classes) through :meth:`split_tasks` from the benchmark's task seed.
    """

    kind = "supervised"
    horizon = None
    metric = "accuracy"
    task_knowledge: frozenset[str] = frozenset()

    def __init__(self, classes: ImageClasses, ways: int, shots: int, queries: int, n_test_classes: int,
                 net: str, id: str) -> None:
        self.classes = classes
        self.ways, self.shots, self.queries = ways, shots, queries
        self.points_per_shot = ways  # labelled images per shot (one per class), as FewShotImageProblem counts
        self.n_test_classes = n_test_classes
        self.net = net
        self.id = id
        self._index = {n: i for i, n in enumerate(classes.names)}

    def split_tasks(
        self, n_train: int, n_test: int, train_rng: np.random.Generator, test_rng: np.random.Generator
    ) -> tuple[list[ImageClassTask], list[ImageEpisodeTask]]:
        c = self.classes
        train_ids, test_ids = split_classes(len(c.names), self.n_test_classes, train_rng)
        if len(train_ids) != n_train:
            raise ValueError(f"{self.id}: n_train must be the {len(train_ids)} train classes, got {n_train}")
        train = [ImageClassTask(c.names[i], int(c.images[i].shape[0]), c.digests[i]) for i in train_ids]
        FewShotImageProblem(c, test_ids, self.ways, self.net).check_counts(self.shots, self.queries)
        test = []
        for _ in range(n_test):
            chosen = [int(i) for i in test_rng.choice(test_ids, size=self.ways, replace=False)]  # position = label
            draws = [test_rng.choice(int(c.images[i].shape[0]), size=self.shots + self.queries, replace=False)
                     for i in chosen]
            test.append(ImageEpisodeTask(
                classes=tuple(c.names[i] for i in chosen),
                digests=tuple(c.digests[i] for i in chosen),
                support=tuple(tuple(int(j) for j in d[: self.shots]) for d in draws),
                query=tuple(tuple(int(j) for j in d[self.shots :]) for d in draws),
            ))
        return train, test

    def train_problem(self, bench: Benchmark) -> FewShotImageProblem:
        ids = [self._index[t.name] for t in bench.train_tasks]  # type: ignore[attr-defined]
        return FewShotImageProblem(self.classes, ids, self.ways, self.net, name=f"{bench.id} train classes")

    def test_problem(self, bench: Benchmark) -> FewShotImageProblem:
        used = {self._index[n] for t in bench.test_tasks for n in t.classes}  # type: ignore[attr-defined]
        return FewShotImageProblem(self.classes, sorted(used), self.ways, self.net, name=f"{bench.id} test classes")

    def test_episode(self, bench: Benchmark) -> Episode:
        """The test episodes as one batch; support images shot-major like :meth:`FewShotImageProblem.sample`."""
        if bench.protocol.runs_per_task != 1:
            raise ValueError(f"{bench.id}: image episodes fix their support sets, so runs_per_task must be 1")
        xs, ys, xq, yq = [], [], [], []
        for t in bench.test_tasks:
            assert isinstance(t, ImageEpisodeTask)
            imgs = [self.classes.images[self._index[n]] for n in t.classes]
            sup = torch.stack([im[list(ix)] for im, ix in zip(imgs, t.support)], dim=1)  # (K, N, C, H, W)
            qry = torch.stack([im[list(ix)] for im, ix in zip(imgs, t.query)], dim=1)  # (Q, N, C, H, W)
            n = len(t.classes)
            xs.append(sup.reshape(-1, *sup.shape[2:]))
            ys.append(torch.arange(n).repeat(sup.shape[0]))
            xq.append(qry.reshape(-1, *qry.shape[2:]))
            yq.append(torch.arange(n).repeat(qry.shape[0]))
        return Episode(torch.stack(xs), torch.stack(ys), torch.stack(xq), torch.stack(yq))


def fewshot_image_benchmark(
    root: str | Path,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    image_size: tuple[int, int] = (28, 28),
    test_classes: int | None = None,
    test_episodes: int = 600,
    inner_steps: int = 3,
    seed: int = 0,
    net: str = "conv",
    meta_train_examples: int = 10**10,
    id: str | None = None,
) -> Benchmark:
    """An N-way (``ways``) K-shot (``shots``) benchmark over the image folder ``root``.

    The defaults follow Finn et al. 2017's Omniglot setup: 5-way 1-shot, 28x28 grayscale
    images, a convolutional network, scored on 600 test episodes; ``queries`` images per
    class are scored (and used as the meta-training query set), after 0..``inner_steps``
    inner gradient steps. ``test_classes`` classes (default: a fifth, at least ``ways``)
    are held out: the split and the test episodes are drawn from ``seed``, the
    benchmark's recorded task seed, and the task hash covers the train classes (names,
    image counts, file digests) and every test episode, so it changes with the folder.

    The records hold query **accuracy**, higher is better (the metric the few-shot
    classification literature reports, with chance ``1/ways`` as the random reference and
    1 as the oracle's): the curve is accuracy against inner steps, ``scores["final"]`` the
    accuracy after ``inner_steps`` steps (the headline), ``scores["online"]`` the summed
    accuracy before each step, ``scores["query_loss_final"]`` the final cross-entropy.
    ``meta_train_examples`` caps the labelled images meta-training may draw.

    The benchmark is not registered: pass the object itself to :func:`metarl_bench.evaluate`
    (``results=`` saves its records as usual, under ``<results>/<id>/``), and to
    :func:`metarl_bench.stats.aggregate` or :func:`metarl_bench.plots.plot_benchmark` with
    ``bench=``. The leaderboard and ``compare`` read only registered benchmarks, so they
    refuse these records by design.
    """
    for key, value, low in (("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 1),
                            ("test_episodes", test_episodes, 1), ("inner_steps", inner_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"fewshot_image_benchmark: {key} must be an integer >= {low}, got {value!r}")
    if net not in ("conv", "mlp"):
        raise ValueError(f"fewshot_image_benchmark: net must be 'conv' or 'mlp', got {net!r}")
    root = Path(root)
    size = (int(image_size[0]), int(image_size[1]))
    classes = load_image_folder(root, size)
    n_classes = len(classes.names)
    n_test = test_classes if test_classes is not None else max(ways, n_classes // 5)
    if n_classes - n_test < ways or n_test < ways:
        raise ValueError(
            f"{root}: {n_classes} classes cannot give {ways}-way train and test episodes from disjoint classes "
            f"(with {n_test} test classes); add classes or lower ways"
        )
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name) or "images"
    bid = id or f"Images/{stem}-{ways}way-{shots}shot-v0"
    family = ImageFolderFamily(classes, int(ways), int(shots), int(queries), int(n_test), net, bid)
    chance = 1.0 / ways
    return Benchmark(
        id=bid,
        family_id=f"ImageFolder:{stem}",
        family_kwargs={"root": str(root), "ways": ways, "shots": shots, "queries": queries,
                       "image_size": list(size), "test_classes": n_test, "net": net},
        protocol=Protocol(budget_episodes=inner_steps, runs_per_task=1, final_episodes=1,
                          shots=shots, inner_steps=inner_steps, query_points=queries),
        n_train=n_classes - n_test,
        n_test=test_episodes,
        task_seed=seed,
        meta_train_steps=meta_train_examples,
        headline="final",
        tier="custom",
        reference_overrides={"random": {"online": inner_steps * chance, "final": chance},
                             "oracle": {"online": float(inner_steps), "final": 1.0}},
        description=f"{ways}-way {shots}-shot classification of {root} ({n_classes} classes, {n_test} held out)",
        family_factory=lambda: family,
    )
