"""The containerized stack, end to end, on a real Docker engine: the five CPU images, then
`--profile train` (datagen → train → export → latest) on a tiny setting and `--profile eval`
(Redis + two workers + the gate), checked through the artifacts and the gate's exit code.

Settings come from a copy of .env.example with the tiny values written over it, exactly as a user's
.env would. Every container uses the host's network (compose/compose.test.yaml), so nothing leaves
loopback; Redis listens on 127.0.0.1 at a free port, with a password.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest
from stackhelpers import (
    BASE_IMAGE,
    BUILT_FROM,
    IMAGES,
    ROOT,
    TIMINGS,
    VERBS,
    compose_command,
    run,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

RUN_ID = "stacktest"
TINY = {
    "SCENARIO": "tiny", "DATAGEN_NUM": "200", "DATAGEN_WORKERS": "2", "TRAIN_EPOCHS": "1",
    "TRAIN_INPUT_SIZE": "32", "TRAIN_BATCH_SIZE": "32", "EXPORT_MIN_INT8_AGREEMENT": "0",
    "EVAL_WORKERS": "2", "EVAL_EPISODES": "4", "EVAL_SHARD_SIZE": "2", "EVAL_MIN_SUCCESS": "0",
    "EVAL_TIMEOUT_S": "600", "RUN_ID": RUN_ID,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_env(path: Path, overrides: dict[str, str]) -> None:
    """.env.example with ``overrides`` written over its values (and appended where it lacks them)."""
    lines, seen = [], set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0] if re.match(r"^[A-Z_][A-Z0-9_]*=", line) else None
        if key in overrides:
            line, _ = f"{key}={overrides[key]}", seen.add(key)
        lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items() if k not in seen]
    path.write_text("\n".join(lines) + "\n")


class Stack:
    def __init__(self, folder: Path, compose: list[str]):
        self.project = f"s2r-stacktest-{os.getpid()}"
        self.artifacts = folder / "artifacts"
        self.artifacts.mkdir()
        self.artifacts.chmod(0o777)  # the containers write as uid 10001
        self.env_file = folder / ".env"
        self.password = secrets.token_hex(16)
        self.settings = {**TINY, "SIM2REAL_VOLUME": f"{self.project}-artifacts", "REDIS_PASSWORD": self.password,
                         "REDIS_IMAGE": BASE_IMAGE, "REDIS_BIND": "127.0.0.1", "REDIS_HOST": "127.0.0.1",
                         "REDIS_PORT": str(free_port()), "SIM2REAL_TEST_ARTIFACTS": str(self.artifacts)}
        write_env(self.env_file, self.settings)
        self.base = [*compose, "--env-file", str(self.env_file), "-f", "compose/compose.yaml",
                     "-f", "compose/compose.test.yaml", "-p", self.project]

    def compose(self, *args: str, env: dict[str, str] | None = None, timeout: float = 1200):
        clean = {k: v for k, v in os.environ.items() if k not in self.settings and not k.startswith("COMPOSE_")}
        return run([*self.base, *args], timeout=timeout, env={**clean, **(env or {})})

    def containers(self) -> dict[str, dict]:
        out = run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--format", "{{.ID}}"], timeout=60)
        ids = out.stdout.split()
        if not ids:
            return {}
        info = json.loads(run(["docker", "inspect", *ids], timeout=60).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"] + "#" + c["Config"]["Labels"].get(
            "com.docker.compose.container-number", "1"): c for c in info}

    def down(self) -> None:
        self.compose("--profile", "train", "--profile", "eval", "down", "--volumes", "--remove-orphans", timeout=300)
        # Files written by uid 10001: removed by a container, so this works without root too.
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{self.artifacts}:/a", "--entrypoint",
                        "/bin/sh", BASE_IMAGE, "-c", "rm -rf /a/* /a/.[!.]*"], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def stack(stack_images, tmp_path_factory):
    compose = compose_command()
    assert compose, "docker compose is missing although scripts/docker-engine.sh succeeded"
    s = Stack(tmp_path_factory.mktemp("stack"), compose)
    yield s
    s.down()


def _logs(stack: Stack, result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def trained(stack):
    """`docker compose --profile train up` on the tiny setting."""
    start = time.monotonic()
    result = stack.compose("--profile", "train", "up", "--no-color")
    TIMINGS["compose --profile train up (tiny)"] = time.monotonic() - start
    return result


def test_train_profile_runs_datagen_train_export_in_order(stack, trained):
    assert trained.returncode == 0, _logs(stack, trained)
    containers = stack.containers()
    order = ["datagen#1", "train#1", "export#1", "latest#1"]
    for name in order:
        state = containers[name]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0, (name, state)
    for before, after in itertools.pairwise(order):
        assert containers[after]["State"]["StartedAt"] >= containers[before]["State"]["FinishedAt"], (before, after)


def test_train_profile_artifacts(stack, trained):
    from sim2real.contracts.manifest import read_manifest

    assert trained.returncode == 0, _logs(stack, trained)
    run_dir = stack.artifacts / "runs" / RUN_ID
    latest = stack.artifacts / "latest"
    assert latest.is_symlink() and os.readlink(latest) == f"runs/{RUN_ID}"
    dataset = json.loads((run_dir / "dataset" / "manifest.json").read_text())
    assert dataset["count"] == 200
    assert (run_dir / "train" / "checkpoint.pt").stat().st_size > 0
    for name in ("model.onnx", "model.int8.onnx"):
        manifest = read_manifest(run_dir / "model" / name, verify=True)  # sha256 recorded == file
        assert manifest["sha256"]
    # Written by the images' non-root user.
    assert (run_dir / "model" / "model.int8.onnx").stat().st_uid == 10001


def test_eval_profile_gate_passes_and_writes_the_result(stack, trained):
    assert trained.returncode == 0, "needs the train profile's model"
    start = time.monotonic()
    result = stack.compose("--profile", "eval", "up", "--no-color", "--exit-code-from", "gate")
    TIMINGS["compose --profile eval up (4 episodes, 2 workers)"] = time.monotonic() - start
    assert result.returncode == 0, _logs(stack, result)
    evaluation = json.loads((stack.artifacts / "latest" / "eval.json").read_text())
    assert evaluation["episodes"] == 4
    assert evaluation["backend"] == "pybullet"
    from sim2real.contracts.manifest import sha256_file

    assert evaluation["model_sha256"] == sha256_file(stack.artifacts / "runs" / RUN_ID / "model" / "model.int8.onnx")
    assert {"success_rate", "collisions", "mean_progress_m", "latency_ms"} <= set(evaluation)
    assert (stack.artifacts / "latest" / "report.html").stat().st_size > 0
    workers = [c for name, c in stack.containers().items() if name.startswith("eval-worker#")]
    assert len(workers) == 2
    redis = stack.containers()["redis#1"]
    assert redis["HostConfig"]["PortBindings"] in (None, {}), "Redis must publish no port"


def test_eval_profile_runs_the_ros2_node_in_each_worker(stack, trained):
    """EVAL_POLICY=ros2: the workers evaluate through `sim2real serve` in their containers, same episodes."""
    assert trained.returncode == 0, "needs the train profile's model"
    start = time.monotonic()
    result = stack.compose("--profile", "eval", "up", "--no-color", "--exit-code-from", "gate",
                           env={"EVAL_POLICY": "ros2", "EVAL_JSON": "gate-ros2.json", "EVAL_REPORT": "gate-ros2.html"})
    TIMINGS["compose --profile eval up (ros2 policy)"] = time.monotonic() - start
    assert result.returncode == 0, _logs(stack, result)
    over_ros = json.loads((stack.artifacts / "gate-ros2.json").read_text())
    in_process = json.loads((stack.artifacts / "latest" / "eval.json").read_text())
    assert over_ros["policy"] == "ros2" and over_ros["model_sha256"] == in_process["model_sha256"]
    assert [(e["success"], e["collided"], e["steps"]) for e in over_ros["per_episode"]] == \
        [(e["success"], e["collided"], e["steps"]) for e in in_process["per_episode"]]


def test_eval_profile_gate_fails_with_exit_code_1(stack, trained):
    """The gate's code comes through `up --exit-code-from gate`: a spinning robot never passes 0.5."""
    assert trained.returncode == 0, "needs the train profile's volume"
    start = time.monotonic()
    result = stack.compose("--profile", "eval", "up", "--no-color", "--exit-code-from", "gate",
                           env={"EVAL_MODEL": "spin", "EVAL_MIN_SUCCESS": "0.5", "EVAL_EPISODES": "2",
                                "EVAL_JSON": "gate-spin.json", "EVAL_REPORT": "gate-spin.html"})
    TIMINGS["compose --profile eval up (failing gate)"] = time.monotonic() - start
    assert result.returncode == 1, _logs(stack, result)
    assert json.loads((stack.artifacts / "gate-spin.json").read_text())["success_rate"] < 0.5


def test_images_are_labelled_non_root_and_enter_through_their_verb(stack_images):
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    head = BUILT_FROM["commit"]
    for name, ref in stack_images.items():
        config = json.loads(run(["docker", "image", "inspect", ref], timeout=60).stdout)[0]["Config"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.version"] == version, name
        assert labels["org.opencontainers.image.revision"].startswith(head), name
        assert labels["org.opencontainers.image.title"] == f"sim2real-{name}"
        assert config["User"] == "10001:10001", name
        assert config["Entrypoint"] == ["sim2real", VERBS[name]], name


def test_runtime_image_has_no_torch_and_trainer_has(stack_images):
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 3)"
    for name, expected in (("jetson-runtime", 3), ("trainer", 0), ("gazebo-eval", 3), ("isaac-datagen", 3)):
        out = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", stack_images[name],
                   "-c", probe], timeout=120)
        assert out.returncode == expected, (name, out.stderr)


def test_runtime_image_carries_the_dds_profile_and_the_nodes_parameters_file(stack_images):
    probe = ("import os, filecmp, sim2real.runtime.middleware as m; "
             "assert os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] == '/etc/sim2real/fastdds.xml'; "
             "assert filecmp.cmp(m.FASTDDS_PROFILE, '/etc/sim2real/fastdds.xml', shallow=False); "
             "assert filecmp.cmp(m.NODE_PARAMS, '/etc/sim2real/node.yaml', shallow=False)")
    out = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", stack_images["jetson-runtime"],
               "-c", probe], timeout=120)
    assert out.returncode == 0, out.stderr


def test_images_hold_no_wheelhouse(stack_images):
    """The wheels stay in the build stage: no .whl file anywhere in a final image."""
    for name in IMAGES:
        out = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", stack_images[name], "-c",
                   "find / -xdev -name '*.whl' 2>/dev/null | grep -v -e /ensurepip/ -e /usr/share/python-wheels/ | head -5"], timeout=120)
        assert out.stdout.strip() == "", (name, out.stdout)
