"""``wall``: a free-standing wall segment, a long thin box (``obstacles.wall_length_m`` by
``obstacles.wall_thickness_m``)."""

from __future__ import annotations

import math

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


class Wall(Kind):
    name = "wall"
    keys = ("obstacles.wall_length_m", "obstacles.wall_thickness_m", "obstacles.height_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        size = (uniform(rng, ob.wall_length_m) / 2, uniform(rng, ob.wall_thickness_m) / 2)
        return Obstacle("box", uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)), yaw(rng, ob.yaw_deg),
                        size, uniform(rng, ob.height_m), "wall")

    def mean_footprint_m(self, ob) -> float:
        return math.hypot(sum(ob.wall_length_m) / 4, sum(ob.wall_thickness_m) / 4)
