"""``partition``: an interior wall of the arena layout (``arena.partitions``), a box. It is drawn by
``sim.world`` with the arena, so it is not listed in ``obstacles.shapes``."""

from __future__ import annotations

from sim2real.sim.kinds.base import Kind


class Partition(Kind):
    name = "partition"
    selectable = False
