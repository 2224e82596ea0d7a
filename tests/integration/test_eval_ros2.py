"""`sim2real eval --policy ros2`: the real `sim2real serve` node in the closed loop, over real rclpy.

The evaluator publishes each rendered depth image to a node in its own process and drives the
PyBullet robot with the Twist that comes back. The tiny left/right model (biased to drive, turning
when the view is near) must give exactly the episodes the in-process runtime gives; a broken model
must be stopped by the node's fail-safe; nothing may be left running afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_models import tiny_model
from helpers_ros import ros_environment
from sim2real.contracts.manifest import manifest_path
from sim2real.eval.evaluate import EvalConfig, evaluate

pytest.importorskip("rclpy")
pytestmark = pytest.mark.timeout(300)

COMPARED = ("index", "success", "collided", "progress_m", "path_length_m", "steps", "trajectory",
            "collision_point", "stop_commands")


@pytest.fixture(scope="module", autouse=True)
def ros_env(tmp_path_factory):
    """A private ROS graph; ONNX Runtime on one thread, as in the node, for identical numerics."""
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=60) as values, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_ORT_THREADS", "1")
        yield values


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"), forward_bias=-0.05)


def _config(**kwargs) -> EvalConfig:
    return EvalConfig(**{"scenario": "tiny", "episodes": 4, "seed": 7, **kwargs})


def _episodes(result: dict) -> list[dict]:
    return [{key: record[key] for key in COMPARED} for record in result["per_episode"]]


def _node_processes() -> list[str]:
    """Command lines of live `sim2real serve` processes started by an evaluator (its namespace is in them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "__ns:=/sim2real_eval_" in cmdline:
                found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def inprocess(model):
    return evaluate(model, EvalConfig(scenario="tiny", episodes=4, seed=7), progress=False)


def test_the_node_drives_the_same_episodes_as_the_runtime_in_process(model, inprocess, tmp_path):
    result = evaluate(model, _config(policy="ros2"), json_out=tmp_path / "eval.json", progress=False)

    assert result["policy"] == "ros2" and result["engine"] == "auto"
    assert result["model_sha256"] == inprocess["model_sha256"]
    assert sum(record["path_length_m"] for record in inprocess["per_episode"]) > 1.0, "the robot must move"
    assert _episodes(result) == _episodes(inprocess)
    assert result["stop_commands"] == 0
    assert result["latency_ms"]["p50"] > 0
    assert json.loads((tmp_path / "eval.json").read_text())["policy"] == "ros2"
    assert _node_processes() == []


def test_the_node_runs_the_same_turn_hysteresis_and_forgets_it_between_episodes(model, inprocess):
    committed = evaluate(model, _config(hysteresis="3"), progress=False)
    assert _episodes(committed) != _episodes(inprocess), "the hysteresis must change these episodes"
    result = evaluate(model, _config(policy="ros2", hysteresis="3"), progress=False)
    assert result["hysteresis"] == committed["hysteresis"] == "3,0"
    assert _episodes(result) == _episodes(committed)
    assert _node_processes() == []


def test_two_workers_each_with_a_node_count_every_episode_once(model, inprocess):
    result = evaluate(model, _config(policy="ros2", workers=2), progress=False)

    assert result["workers"] == 2
    assert _episodes(result) == _episodes(inprocess)
    assert _node_processes() == []


def test_a_queued_job_runs_the_node_in_the_worker(model, inprocess, tmp_path):
    from helpers_redis import running_redis
    from sim2real.jobs.queue import Queue
    from sim2real.jobs.submit import build_job
    from sim2real.jobs.worker import Worker

    with running_redis(tmp_path / "redis") as server:
        queue = Queue(server.url)
        try:
            job = build_job(model, scenario="tiny", episodes=4, seed=7, shard_size=2, policy="ros2")
            queue.submit(job)
            Worker(queue, name="ros2-worker", once=True, block_s=0.2).run()
            result = queue.status(job.job_id)["result"]
        finally:
            queue.close()

    assert result["policy"] == "ros2" and result["config"]["policy"] == "ros2"
    assert _episodes(result) == _episodes(inprocess)
    assert _node_processes() == []


def test_a_broken_model_is_stopped_by_the_nodes_fail_safe(tmp_path):
    broken = tiny_model(tmp_path, nan_logits=True)

    result = evaluate(broken, _config(policy="ros2", episodes=1), progress=False)

    episode = result["per_episode"][0]
    assert episode["stop_commands"] == episode["steps"] == 50
    assert episode["path_length_m"] < 0.01 and not episode["success"] and not episode["collided"]


def test_a_killed_evaluator_takes_its_node_with_it(model):
    script = ("import sys, time\nfrom sim2real.eval.policies import make_policy\n"
              "policy = make_policy(sys.argv[1], via='ros2')\nprint('ready', flush=True)\ntime.sleep(600)\n")
    evaluator = subprocess.Popen([sys.executable, "-c", script, str(model)], stdout=subprocess.PIPE, text=True)
    try:
        assert evaluator.stdout.readline().strip() == "ready"
        assert len(_node_processes()) == 1
    finally:
        evaluator.kill()
        evaluator.wait()
    deadline = time.monotonic() + 20
    while _node_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _node_processes() == []


def test_a_node_that_cannot_start_is_one_line_and_exit_2(tmp_path):
    # The evaluator reads the manifest (the model's turn hysteresis) and starts the node; the node
    # verifies the model against it and refuses a changed file.
    model = tiny_model(tmp_path)
    with open(model, "ab") as changed:
        changed.write(b"\0")

    done = subprocess.run([sys.executable, "-m", "sim2real.cli", "eval", "--model", str(model), "--scenario", "tiny",
                           "--episodes", "1", "--policy", "ros2"],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ))

    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if line.startswith("sim2real")]
    assert len(error) == 1 and "sim2real serve exited with status 2" in error[0]
    assert "does not match its manifest" in error[0]
    assert _node_processes() == []


def test_a_model_without_its_manifest_is_refused_before_a_node_starts(tmp_path):
    model = tiny_model(tmp_path)
    manifest_path(model).unlink()

    done = subprocess.run([sys.executable, "-m", "sim2real.cli", "eval", "--model", str(model), "--scenario", "tiny",
                           "--episodes", "1", "--policy", "ros2"],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ))

    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if line.startswith("sim2real")]
    assert len(error) == 1 and "manifest not found" in error[0] and "serve exited" not in error[0]
    assert _node_processes() == []
