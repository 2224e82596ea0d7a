"""Moving obstacles ("people", ``obstacles.people``): where they start and how they walk.

``place_people`` puts them on free floor when a world is sampled (after the obstacles, so worlds
without people draw exactly as before). ``step_people`` moves every person by one control step:

- ``bounce``: straight on at its own speed; where the next position would touch a wall or an
  obstacle part (of any height: people do not duck under tables), the heading is mirrored about
  the surface's normal (a billiard bounce); if that is blocked too, the person turns round.
- ``waypoints``: toward a random free point; on arrival, or when blocked, a new point is drawn.

People pass through each other (they are not in each other's way). They yield to the robot: a
person whose next step would come within ``YIELD_GAP_M`` of it stays put and turns round
(``bounce``) or picks a new point (``waypoints``), so touching a person is the robot's doing.
Their random draws come from the world's own generator, seeded when the world is sampled, so a
policy and the expert meet the same people on the same episode seed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sim2real.contracts.scenario import Scenario
from sim2real.sim.expert import signed_distances
from sim2real.sim.world import Person, World

PLACE_TRIES = 50          # candidate positions per person when placing; what does not fit is left out
WAYPOINT_TRIES = 100
_EPS = 0.01               # finite-difference step for a surface normal
YIELD_GAP_M = 0.05        # how close a person lets its next step come to the robot


def _static(world: World) -> World:
    """The world as people meet it: every part at any height, the walls, no people."""
    return replace(world, clear_height=math.inf, people=[])


def _distance(static: World, x: float, y: float) -> float:
    return float(signed_distances(static, np.array([[x, y]])).min())


def _free_point(static: World, radius: float, rng: np.random.Generator) -> tuple[float, float] | None:
    hx, hy = static.arena_size[0] / 2 - radius, static.arena_size[1] / 2 - radius
    for _ in range(WAYPOINT_TRIES):
        x, y = float(rng.uniform(-hx, hx)), float(rng.uniform(-hy, hy))
        if _distance(static, x, y) >= radius + 0.05:
            return x, y
    return None


def place_people(scenario: Scenario, world: World, rng: np.random.Generator) -> None:
    """Draw the people of ``scenario`` onto free floor of ``world`` (keeping ``min_gap_m`` from
    surfaces and each other); a crowded scene can come out a few short, never hangs."""
    spec, gap = scenario.obstacles.people, scenario.obstacles.min_gap_low()
    target = int(rng.integers(spec.count[0], spec.count[1] + 1))
    seed = int(rng.integers(2**63 - 1))
    static = _static(world)
    placed: list[Person] = []
    for _ in range(target * PLACE_TRIES):
        if len(placed) >= target:
            break
        r = float(rng.uniform(*spec.radius_m))
        hx, hy = world.arena_size[0] / 2 - r, world.arena_size[1] / 2 - r
        x, y = float(rng.uniform(-hx, hx)), float(rng.uniform(-hy, hy))
        speed, heading, height = (float(rng.uniform(*spec.speed_mps)), float(rng.uniform(-math.pi, math.pi)),
                                  float(rng.uniform(*spec.height_m)))
        if _distance(static, x, y) - r < gap or any(math.hypot(x - p.x, y - p.y) - p.radius - r < gap
                                                    for p in placed):
            continue
        placed.append(Person(x, y, r, height, speed, heading))
    world.people = placed
    world.people_margin = spec.margin_m()
    world.people_pattern = spec.pattern
    world.people_rng = np.random.default_rng(seed)


def _normal(static: World, x: float, y: float) -> np.ndarray:
    pts = np.array([[x + _EPS, y], [x - _EPS, y], [x, y + _EPS], [x, y - _EPS]])
    d = signed_distances(static, pts).min(axis=1)
    n = np.array([d[0] - d[1], d[2] - d[3]])
    norm = float(np.hypot(*n))
    return n / norm if norm > 0 else np.zeros(2)


def step_people(world: World, dt: float, robot: tuple[float, float, float] | None = None) -> None:
    """Move every person of ``world`` by ``dt`` seconds (in place), yielding to ``robot``
    (``(x, y, radius)``, where it stands now) when given."""
    if not world.people:
        return
    static = _static(world)
    rng = world.people_rng if world.people_rng is not None else np.random.default_rng(0)
    for p in world.people:
        step = p.speed * dt
        if world.people_pattern == "waypoints":
            if p.target is None or math.hypot(p.target[0] - p.x, p.target[1] - p.y) <= step:
                p.target = _free_point(static, p.radius, rng)
                if p.target is None:
                    continue
            p.heading = math.atan2(p.target[1] - p.y, p.target[0] - p.x)
        nx, ny = p.x + step * math.cos(p.heading), p.y + step * math.sin(p.heading)
        if robot is not None and math.hypot(nx - robot[0], ny - robot[1]) < p.radius + robot[2] + YIELD_GAP_M:
            if world.people_pattern == "waypoints":
                p.target = None
            else:
                p.heading = math.atan2(-math.sin(p.heading), -math.cos(p.heading))
            continue
        if _distance(static, nx, ny) >= p.radius:
            p.x, p.y = nx, ny
            continue
        if world.people_pattern == "waypoints":
            p.target = None                      # blocked: a new point next step
            continue
        n = _normal(static, nx, ny)
        v = np.array([math.cos(p.heading), math.sin(p.heading)])
        v = v - 2.0 * float(v @ n) * n if float(v @ n) < 0 else -v
        p.heading = math.atan2(v[1], v[0])
        nx, ny = p.x + step * v[0], p.y + step * v[1]
        if _distance(static, nx, ny) >= p.radius:
            p.x, p.y = nx, ny
        else:
            p.heading = math.atan2(-v[1], -v[0])
