"""The evaluation queue against a real redis-server on loopback, with workers as real processes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("redis")
pytest.importorskip("pybullet")

from helpers_redis import running_redis  # noqa: E402
from redis.exceptions import ResponseError  # noqa: E402
from sim2real.jobs.messages import JobSpec, Shard, encode  # noqa: E402
from sim2real.jobs.queue import Queue  # noqa: E402
from sim2real.jobs.submit import build_job, wait  # noqa: E402

REQUIRED_FIELDS = {"success_rate", "episodes", "collisions", "mean_progress_m", "latency_ms",
                   "model_sha256", "scenario", "backend"}


@pytest.fixture
def redis_server(tmp_path):
    with running_redis(tmp_path / "redis") as server:
        yield server


def jobs_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sim2real.jobs.cli", *args]


def start_worker(url: str, name: str, log_dir: Path, *extra: str) -> subprocess.Popen:
    with open(log_dir / f"{name}.log", "wb") as log:
        return subprocess.Popen(jobs_cli("worker", "--redis", url, "--name", name, *extra), stdout=log,
                                stderr=subprocess.STDOUT)


def log_of(log_dir: Path, name: str) -> str:
    return (log_dir / f"{name}.log").read_text(errors="replace")[-3000:]


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def consumers(queue: Queue, backend: str = "pybullet") -> set[str]:
    try:
        return {c["name"] for c in queue.redis.xinfo_consumers(queue.stream(backend), queue.group)}
    except ResponseError:                      # no stream or group yet
        return set()


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def assert_drained(queue: Queue, backend: str = "pybullet") -> None:
    stream = queue.stream(backend)
    assert queue.redis.xpending(stream, queue.group)["pending"] == 0
    assert queue.redis.xlen(stream) == 0


def test_two_workers_share_a_job_and_a_sigkilled_worker_is_covered(redis_server, tmp_path):
    queue = Queue(redis_server.url)
    workers = {name: start_worker(redis_server.url, name, tmp_path, "--claim-idle-s", "1.5") for name in ("A", "B")}
    try:
        wait_until(lambda: consumers(queue) >= {"A", "B"}, 20, "both workers to join the group")
        job = build_job("expert", scenario="tiny", episodes=12, seed=5, shard_size=3)
        queue.submit(job)

        def a_is_mid_shard() -> bool:
            return bool(queue.redis.xpending_range(queue.stream("pybullet"), queue.group, "-", "+", 10,
                                                   consumername="A"))

        wait_until(a_is_mid_shard, 20, "worker A to take a shard")
        workers["A"].send_signal(signal.SIGKILL)
        assert workers["A"].wait(timeout=10) == -signal.SIGKILL

        result = wait(queue, job.job_id, timeout_s=60)
        assert [ep["index"] for ep in result["per_episode"]] == list(range(12)), "every episode exactly once"
        assert result["episodes"] == 12 and result["successes"] == sum(ep["success"] for ep in result["per_episode"])
        assert result["queue"]["reclaimed_shards"] >= 1
        assert "B" in result["queue"]["workers"]
        assert REQUIRED_FIELDS <= set(result) and result["scenario"] == "tiny"
        assert_drained(queue)

        # The same seed gives the same episodes however they were spread over workers.
        from sim2real.eval.evaluate import EvalConfig, evaluate

        local = evaluate("expert", EvalConfig(scenario="tiny", episodes=12, seed=5), progress=False)
        keep = ("index", "success", "collided", "progress_m", "steps")
        assert [{k: ep[k] for k in keep} for ep in result["per_episode"]] == \
               [{k: ep[k] for k in keep} for ep in local["per_episode"]]
        assert result["success_rate"] == local["success_rate"]
        assert stop(workers["B"]) == 0
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
        queue.close()


def test_a_poison_job_fails_once_with_its_reason(redis_server, tmp_path):
    queue = Queue(redis_server.url)
    (tmp_path / "model.onnx").write_bytes(b"not on the worker's disk")
    empty = tmp_path / "worker-artifacts"
    empty.mkdir()
    worker = start_worker(redis_server.url, "W", tmp_path, "--artifacts", str(empty), "--claim-idle-s", "1")
    try:
        # The submitter has the model; the worker does not: the job fails, the CLI says why, exit 2.
        proc = subprocess.run(jobs_cli("submit", "--redis", redis_server.url, "--model", "model.onnx",
                                       "--scenario", "tiny", "--episodes", "6", "--shard-size", "2", "--wait",
                                       "--timeout", "40"), cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "failed" in proc.stderr and "model not found on worker" in proc.stderr

        # A scenario the workers do not know fails the same way; neither job is retried.
        bad = JobSpec(job_id="bad-scenario", model="expert", model_sha256=None, scenario="no-such-scenario",
                      episodes=4, shard_size=2)
        queue.submit(bad)
        wait_until(lambda: (queue.status(bad.job_id) or {}).get("status") == "failed", 30, "the bad job to fail",
                   poll_s=0.1)
        info = queue.status(bad.job_id)
        assert "no-such-scenario" in info["reason"] and info["shards_done"] == 0
        dead = queue.dead_letters()
        assert len(dead) == 2 and {d["job_id"] for d in dead} >= {bad.job_id}
        time.sleep(1.5)                                  # longer than --claim-idle-s: nothing comes back
        assert_drained(queue)
        assert len(queue.dead_letters()) == 2
        assert worker.poll() is None, log_of(tmp_path, "W")

        # An entry that is not a valid shard fails its job too, instead of coming back forever. (The
        # job itself is queued for a backend no worker here serves, so only the garbled entry is read.)
        garbled = JobSpec(job_id="garbled", model="expert", model_sha256=None, scenario="tiny", episodes=2,
                          shard_size=2, backend="mujoco")
        queue.submit(garbled)
        payload = json.loads(encode(Shard(garbled, 0, 0, 2)))
        payload["stop"] = 99
        queue.redis.xadd(queue.stream("pybullet"), {"shard": json.dumps(payload), "job_id": "garbled"})
        wait_until(lambda: queue.status("garbled")["status"] == "failed", 30, "the garbled job to fail", poll_s=0.1)
        assert "undecodable shard" in queue.status("garbled")["reason"]
        assert_drained(queue)
    finally:
        assert stop(worker) == 0, log_of(tmp_path, "W")
        queue.close()


def test_a_worker_survives_a_redis_restart(redis_server, tmp_path):
    queue = Queue(redis_server.url, reconnect_timeout_s=60)
    worker = start_worker(redis_server.url, "R", tmp_path, "--claim-idle-s", "5")
    try:
        wait_until(lambda: "R" in consumers(queue), 20, "the worker to join")
        first = build_job("expert", scenario="tiny", episodes=8, seed=2, shard_size=2)
        queue.submit(first)
        wait_until(lambda: queue.job_state(first.job_id)[1] >= 1, 30, "a first shard", poll_s=0.05)
        redis_server.restart(down_s=1.0)                 # mid-job: the worker and this client both reconnect
        result = wait(queue, first.job_id, timeout_s=60)
        assert [ep["index"] for ep in result["per_episode"]] == list(range(8))

        second = build_job("spin", scenario="tiny", episodes=2, shard_size=1)
        queue.submit(second)
        assert wait(queue, second.job_id, timeout_s=30)["episodes"] == 2
        assert worker.poll() is None, log_of(tmp_path, "R")
        assert "unreachable" in log_of(tmp_path, "R")
    finally:
        assert stop(worker) == 0, log_of(tmp_path, "R")
        queue.close()


def test_submit_wait_gates_on_min_success(redis_server, tmp_path):
    worker = start_worker(redis_server.url, "G", tmp_path)
    base = ("submit", "--redis", redis_server.url, "--scenario", "tiny", "--episodes", "4", "--shard-size", "2",
            "--wait", "--timeout", "60", "--min-success", "0.5")
    try:
        ok = subprocess.run(jobs_cli(*base, "--model", "expert", "--json", str(tmp_path / "r.json"),
                                     "--report", str(tmp_path / "r.html")),
                            capture_output=True, text=True, timeout=90)
        assert ok.returncode == 0, ok.stderr
        result = json.loads((tmp_path / "r.json").read_text())
        assert REQUIRED_FIELDS <= set(result) and {"p50", "p99"} <= set(result["latency_ms"])
        assert result["episodes"] == 4 and result["success_ci95"][0] <= result["success_rate"]
        assert len(result["per_episode"]) == 4
        assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
        assert json.loads(ok.stdout)["job_id"] == result["job_id"]

        low = subprocess.run(jobs_cli(*base, "--model", "spin"), capture_output=True, text=True, timeout=90)
        assert low.returncode == 1, low.stderr
        assert low.stderr.count("\n") == 1 and "below --min-success 0.5" in low.stderr
    finally:
        assert stop(worker) == 0, log_of(tmp_path, "G")


def test_sigterm_hands_the_shard_back_at_once(redis_server, tmp_path):
    queue = Queue(redis_server.url)
    first = start_worker(redis_server.url, "T1", tmp_path, "--claim-idle-s", "300")
    second = None
    try:
        job = build_job("expert", scenario="tiny", episodes=8, seed=4, shard_size=8)
        queue.submit(job)
        wait_until(lambda: queue.redis.xpending(queue.stream("pybullet"), queue.group)["pending"] == 1, 20,
                   "the worker to take the shard")
        assert stop(first) == 0, log_of(tmp_path, "T1")
        assert "handed shard 0" in log_of(tmp_path, "T1")
        # Without the hand-back the shard would wait out --claim-idle-s (300 s) before anyone took it.
        second = start_worker(redis_server.url, "T2", tmp_path, "--claim-idle-s", "300")
        result = wait(queue, job.job_id, timeout_s=40)
        assert result["queue"]["workers"] == ["T2"] and result["episodes"] == 8
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        queue.close()


def test_once_drains_and_max_jobs_exits(redis_server):
    from sim2real.jobs.worker import Worker

    queue = Queue(redis_server.url)
    try:
        jobs = [build_job("spin", scenario="tiny", episodes=2, shard_size=1) for _ in range(2)]
        for job in jobs:
            queue.submit(job)
        Worker(queue, name="drain", once=True, block_s=0.2).run()
        assert all(queue.status(job.job_id)["status"] == "done" for job in jobs)
        assert_drained(queue)

        job = build_job("spin", scenario="tiny", episodes=1)
        queue.submit(job)
        worker = Worker(queue, name="one", max_jobs=1, block_s=0.2)
        assert worker.run() == 0 and worker.shards_done == 1
        assert queue.status(job.job_id)["status"] == "done"
    finally:
        queue.close()
