"""Closed-loop evaluation: drive a policy through sampled worlds in simulator B and score it.

Episode ``i`` is fully determined by ``(seed, i)``: the world, the start pose and the sensor noise
come from ``SeedSequence([seed, i])``, so the same seed gives the same episodes for every policy
and every worker count. An episode succeeds when the robot goes the whole duration without a
collision AND ends at least ``episode.min_progress_m`` (net, straight-line) from where it started,
so a policy that spins in place fails even though it never hits anything.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.util
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import STOP
from sim2real.contracts.evaluation import MAX_EPISODES, MAX_LATENCY_MS
from sim2real.contracts.manifest import write_json_atomic
from sim2real.contracts.scenario import Scenario, load_scenario
from sim2real.environment import scoped_environ
from sim2real.eval.frames import command_label, encode_frame, frame_steps, select_samples
from sim2real.eval.policies import Policy, make_policy
from sim2real.sim import registry
from sim2real.sim.base import SimBackend
from sim2real.sim.people import step_people
from sim2real.sim.world import nominal_camera, sample_free_pose, sample_world

MAX_TRAJECTORY_POINTS = 200
WILSON_Z = 1.96


@dataclass
class EvalConfig:
    scenario: str = "default"
    episodes: int = 100
    seed: int = 1000
    backend: str = "pybullet"
    engine: str = "auto"
    workers: int = 1
    latency_ms: float = 0.0   # delay between an observation and its command taking effect
    policy: str = "inprocess"  # how a model is run: "inprocess" (runtime backend) or "ros2" (the node)


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _validate(config: EvalConfig) -> Scenario:
    if isinstance(config.episodes, bool) or not isinstance(config.episodes, int) \
            or not 1 <= config.episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be an integer from 1 to {MAX_EPISODES} (got {config.episodes!r})")
    if isinstance(config.workers, bool) or not isinstance(config.workers, int) or config.workers < 1:
        raise ValueError(f"workers must be an integer of at least 1 (got {config.workers!r})")
    if not 0 <= config.latency_ms <= MAX_LATENCY_MS:
        raise ValueError(f"latency_ms must be a number from 0 to {MAX_LATENCY_MS:g} (got {config.latency_ms!r})")
    if config.backend not in registry.names():
        raise ValueError(f"unknown simulator backend '{config.backend}' (known: {', '.join(registry.names())})")
    return load_scenario(config.scenario)


def _create_backend(name: str, scenario: Scenario) -> SimBackend:
    backend = registry.create(name, scenario)
    if not backend.can_drive:
        backend.close()
        raise ValueError(f"simulator backend '{name}' only renders; evaluation needs one that drives a robot "
                         f"(e.g. pybullet)")
    return backend


def prepare(model: str | Path, config: EvalConfig) -> tuple[Scenario, Policy, SimBackend]:
    """Validate ``config`` and ``model``; return the scenario, the policy and a driving backend (close it)."""
    scenario = _validate(config)
    policy = make_policy(str(model), config.engine, scenario, via=config.policy)
    try:
        return scenario, policy, _create_backend(config.backend, scenario)
    except BaseException:
        policy.close()
        raise


def _percentile(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def _histogram(values: np.ndarray, bins: int = 40) -> dict:
    """Per-step latency histogram for the report; values above the 99.9th percentile land in the last bin."""
    if not len(values):
        return {"edges": [], "counts": []}
    top = max(float(np.percentile(values, 99.9)), float(values.min()) + 1e-6)
    counts, edges = np.histogram(np.clip(values, None, top), bins=bins, range=(float(values.min()), top))
    return {"edges": [round(float(e), 5) for e in edges], "counts": [int(c) for c in counts]}


class EpisodeInterrupted(Exception):
    """``run_episode``'s ``interrupt`` asked it to stop; the episode has no record."""


def run_episode(backend: SimBackend, policy: Policy, scenario: Scenario, seed: int, index: int,
                latency_ms: float = 0.0, interrupt: Callable[[], bool] | None = None) -> dict:
    """One closed-loop episode. Returns its record plus ``_latencies`` (ms per step) and ``_frames``
    (sample depth frames, :mod:`sim2real.eval.frames`), which ``summarize`` removes.

    ``interrupt`` is asked before every control step; when it answers True the episode is
    abandoned with :class:`EpisodeInterrupted` (a stopping worker hands its shard back).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    world = sample_world(scenario, rng)
    start = sample_free_pose(world, scenario.obstacles.start_clearance_m, rng)
    backend.load(world)
    backend.reset_robot(start)
    camera = nominal_camera(scenario)
    robot, episode = scenario.robot, scenario.episode
    dt = 1.0 / episode.control_hz
    n_steps = int(round(episode.duration_s * episode.control_hz))
    delay = latency_ms / 1e3

    pose = backend.robot_pose()
    trajectory = [(pose.x, pose.y)]
    latencies: list[float] = []
    pending: list[tuple[float, object]] = []   # (time it takes effect, twist), in time order
    active = STOP
    collided, collision_point, steps, stop_commands = False, None, 0, 0
    keep = frame_steps(index, n_steps)
    frames: list[dict] = []

    def frame(k: int, depth: np.ndarray, twist, collision: bool = False) -> dict:
        return encode_frame(depth, scenario.camera.max_range_m, episode=index, step=k, t_s=k * dt, twist=twist,
                            label=command_label(twist, robot.forward_speed_mps, robot.turn_rate_radps),
                            collision=collision)

    path_length = 0.0
    walks = [[(person.x, person.y)] for person in world.people]
    ties_before = policy.ties
    for k in range(n_steps):
        if interrupt is not None and interrupt():
            raise EpisodeInterrupted(f"episode {index} interrupted at step {k}")
        t = k * dt
        depth = backend.render_depth(pose, camera, rng)
        t0 = time.perf_counter()
        twist = policy.command(depth, pose, world, robot)
        latencies.append((time.perf_counter() - t0) * 1e3)
        stop_commands += twist == STOP
        if k in keep:
            frames.append(frame(k, depth, twist))
        if world.people:          # people walk one control step while the robot carries out its command
            step_people(world, dt, (pose.x, pose.y, robot.radius_m))
            backend.move_people(world)
            for walk, person in zip(walks, world.people):
                walk.append((person.x, person.y))
        if delay <= 0:
            result = backend.step(twist, dt)
            collided = result.collided
        else:
            pending.append((t + delay, twist))
            now, end = t, t + dt
            while True:
                if pending and pending[0][0] <= now + 1e-9:
                    active = pending.pop(0)[1]
                    continue
                until = min(end, pending[0][0]) if pending else end
                if until - now > 1e-9:
                    result = backend.step(active, until - now)
                    collided = collided or result.collided
                now = until
                if now >= end - 1e-9 or collided:
                    break
        steps = k + 1
        new_pose = backend.robot_pose()
        path_length += math.hypot(new_pose.x - pose.x, new_pose.y - pose.y)
        pose = new_pose
        trajectory.append((pose.x, pose.y))
        if collided:
            frames.append(frame(k, depth, twist, collision=True))
            point = getattr(backend, "contact_point", lambda: None)()
            collision_point = list(point) if point is not None else [pose.x, pose.y]
            break

    progress = math.hypot(pose.x - start.x, pose.y - start.y)
    stride = max(1, math.ceil(len(trajectory) / MAX_TRAJECTORY_POINTS))
    kept = trajectory[::stride]
    if kept[-1] != trajectory[-1]:
        kept.append(trajectory[-1])
    return {
        "index": index,
        "success": bool(not collided and progress >= episode.min_progress_m),
        "collided": bool(collided),
        "progress_m": round(progress, 4),
        "path_length_m": round(path_length, 4),
        "steps": steps,
        "stop_commands": stop_commands,
        "left_right_ties": None if ties_before is None else policy.ties - ties_before,
        "arena_size_m": [round(float(v), 4) for v in world.arena_size],
        "start": [round(start.x, 4), round(start.y, 4), round(start.yaw, 4)],
        "trajectory": [[round(x, 3), round(y, 3)] for x, y in kept],
        "collision_point": [round(v, 4) for v in collision_point] if collision_point is not None else None,
        "obstacles": [o.record() for o in world.obstacles],
        "people": [{"radius": round(person.radius, 4), "height": round(person.height, 4),
                    "path": [[round(x, 3), round(y, 3)] for x, y in walk[::stride] + walk[-1:]]}
                   for person, walk in zip(world.people, walks)],
        "latency_ms_mean": round(float(np.mean(latencies)), 4) if latencies else 0.0,
        "latency_ms_p99": round(_percentile(latencies, 99), 4),
        "_latencies": latencies,
        "_frames": frames,
    }


def summarize(records: list[dict], config: EvalConfig, scenario: Scenario, *, model: str, policy_kind: str,
              model_sha256: str | None, workers: int, wall_s: float) -> dict:
    """The result dict from per-episode records (``_latencies`` and ``_frames`` are removed here), in any order."""
    records = sorted(records, key=lambda r: r["index"])
    frames = select_samples([r.pop("_frames", []) for r in records])
    latencies = np.concatenate([np.asarray(r.pop("_latencies"), dtype=np.float64) for r in records])
    n = len(records)
    successes = sum(r["success"] for r in records)
    total_steps = sum(r["steps"] for r in records)
    lo, hi = wilson_interval(successes, n)
    return {
        "success_rate": successes / n,
        "success_ci95": [round(lo, 4), round(hi, 4)],
        "episodes": n,
        "successes": successes,
        "collisions": sum(r["collided"] for r in records),
        "stop_commands": sum(r.get("stop_commands", 0) for r in records),
        "left_right_ties": (None if any(r.get("left_right_ties") is None for r in records)
                            else sum(r["left_right_ties"] for r in records)),
        "mean_progress_m": round(float(np.mean([r["progress_m"] for r in records])), 4),
        "mean_path_length_m": round(float(np.mean([r["path_length_m"] for r in records])), 4),
        "latency_ms": {"p50": round(_percentile(latencies, 50), 4), "p99": round(_percentile(latencies, 99), 4),
                       "mean": round(float(latencies.mean()), 4) if len(latencies) else 0.0},
        "latency_histogram_ms": _histogram(latencies),
        "model_sha256": model_sha256,
        "model": model,
        "policy": policy_kind,
        "engine": config.engine if policy_kind in ("model", "ros2") else None,
        "scenario": scenario.name,
        "scenario_sha256": scenario.sha256(),
        "backend": config.backend,
        "seed": config.seed,
        "workers": workers,
        "injected_latency_ms": config.latency_ms,
        "arena_size_m": list(scenario.arena.size_m),
        "robot_radius_m": scenario.robot.radius_m,
        "duration_s": scenario.episode.duration_s,
        "control_hz": scenario.episode.control_hz,
        "min_progress_m": scenario.episode.min_progress_m,
        "steps": total_steps,
        "steps_per_s": round(total_steps / wall_s, 2) if wall_s > 0 else None,
        "wall_s": round(wall_s, 3),
        "config": asdict(config),
        "sample_frames": frames,
        "per_episode": records,
    }


# --------------------------------------------------------------------------- worker processes
_WORKER: dict = {}


_THREAD_VARIABLES = ("SIM2REAL_ORT_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_per_worker():
    """Spawned workers start with one ONNX Runtime and one BLAS thread each (an explicit setting wins).

    N workers with all-core thread pools oversubscribe the CPU and inflate the latency being
    measured. BLAS reads its variable when numpy is imported, so it must be set before the spawn.
    """
    with scoped_environ(dict.fromkeys(_THREAD_VARIABLES, "1"), keep_existing=True):
        yield


def _init_worker(model: str, config: EvalConfig) -> None:
    scenario = load_scenario(config.scenario)
    policy = make_policy(model, config.engine, scenario, via=config.policy)
    multiprocessing.util.Finalize(None, policy.close, exitpriority=10)
    _WORKER.update(scenario=scenario, config=config, backend=_create_backend(config.backend, scenario),
                   policy=policy)


def _worker_episode(index: int) -> dict:
    w = _WORKER
    return run_episode(w["backend"], w["policy"], w["scenario"], w["config"].seed, index, w["config"].latency_ms)


# --------------------------------------------------------------------------- the evaluation
def evaluate(model: str | Path, config: EvalConfig, json_out: Path | None = None, report_out: Path | None = None,
             progress: bool = True) -> dict:
    """Evaluate ``model`` ("expert", "spin" or an exported model path) over ``config.episodes`` episodes."""
    from sim2real.progress import progress_bar

    model_text = str(model)
    # Validates everything before any work (a policy that cannot start in a pool initializer would be
    # respawned forever), so with workers the main process's policy is closed again at once.
    scenario, policy, backend = prepare(model_text, config)
    note = getattr(getattr(policy, "model", None), "isa_note", None)
    if note:
        print(f"sim2real eval: note: {note}", file=sys.stderr)
    workers = min(config.workers, config.episodes)
    if workers > 1:
        backend.close()                                      # each worker builds its own
        policy.close()
    records: list[dict] = []
    bar = progress_bar(total=config.episodes, desc=f"eval {policy.kind}", unit="ep", disable=not progress)
    start = time.perf_counter()
    try:
        if workers == 1:
            try:
                for i in range(config.episodes):
                    records.append(run_episode(backend, policy, scenario, config.seed, i, config.latency_ms))
                    bar.update(1)
                    bar.set_postfix(success=f"{sum(r['success'] for r in records) / len(records):.2f}")
            finally:
                backend.close()
                policy.close()
        else:
            # spawn: each worker starts clean (no forked simulator or inference threads) and builds
            # its own backend and policy once.
            ctx = multiprocessing.get_context("spawn")
            with _one_thread_per_worker(), \
                    ctx.Pool(workers, initializer=_init_worker, initargs=(model_text, config)) as pool:
                for record in pool.imap_unordered(_worker_episode, range(config.episodes)):
                    records.append(record)
                    bar.update(1)
                    bar.set_postfix(success=f"{sum(r['success'] for r in records) / len(records):.2f}")
                pool.close()
                pool.join()                                  # a clean exit runs each worker's finalizer
    finally:
        bar.close()
    wall = time.perf_counter() - start
    result = summarize(records, config, scenario, model=model_text, policy_kind=policy.kind,
                       model_sha256=policy.sha256, workers=workers, wall_s=wall)
    if json_out is not None:
        write_json_atomic(json_out, result)
    if report_out is not None:
        from sim2real.eval.report import write_report

        write_report(result, Path(report_out))
    return result


def check_gate(min_success: float | None, scenario: str | Path | Scenario) -> None:
    """Refuse, before any work, a ``--min-success`` gate that cannot mean anything.

    The threshold must be a fraction, and the scenario must make success something a policy earns
    (:meth:`Scenario.gate_problem`: some progress needed, enough control steps per episode).
    """
    if min_success is None:
        return
    if not (isinstance(min_success, (int, float)) and 0.0 <= min_success <= 1.0):
        raise ValueError(f"--min-success must be a fraction between 0 and 1, got {min_success!r}")
    spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    problem = spec.gate_problem()
    if problem:
        raise ValueError(f"scenario {spec.name} cannot gate a success rate: {problem}")


def gate(result: dict, min_success: float | None) -> int:
    """0 when there is no threshold or the success rate meets it; else one line on stderr and 1."""
    if min_success is None:
        return 0
    rate = float(result["success_rate"])
    if rate >= min_success:
        return 0
    lo, hi = result.get("success_ci95", [rate, rate])
    print(f"sim2real eval: gate failed: success rate {rate:.3f} (95% CI {lo:.2f}-{hi:.2f}) over "
          f"{result.get('episodes')} episodes is below --min-success {min_success}", file=sys.stderr)
    return 1
