"""``low``: a low box on the floor (a threshold, a cable guard) that the robot cannot climb
(``obstacles.low``)."""

from __future__ import annotations

import math

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


class Low(Kind):
    name = "low"
    keys = ("obstacles.low.size_m", "obstacles.low.height_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        size = (uniform(rng, ob.low.size_m) / 2, uniform(rng, ob.low.size_m) / 2)
        return Obstacle("box", uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)), yaw(rng, ob.yaw_deg),
                        size, uniform(rng, ob.low.height_m), "low")

    def mean_footprint_m(self, ob) -> float:
        half = sum(ob.low.size_m) / 4
        return math.hypot(half, half)
