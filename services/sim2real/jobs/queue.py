"""The evaluation queue on Redis Streams: at-least-once shards, exactly-once counting.

Keys (``prefix`` defaults to ``sim2real``):

- ``{prefix}:shards:{backend}`` stream, consumer group ``{prefix}-workers``: one entry per shard;
  one stream per simulator backend, so a worker only takes shards it can run.
- ``{prefix}:job:{id}`` hash: ``spec`` (job JSON), ``status`` (queued, running, done, failed),
  ``reason``, ``shards``, ``submitted_at``, ``started_at``, ``finished_at``, ``reclaimed``, ``result``.
- ``{prefix}:job:{id}:results`` hash: shard index -> shard result JSON. A shard that runs twice
  overwrites its own field, so the aggregate counts every episode exactly once.
- ``{prefix}:dead`` stream: one entry per failed job (job id, shard, reason), and one per entry
  that names no job it could fail (stream, entry id, reason), for operators.

A worker reads a shard, runs it, stores its result, aggregates when the results hash is full,
and only then acknowledges (XACK + XDEL). A worker that dies leaves its entry pending; after
``claim_idle_s`` without a heartbeat another worker takes it with XAUTOCLAIM. Every call retries
on a lost connection with exponential backoff (forever for workers, ``reconnect_timeout_s`` for
submitters), so a Redis restart pauses work instead of ending it. A refused password is not a lost
connection: it raises :class:`QueueAuthError` at once. After :meth:`Queue.request_stop` a call is
tried once more and then raises :class:`QueueStopped` instead of retrying, so a stopping worker
never waits on an unreachable Redis.

The password never appears in a log line or an error: they show the URL as :func:`redact_url`
gives it. It can come with the URL or, kept off the command line, as ``password``.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sim2real.jobs import DEFAULT_REDIS_URL
from sim2real.jobs.messages import JobSpec, MessageError, Shard, ShardResult, decode, encode, valid_job_id

RESULT_TTL_S = 7 * 24 * 3600
RELEASED_IDLE_MS = 365 * 24 * 3600 * 1000     # "idle for a year": claimable by anyone at once
FINAL = ("done", "failed")
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)

log = logging.getLogger("sim2real.jobs")
_SECRET_QUERY_KEYS = ("password", "pass", "passwd")


class QueueStopped(Exception):
    """Raised by a queue call, instead of retrying, once the queue has been asked to stop."""


class QueueAuthError(RuntimeError):
    """Redis refused the credentials: not a lost connection, so never retried."""


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable Redis URL>"


def url_password(url: str) -> str | None:
    """The password a Redis URL carries, if any (to tell where a password came from)."""
    try:
        parts = urlsplit(url)
        query = {k.lower(): v for k, v in parse_qsl(parts.query)}
        return parts.password or next((query[k] for k in _SECRET_QUERY_KEYS if k in query), None)
    except ValueError:
        return None

# Set fields only when the job's status is one of ARGV[1] (comma-separated); returns 1 when set.
_SET_IF_STATUS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if status == allowed then
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return 1
  end
end
return 0
"""


# Store a shard result unless the job is finished (or gone); returns the number stored, or -1.
_STORE_RESULT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HLEN', KEYS[2])
"""


@dataclass(frozen=True)
class Entry:
    """A stream entry handed to a worker: its id, its shard (or why it could not be decoded), deliveries."""

    entry_id: str
    stream: str
    shard: Shard | None
    error: str | None = None
    job_id: str | None = None
    deliveries: int = 1


def _reconnecting(method: Callable) -> Callable:
    """Re-run ``method`` on a lost connection, backing off 0.1 s → 5 s, until the queue's deadline.

    A refused password raises :class:`QueueAuthError` at once; once :meth:`Queue.request_stop`
    was called, a lost connection raises :class:`QueueStopped` instead of waiting.
    """

    @functools.wraps(method)
    def wrapper(self: Queue, *args, **kwargs):
        delay, deadline, warned = 0.1, None, False
        if self.reconnect_timeout_s is not None:
            deadline = time.monotonic() + self.reconnect_timeout_s
        while True:
            try:
                result = method(self, *args, **kwargs)
                if warned:
                    log.info("redis %s is back", self.url)
                return result
            except AuthenticationError as exc:
                raise QueueAuthError(f"redis at {self.url} refused the credentials ({_first_line(exc)}); check "
                                     f"SIM2REAL_REDIS_PASSWORD, --redis-password-file or the URL") from None
            except _TRANSIENT as exc:
                if self.stopping:
                    raise QueueStopped(f"stopped while redis at {self.url} was unreachable") from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"redis at {self.url} is unreachable ({_first_line(exc)})") from None
                if not warned:
                    log.warning("redis %s unreachable (%s); retrying with backoff", self.url, _first_line(exc))
                    warned = True
                if not self._pause(delay * random.uniform(0.5, 1.0)):
                    raise QueueStopped(f"stopped while redis at {self.url} was unreachable") from None
                delay = min(delay * 2, 5.0)

    return wrapper


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Queue:
    """Client of the evaluation queue. Safe to share between a worker's calls, not between threads."""

    def __init__(self, url: str = DEFAULT_REDIS_URL, prefix: str = "sim2real", reconnect_timeout_s: float | None = 30.0,
                 result_ttl_s: int = RESULT_TTL_S, password: str | None = None):
        self.url, self.prefix = redact_url(url), prefix   # ``url`` is for messages: no password in it
        self.group = f"{prefix}-workers"
        self.dead = f"{prefix}:dead"
        self.reconnect_timeout_s = reconnect_timeout_s
        self.result_ttl_s = result_ttl_s
        self._stop_requested = False
        if password is not None and url_password(url) is not None:
            raise ValueError(f"Redis URL {self.url} carries a password and one was given separately: use one")
        self._connect = {"url": url, "password": password}
        try:
            # Undecodable bytes in a foreign entry become U+FFFD: the entry is refused, never the reader.
            self.redis = redis.Redis.from_url(url, password=password, decode_responses=True,
                                              encoding_errors="replace", socket_timeout=15,
                                              socket_connect_timeout=5, health_check_interval=10)
        except ValueError as exc:
            raise ValueError(f"bad Redis URL {self.url}: {_first_line(exc)}") from None
        self._set_if_status = self.redis.register_script(_SET_IF_STATUS)
        self._store_result = self.redis.register_script(_STORE_RESULT)
        self._groups: set[str] = set()

    def clone(self) -> Queue:
        """Another client of the same queue with its own connection (for a second thread)."""
        return Queue(self._connect["url"], self.prefix, self.reconnect_timeout_s, self.result_ttl_s,
                     password=self._connect["password"])

    def request_stop(self) -> None:
        """From now on a lost connection raises :class:`QueueStopped` instead of being retried.

        Signal-safe: it only sets a flag (no lock a signal handler could wait on forever).
        """
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` in short slices; False as soon as a stop is requested."""
        end = time.monotonic() + seconds
        while not self._stop_requested:
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    # ------------------------------------------------------------------ keys
    def stream(self, backend: str) -> str:
        return f"{self.prefix}:shards:{backend}"

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def results_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:results"

    # ------------------------------------------------------------------ helpers
    def _now(self) -> float:
        seconds, micros = self.redis.time()   # one clock for every machine: the server's
        return seconds + micros / 1e6

    def _ensure_group(self, stream: str, force: bool = False) -> None:
        if stream in self._groups and not force:
            return
        try:
            self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    def _entry(self, stream: str, entry_id: str, fields: dict | None, deliveries: int = 1) -> Entry:
        """The entry as a worker sees it: its shard, or why there is none and which job (if any) it names."""
        fields = fields or {}
        payload = fields.get("shard")
        if payload is None:
            job_id = fields.get("job_id")
            return Entry(entry_id, stream, None, "the entry has no 'shard' field",
                         job_id if valid_job_id(job_id) else None, deliveries)
        try:
            shard = decode(payload, Shard)
        except MessageError as exc:
            return Entry(entry_id, stream, None, str(exc), _job_id_of(payload, fields.get("job_id")), deliveries)
        return Entry(entry_id, stream, shard, None, shard.job.job_id, deliveries)

    # ------------------------------------------------------------------ submitter side
    @_reconnecting
    def submit(self, job: JobSpec) -> str:
        """Record the job and enqueue its shards in one transaction; returns the job id."""
        stream = self.stream(job.backend)
        self._ensure_group(stream)
        now = self._now()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.job_key(job.job_id), mapping={
            "spec": encode(job), "status": "queued", "shards": job.num_shards, "episodes": job.episodes,
            "submitted_at": now, "reclaimed": 0})
        for shard in job.shards():
            pipe.xadd(stream, {"shard": encode(shard), "job_id": job.job_id})
        pipe.execute()
        return job.job_id

    @_reconnecting
    def status(self, job_id: str) -> dict | None:
        """The job's hash with ``result`` parsed and the number of shards done; None when unknown."""
        info = self.redis.hgetall(self.job_key(job_id))
        if not info:
            return None
        info["shards_done"] = self.redis.hlen(self.results_key(job_id))
        if "result" in info:
            info["result"] = json.loads(info["result"])
        return info

    @_reconnecting
    def dead_letters(self, count: int = 100) -> list[dict]:
        return [fields for _, fields in self.redis.xrevrange(self.dead, count=count)]

    # ------------------------------------------------------------------ worker side
    @_reconnecting
    def join(self, backend: str, consumer: str) -> None:
        """Register ``consumer`` in the group now (XINFO CONSUMERS lists live workers)."""
        stream = self.stream(backend)
        self._ensure_group(stream)
        self.redis.xgroup_createconsumer(stream, self.group, consumer)

    @_reconnecting
    def leave(self, backend: str, consumer: str) -> None:
        """Remove ``consumer`` from the group, unless it still holds shards (deleting would drop them)."""
        stream = self.stream(backend)
        try:
            held = self.redis.xpending_range(stream, self.group, "-", "+", 1, consumername=consumer)
        except ResponseError:
            return
        if not held:
            self.redis.xgroup_delconsumer(stream, self.group, consumer)

    @_reconnecting
    def read(self, backend: str, consumer: str, block_ms: int = 1000) -> Entry | None:
        """The next new shard for ``consumer`` (blocking up to ``block_ms``), or None."""
        stream = self.stream(backend)
        self._ensure_group(stream)
        try:
            reply = self.redis.xreadgroup(self.group, consumer, {stream: ">"}, count=1, block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group(stream, force=True)   # the server lost its data (restart without persistence)
            return None
        for _, entries in reply or []:
            for entry_id, fields in entries:
                return self._entry(stream, entry_id, fields)
        return None

    @_reconnecting
    def claim_stale(self, backend: str, consumer: str, min_idle_s: float) -> Entry | None:
        """Take over one shard whose worker has been silent for ``min_idle_s`` (XAUTOCLAIM), or None."""
        stream = self.stream(backend)
        self._ensure_group(stream)
        try:
            _, claimed, _ = self.redis.xautoclaim(stream, self.group, consumer, int(min_idle_s * 1000),
                                                  start_id="0-0", count=1)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group(stream, force=True)
            return None
        for entry_id, fields in claimed:
            pending = self.redis.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            entry = self._entry(stream, entry_id, fields, deliveries)
            if entry.job_id and self.redis.exists(self.job_key(entry.job_id)):
                self.redis.hincrby(self.job_key(entry.job_id), "reclaimed", 1)
            return entry
        return None

    @_reconnecting
    def heartbeat(self, entry: Entry, consumer: str) -> bool:
        """Reset the entry's idle time; False when another worker has claimed it meanwhile."""
        pending = self.redis.xpending_range(entry.stream, self.group, min=entry.entry_id, max=entry.entry_id,
                                            count=1, consumername=consumer)
        if not pending:
            return False
        self.redis.xclaim(entry.stream, self.group, consumer, 0, [entry.entry_id], justid=True)
        return True

    @_reconnecting
    def release(self, entry: Entry, consumer: str) -> None:
        """Hand an unfinished shard back: mark it long idle so the next XAUTOCLAIM takes it at once."""
        self.redis.xclaim(entry.stream, self.group, consumer, 0, [entry.entry_id], idle=RELEASED_IDLE_MS,
                          justid=True)

    @_reconnecting
    def ack(self, entry: Entry) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(entry.stream, self.group, entry.entry_id)
        pipe.xdel(entry.stream, entry.entry_id)
        pipe.execute()

    @_reconnecting
    def job_state(self, job_id: str) -> tuple[str | None, int]:
        """(status or None when the job is unknown, shard results stored so far)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.job_key(job_id), "status")
        pipe.hlen(self.results_key(job_id))
        status, done = pipe.execute()
        return status, int(done)

    @_reconnecting
    def has_result(self, job_id: str, index: int) -> bool:
        return bool(self.redis.hexists(self.results_key(job_id), str(index)))

    @_reconnecting
    def mark_running(self, job_id: str) -> None:
        self._set_if_status(keys=[self.job_key(job_id)], args=["queued", "status", "running",
                                                               "started_at", self._now()])

    @_reconnecting
    def store_result(self, result: ShardResult) -> int:
        """Store (or overwrite) one shard's result; returns how many of the job's shards are stored,
        or -1 when the job has already finished or is gone (the result is then dropped)."""
        return int(self._store_result(keys=[self.job_key(result.job_id), self.results_key(result.job_id)],
                                      args=[str(result.index), encode(result)]))

    @_reconnecting
    def fail(self, job_id: str, reason: str, shard_index: int | None = None) -> bool:
        """Mark the job failed with ``reason`` (first failure wins) and dead-letter it; True when marked."""
        reason = " ".join(str(reason).split())[:2000]
        key = self.job_key(job_id)
        marked = self._set_if_status(keys=[key], args=["queued,running", "status", "failed", "reason", reason,
                                                       "finished_at", self._now()]) == 1
        if marked:
            self.redis.xadd(self.dead, {"job_id": job_id, "shard": "" if shard_index is None else shard_index,
                                        "reason": reason}, maxlen=10000, approximate=True)
            self._expire(job_id)
        return marked

    @_reconnecting
    def dead_letter(self, entry: Entry, reason: str) -> None:
        """Record an entry that fails no job (it names none, or its job is gone) with ``reason``."""
        self.redis.xadd(self.dead, {"job_id": entry.job_id or "", "stream": entry.stream, "entry": entry.entry_id,
                                    "shard": "" if entry.shard is None else entry.shard.index,
                                    "reason": " ".join(str(reason).split())[:2000]},
                        maxlen=10000, approximate=True)

    @_reconnecting
    def shard_results(self, job_id: str) -> list[ShardResult]:
        return [decode(text, ShardResult) for text in self.redis.hvals(self.results_key(job_id))]

    @_reconnecting
    def finish(self, job_id: str, result: dict) -> bool:
        """Store the aggregate and mark the job done unless it already is (or failed); True when stored."""
        stored = self._set_if_status(keys=[self.job_key(job_id)],
                                     args=["queued,running", "status", "done", "finished_at", self._now(),
                                           "result", json.dumps(result, separators=(",", ":"))]) == 1
        if stored:
            self._expire(job_id)
        return stored

    def _expire(self, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.expire(self.job_key(job_id), self.result_ttl_s)
        pipe.expire(self.results_key(job_id), self.result_ttl_s)
        pipe.execute()

    @_reconnecting
    def timeline(self, job_id: str) -> dict:
        """Server times of the job (submitted, started, now) in seconds, and how many shards were reclaimed."""
        submitted, started, reclaimed = self.redis.hmget(self.job_key(job_id), "submitted_at", "started_at",
                                                         "reclaimed")
        now = self._now()
        return {"submitted_at": float(submitted or now), "started_at": float(started or submitted or now),
                "now": now, "reclaimed": int(reclaimed or 0)}

    def close(self) -> None:
        self.redis.close()


def _job_id_of(payload: str, field: str | None) -> str | None:
    """The job id a malformed shard payload (or its ``job_id`` field) names, when it is a valid one."""
    try:
        job_id = json.loads(payload)["job"]["job_id"]
    except (TypeError, ValueError, KeyError, IndexError, RecursionError):
        job_id = None
    if valid_job_id(job_id):
        return job_id
    return field if valid_job_id(field) else None


def aggregate(queue: Queue, job: JobSpec) -> dict | None:
    """The job's result once every shard is in (same shape as ``evaluate()``'s, plus ``job_id`` and ``queue``).

    Returns None while shards are missing. Raises ``MessageError`` when the stored results do not
    cover every episode exactly once (which would be a bug, never silently averaged over).
    """
    from sim2real.contracts.scenario import load_scenario
    from sim2real.eval.evaluate import EvalConfig, summarize

    results = queue.shard_results(job.job_id)
    if len(results) < job.num_shards:
        return None
    by_index = {r.index: r for r in results}
    if sorted(by_index) != list(range(job.num_shards)):
        raise MessageError(f"job {job.job_id}: stored shard results {sorted(by_index)} do not match its "
                           f"{job.num_shards} shards")
    for shard in job.shards():
        by_index[shard.index].check(shard)
    records = [record for r in results for record in r.records]
    workers = sorted({r.worker for r in results})
    times = queue.timeline(job.job_id)
    wall = max(times["now"] - times["started_at"], 1e-6)
    config = EvalConfig(scenario=job.scenario, episodes=job.episodes, seed=job.seed, backend=job.backend,
                        engine=job.engine, workers=len(workers), latency_ms=job.latency_ms, policy=job.policy)
    kind = job.model if job.model_sha256 is None else "ros2" if job.policy == "ros2" else "model"
    result = summarize(records, config, load_scenario(job.scenario), model=job.model, policy_kind=kind,
                       model_sha256=job.model_sha256, workers=len(workers), wall_s=wall)
    result["job_id"] = job.job_id
    result["queue"] = {"shards": job.num_shards, "shard_size": job.shard_size, "workers": workers,
                       "worker_s": round(sum(r.wall_s for r in results), 3),
                       "queued_s": round(times["started_at"] - times["submitted_at"], 3),
                       "reclaimed_shards": times["reclaimed"]}
    return result
