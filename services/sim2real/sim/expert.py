"""The privileged expert: it knows the true geometry and labels forward / left / right.

Rule (thresholds from the scenario's ``episode.expert``): sweep the robot's disc (radius +
``corridor_margin_m``) straight ahead. If it travels ``stop_distance_m`` without touching anything,
go forward. Otherwise turn toward the nearer clear heading: on a fixed grid of world headings
(every 5 degrees), a heading is clear when the disc can travel ``stop_distance_m`` along it and
along both grid neighbours; the expert turns to the side whose nearest clear heading needs less
rotation. Because the grid is fixed in the world, turning in place only brings the chosen heading
closer, so the expert never dithers left-right in place (a corner or a wall met head-on used to
make it alternate). When both sides are equally near (within ``side_tie_m`` radians), the side
with more free space wins (summed free length at 0.5, 1.0 and 1.5 rad to each side); one turn step
later the tie is broken the same way. When no heading at all is clear (boxed in), it turns LEFT
until one comes round.

What the disc can touch is ``World.solids()``: every obstacle part whose underside is below the
world's ``clear_height`` (the robot drives under higher table tops), the arena walls, and the
people where they stand now, each widened by the world's ``people_margin`` (their top speed times
``obstacles.people.expert_horizon_s``): the rule reads one snapshot, as the policy sees one frame.

The same function labels the dataset and drives the robot as the ``expert`` policy in evaluation,
where it is the ceiling the learned policy is compared to.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sim2real.contracts.actions import FORWARD, LEFT, RIGHT
from sim2real.contracts.scenario import Expert
from sim2real.sim.world import PRIMITIVES, Obstacle, Pose2D, World

_STEP_M = 0.02


def _solid_arrays(solids: list[Obstacle]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(S, 2) centres, (S,) yaws, (S, 2) half sizes (radius first for a cylinder), (S,) is-a-cylinder."""
    centres = np.array([(o.x, o.y) for o in solids], dtype=float).reshape(-1, 2)
    yaw = np.array([o.yaw for o in solids], dtype=float)
    sizes = np.array([o.size for o in solids], dtype=float).reshape(-1, 2)
    return centres, yaw, sizes, np.array([o.shape == "cylinder" for o in solids], dtype=bool)


def signed_distances(world: World, points: np.ndarray) -> np.ndarray:
    """(N, 2) points → (N, S) signed distance to each solid of ``world.solids()`` (negative inside)."""
    solids = world.solids()
    for o in solids:
        if o.shape not in PRIMITIVES:
            raise ValueError(f"expert: unknown obstacle shape '{o.shape}'")
    centres, yaw, sizes, is_cyl = _solid_arrays(solids)
    points = np.asarray(points, dtype=float)
    dx = points[:, 0:1] - centres[None, :, 0]
    dy = points[:, 1:2] - centres[None, :, 1]
    c, s = np.cos(yaw)[None, :], np.sin(yaw)[None, :]
    qx = np.abs(c * dx + s * dy) - sizes[None, :, 0]
    qy = np.abs(-s * dx + c * dy) - sizes[None, :, 1]
    box = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    cylinder = np.hypot(dx, dy) - sizes[None, :, 0]
    return np.where(is_cyl[None, :], cylinder, box)


def free_length(world: World, pose: Pose2D, heading: float, radius: float, max_len: float) -> float:
    """How far a disc of ``radius`` can slide from ``pose`` along ``heading`` before touching a solid."""
    s = np.arange(0.0, max_len + 1e-9, _STEP_M)
    pts = np.stack([pose.x + s * math.cos(heading), pose.y + s * math.sin(heading)], axis=1)
    hit = np.flatnonzero(signed_distances(world, pts).min(axis=1) < radius)
    return float(s[hit[0]]) if len(hit) else float(max_len)


_GRID = np.arange(72) * (2 * math.pi / 72)       # world headings every 5 degrees
_GRID_STEP_M = 0.08      # sweep spacing for the grid: circles of radius ~0.25 m leave < 4 mm scallops,
_GRID_MARGIN_M = 0.02    # well inside this margin


def clear_headings(world: World, pose: Pose2D, radius: float, length: float) -> np.ndarray:
    """(72,) bool: which grid headings a disc of ``radius`` can travel ``length`` along, from ``pose``,
    with both grid neighbours clear too (so the headings between them are clear as well)."""
    s = np.linspace(0.0, length, math.ceil(length / _GRID_STEP_M) + 1)
    xs = pose.x + np.cos(_GRID)[:, None] * s[None, :]
    ys = pose.y + np.sin(_GRID)[:, None] * s[None, :]
    d = signed_distances(world, np.stack([xs.ravel(), ys.ravel()], axis=1)).min(axis=1)
    # A small margin, so that a heading between two clear grid headings passes the exact check too.
    clear = (d.reshape(len(_GRID), len(s)) >= radius + _GRID_MARGIN_M).all(axis=1)
    return clear & np.roll(clear, 1) & np.roll(clear, -1)


def _nearby(world: World, pose: Pose2D, reach: float) -> World:
    """The world without the obstacles that lie entirely farther than ``reach`` from ``pose``
    (their footprint circle is beyond it): the same answers for any sweep shorter than that."""
    keep = [o for o in world.obstacles if math.hypot(o.x - pose.x, o.y - pose.y) - o.footprint_radius() <= reach]
    if len(keep) == len(world.obstacles):
        return world
    return replace(world, obstacles=keep)


def path_clear(world: World, pose: Pose2D, robot_radius: float, rule: Expert) -> bool:
    """Whether the expert says FORWARD: the disc can travel ``stop_distance_m`` straight ahead."""
    radius = robot_radius + rule.corridor_margin_m
    s = np.arange(0.0, rule.stop_distance_m + 1e-9, _STEP_M)
    pts = np.stack([pose.x + s * math.cos(pose.yaw), pose.y + s * math.sin(pose.yaw)], axis=1)
    near = _nearby(world, pose, rule.stop_distance_m + radius + 0.01)
    return not (signed_distances(near, pts) < radius).any()


def expert_action(world: World, pose: Pose2D, robot_radius: float, rule: Expert) -> int:
    """The expert's label at ``pose``: FORWARD, LEFT or RIGHT."""
    if path_clear(world, pose, robot_radius, rule):
        return FORWARD
    return turn_action(world, pose, robot_radius, rule)


def turn_action(world: World, pose: Pose2D, robot_radius: float, rule: Expert) -> int:
    """LEFT or RIGHT: the expert's turn where its path is blocked (see the module docstring)."""
    radius = robot_radius + rule.corridor_margin_m
    world = _nearby(world, pose, 2.0 * rule.stop_distance_m + radius + 0.01)
    clear = clear_headings(world, pose, radius, rule.stop_distance_m)
    if not clear.any():
        return LEFT      # boxed in: keep turning one way until a clear heading comes round
    turn = np.remainder(_GRID[clear] - pose.yaw + math.pi, 2 * math.pi) - math.pi   # (-pi, pi]
    left = turn[turn > 0].min(initial=math.inf)
    right = -turn[turn <= 0].max(initial=-math.inf)
    if abs(left - right) > rule.side_tie_m:
        return LEFT if left < right else RIGHT
    look = 2.0 * rule.stop_distance_m
    left_free = sum(free_length(world, pose, pose.yaw + a, radius, look) for a in (0.5, 1.0, 1.5))
    right_free = sum(free_length(world, pose, pose.yaw - a, radius, look) for a in (0.5, 1.0, 1.5))
    return LEFT if left_free >= right_free else RIGHT
