"""Obstacle kinds as data: one module per kind, found by name (``registry``). See ``base.Kind``."""

from sim2real.sim.kinds.base import PRIMITIVES, Kind, Obstacle
from sim2real.sim.kinds.registry import catalogue, get, names, of, parts

__all__ = ["PRIMITIVES", "Kind", "Obstacle", "catalogue", "get", "names", "of", "parts"]
