"""`sim2real worker`: take evaluation shards off the queue, run their episodes, store the results.

Order per shard: run the episodes → store the result (overwriting any earlier copy) → aggregate
if every shard is in → acknowledge. A crash at any point leaves the entry pending, so another
worker reclaims it after ``claim_idle_s``; a crash after storing only repeats the cheap steps.

Faults, and what the worker does (docs/guarantees.md lists them all):

- a shard that cannot run (missing model, bad scenario, a simulator error) fails its job once,
  with the reason, and is acknowledged: it is never retried;
- an entry that is not a shard at all (any shape: no ``shard`` field, not JSON, wrong types) fails
  the job it names, or is dead-lettered on its own when it names none, and is acknowledged; an
  unexpected error while handling one entry is treated the same way, so one entry never stops a
  worker, and the worker goes on with the next;
- a heartbeat thread, on its own Redis connection, keeps a running shard claimed every
  ``claim_idle_s / 3`` however long an episode takes;
- :meth:`Worker.stop` (SIGTERM, SIGINT) is honoured in every state: while connecting or waiting
  for Redis (no retry after it), idle, and mid-shard (the episode is abandoned at its next control
  step and the shard handed back at once). ``run`` then returns 0;
- Redis refusing the password raises :class:`~sim2real.jobs.queue.QueueAuthError`: an error, not a retry.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sim2real.jobs.messages import JobSpec, ShardResult
from sim2real.jobs.queue import FINAL, Entry, Queue, QueueAuthError, QueueStopped, aggregate

log = logging.getLogger("sim2real.jobs")


@dataclass
class _Runner:
    """A job's simulator, policy and scenario, kept across its shards."""

    key: tuple
    scenario: object
    policy: object
    backend: object


def default_name() -> str:
    """Unique per process, also for replicas that share a host name and pid (host-network containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class Heartbeat:
    """Keeps one entry claimed from a thread with its own Redis connection while a shard runs.

    Every ``period_s`` it resets the entry's idle time; ``lost`` is set when another worker has
    claimed the entry meanwhile (this worker then drops its copy). ``beats`` counts the resets.
    """

    def __init__(self, queue: Queue, entry: Entry, consumer: str, period_s: float):
        self.queue, self.entry, self.consumer, self.period_s = queue.clone(), entry, consumer, period_s
        self.lost = threading.Event()
        self.beats = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{entry.entry_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self.queue.request_stop()          # a heartbeat waiting on an unreachable Redis gives up
        self._thread.join(timeout=10)
        self.queue.close()

    def _loop(self) -> None:
        while not self._done.wait(self.period_s):
            try:
                if not self.queue.heartbeat(self.entry, self.consumer):
                    self.lost.set()
                    return
                self.beats += 1
            except QueueStopped:
                return
            except Exception as exc:       # a heartbeat that fails leaves the shard to be reclaimed, no more
                log.warning("%s: heartbeat for entry %s failed: %s", self.consumer, self.entry.entry_id,
                            _one_line(exc))
                return


class Worker:
    """Processes shards of one simulator backend until stopped (or drained, with ``once``)."""

    def __init__(self, queue: Queue, backend: str = "pybullet", name: str | None = None,
                 artifacts: str | Path = ".", claim_idle_s: float = 60.0, block_s: float = 1.0,
                 max_jobs: int | None = None, once: bool = False, max_deliveries: int = 5):
        if claim_idle_s <= 0 or block_s <= 0:
            raise ValueError("claim_idle_s and block_s must be positive")
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1 (got {max_jobs})")
        self.queue, self.backend_name = queue, backend
        self.name = name or default_name()
        self.artifacts = Path(artifacts)
        self.claim_idle_s, self.block_s = claim_idle_s, block_s
        self.max_jobs, self.once, self.max_deliveries = max_jobs, once, max_deliveries
        self.shards_done = 0
        self._runner: _Runner | None = None
        self._stopping = False
        self._touched: set[str] = set()
        self._finished: set[str] = set()

    def stop(self) -> None:
        """Abandon the current episode, hand the shard back, and exit the loop (signal-safe).

        From now on the queue raises instead of retrying an unreachable Redis, so a worker that is
        still connecting, or waiting for Redis to come back, stops too.
        """
        self._stopping = True
        self.queue.request_stop()

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        try:
            self.queue.join(self.backend_name, self.name)
            log.info("%s: serving %s shards (claim idle %.1f s)", self.name, self.backend_name, self.claim_idle_s)
            while not self._stopping:
                entry = (self.queue.claim_stale(self.backend_name, self.name, self.claim_idle_s)
                         or self.queue.read(self.backend_name, self.name, int(self.block_s * 1000)))
                if entry is not None:
                    self.process(entry)
                elif self.once:
                    break
                if self._enough_jobs():
                    break
        except QueueStopped:
            log.info("%s: stopping while redis %s is unreachable", self.name, self.queue.url)
        finally:
            self._close_runner()
        try:
            self.queue.leave(self.backend_name, self.name)
        except QueueStopped:
            pass
        log.info("%s: stopped after %d shards", self.name, self.shards_done)
        return 0

    def _enough_jobs(self) -> bool:
        if self.max_jobs is None:
            return False
        for job_id in self._touched - self._finished:
            status, _ = self.queue.job_state(job_id)
            if status is None or status in FINAL:
                self._finished.add(job_id)
        return len(self._finished) >= self.max_jobs

    # ------------------------------------------------------------------ one entry
    def process(self, entry: Entry) -> None:
        """Handle one entry; whatever it holds, the worker is ready for the next one afterwards."""
        try:
            self._process(entry)
        except (QueueStopped, QueueAuthError):
            raise
        except Exception as exc:   # a poison entry: dead-lettered with the reason, never the end of the worker
            reason = f"worker {self.name} could not handle entry {entry.entry_id}: {_one_line(exc)}"
            log.error("%s", reason)
            self._poison(entry, reason)

    def _poison(self, entry: Entry, reason: str) -> None:
        """Fail the entry's job with ``reason`` and acknowledge the entry.

        An entry that names no job, or a job that is gone, is dead-lettered on its own; one whose
        job has already finished or failed adds nothing (that job's dead letter is there already).
        """
        q = self.queue
        shard_index = None if entry.shard is None else entry.shard.index
        alone = entry.job_id is None
        if not alone:
            try:
                if not q.fail(entry.job_id, reason, shard_index):
                    alone = q.job_state(entry.job_id)[0] is None
            except (QueueStopped, QueueAuthError):
                raise
            except Exception as exc:   # the job's own keys are unusable: record the entry on its own
                alone, reason = True, f"{reason}; failing job {entry.job_id} failed too: {_one_line(exc)}"
        if alone:
            q.dead_letter(entry, reason)
        q.ack(entry)

    def _process(self, entry: Entry) -> None:
        q = self.queue
        if entry.job_id:
            self._touched.add(entry.job_id)
        if entry.shard is None:
            reason = f"undecodable shard: {entry.error}"
            log.error("%s: dropping entry %s of job %s: %s", self.name, entry.entry_id, entry.job_id, reason)
            self._poison(entry, reason)
            return
        shard, job = entry.shard, entry.shard.job
        where = f"job {job.job_id} shard {shard.index + 1}/{job.num_shards}"
        if entry.deliveries > self.max_deliveries:
            self._poison(entry, f"shard {shard.index} was delivered {entry.deliveries} times without finishing "
                                f"(its workers died each time)")
            return
        status, _ = q.job_state(job.job_id)
        if status is None or status in FINAL:
            log.info("%s: %s: job is %s; dropping the shard", self.name, where, status or "unknown (expired?)")
            q.ack(entry)
            return
        if q.has_result(job.job_id, shard.index):          # its worker died after storing it
            self._finish_if_complete(job)
            q.ack(entry)
            return
        q.mark_running(job.job_id)
        try:
            runner = self._open(job)
            result = self._run(entry, runner)
        except (QueueStopped, QueueAuthError):
            raise
        except Exception as exc:   # a job that cannot run fails once, with its reason; never retried
            reason = _one_line(exc)
            if q.fail(job.job_id, reason, shard.index):
                log.error("%s: %s failed: %s", self.name, where, reason)
            q.ack(entry)
            return
        if result is None:
            return
        stored = q.store_result(result)
        log.info("%s: %s (episodes %d-%d) %s in %.2f s%s", self.name, where, shard.start, shard.stop - 1,
                 "done" if stored >= 0 else "dropped (job already finished)", result.wall_s,
                 " (reclaimed)" if entry.deliveries > 1 else "")
        if stored >= job.num_shards:
            self._finish_if_complete(job)
        q.ack(entry)
        self.shards_done += 1

    def _run(self, entry: Entry, runner: _Runner) -> ShardResult | None:
        """The shard's episodes; None when the worker is stopping or has lost the shard to another."""
        from sim2real.eval.evaluate import EpisodeInterrupted, run_episode

        shard, job = entry.shard, entry.shard.job
        start = time.monotonic()
        records = []
        with Heartbeat(self.queue, entry, self.name, self.claim_idle_s / 3) as heartbeat:
            def interrupted() -> bool:
                return self._stopping or heartbeat.lost.is_set()

            for index in range(shard.start, shard.stop):
                try:
                    if interrupted():
                        raise EpisodeInterrupted
                    record = run_episode(runner.backend, runner.policy, runner.scenario, job.seed, index,
                                         job.latency_ms, interrupt=interrupted)
                except EpisodeInterrupted:
                    if heartbeat.lost.is_set():
                        log.warning("%s: shard %d of job %s was reclaimed by another worker; dropping my copy",
                                    self.name, shard.index, job.job_id)
                    else:
                        self.queue.release(entry, self.name)
                        log.info("%s: stopping; handed shard %d of job %s back", self.name, shard.index,
                                 job.job_id)
                    return None
                record["_latencies"] = [round(v, 5) for v in record["_latencies"]]
                records.append(record)
        return ShardResult(job.job_id, shard.index, self.name, records, round(time.monotonic() - start, 4))

    def _finish_if_complete(self, job: JobSpec) -> None:
        try:
            result = aggregate(self.queue, job)
        except (QueueStopped, QueueAuthError):
            raise
        except Exception as exc:
            self.queue.fail(job.job_id, f"aggregation failed: {_one_line(exc)}")
            return
        if result is not None and self.queue.finish(job.job_id, result):
            log.info("%s: job %s done: success %.3f over %d episodes", self.name, job.job_id,
                     result["success_rate"], result["episodes"])

    # ------------------------------------------------------------------ simulator and policy
    def resolve_model(self, job: JobSpec) -> str:
        """The model to load: a built-in name, or the file (relative paths under ``artifacts``) checked by sha256."""
        from sim2real.contracts.manifest import sha256_file

        if job.model_sha256 is None:
            return job.model
        path = Path(job.model)
        if not path.is_absolute():
            path = self.artifacts / path
        if not path.is_file():
            raise FileNotFoundError(f"model not found on worker {self.name}: {path}")
        actual = sha256_file(path)
        if actual != job.model_sha256:
            raise ValueError(f"model {path} has sha256 {actual[:12]}…, the job expects {job.model_sha256[:12]}… "
                             f"(a different or changed file)")
        return str(path)

    def _open(self, job: JobSpec) -> _Runner:
        from sim2real.eval.evaluate import EvalConfig, prepare

        key = (job.model, job.model_sha256, job.scenario, job.scenario_sha256, job.backend, job.engine, job.policy)
        if self._runner is not None and self._runner.key == key:
            return self._runner
        self._close_runner()
        model = self.resolve_model(job)
        config = EvalConfig(scenario=job.scenario, episodes=job.episodes, seed=job.seed, backend=job.backend,
                            engine=job.engine, latency_ms=job.latency_ms, policy=job.policy)
        scenario, policy, backend = prepare(model, config)
        if job.scenario_sha256 and scenario.sha256() != job.scenario_sha256:
            backend.close()
            policy.close()
            raise ValueError(f"scenario '{job.scenario}' on worker {self.name} differs from the submitted one "
                             f"(sha256 {scenario.sha256()[:12]}… vs {job.scenario_sha256[:12]}…)")
        self._runner = _Runner(key, scenario, policy, backend)
        return self._runner

    def _close_runner(self) -> None:
        if self._runner is not None:
            self._runner.backend.close()
            self._runner.policy.close()
            self._runner = None
