"""The suite's environment families, registered under the ``MetaRL/`` namespace."""

from __future__ import annotations

from metarl_bench.family import register_family

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
from .locomotion import FAMILIES as LOCOMOTION_FAMILIES
from .locomotion import (
    AntDirFamily,
    AntDirTask,
    AntGoalFamily,
    AntGoalTask,
    HalfCheetahDirFamily,
    HalfCheetahDirTask,
    HalfCheetahVelFamily,
    HalfCheetahVelTask,
    HopperParamsFamily,
    HopperParamsTask,
    Walker2DParamsFamily,
    Walker2DParamsTask,
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
    "AntDirFamily",
    "AntDirTask",
    "AntGoalFamily",
    "AntGoalTask",
    "HalfCheetahDirFamily",
    "HalfCheetahDirTask",
    "HalfCheetahVelFamily",
    "HalfCheetahVelTask",
    "HopperParamsFamily",
    "HopperParamsTask",
    "Walker2DParamsFamily",
    "Walker2DParamsTask",
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
    for locomotion in LOCOMOTION_FAMILIES:
        register_family(locomotion)
    register_metaworld()  # only where the metaworld extra is installed (see envs/metaworld.py)


register_all()
