"""Every generated Gazebo world passes the real SDFormat checker (``ign sdf -k``, libsdformat).

Worlds are drawn with every registered obstacle kind (the arena's partitions and people too), so a kind whose
parts make an invalid model fails here. ``make test`` installs the checker
(scripts/install-system-deps.sh); without it these tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from sim2real.contracts.scenario import parse_scenario
from sim2real.sim import kinds
from sim2real.sim.gazebo.sdf import world_sdf
from sim2real.sim.world import Pose2D, sample_world


def sdf_check(path) -> subprocess.CompletedProcess:
    found = shutil.which("ign") is not None
    if not found or subprocess.run(["ign", "sdf", "--help"], capture_output=True, check=False).returncode:
        pytest.skip("ign sdf is not installed (make test installs it via scripts/install-system-deps.sh)")
    return subprocess.run(["ign", "sdf", "-k", str(path)], capture_output=True, text=True, timeout=120, check=False)


def every_kind_scenario(**extra) -> dict:
    return {"name": "every-kind", "arena": {"size_m": [9, 8], "partitions": {"count": [2, 2]}},
            "obstacles": {"count": [3 * len(kinds.names()), 3 * len(kinds.names())], "shapes": kinds.names(),
                          "min_gap_m": 0.3, "people": {"count": [3, 3]}}, **extra}


def test_worlds_with_every_kind_pass_the_sdformat_checker(tmp_path):
    scenario = parse_scenario(every_kind_scenario())
    drawn = set()
    for seed in range(3):
        world = sample_world(scenario, np.random.default_rng(seed))
        drawn |= {o.kind_name for o in world.obstacles + world.person_parts()}
        path = tmp_path / f"world_{seed}.sdf"
        path.write_text(world_sdf(scenario, world, Pose2D(0.0, 0.0, 0.3)))
        done = sdf_check(path)
        assert done.returncode == 0 and "Valid" in done.stdout, done.stdout + done.stderr
    assert drawn == set(kinds.names()) | {"partition", "person"}


def test_the_checker_refuses_a_broken_world(tmp_path):
    """The check can fail: a joint whose parent link does not exist is refused."""
    scenario = parse_scenario(every_kind_scenario())
    root = ET.fromstring(world_sdf(scenario, sample_world(scenario, np.random.default_rng(0))))
    root.find("./world/model[@name='robot']/joint/parent").text = "no_such_link"
    path = tmp_path / "broken.sdf"
    path.write_text(ET.tostring(root, encoding="unicode"))
    done = sdf_check(path)
    assert done.returncode != 0 and "no_such_link" in done.stdout + done.stderr
