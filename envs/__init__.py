"""The suite's environment families, registered under the ``MetaRL/`` namespace."""

from __future__ import annotations

import functools

from metarl_bench.family import UnknownIdError, register_family, register_missing_extra

from .bandit import BanditEnv, BanditFamily, BanditTask, BanditVectorEnv
from .classic_control import (
    CartPoleDynamicsEnv,
    CartPoleDynamicsFamily,
    CartPoleDynamicsTask,
    CartPoleDynamicsVectorEnv,
    PendulumDynamicsEnv,
    PendulumDynamicsFamily,
    PendulumDynamicsTask,
    PendulumDynamicsVectorEnv,
)
from .metaworld import register as register_metaworld
from .navigation import Navigation2DEnv, Navigation2DFamily, Navigation2DVectorEnv, NavigationTask
from .sinusoid import SinusoidFamily, SinusoidTask
from .tabular_mdp import TabularMDPEnv, TabularMDPFamily, TabularMDPTask, TabularMDPVectorEnv, value_iteration

__all__ = [
    "BanditEnv",
    "BanditFamily",
    "BanditTask",
    "BanditVectorEnv",
    "CartPoleDynamicsEnv",
    "CartPoleDynamicsFamily",
    "CartPoleDynamicsTask",
    "CartPoleDynamicsVectorEnv",
    "Navigation2DEnv",
    "Navigation2DFamily",
    "Navigation2DVectorEnv",
    "NavigationTask",
    "PendulumDynamicsEnv",
    "PendulumDynamicsFamily",
    "PendulumDynamicsTask",
    "PendulumDynamicsVectorEnv",
    "SinusoidFamily",
    "SinusoidTask",
    "TabularMDPEnv",
    "TabularMDPFamily",
    "TabularMDPTask",
    "TabularMDPVectorEnv",
    "register_all",
    "value_iteration",
]


LOCOMOTION_IDS = (
    "MetaRL/HalfCheetahVel-v0",
    "MetaRL/HalfCheetahDir-v0",
    "MetaRL/AntDir-v0",
    "MetaRL/AntGoal-v0",
    "MetaRL/Walker2DParams-v0",
    "MetaRL/HopperParams-v0",
)


class MuJoCoMissing(UnknownIdError):
    """A locomotion id was used but MuJoCo does not import (one line in the CLI, no traceback)."""

    def __init__(self, id: str, reason: str = "") -> None:
        self.what, self.name = "family", id
        KeyError.__init__(
            self,
            f"{id} needs MuJoCo, which did not import ({reason}): pip install 'gymnasium[mujoco]' "
            f"(a dependency of metarl-bench: reinstalling it installs MuJoCo too)",
        )


def _register_locomotion() -> None:
    """Register the MuJoCo locomotion families; without MuJoCo, make their ids name the install."""
    try:
        from .locomotion import FAMILIES
    except ImportError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        for fid in LOCOMOTION_IDS:
            prefix = fid.removesuffix("v0")  # the family's benchmarks too (e.g. AntDir-full-v0)
            register_missing_extra(prefix, functools.partial(MuJoCoMissing, reason=reason), gym_ids=[fid])
        return
    for fam in FAMILIES:
        register_family(fam)


def register_all() -> None:
    """Register every family of the suite (the suite's own entry point)."""
    register_family(BanditFamily)
    for k in (5, 10, 50):
        register_family(BanditFamily, id=f"MetaRL/Bandit-k{k}-v0", kwargs={"k": k})
    register_family(TabularMDPFamily)
    register_family(Navigation2DFamily)
    register_family(CartPoleDynamicsFamily)
    register_family(PendulumDynamicsFamily)
    register_family(SinusoidFamily)
    _register_locomotion()
    register_metaworld()  # only where the metaworld extra is installed (see envs/metaworld.py)


register_all()
