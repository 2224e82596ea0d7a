"""``box``: an upright box, half-extents drawn from ``obstacles.size_m``."""

from __future__ import annotations

import math

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


class Box(Kind):
    name = "box"
    keys = ("obstacles.size_m", "obstacles.height_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        size = (uniform(rng, ob.size_m), uniform(rng, ob.size_m))
        return Obstacle("box", uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)), yaw(rng, ob.yaw_deg),
                        size, uniform(rng, ob.height_m))

    def mean_footprint_m(self, ob) -> float:
        mid = sum(ob.size_m) / 2
        return math.hypot(mid, mid)
