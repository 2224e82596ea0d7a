"""The expert's evaluation result, reused across runs.

The privileged expert's result depends on the scenario, the seed, the episode count, the injected
latency and the simulator, never on a model, so ``sim2real run`` and ``sim2real eval --model
expert`` compute it once and reuse it. An entry is keyed by everything it depends on
(:func:`cache_key`):

- the scenario's canonical content (``Scenario.sha256``), ``seed``, ``episodes``, ``backend``
  and ``latency_ms``;
- the sha256 of the source files that make an episode: ``sim/`` (worlds, sensors, backends, the
  expert), ``contracts/`` (scenario schema and built-in scenarios, actions, camera) and the episode
  loop (``eval/evaluate.py``, ``frames.py``, ``policies.py``), so any edit there is a miss;
- the simulator's own identity: its distribution version and the sha256 of its module file (the
  compiled extension), not sim2real's version string; numpy's version and the CPU architecture.

Entries are JSON files ``<cache dir>/expert-eval/<key>.json``, written atomically. A corrupt or
foreign entry is ignored with one log line and rewritten. The cache directory is ``--cache-dir``,
else ``$SIM2REAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/sim2real`` (``~/.cache/sim2real``);
``--no-cache`` computes afresh (and stores nothing). A backend whose simulator has no identity here
(an external Gazebo) is never cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sim2real.contracts.manifest import sha256_file, write_json_atomic
from sim2real.contracts.scenario import load_scenario

CACHE_VERSION = 1
SUBDIR = "expert-eval"
PACKAGE = Path(__file__).resolve().parents[1]
SOURCE_TREES = ("sim", "contracts")
SOURCE_FILES = ("eval/evaluate.py", "eval/frames.py", "eval/policies.py")
# The module whose file identifies each backend's simulator build.
SIMULATOR_MODULES = {"pybullet": "pybullet", "mujoco": "mujoco"}
REQUIRED = ("success_rate", "episodes", "per_episode", "scenario", "backend")


def default_cache_dir() -> Path:
    """``$SIM2REAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/sim2real``, else ``~/.cache/sim2real``."""
    explicit = os.environ.get("SIM2REAL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sim2real"


def _say(message: str) -> None:
    print(f"sim2real: {message}", file=sys.stderr, flush=True)


def source_files(root: Path = PACKAGE) -> list[Path]:
    """The source files an expert episode depends on, in a fixed order."""
    files: list[Path] = []
    for tree in SOURCE_TREES:
        files += [p for p in (root / tree).rglob("*") if p.is_file() and p.suffix in (".py", ".yaml")
                  and "__pycache__" not in p.parts]
    files += [root / name for name in SOURCE_FILES]
    return sorted(files)


def sources_sha256(root: Path = PACKAGE) -> str:
    """One sha256 over the relative path and content of every file of :func:`source_files`."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def simulator_identity(backend: str) -> dict | None:
    """The simulator build behind ``backend``: distribution version and module file sha256, or None."""
    module = SIMULATOR_MODULES.get(backend)
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    try:
        version = importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"module": module, "version": version, "file_sha256": sha256_file(spec.origin)}


def key_fields(config) -> dict | None:
    """What the expert's result for ``config`` (an ``EvalConfig``) depends on; None when uncacheable."""
    simulator = simulator_identity(config.backend)
    if simulator is None or config.policy != "inprocess":
        return None
    return {"cache_version": CACHE_VERSION, "scenario_sha256": load_scenario(config.scenario).sha256(),
            "seed": config.seed, "episodes": config.episodes, "backend": config.backend,
            "latency_ms": float(config.latency_ms), "sources_sha256": sources_sha256(),
            "simulator": simulator, "numpy": np.__version__, "arch": platform.machine()}


def cache_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _load(path: Path, key: str) -> dict | None:
    """The cached result at ``path``, or None (one log line when the entry exists but is unusable)."""
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        result = entry["result"]
        if entry.get("key") != key:
            raise ValueError("its key does not match its name")
        missing = [name for name in REQUIRED if name not in result]
        if missing:
            raise ValueError(f"its result lacks {', '.join(missing)}")
        if len(result["per_episode"]) != result["episodes"]:
            raise ValueError("its per-episode records do not match its episode count")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _say(f"ignoring corrupt expert cache entry {path} ({type(exc).__name__}: {str(exc)[:120]}); recomputing")
        return None
    return result


def evaluate_expert(config, cache_dir: Path | None, json_out: Path | None = None,
                    report_out: Path | None = None, progress: bool = True) -> dict:
    """The expert's result for ``config``: from the cache in ``cache_dir`` when there, else evaluated
    (and stored). ``cache_dir`` None evaluates without the cache. The result's ``cache`` says which."""
    from sim2real.eval.evaluate import _validate, evaluate

    _validate(config)
    fields = key_fields(config) if cache_dir is not None else None
    if fields is None:
        return evaluate("expert", config, json_out=json_out, report_out=report_out, progress=progress)
    key = cache_key(fields)
    path = Path(cache_dir) / SUBDIR / f"{key}.json"
    result = _load(path, key)
    if result is not None:
        _say(f"expert result for {result['episodes']} episodes of {result['scenario']} (seed {config.seed}) "
             f"reused from {path}")
        result["cache"] = {"hit": True, "key": key, "entry": str(path)}
        result["config"] = asdict(config)
        if json_out is not None:
            write_json_atomic(json_out, result)
        if report_out is not None:
            from sim2real.eval.report import write_report

            write_report(result, Path(report_out))
        return result
    result = evaluate("expert", config, json_out=None, report_out=report_out, progress=progress)
    try:
        write_json_atomic(path, {"key": key, "key_fields": fields, "result": result})
    except OSError as exc:
        _say(f"could not store the expert result in {path.parent} ({exc.strerror or exc}); continuing")
    result["cache"] = {"hit": False, "key": key, "entry": str(path)}
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result
