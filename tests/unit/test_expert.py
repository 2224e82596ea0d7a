"""The privileged expert on hand-built worlds: robot at the origin heading +x in a large empty room."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.contracts.actions import FORWARD, LEFT, RIGHT
from sim2real.contracts.scenario import Expert
from sim2real.sim.expert import expert_action
from sim2real.sim.world import Obstacle, Pose2D, World

RADIUS = 0.18
RULE = Expert()


def room(*obstacles: Obstacle) -> World:
    return World((10.0, 10.0), 0.6, 0.1, list(obstacles))


def post(x: float, y: float, r: float = 0.15) -> Obstacle:
    return Obstacle("cylinder", x, y, 0.0, (r, r), 0.5)


def test_free_corridor_goes_forward():
    assert expert_action(room(), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == FORWARD


def test_obstacle_beyond_stop_distance_goes_forward():
    assert expert_action(room(post(1.5, 0.0)), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == FORWARD


def test_obstacle_dead_ahead_turns():
    assert expert_action(room(post(0.6, 0.0)), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) in (LEFT, RIGHT)


@pytest.mark.parametrize("side_y, expected", [(0.25, RIGHT), (-0.25, LEFT)])
def test_obstacle_ahead_to_one_side_turns_away(side_y, expected):
    assert expert_action(room(post(0.6, side_y)), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == expected


@pytest.mark.parametrize("yaw", [math.pi / 2, -2.5])
def test_rule_is_heading_invariant(yaw):
    ahead_left = (0.6 * math.cos(yaw) - 0.25 * math.sin(yaw), 0.6 * math.sin(yaw) + 0.25 * math.cos(yaw))
    assert expert_action(room(post(*ahead_left)), Pose2D(0.0, 0.0, yaw), RADIUS, RULE) == RIGHT


@pytest.mark.parametrize("wall_y, expected", [(0.7, RIGHT), (-0.7, LEFT)])
def test_dead_ahead_tie_goes_to_the_freer_side(wall_y, expected):
    side_wall = Obstacle("box", 0.0, wall_y, 0.0, (3.0, 0.05), 0.5)
    world = room(post(0.6, 0.0), side_wall)
    assert expert_action(world, Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == expected


def test_arena_wall_ahead_turns():
    assert expert_action(room(), Pose2D(4.5, 0.0, 0.0), RADIUS, RULE) in (LEFT, RIGHT)


def test_thin_pole_dead_ahead_turns():
    pole = Obstacle("cylinder", 0.5, 0.0, 0.0, (0.03, 0.03), 1.0, "pole")
    assert expert_action(room(pole), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) in (LEFT, RIGHT)


def test_pole_beside_the_corridor_goes_forward():
    pole = Obstacle("cylinder", 0.5, 0.3, 0.0, (0.03, 0.03), 1.0, "pole")   # 0.27 m off-axis > 0.23 m half-width
    assert expert_action(room(pole), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == FORWARD


@pytest.mark.parametrize("side_y, expected", [(0.35, RIGHT), (-0.35, LEFT)])
def test_wall_segment_reaching_into_the_path_turns_away(side_y, expected):
    # A 1 m segment across the path, from the centre line outward to one side.
    segment = Obstacle("box", 0.55, side_y, math.pi / 2, (0.5, 0.05), 0.5, "wall")
    assert expert_action(room(segment), Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) == expected


def test_rule_thresholds_come_from_the_scenario():
    short = Expert(stop_distance_m=0.3)
    world = room(post(0.8, 0.0))       # the disc would touch it after 0.42 m
    assert expert_action(world, Pose2D(0.0, 0.0, 0.0), RADIUS, short) == FORWARD
    assert expert_action(world, Pose2D(0.0, 0.0, 0.0), RADIUS, RULE) in (LEFT, RIGHT)


def test_signed_distances_match_the_world_per_solid():
    from sim2real.sim.expert import signed_distances

    world = room(post(1.0, 1.0), Obstacle("box", -1.0, 0.5, 0.7, (0.4, 0.1), 0.5, "wall"))
    points = np.random.default_rng(0).uniform(-4.5, 4.5, (200, 2))
    d = signed_distances(world, points)
    assert d.shape == (200, len(world.solids()))
    np.testing.assert_allclose(d.min(axis=1), [world.clearance(x, y) for x, y in points], atol=1e-9)


@pytest.mark.parametrize("yaw", [math.radians(a) for a in (30.0, 45.0, 52.0, 60.0)])
def test_turning_in_place_never_dithers_into_a_corner(yaw):
    """Facing into a corner (walls 0.5 m ahead and 0.5 m to the left or right), turning in place the
    way the robot would, the expert keeps one direction until it can go forward."""
    world = room()
    pose = Pose2D(4.5, 4.5, yaw)            # the room's +x/+y corner is 0.5 m away on both axes
    actions = []
    for _ in range(120):
        action = expert_action(world, pose, RADIUS, RULE)
        actions.append(action)
        if action == FORWARD:
            break
        pose = Pose2D(pose.x, pose.y, pose.yaw + (0.05 if action == LEFT else -0.05))
    assert actions[-1] == FORWARD
    assert len(set(actions[:-1])) == 1, "one turning direction, no left-right alternation"


def test_boxed_in_keeps_turning_one_way():
    pocket = room(Obstacle("box", 0.0, 0.5, 0.0, (0.6, 0.05), 0.5), Obstacle("box", 0.0, -0.5, 0.0, (0.6, 0.05), 0.5),
                  Obstacle("box", 0.55, 0.0, 0.0, (0.05, 0.6), 0.5), Obstacle("box", -0.55, 0.0, 0.0, (0.05, 0.6), 0.5))
    assert {expert_action(pocket, Pose2D(0.0, 0.0, y), RADIUS, RULE) for y in np.linspace(-3, 3, 13)} == {LEFT}
