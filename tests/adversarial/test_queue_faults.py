"""Root causes 1 and 3 (queue side): poison entries, passwords, signals and heartbeats.

Cases 32-35 of the adversarial list, against a real redis-server on loopback and workers started
as real `sim2real worker` processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("redis")
pytest.importorskip("pybullet")

from helpers_redis import free_port, running_redis  # noqa: E402
from sim2real.jobs.messages import JobSpec  # noqa: E402
from sim2real.jobs.queue import Queue  # noqa: E402
from sim2real.jobs.submit import build_job, wait  # noqa: E402

pytestmark = pytest.mark.timeout(300)
PASSWORD = "Zq7sEcr3tPassw0rd"


def sim2real(*args: str) -> list[str]:
    return [sys.executable, "-m", "sim2real", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIM2REAL_REDIS")}
    return {**env, **extra}


def start_worker(log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(sim2real("worker", *args), stdout=out, stderr=subprocess.STDOUT,
                                env=env or clean_env())


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def terminate(proc: subprocess.Popen, timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout_s)


@pytest.fixture
def server(tmp_path):
    with running_redis(tmp_path / "redis", password=PASSWORD) as srv:
        yield srv


def test_poison_entries_of_every_shape_are_dead_lettered_and_the_next_job_completes(server, tmp_path):
    """Case 33: `{"job":{"job_id":{"x":1}}}` killed every worker that read it."""
    queue = Queue(server.url, password=PASSWORD)
    stream = queue.stream("pybullet")
    poison = [
        {"shard": json.dumps({"job": {"job_id": {"x": 1}}})},          # the reported entry
        {"shard": json.dumps({"schema": 1, "type": "shard", "index": 0, "start": 0, "stop": 1,
                              "job": {"schema": 1, "type": "job", "job_id": {"x": 1}}})},
        {"shard": "not json"},
        {"shard": "[" * 100_000},                                       # deeper than the JSON parser goes
        {"shard": b"\xff\xfe\x00binary"},                               # not UTF-8
        {"shard": json.dumps({"schema": 1, "type": "shard", "job": {"job_id": "ok-id"}, "index": 1e400})},
        {"job_id": "no-shard-field"},
        {"shard": json.dumps([1, 2, 3]), "job_id": {"x": 1}.__repr__()},
    ]
    queue._ensure_group(stream)
    for fields in poison:
        queue.redis.xadd(stream, fields)
    worker = start_worker(tmp_path / "w.log", "--redis", server.url, "--name", "P", "--claim-idle-s", "2",
                          env=clean_env(SIM2REAL_REDIS_PASSWORD=PASSWORD))
    try:
        job = build_job("spin", scenario="tiny", episodes=2, shard_size=1)
        queue.submit(job)
        result = wait(queue, job.job_id, timeout_s=120)
        assert result["episodes"] == 2
        assert worker.poll() is None, (tmp_path / "w.log").read_text()
        dead = queue.dead_letters()
        assert len(dead) == len(poison), dead
        assert all(d["reason"] for d in dead)
        assert any("unsupported schema" in d["reason"] for d in dead)      # the reported entry: its reason
        assert any("field 'job_id' must be str" in d["reason"] for d in dead)
        assert any("no 'shard' field" in d["reason"] for d in dead)
        assert queue.redis.xpending(stream, queue.group)["pending"] == 0 and queue.redis.xlen(stream) == 0
    finally:
        assert terminate(worker) == 0, (tmp_path / "w.log").read_text()
        queue.close()
    assert "Traceback" not in (tmp_path / "w.log").read_text()


def test_a_wrong_password_is_an_error_and_is_never_shown(server, tmp_path):
    """Case 32: a wrong password was retried as "unreachable", with the password in the log and error."""
    wrong = "WrongPassw0rdXyz"
    submit = subprocess.run(sim2real("submit", "--redis", f"redis://:{wrong}@127.0.0.1:{server.port}/0",
                                     "--model", "expert", "--scenario", "tiny", "--episodes", "2"),
                            capture_output=True, text=True, timeout=60, env=clean_env())
    assert submit.returncode == 2
    error = [line for line in submit.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "refused the credentials" in error[0], submit.stderr
    assert wrong not in submit.stderr + submit.stdout

    password_file = tmp_path / "redis-password"
    password_file.write_text(wrong + "\n")
    worker = subprocess.run(sim2real("worker", "--redis", server.url, "--redis-password-file", str(password_file)),
                            capture_output=True, text=True, timeout=60, env=clean_env())
    assert worker.returncode == 2 and worker.stderr.count("\n") == 1, worker.stderr
    assert "refused the credentials" in worker.stderr and wrong not in worker.stderr

    # The right password from the environment: the job goes through.
    with open(tmp_path / "ok.log", "wb") as log:
        good = subprocess.Popen(sim2real("worker", "--redis", server.url, "--once"), stdout=log,
                                stderr=subprocess.STDOUT, env=clean_env(SIM2REAL_REDIS_PASSWORD=PASSWORD))
    assert good.wait(timeout=60) == 0, (tmp_path / "ok.log").read_text()


def test_no_password_in_help_logs_results_or_reports(server, tmp_path):
    """Case 32/35: `--help` printed the URL from the environment; eval.json and reports must not hold it."""
    env = clean_env(SIM2REAL_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0")
    for verb in ("worker", "submit"):
        shown = subprocess.run(sim2real(verb, "--help"), capture_output=True, text=True, timeout=60, env=env)
        assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr

    worker = start_worker(tmp_path / "w.log", "--name", "S", env=env)
    try:
        done = subprocess.run(sim2real("submit", "--model", "expert", "--scenario", "tiny", "--episodes", "2",
                                       "--wait", "--timeout", "120", "--json", str(tmp_path / "eval.json"),
                                       "--report", str(tmp_path / "report.html")),
                              capture_output=True, text=True, timeout=180, env=env)
        assert done.returncode == 0, done.stderr
    finally:
        assert terminate(worker) == 0
    written = [done.stdout, done.stderr, (tmp_path / "w.log").read_text(), (tmp_path / "eval.json").read_text(),
               (tmp_path / "report.html").read_text()]
    assert json.loads(written[3])["episodes"] == 2
    assert not any(PASSWORD in text for text in written)


def test_sigterm_while_redis_is_unreachable_exits_at_once(tmp_path):
    """Case 35: a worker retrying an unreachable Redis ignored SIGTERM and logged the password."""
    port = free_port()                                     # nothing listens there
    env = clean_env(SIM2REAL_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    worker = start_worker(tmp_path / "w.log", "--name", "U", env=env)
    wait_until(lambda: "unreachable" in (tmp_path / "w.log").read_text(), 60, "the worker to retry")
    assert worker.poll() is None
    assert terminate(worker, timeout_s=20) == 0
    log = (tmp_path / "w.log").read_text()
    assert PASSWORD not in log and "redis://:***@127.0.0.1" in log


def test_a_long_shard_keeps_its_heartbeat_and_sigterm_hands_it_back_mid_episode(server, tmp_path):
    """Case 34: a long shard sent no heartbeat for 24 s, and only SIGKILL stopped its worker.

    Episodes of 600 s (the scenario's longest) keep worker A busy far longer than --claim-idle-s;
    worker B, polling all the while, must not take the shard from a live worker. SIGTERM then ends A
    within the episode, and B takes the handed-back shard at once. A duration beyond the bound is
    refused before anything is queued.
    """
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\narena:\n  size_m: [4.0, 4.0]\nobstacles:\n  count: [0, 0]\n"
                        "camera:\n  width: 16\n  height: 16\n"
                        "episode:\n  duration_s: 600.0\n  control_hz: 200.0\n  min_progress_m: 0.5\n")
    too_long = tmp_path / "too-long.yaml"
    too_long.write_text(scenario.read_text().replace("600.0", "1.0e+300"))
    refused = subprocess.run(sim2real("submit", "--model", "spin", "--scenario", str(too_long), "--redis", server.url),
                             capture_output=True, text=True, timeout=60, env=clean_env())
    assert refused.returncode == 2 and "episode.duration_s" in refused.stderr and refused.stderr.count("\n") == 1

    queue = Queue(server.url, password=PASSWORD)
    env = clean_env(SIM2REAL_REDIS_PASSWORD=PASSWORD)
    common = ("--redis", server.url, "--claim-idle-s", "1.5")
    a = start_worker(tmp_path / "a.log", *common, "--name", "A", env=env)
    b = None
    try:
        job = build_job("spin", scenario=str(scenario), episodes=1, shard_size=1)
        queue.submit(job)
        stream = queue.stream("pybullet")

        def holder() -> str | None:
            pending = queue.redis.xpending_range(stream, queue.group, "-", "+", 1)
            return pending[0]["consumer"] if pending else None

        wait_until(lambda: holder() == "A", 60, "worker A to take the shard")
        b = start_worker(tmp_path / "b.log", *common, "--name", "B", env=env)
        wait_until(lambda: "serving" in (tmp_path / "b.log").read_text(), 60, "worker B to start polling")
        time.sleep(6.0)                                   # four times --claim-idle-s, with B polling
        assert holder() == "A" and queue.timeline(job.job_id)["reclaimed"] == 0, (tmp_path / "b.log").read_text()

        assert terminate(a, timeout_s=20) == 0, (tmp_path / "a.log").read_text()
        assert "handed shard 0" in (tmp_path / "a.log").read_text()
        wait_until(lambda: holder() == "B", 20, "worker B to take the handed-back shard")
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                assert terminate(proc) == 0
        queue.close()


def test_a_job_that_exceeds_the_bounds_fails_at_the_worker_with_its_reason(server, tmp_path):
    """A job written straight into Redis (no submitter checks) with an unbounded scenario fails once, in one line."""
    scenario = tmp_path / "huge.yaml"
    scenario.write_text("name: huge\nobstacles:\n  count: [1000000000, 1000000000]\n")
    queue = Queue(server.url, password=PASSWORD)
    worker = start_worker(tmp_path / "w.log", "--redis", server.url, "--name", "H",
                          env=clean_env(SIM2REAL_REDIS_PASSWORD=PASSWORD))
    try:
        job = JobSpec(job_id="unbounded", model="expert", model_sha256=None, scenario=str(scenario), episodes=2)
        queue.submit(job)
        wait_until(lambda: (queue.status(job.job_id) or {}).get("status") == "failed", 60, "the job to fail")
        assert "obstacles.count" in queue.status(job.job_id)["reason"]
        assert worker.poll() is None
    finally:
        assert terminate(worker) == 0
        queue.close()
