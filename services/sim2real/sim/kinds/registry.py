"""Obstacle kinds by name. Every module of this package that defines a ``Kind`` subclass with a
``name`` is one kind: adding a kind is adding its file (and its tests)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from sim2real.sim.kinds.base import Kind, Obstacle

_SKIP = {"base", "registry"}


@lru_cache(maxsize=1)
def _kinds() -> dict[str, Kind]:
    found: dict[str, Kind] = {}
    package = importlib.import_module("sim2real.sim.kinds")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in _SKIP:
            continue
        module = importlib.import_module(f"sim2real.sim.kinds.{info.name}")
        for value in vars(module).values():
            own = isinstance(value, type) and value.__module__ == module.__name__
            if own and issubclass(value, Kind) and value.name:
                if value.name in found:
                    raise RuntimeError(f"obstacle kind '{value.name}' is defined twice")
                found[value.name] = value()
    return found


def names(selectable_only: bool = True) -> list[str]:
    """The registered kinds (those ``obstacles.shapes`` may list, unless ``selectable_only`` is False)."""
    return sorted(n for n, k in _kinds().items() if k.selectable or not selectable_only)


def get(name: str) -> Kind:
    kinds = _kinds()
    if name not in kinds:
        raise ValueError(f"unknown obstacle kind '{name}' (known: {', '.join(sorted(kinds))})")
    return kinds[name]


def of(o: Obstacle) -> Kind:
    """The kind that drew ``o`` (a bare primitive is its own kind: ``box`` or ``cylinder``)."""
    return get(o.kind_name)


def parts(o: Obstacle) -> list[Obstacle]:
    return of(o).parts(o)


def catalogue() -> dict[str, Kind]:
    """The selectable kinds by name: what the scenario schema accepts in ``obstacles.shapes``."""
    return {n: get(n) for n in names()}
