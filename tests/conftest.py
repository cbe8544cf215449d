"""Test-suite-wide settings and shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = 8


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stable-Baselines3 configures a logger folder on every ``learn()``, by default a new
    ``SB3-<date>`` folder in the system temporary folder; point it into pytest's own temporary
    folder (subprocesses inherit the variable)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3-logs")))
        yield


def _write_images(root: Path, classes: int = 8, per_class: int = 6, nested: bool = True, seed: int = 0) -> None:
    """A tiny Omniglot-like set of ``IMAGE_SIZE`` x ``IMAGE_SIZE`` greyscale images: class c
    is a dark 3x3 blob at its own position on white, plus noise.

    Nested as ``alphabet_<a>/character_<c>/<i>.png`` (Omniglot's layout) when ``nested``.
    """
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"alphabet_{c % 2}" / f"character_{c:02d}" if nested else root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        r, q = divmod(c, 3)
        for i in range(per_class):
            img = np.full((IMAGE_SIZE, IMAGE_SIZE), 255.0)
            img[2 * r : 2 * r + 3, 2 * q + 1 : 2 * q + 4] = 0.0
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
            Image.fromarray(img.astype(np.uint8), mode="L").save(folder / f"{i}.png")


@pytest.fixture
def write_images() -> Callable[..., None]:
    """``write_images(root, classes=8, per_class=6, nested=True, seed=0)`` writes a folder-per-class
    image set under ``root`` (for the image few-shot tests in core/ and integration/)."""
    return _write_images
