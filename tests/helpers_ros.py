"""A private, loopback-only ROS 2 graph for one test module."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sim2real.environment import scoped_environ


@contextlib.contextmanager
def ros_environment(log_dir: Path, domain_base: int):
    """Set a domain id from ``domain_base`` and this process id, localhost discovery and a log folder."""
    values = {"ROS_DOMAIN_ID": str(domain_base + os.getpid() % 40), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
              "ROS_LOCALHOST_ONLY": "1", "ROS_LOG_DIR": str(log_dir),
              "RCUTILS_COLORIZED_OUTPUT": "0", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
    with scoped_environ(values) as applied:
        yield applied
