"""Moving obstacles ("people"): placed on free floor, walking by their pattern, widened for the
expert by their top speed, moving every control step in evaluation, and a collision when touched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.contracts.actions import FORWARD, Twist
from sim2real.contracts.scenario import ScenarioError, load_scenario, parse_scenario
from sim2real.sim.expert import expert_action, signed_distances
from sim2real.sim.people import step_people
from sim2real.sim.world import Person, Pose2D, World, sample_world

PEOPLE = {"name": "people", "arena": {"size_m": [6, 6]},
          "obstacles": {"count": [4, 4], "shapes": ["box", "cylinder"],
                        "people": {"count": [3, 3], "speed_mps": [0.5, 1.0], "radius_m": [0.2, 0.25]}}}


def scenario(pattern: str = "bounce", **people):
    data = {**PEOPLE, "obstacles": {**PEOPLE["obstacles"],
                                    "people": {**PEOPLE["obstacles"]["people"], "pattern": pattern, **people}}}
    return parse_scenario(data)


def test_worlds_without_people_draw_as_before():
    world = sample_world(load_scenario("default"), np.random.default_rng(0))
    assert world.people == [] and world.people_rng is None


@pytest.mark.parametrize("pattern", ["bounce", "waypoints"])
def test_people_walk_at_their_speed_and_never_into_walls_or_obstacles(pattern):
    sc = scenario(pattern)
    world = sample_world(sc, np.random.default_rng(5))
    assert len(world.people) == 3
    static = World(world.arena_size, world.wall_height, world.wall_thickness, world.obstacles)
    start = [(p.x, p.y) for p in world.people]
    moved = 0.0
    for _ in range(200):                                  # 20 s at 10 Hz
        before = [(p.x, p.y) for p in world.people]
        step_people(world, 0.1)
        for p, (x, y) in zip(world.people, before):
            step = math.hypot(p.x - x, p.y - y)
            assert step <= p.speed * 0.1 + 1e-9
            moved += step
            assert signed_distances(static, np.array([[p.x, p.y]])).min() >= p.radius - 1e-9
    assert moved > 0.5 * sum(p.speed for p in world.people) * 20 * 0.5   # mostly walking, not stuck
    assert [(p.x, p.y) for p in world.people] != start


def test_a_person_bounces_off_a_wall():
    world = World((4.0, 4.0), 0.6, 0.1, [], people=[Person(1.5, 0.0, 0.2, 1.7, 1.0, 0.0)])
    for _ in range(10):
        step_people(world, 0.1)
    p = world.people[0]
    assert p.x <= 1.8 + 1e-9 and abs(abs(p.heading) - math.pi) < 1e-6     # turned back off the x = 2 wall


@pytest.mark.parametrize("pattern", ["bounce", "waypoints"])
def test_people_yield_to_the_robot(pattern):
    """Walking straight at a standing robot, a person stops short of it instead of walking into it."""
    world = World((8.0, 8.0), 0.6, 0.1, [], people=[Person(2.0, 0.0, 0.2, 1.7, 1.0, math.pi, (-3.0, 0.0))],
                  people_pattern=pattern, people_rng=np.random.default_rng(0))
    for _ in range(60):
        step_people(world, 0.1, robot=(0.0, 0.0, 0.18))
        p = world.people[0]
        assert math.hypot(p.x, p.y) >= 0.2 + 0.18
    assert world.people[0].x != 2.0                       # it walked, then turned away


def test_the_same_seed_walks_the_same_people():
    sc = scenario("waypoints")
    worlds = [sample_world(sc, np.random.default_rng(9)) for _ in range(2)]
    for world in worlds:
        for _ in range(50):
            step_people(world, 0.1)
    assert [(p.x, p.y) for p in worlds[0].people] == [(p.x, p.y) for p in worlds[1].people]


def test_the_expert_keeps_a_person_wider_by_its_top_speed():
    """A person 1.1 m ahead, off the path by more than the robot's width but less than the margin:
    a static cylinder there would not stop the robot, a person does."""
    sc = scenario(speed_mps=[0.5, 0.5], expert_horizon_s=1.0)
    rule, r = sc.episode.expert, sc.robot.radius_m
    person = Person(0.6, 0.5, 0.2, 1.7, 0.5, math.pi)
    still = World((8.0, 8.0), 0.6, 0.1, [], people=[person], people_margin=0.0)
    walking = World((8.0, 8.0), 0.6, 0.1, [], people=[person], people_margin=sc.obstacles.people.margin_m())
    pose = Pose2D(0.0, 0.0, 0.0)
    assert expert_action(still, pose, r, rule) == FORWARD
    assert expert_action(walking, pose, r, rule) != FORWARD


def test_people_move_in_pybullet_and_touching_one_is_a_collision():
    pytest.importorskip("pybullet")
    from sim2real.sim.pybullet_backend import PybulletBackend

    sc = scenario()
    world = World((6.0, 6.0), 0.6, 0.1, [], people=[Person(2.0, 0.0, 0.2, 1.7, 1.0, math.pi)])
    pb = PybulletBackend(sc)
    try:
        pb.load(world)
        pb.reset_robot(Pose2D(-1.0, 0.0, 0.0))
        hit = None
        for k in range(30):                    # the person walks into the standing robot
            step_people(world, 0.1)
            pb.move_people(world)
            if pb.step(Twist(0.0, 0.0), 0.1).collided:
                hit = k
                break
        # It touches when its surface meets the robot's front: 2.62 m at 1 m/s, the 27th step.
        assert hit is not None and 25 <= hit <= 27
    finally:
        pb.close()


def test_evaluation_moves_people_every_step_and_records_their_walks():
    pytest.importorskip("pybullet")
    from sim2real.eval.evaluate import run_episode
    from sim2real.eval.policies import make_policy
    from sim2real.sim import registry

    sc = scenario(count=[2, 2])
    backend = registry.create("pybullet", sc)
    try:
        record = run_episode(backend, make_policy("spin", sc), sc, seed=1, index=0)
    finally:
        backend.close()
    assert len(record["people"]) == 2
    for person in record["people"]:
        assert len(person["path"]) >= 10 and person["path"][0] != person["path"][-1]
    from sim2real.eval.report import trajectory_figure

    png = trajectory_figure({"per_episode": [record], "success_rate": 0.0, "arena_size_m": [6, 6]})
    assert png.startswith(b"\x89PNG")


def test_people_are_built_by_the_isaac_mapping_and_the_sdf_world():
    import xml.etree.ElementTree as ET

    from sim2real.sim.gazebo.sdf import world_sdf
    from sim2real.sim.isaac import mapping

    sc = scenario()
    world = sample_world(sc, np.random.default_rng(2))
    prims = [p for p in mapping.scene_description(sc, world).prims if "/person_" in p.path]
    assert [(p.translate[0], p.attributes["radius"]) for p in prims] == [(p.x, p.radius) for p in world.people]
    assert "obstacles.people.speed_mps" in {r["key"] for r in mapping.randomizers(sc)}
    root = ET.fromstring(world_sdf(sc, world))
    assert len(root.findall("./world/model[@name='person_0']")) == 1


def test_gazebo_refuses_people_by_key():
    from sim2real.sim.base import UnsupportedScenario
    from sim2real.sim.gazebo.backend import GazeboBackend

    with pytest.raises(UnsupportedScenario, match="obstacles.people.count"):
        GazeboBackend(scenario())


@pytest.mark.parametrize("people, key", [
    ({"count": [31, 31]}, "'obstacles.people.count': 31 is above 30"),
    ({"count": [30, 30]}, "'obstacles.people.count': 30 people"),
    ({"speed_mps": [0.5, 5.0]}, "'obstacles.people.speed_mps'"),
    ({"radius_m": [0.01, 0.3]}, "'obstacles.people.radius_m'"),
    ({"expert_horizon_s": 10}, "'obstacles.people.expert_horizon_s'"),
    ({"pattern": "swarm"}, "'obstacles.people.pattern'"),
])
def test_people_that_cannot_be_met_are_refused_by_key(people, key):
    with pytest.raises(ScenarioError, match=key):
        scenario(**people)
