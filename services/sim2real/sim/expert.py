"""The privileged expert: it knows the true geometry and labels forward / left / right.

Rule (thresholds from the scenario's ``episode.expert``): sweep the robot's disc straight ahead.
If it travels ``stop_distance_m`` without touching anything, go forward. Otherwise turn away from
what blocks it: the side is the sign of the blocking points' lateral offset, which stays the same
while the robot turns away, so the expert does not dither left-right in place. When a blocker is
dead ahead (within ``side_tie_m``) or blockers stand on both sides, the side with more free space
wins.

The same function labels the dataset and drives the robot as the ``expert`` policy in evaluation,
where it is the ceiling the learned policy is compared to.
"""

from __future__ import annotations

import math

import numpy as np

from sim2real.contracts.actions import FORWARD, LEFT, RIGHT
from sim2real.contracts.scenario import Expert
from sim2real.sim.world import Obstacle, Pose2D, World

_STEP_M = 0.02


def signed_distances(world: World, points: np.ndarray) -> np.ndarray:
    """(N, 2) points → (N, S) signed distance to each solid (negative inside)."""
    solids = world.solids()
    out = np.empty((len(points), len(solids)))
    for j, o in enumerate(solids):
        d = points - (o.x, o.y)
        if o.shape == "cylinder":
            out[:, j] = np.hypot(d[:, 0], d[:, 1]) - o.size[0]
            continue
        c, s = math.cos(o.yaw), math.sin(o.yaw)
        local = np.abs(np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1))
        q = local - o.size
        out[:, j] = np.hypot(np.maximum(q[:, 0], 0), np.maximum(q[:, 1], 0)) + np.minimum(q.max(axis=1), 0)
    return out


def _closest_point(o: Obstacle, p: np.ndarray) -> np.ndarray:
    centre = np.array([o.x, o.y])
    if o.shape == "cylinder":
        d = p - centre
        n = np.linalg.norm(d)
        return centre + (d / n * o.size[0] if n > 1e-9 else np.array([o.size[0], 0.0]))
    c, s = math.cos(o.yaw), math.sin(o.yaw)
    rot = np.array([[c, -s], [s, c]])
    local = np.clip(rot.T @ (p - centre), -np.array(o.size), np.array(o.size))
    return centre + rot @ local


def free_length(world: World, pose: Pose2D, heading: float, radius: float, max_len: float) -> float:
    """How far a disc of ``radius`` can slide from ``pose`` along ``heading`` before touching a solid."""
    s = np.arange(0.0, max_len + 1e-9, _STEP_M)
    pts = np.stack([pose.x + s * math.cos(heading), pose.y + s * math.sin(heading)], axis=1)
    hit = np.flatnonzero(signed_distances(world, pts).min(axis=1) < radius)
    return float(s[hit[0]]) if len(hit) else float(max_len)


def expert_action(world: World, pose: Pose2D, robot_radius: float, rule: Expert) -> int:
    """The expert's label at ``pose``: FORWARD, LEFT or RIGHT."""
    radius = robot_radius + rule.corridor_margin_m
    s = np.arange(0.0, rule.stop_distance_m + 1e-9, _STEP_M)
    pts = np.stack([pose.x + s * math.cos(pose.yaw), pose.y + s * math.sin(pose.yaw)], axis=1)
    dist = signed_distances(world, pts)
    touching = dist < radius
    if not touching.any():
        return FORWARD
    solids = world.solids()
    sides = set()
    for j in np.flatnonzero(touching.any(axis=0)):
        q = _closest_point(solids[j], pts[np.flatnonzero(touching[:, j])[0]])
        lateral = -(q[0] - pose.x) * math.sin(pose.yaw) + (q[1] - pose.y) * math.cos(pose.yaw)
        sides.add(0 if abs(lateral) <= rule.side_tie_m else int(np.sign(lateral)))
    if sides == {1}:
        return RIGHT
    if sides == {-1}:
        return LEFT
    look = 2.0 * rule.stop_distance_m
    left = sum(free_length(world, pose, pose.yaw + a, radius, look) for a in (0.5, 1.0, 1.5))
    right = sum(free_length(world, pose, pose.yaw - a, radius, look) for a in (0.5, 1.0, 1.5))
    return LEFT if left >= right else RIGHT
