"""Simulator backends by name. Heavy imports happen only when a backend is asked for."""

from __future__ import annotations

import importlib

from sim2real.contracts.scenario import Scenario
from sim2real.sim.base import SimBackend

_BACKENDS = {
    "mujoco": ("sim2real.sim.mujoco_backend", "MujocoBackend"),
    "pybullet": ("sim2real.sim.pybullet_backend", "PybulletBackend"),
    "isaac": ("sim2real.sim.isaac.backend", "IsaacBackend"),
    "gazebo": ("sim2real.sim.gazebo.backend", "GazeboBackend"),
}


def names() -> list[str]:
    return sorted(_BACKENDS)


def create(name: str, scenario: Scenario) -> SimBackend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown simulator backend '{name}' (known: {', '.join(names())})")
    module, cls = _BACKENDS[name]
    try:
        backend_cls = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise RuntimeError(f"simulator backend '{name}' is not installed here ({exc.name} missing)") from None
    return backend_cls(scenario)
