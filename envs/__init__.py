"""The suite's environment families, registered under the ``MetaRL/`` namespace."""

from __future__ import annotations

from metarl_bench.family import register_family

from .bandit import BanditEnv, BanditFamily, BanditTask, BanditVectorEnv
from .navigation import Navigation2DEnv, Navigation2DFamily, Navigation2DVectorEnv, NavigationTask

__all__ = [
    "BanditEnv",
    "BanditFamily",
    "BanditTask",
    "BanditVectorEnv",
    "Navigation2DEnv",
    "Navigation2DFamily",
    "Navigation2DVectorEnv",
    "NavigationTask",
    "register_all",
]


def register_all() -> None:
    """Register every family of the suite (the suite's own entry point)."""
    register_family(BanditFamily)
    for k in (5, 10, 50):
        register_family(BanditFamily, id=f"MetaRL/Bandit-k{k}-v0", kwargs={"k": k})
    register_family(Navigation2DFamily)


register_all()
