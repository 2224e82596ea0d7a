"""``table``: a top on four legs at its corners (``obstacles.table``). The robot passes under the top
where its underside is at least ``Scenario.clear_height_m()`` high and the legs leave it room."""

from __future__ import annotations

import math

from sim2real.sim.kinds.base import Kind, Obstacle, uniform, yaw


def legs(o: Obstacle, half_x: float, half_y: float, radius: float, height: float) -> list[Obstacle]:
    """Four cylinder legs, inset by their radius from the corners of a ``half_x`` x ``half_y`` top."""
    out = []
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        x, y = o.local_to_world(sx * (half_x - radius), sy * (half_y - radius))
        out.append(Obstacle("cylinder", x, y, o.yaw, (radius, radius), height, o.kind))
    return out


class Table(Kind):
    name = "table"
    keys = ("obstacles.table.size_m", "obstacles.table.height_m", "obstacles.table.top_thickness_m",
            "obstacles.table.leg_radius_m")

    def sample(self, ob, half_x, half_y, rng) -> Obstacle:
        t = ob.table
        size = (uniform(rng, t.size_m) / 2, uniform(rng, t.size_m) / 2)
        x, y, heading = uniform(rng, (-half_x, half_x)), uniform(rng, (-half_y, half_y)), yaw(rng, ob.yaw_deg)
        height, thickness, leg = uniform(rng, t.height_m), uniform(rng, t.top_thickness_m), uniform(rng, t.leg_radius_m)
        return Obstacle("box", x, y, heading, size, height, "table", extra=(thickness, leg))

    def parts(self, o: Obstacle) -> list[Obstacle]:
        thickness, leg = o.extra
        underside = o.height - thickness
        top = Obstacle("box", o.x, o.y, o.yaw, o.size, thickness, "table", z0=underside)
        return [*legs(o, o.size[0], o.size[1], leg, underside), top]

    def mean_footprint_m(self, ob) -> float:
        half = sum(ob.table.size_m) / 4
        return math.hypot(half, half)

    def check(self, scenario) -> None:
        t = scenario.obstacles.table
        if t.top_thickness_m[1] >= t.height_m[0]:
            raise ValueError(f"obstacles.table.top_thickness_m: a top {t.top_thickness_m[1]:g} m thick leaves no "
                             f"legs under a table {t.height_m[0]:g} m high")
        if 4 * t.leg_radius_m[1] > t.size_m[0]:
            raise ValueError(f"obstacles.table.leg_radius_m: legs {t.leg_radius_m[1]:g} m in radius do not fit "
                             f"under a {t.size_m[0]:g} m top")
        if not t.drive_under:
            return
        clear = scenario.clear_height_m()
        if t.height_m[0] - t.top_thickness_m[1] < clear:
            raise ValueError(f"obstacles.table.height_m: with drive_under, the lowest table's underside "
                             f"({t.height_m[0] - t.top_thickness_m[1]:.3g} m) must clear the robot's top, camera "
                             f"mast included, plus overhead_margin_m ({clear:.3g} m); raise height_m")
        room = 2 * (scenario.robot.radius_m + scenario.episode.expert.corridor_margin_m)
        if t.size_m[0] - 4 * t.leg_radius_m[1] < room:
            raise ValueError(f"obstacles.table.size_m: with drive_under, the legs of a {t.size_m[0]:g} m table "
                             f"leave less than the robot's {room:.3g} m (its width plus the expert's margins)")
