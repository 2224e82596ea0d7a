"""``chair``: a square seat on four legs and a backrest along one edge (``obstacles.chair``)."""

from __future__ import annotations

import math

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw
from sim2real.sim.kinds.table import legs

BACK_THICKNESS_M = 0.03


class Chair(Kind):
    name = "chair"
    keys = ("obstacles.chair.seat_m", "obstacles.chair.seat_height_m", "obstacles.chair.seat_thickness_m",
            "obstacles.chair.back_height_m", "obstacles.chair.leg_radius_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        c = ob.chair
        half = uniform(rng, c.seat_m) / 2
        x, y, heading = uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)), yaw(rng, ob.yaw_deg)
        seat_h, seat_t = uniform(rng, c.seat_height_m), uniform(rng, c.seat_thickness_m)
        back, leg = uniform(rng, c.back_height_m), uniform(rng, c.leg_radius_m)
        return Obstacle("box", x, y, heading, (half, half), seat_h + back, "chair", extra=(seat_h, seat_t, back, leg))

    def parts(self, o: Obstacle) -> list[Obstacle]:
        seat_h, seat_t, back, leg = o.extra
        half = o.size[0]
        out = [*legs(o, half, half, leg, seat_h - seat_t),
               Obstacle("box", o.x, o.y, o.yaw, o.size, seat_t, "chair", z0=seat_h - seat_t)]
        if back > 0:
            bx, by = o.local_to_world(-(half - BACK_THICKNESS_M / 2), 0.0)
            out.append(Obstacle("box", bx, by, o.yaw, (BACK_THICKNESS_M / 2, half), back, "chair", z0=seat_h))
        return out

    def mean_footprint_m(self, ob) -> float:
        half = sum(ob.chair.seat_m) / 4
        return math.hypot(half, half)

    def check(self, scenario) -> None:
        c = scenario.obstacles.chair
        if c.seat_thickness_m[1] >= c.seat_height_m[0]:
            raise ValueError(f"obstacles.chair.seat_thickness_m: a seat {c.seat_thickness_m[1]:g} m thick leaves no "
                             f"legs under a seat {c.seat_height_m[0]:g} m high")
        if 4 * c.leg_radius_m[1] > c.seat_m[0]:
            raise ValueError(f"obstacles.chair.leg_radius_m: legs {c.leg_radius_m[1]:g} m in radius do not fit "
                             f"under a {c.seat_m[0]:g} m seat")
