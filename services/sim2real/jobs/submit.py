"""`sim2real submit`: validate an evaluation job here, enqueue its shards, optionally wait for the result.

Validation happens before anything is enqueued (the scenario loads, the backend is known, the
model file exists and is hashed), so a typo fails at the submitter, in one line. A worker checks
again on its side: its copy of the model must have the sha256 recorded here.
"""

from __future__ import annotations

import time
from pathlib import Path

from sim2real.contracts.evaluation import BUILTIN_POLICIES
from sim2real.jobs.messages import JobSpec, new_job_id
from sim2real.jobs.queue import Queue


def build_job(model: str | Path, scenario: str = "default", episodes: int = 100, seed: int = 1000,
              backend: str = "pybullet", engine: str = "auto", latency_ms: float = 0.0,
              shard_size: int = 10, job_id: str | None = None, policy: str = "inprocess") -> JobSpec:
    """A validated job: the model's sha256 and the scenario's content hash are recorded for the workers."""
    from sim2real.contracts.manifest import sha256_file
    from sim2real.contracts.scenario import load_scenario
    from sim2real.sim import registry

    if backend not in registry.names():
        raise ValueError(f"unknown simulator backend '{backend}' (known: {', '.join(registry.names())})")
    loaded = load_scenario(scenario)
    model_text, sha = str(model), None
    if model_text not in BUILTIN_POLICIES:
        if not Path(model_text).is_file():
            raise FileNotFoundError(f"model not found: {model_text} (or use one of: {', '.join(BUILTIN_POLICIES)})")
        sha = sha256_file(model_text)
    return JobSpec(job_id=job_id or new_job_id(), model=model_text, model_sha256=sha, scenario=str(scenario),
                   episodes=episodes, seed=seed, backend=backend, engine=engine, latency_ms=float(latency_ms),
                   shard_size=shard_size, scenario_sha256=loaded.sha256(), policy=policy)


def wait(queue: Queue, job_id: str, timeout_s: float | None = None, poll_s: float = 0.25,
         progress: bool = False) -> dict:
    """Block until the job is done; return its result. Raises RuntimeError when it failed, TimeoutError on timeout."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    bar = None
    try:
        while True:
            info = queue.status(job_id)
            if info is None:
                raise RuntimeError(f"job {job_id} is unknown to {queue.url} (expired, or Redis lost its data)")
            if progress and bar is None:
                from sim2real.progress import progress_bar

                bar = progress_bar(total=int(info["shards"]), desc=f"job {job_id}", unit="shard")
            if bar is not None:
                bar.update(int(info["shards_done"]) - bar.n)
            if info["status"] == "done":
                return info["result"]
            if info["status"] == "failed":
                raise RuntimeError(f"job {job_id} failed: {info.get('reason', 'no reason recorded')}")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s:g} s "
                                   f"({info['shards_done']}/{info['shards']} shards in, status {info['status']})")
            time.sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()
