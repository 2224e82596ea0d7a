"""``pole``: a thin upright cylinder, radius drawn from ``obstacles.pole_radius_m``."""

from __future__ import annotations

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


class Pole(Kind):
    name = "pole"
    keys = ("obstacles.pole_radius_m", "obstacles.height_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        r = uniform(rng, ob.pole_radius_m)
        return Obstacle("cylinder", uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)),
                        yaw(rng, ob.yaw_deg), (r, r), uniform(rng, ob.height_m), "pole")

    def mean_footprint_m(self, ob) -> float:
        return sum(ob.pole_radius_m) / 2
