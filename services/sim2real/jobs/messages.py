"""Queue payloads: an evaluation job, one shard of it, and a shard's result. JSON only, never pickle.

Every payload carries ``schema`` (its version) and ``type``; decoding checks both and every field,
so a malformed or foreign entry is rejected with one line that names the field, before any work.
Numpy-free and simulator-free: the submitter imports this without the evaluation stack.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sim2real.contracts.evaluation import BUILTIN_POLICIES, MAX_EPISODES, MAX_LATENCY_MS, POLICY_TRANSPORTS

SCHEMA_VERSION = 1
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
RECORD_KEYS = ("index", "success", "collided", "progress_m", "path_length_m", "steps", "_latencies")
MAX_TEXT = 4096           # longest model path, scenario name or path, backend or engine name
MAX_SEED = 2**63 - 1


def valid_job_id(value: object) -> bool:
    """Whether ``value`` is a job id: 1-64 letters, digits, '-' or '_'."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


class MessageError(ValueError):
    """A payload that is not valid JSON or does not match its schema; the message names the field."""


def _get(data: dict, name: str, types: type | tuple[type, ...], what: str, optional: bool = False) -> Any:
    if name not in data:
        if optional:
            return None
        raise MessageError(f"{what}: missing field '{name}'")
    value = data[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise MessageError(f"{what}: field '{name}' must not be a boolean")
    if not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise MessageError(f"{what}: field '{name}' must be {names} (got {type(value).__name__})")
    return value


def _number(data: dict, name: str, what: str, optional: bool = False) -> float | None:
    """A finite JSON number as a float (a huge integer is refused, not overflowed)."""
    value = _get(data, name, (int, float), what, optional)
    if value is None:
        return None
    try:
        value = float(value)
    except OverflowError:
        raise MessageError(f"{what}: field '{name}' is too large") from None
    if not math.isfinite(value):
        raise MessageError(f"{what}: field '{name}' must be finite")
    return value


def _header(data: object, kind: str) -> dict:
    if not isinstance(data, dict):
        raise MessageError(f"{kind}: expected a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise MessageError(f"{kind}: unsupported schema {data.get('schema')!r} (this worker reads {SCHEMA_VERSION})")
    if data.get("type") != kind:
        raise MessageError(f"{kind}: payload is of type {data.get('type')!r}")
    return data


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class JobSpec:
    """What to evaluate: a model ("expert", "spin" or a path with its sha256) in a scenario.

    ``model`` paths that are relative are resolved by the worker against its ``--artifacts``
    folder; the worker refuses a file whose sha256 differs from ``model_sha256``.
    """

    job_id: str
    model: str
    model_sha256: str | None
    scenario: str
    episodes: int
    seed: int = 1000
    backend: str = "pybullet"
    engine: str = "auto"
    latency_ms: float = 0.0
    shard_size: int = 10
    scenario_sha256: str | None = None
    policy: str = "inprocess"

    def __post_init__(self) -> None:
        if not valid_job_id(self.job_id):
            raise MessageError(f"job {str(self.job_id)[:80]!r}: job_id must be 1-64 letters, digits, '-' or '_'")
        what = f"job {self.job_id!r}"
        for name in ("model", "scenario", "backend", "engine"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
                raise MessageError(f"{what}: {name} must be a non-empty string of at most {MAX_TEXT} characters")
        if self.policy not in POLICY_TRANSPORTS:
            raise MessageError(f"{what}: policy must be one of {', '.join(POLICY_TRANSPORTS)} (got {self.policy!r})")
        if self.model in BUILTIN_POLICIES:
            if self.policy != "inprocess":
                raise MessageError(f"{what}: built-in policy '{self.model}' runs in-process only")
            if self.model_sha256 is not None:
                raise MessageError(f"{what}: built-in policy '{self.model}' has no model_sha256")
        elif not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise MessageError(f"{what}: model_sha256 must be 64 lowercase hex digits for a model file")
        if self.scenario_sha256 is not None and (not isinstance(self.scenario_sha256, str)
                                                 or not _SHA256.fullmatch(self.scenario_sha256)):
            raise MessageError(f"{what}: scenario_sha256 must be 64 lowercase hex digits")
        for name, high in (("episodes", MAX_EPISODES), ("shard_size", MAX_EPISODES)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise MessageError(f"{what}: {name} must be an integer from 1 to {high} (got {value!r})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise MessageError(f"{what}: seed must be an integer from 0 to 2**63-1 (got {self.seed!r})")
        if not isinstance(self.latency_ms, (int, float)) or isinstance(self.latency_ms, bool) \
                or not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise MessageError(f"{what}: latency_ms must be a number from 0 to {MAX_LATENCY_MS:g} "
                               f"(got {self.latency_ms!r})")

    @property
    def num_shards(self) -> int:
        return -(-self.episodes // self.shard_size)

    def shards(self) -> list[Shard]:
        """Contiguous episode ranges of ``shard_size`` (the last one may be shorter)."""
        return [Shard(self, i, i * self.shard_size, min(self.episodes, (i + 1) * self.shard_size))
                for i in range(self.num_shards)]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, "type": "job", **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> JobSpec:
        data = _header(data, "job")
        what = "job"
        fields = dict(
            job_id=_get(data, "job_id", str, what),
            model=_get(data, "model", str, what),
            model_sha256=_get(data, "model_sha256", str, what, optional=True),
            scenario=_get(data, "scenario", str, what),
            episodes=_get(data, "episodes", int, what),
            seed=_get(data, "seed", int, what),
            backend=_get(data, "backend", str, what),
            engine=_get(data, "engine", str, what),
            latency_ms=_number(data, "latency_ms", what),
            shard_size=_get(data, "shard_size", int, what),
            scenario_sha256=_get(data, "scenario_sha256", str, what, optional=True),
            policy=_get(data, "policy", str, what, optional=True) or "inprocess",
        )
        return cls(**fields)


@dataclass(frozen=True)
class Shard:
    """Episodes ``[start, stop)`` of a job; the job travels with it so any worker can run it alone."""

    job: JobSpec
    index: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not (0 <= self.index < self.job.num_shards):
            raise MessageError(f"shard: index {self.index} is outside 0..{self.job.num_shards - 1}")
        expected = (self.index * self.job.shard_size, min(self.job.episodes, (self.index + 1) * self.job.shard_size))
        if (self.start, self.stop) != expected:
            raise MessageError(f"shard {self.index}: episodes [{self.start}, {self.stop}) should be "
                               f"[{expected[0]}, {expected[1]}) for shard_size {self.job.shard_size}")

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, "type": "shard", "job": self.job.to_dict(),
                "index": self.index, "start": self.start, "stop": self.stop}

    @classmethod
    def from_dict(cls, data: object) -> Shard:
        data = _header(data, "shard")
        return cls(JobSpec.from_dict(_get(data, "job", dict, "shard")), _get(data, "index", int, "shard"),
                   _get(data, "start", int, "shard"), _get(data, "stop", int, "shard"))


@dataclass(frozen=True)
class ShardResult:
    """The per-episode records of one shard (``run_episode`` output, ``_latencies`` kept for percentiles)."""

    job_id: str
    index: int
    worker: str
    records: list
    wall_s: float

    def check(self, shard: Shard) -> None:
        """The records are exactly the shard's episodes, each once."""
        got = sorted(r["index"] for r in self.records)
        if got != list(range(shard.start, shard.stop)):
            raise MessageError(f"shard {self.index} of job {self.job_id}: records cover episodes {got}, "
                               f"expected {shard.start}..{shard.stop - 1}")

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, "type": "shard_result", **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> ShardResult:
        data = _header(data, "shard_result")
        what = "shard_result"
        records = _get(data, "records", list, what)
        for k, record in enumerate(records):
            if not isinstance(record, dict):
                raise MessageError(f"{what}: records[{k}] must be an object")
            missing = [key for key in RECORD_KEYS if key not in record]
            if missing:
                raise MessageError(f"{what}: records[{k}] lacks {', '.join(missing)}")
            where = f"{what} records[{k}]"
            _get(record, "index", int, where)
            _get(record, "steps", int, where)
            _get(record, "success", bool, where)
            _get(record, "collided", bool, where)
            _number(record, "progress_m", where)
            _number(record, "path_length_m", where)
            for latency in _get(record, "_latencies", list, where):
                _number({"_latencies": latency}, "_latencies", where)
        return cls(_get(data, "job_id", str, what), _get(data, "index", int, what), _get(data, "worker", str, what),
                   records, _number(data, "wall_s", what))


def encode(message: JobSpec | Shard | ShardResult) -> str:
    """Compact JSON; NaN and infinities are refused (they are not JSON)."""
    try:
        return json.dumps(message.to_dict(), separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise MessageError(f"{type(message).__name__}: cannot encode as JSON ({exc})") from None


def decode(text: str | bytes, cls: type) -> Any:
    """Parse ``text`` as a ``cls`` payload (JobSpec, Shard or ShardResult)."""
    if not isinstance(text, (str, bytes)):
        raise MessageError(f"{cls.__name__}: expected JSON text, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except ValueError as exc:     # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise MessageError(f"{cls.__name__}: not valid JSON ({str(exc)[:200]})") from None
    except RecursionError:
        raise MessageError(f"{cls.__name__}: JSON nested too deeply") from None
    return cls.from_dict(data)
