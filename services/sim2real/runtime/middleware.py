"""The ROS 2 middleware settings every process on the robot shares, and the node's parameters file.

Depth images of real camera sizes do not get through Fast DDS's defaults across processes: a sample
must fit into the *writer's* shared-memory segment, 512 KB by default, and a 640×480 16UC1 image is
614 KB (1280×720: 1.8 MB). It then falls back to fragmented UDP and is mostly lost at sensor-data
QoS. ``config/fastdds.xml`` gives every participant a 16 MB segment. The camera driver needs it most
(it writes the images), so it is meant for every process on the robot, not only for the node:
``sim2real serve``, the evaluator's publisher and the benchmark's driver set it for themselves with
:func:`use_large_image_profile`; a driver started elsewhere exports :data:`PROFILE_VARIABLE`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CONFIG = Path(__file__).with_name("config")
FASTDDS_PROFILE = CONFIG / "fastdds.xml"
NODE_PARAMS = CONFIG / "node.yaml"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
# Fast DDS 2.x (ROS 2 Humble, Iron) reads the older name; 3.x warns that it is deprecated.
LEGACY_PROFILE_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
_FAST_DDS_2_DISTROS = ("humble", "iron")


def profile_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables to add to ``environ`` so that Fast DDS loads the profile: the one ``environ``
    names already (a deployment's own choice wins), else the shipped one; under ROS 2 Humble or Iron
    (Fast DDS 2.x) also under the older variable name."""
    for name in (PROFILE_VARIABLE, LEGACY_PROFILE_VARIABLE):
        if name in environ:
            profile = environ[name]
            break
    else:
        profile = str(FASTDDS_PROFILE)
    wanted = [PROFILE_VARIABLE]
    if environ.get("ROS_DISTRO") in _FAST_DDS_2_DISTROS:
        wanted.append(LEGACY_PROFILE_VARIABLE)
    return {name: profile for name in wanted if name not in environ}


def use_large_image_profile() -> str:
    """Make this process load the shipped profile, unless its environment names one already.

    Call it before the process creates its first ROS 2 context: Fast DDS reads the profile once, when
    the first participant is created. Returns the profile file in force.
    """
    os.environ.update(profile_environment())
    return os.environ.get(PROFILE_VARIABLE) or os.environ[LEGACY_PROFILE_VARIABLE]
