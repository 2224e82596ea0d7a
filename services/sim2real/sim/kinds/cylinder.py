"""``cylinder``: an upright cylinder, radius drawn from ``obstacles.size_m``."""

from __future__ import annotations

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


class Cylinder(Kind):
    name = "cylinder"
    keys = ("obstacles.size_m", "obstacles.height_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        r = uniform(rng, ob.size_m)
        return Obstacle("cylinder", uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)),
                        yaw(rng, ob.yaw_deg), (r, r), uniform(rng, ob.height_m))

    def mean_footprint_m(self, ob) -> float:
        return sum(ob.size_m) / 2
