"""The privileged expert on hand-built worlds: robot at the origin heading +x in a large empty room."""

from __future__ import annotations

import math

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
