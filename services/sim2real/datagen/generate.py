"""Render a labelled depth dataset: random worlds, poses and cameras, labelled by the expert.

Images are split into shards; shard ``i`` draws everything from
``default_rng(SeedSequence([seed, i]))``, so a seed gives byte-identical shards whatever the
number of workers, and whether or not the run was interrupted and resumed.

Class balance: with a target forward fraction (``datagen.forward_fraction`` in the scenario, or
``balance=``), the dataset holds exactly ``round(f * num)`` FORWARD images and splits the rest
evenly between LEFT and RIGHT; each shard is within one image of its share. Poses are drawn from the usual sampler and kept only when the expert's
label is the one scheduled next (rejection sampling), so the images of each class look as they
would without balancing; only the class mix changes.

Crash safety: shards are written atomically (temp file, then rename), and after each finished
shard its sha256 is recorded in ``progress.json`` (also written atomically). The manifest comes
last, and ``progress.json`` is removed then: a folder without ``manifest.json`` is unfinished and
the reader refuses it. A failed run removes its temp files and any shard not recorded as finished,
keeping the finished ones; ``resume=True`` (``--resume``) continues it, re-rendering only shards
that are missing or whose sha256 does not verify. The result is byte-identical to an
uninterrupted run (the manifest differs only in its ``created_utc``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import multiprocessing
import numbers
import queue as queue_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real import __version__
from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, RIGHT
from sim2real.contracts.dataset import FORMAT_VERSION, MANIFEST, image_of, shard_name, write_shard
from sim2real.contracts.manifest import (
    atomic_path,
    new_manifest,
    read_json,
    sha256_file,
    write_json_atomic,
)
from sim2real.contracts.preprocessing import depth_to_millimetres
from sim2real.contracts.scenario import Scenario, load_scenario
from sim2real.progress import progress_bar
from sim2real.sim import registry
from sim2real.sim.expert import expert_action, path_clear, signed_distances, turn_action
from sim2real.sim.world import (
    Pose2D,
    World,
    sample_camera,
    sample_free_pose,
    sample_world,
)

# Bump when the same scenario and seed would give different bytes (recorded in every manifest).
GENERATOR_VERSION = 3
CONTACT_SHEET = "contact_sheet.png"
PROGRESS = "progress.json"
IMAGES_PER_WORLD = 25          # the default of the scenario's datagen.images_per_world
BALANCE_TRIES_PER_WORLD = 400  # label rejections before a fresh world is drawn
BALANCE_WORLDS = 20            # fresh worlds before giving up on a label
NEAR_FRACTION = 0.5
FREE_GAP_M = 0.02
NEAR_GAP_M = (0.05, 1.0)
HEADING_JITTER_RAD = 0.6
SHEET_ROWS, SHEET_COLS = 4, 6


def sample_pose(world: World, robot_radius: float, rng: np.random.Generator, tries: int = 1000) -> Pose2D:
    """A training pose: half anywhere free, half facing a nearby surface (so turns are well represented).

    A near pose leaves a gap within ``NEAR_GAP_M`` between the robot's edge and the closest surface,
    and heads toward that surface give or take ``HEADING_JITTER_RAD``.
    """
    if rng.random() >= NEAR_FRACTION:
        return sample_free_pose(world, robot_radius + FREE_GAP_M, rng)
    lo, hi = robot_radius + NEAR_GAP_M[0], robot_radius + NEAR_GAP_M[1]
    half_x, half_y = world.arena_size[0] / 2, world.arena_size[1] / 2
    for _ in range(tries):
        x, y = float(rng.uniform(-half_x, half_x)), float(rng.uniform(-half_y, half_y))
        if lo <= world.clearance(x, y) <= hi:
            h = 1e-3
            sdf = signed_distances(world, np.array([[x + h, y], [x - h, y], [x, y + h], [x, y - h]])).min(axis=1)
            toward = math.atan2(sdf[3] - sdf[2], sdf[1] - sdf[0])
            yaw = toward + float(rng.uniform(-HEADING_JITTER_RAD, HEADING_JITTER_RAD))
            return Pose2D(x, y, math.remainder(yaw, 2 * math.pi))
    raise RuntimeError(f"no pose {lo:.2f}-{hi:.2f} m from a surface after {tries} tries: arena too crowded")


@dataclass(frozen=True)
class _ShardJob:
    scenario: Scenario
    backend: str
    seed: int
    index: int
    start: int
    count: int
    path: Path
    previews: tuple[int, ...]
    forward_fraction: float | None = None


@dataclass(frozen=True)
class _ShardResult:
    index: int
    count: int
    sha256: str
    per_class: tuple[int, ...]
    previews: tuple[tuple[np.ndarray, int], ...]


def _cumulative_counts(k: int, forward_fraction: float) -> tuple[int, int, int]:
    """Images per class among the first ``k`` of a balanced dataset (FORWARD, LEFT, RIGHT)."""
    forward = math.floor(forward_fraction * k + 0.5)
    left = (k - forward + 1) // 2
    return forward, left, k - forward - left


def class_counts(start: int, count: int, forward_fraction: float) -> tuple[int, ...]:
    """Images per class in the shard holding images ``start .. start + count - 1``.

    The dataset as a whole holds exactly ``round(f * num)`` FORWARD images and splits the rest
    evenly (LEFT gets the odd one); each shard is within one image of its share.
    """
    end = _cumulative_counts(start + count, forward_fraction)
    begin = _cumulative_counts(start, forward_fraction)
    counts = [0] * len(ACTIONS)
    for action, a, b in zip((FORWARD, LEFT, RIGHT), begin, end):
        counts[action] = b - a
    return tuple(counts)


def _schedule(start: int, count: int, forward_fraction: float | None, rng: np.random.Generator) -> np.ndarray | None:
    """The label each image of a shard must have (shuffled), or None for the natural mix."""
    if forward_fraction is None:
        return None
    labels = np.repeat(np.arange(len(ACTIONS)), class_counts(start, count, forward_fraction))
    return rng.permutation(labels)


def _render_shard(job: _ShardJob, report: Callable[[int], object]) -> _ShardResult:
    """Render and write one shard; ``report(1)`` after each image."""
    scenario = job.scenario
    radius, rule, cam = scenario.robot.radius_m, scenario.episode.expert, scenario.camera
    per_world = scenario.datagen.images_per_world
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.index]))
    targets = _schedule(job.start, job.count, job.forward_fraction, rng)
    depth_mm = np.zeros((job.count, cam.height, cam.width), dtype=np.uint16)
    labels = np.empty(job.count, dtype=np.uint8)
    cameras = np.empty((job.count, 6), dtype=np.float64)
    backend = registry.create(job.backend, scenario)
    try:
        for i in range(job.count):
            if i % per_world == 0:
                world = sample_world(scenario, rng)
                backend.load(world)
            pose, label = None, -1
            for attempt in range(BALANCE_TRIES_PER_WORLD * BALANCE_WORLDS):
                if attempt and attempt % BALANCE_TRIES_PER_WORLD == 0:
                    world = sample_world(scenario, rng)     # this scene has no such pose: draw another
                    backend.load(world)
                pose = sample_pose(world, radius, rng)
                if targets is None:
                    label = expert_action(world, pose, radius, rule)
                    break
                # The expert's label, computed only as far as needed to accept or reject the pose.
                if path_clear(world, pose, radius, rule) != (targets[i] == FORWARD):
                    continue
                label = FORWARD if targets[i] == FORWARD else turn_action(world, pose, radius, rule)
                if label == targets[i]:
                    break
            else:
                raise RuntimeError(f"class balance: found no {ACTIONS[targets[i]]} pose in "
                                   f"{BALANCE_WORLDS} scenes of {scenario.name}; lower the balance target")
            camera = sample_camera(scenario, rng)
            labels[i] = label
            width, height = camera.size(cam)
            cameras[i] = camera.intrinsics(cam).to_list()
            depth_mm[i, :height, :width] = depth_to_millimetres(backend.render_depth(pose, camera, rng))
            report(1)
    finally:
        backend.close()
    sha256 = write_shard(job.path, depth_mm, labels, cameras)
    return _ShardResult(job.index, job.count, sha256,
                        tuple(int(n) for n in np.bincount(labels, minlength=len(ACTIONS))),
                        tuple((image_of(depth_mm[i], cameras[i]).copy(), int(labels[i])) for i in job.previews))


_progress_queue = None


def _init_worker(progress_queue) -> None:
    """Pool initializer: keep the queue that carries per-image progress back to the parent."""
    global _progress_queue
    _progress_queue = progress_queue


def _pool_shard(job: _ShardJob) -> _ShardResult:
    return _render_shard(job, _progress_queue.put)


def _run_pool(jobs: list[_ShardJob], workers: int, bar) -> Iterable[_ShardResult]:
    """Render ``jobs`` in ``workers`` processes; yield each result as its shard is finished."""
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Queue()

    def drain() -> None:
        with contextlib.suppress(queue_module.Empty):
            while True:
                bar.update(progress.get_nowait())

    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(progress,)) as pool:
        results = pool.imap_unordered(_pool_shard, jobs, chunksize=1)
        for _ in jobs:
            while True:
                try:
                    result = results.next(timeout=0.1)
                    break
                except multiprocessing.TimeoutError:
                    drain()
            drain()
            yield result


# --------------------------------------------------------------------------- run folder and progress
def _run_key(spec: Scenario, num: int, seed: int, shard_size: int, backend: str,
             forward_fraction: float | None) -> dict:
    """What must be the same for a resumed run to continue an interrupted one."""
    return {"scenario_sha256": spec.sha256(), "num": num, "seed": seed, "shard_size": shard_size,
            "backend": backend, "forward_fraction": forward_fraction, "generator_version": GENERATOR_VERSION,
            "sim2real_version": __version__}


def _prepare_out(out: Path) -> bool:
    """Check ``out`` is new or an empty folder; create it. Return whether it was created."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"output {out} exists and is not a folder")
        if (out / MANIFEST).exists():
            raise ValueError(f"output {out} already holds a finished dataset; choose a new folder")
        if (out / PROGRESS).exists():
            raise ValueError(f"output {out} holds an interrupted run; continue it with --resume "
                             f"(resume=True) or choose a new folder")
        if any(out.iterdir()):
            raise ValueError(f"output {out} is not empty; choose a new or empty folder")
        return False
    out.mkdir(parents=True)
    return True


def _remove_temp_files(out: Path) -> None:
    for pattern in (".shard-*.tmp", f".{CONTACT_SHEET}.*.tmp", f".{MANIFEST}.*.tmp", f".{PROGRESS}.*.tmp"):
        for tmp in out.glob(pattern):
            tmp.unlink(missing_ok=True)


def _resume_state(out: Path, key: dict, jobs: list[_ShardJob]) -> dict[int, dict]:
    """Finished shards of an interrupted run in ``out`` whose sha256 verifies, by index."""
    progress = read_json(out / PROGRESS, what="datagen progress file")
    shards = progress.get("shards") if isinstance(progress, dict) else None
    recorded = progress.get("run") if isinstance(progress, dict) else None
    if not isinstance(recorded, dict) or not isinstance(shards, dict) or \
            not all(isinstance(k, str) and k.isdigit() and isinstance(v, dict) for k, v in shards.items()):
        raise ValueError(f"cannot resume {out}: {out / PROGRESS} is not a datagen progress file ('run' and "
                         f"'shards' by index); start again in a new folder")
    for name, value in key.items():
        if recorded.get(name) != value:
            raise ValueError(f"cannot resume {out}: its run has {name}={recorded.get(name)!r}, this one "
                             f"{value!r}; use the same arguments or a new folder")
    done = {}
    by_index = {job.index: job for job in jobs}
    for index_text, shard in shards.items():
        job = by_index.get(int(index_text))
        per_class = shard.get("per_class")
        if job is None or shard.get("file") != job.path.name or shard.get("count") != job.count \
                or not isinstance(per_class, list) or len(per_class) != len(ACTIONS) \
                or not all(isinstance(n, int) and n >= 0 for n in per_class) or sum(per_class) != job.count:
            continue                                  # not a shard this run can keep: it is rendered again
        if job.path.exists() and sha256_file(job.path) == shard.get("sha256"):
            done[job.index] = shard
    return done


def _write_progress(out: Path, key: dict, done: dict[int, dict]) -> None:
    write_json_atomic(out / PROGRESS, {"run": key, "shards": {str(i): done[i] for i in sorted(done)}})


def _clean_unfinished(out: Path, jobs: list[_ShardJob], done: dict[int, dict], created: bool) -> None:
    """After a failure: keep finished shards and the progress file, remove everything else we wrote."""
    _remove_temp_files(out)
    for job in jobs:
        if job.index not in done:
            job.path.unlink(missing_ok=True)
    (out / CONTACT_SHEET).unlink(missing_ok=True)
    if not done:
        (out / PROGRESS).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()


def _preview_indices(num: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, num - 1, min(num, SHEET_ROWS * SHEET_COLS)).round()})


def _load_previews(job: _ShardJob) -> tuple[tuple[np.ndarray, int], ...]:
    if not job.previews:
        return ()
    with np.load(job.path, allow_pickle=False) as data:
        depth, label, camera = data["depth_mm"], data["label"], data["camera"]
        return tuple((image_of(depth[i], camera[i]).copy(), int(label[i])) for i in job.previews)


def write_contact_sheet(path: Path, previews: list[tuple[int, np.ndarray, int]], scenario: Scenario) -> None:
    """Save a grid of ``(index, depth_mm, label)`` previews as a PNG (no return in magenta, readings
    beyond the max range at the top of the colour scale), atomically."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    cmap = colormaps["viridis"].with_extremes(bad="magenta")
    cam = scenario.camera
    fig = Figure(figsize=(2.0 * SHEET_COLS, 2.0 * SHEET_ROWS + 0.6), layout="constrained")
    axes = fig.subplots(SHEET_ROWS, SHEET_COLS, squeeze=False).ravel()
    image = None
    for ax, (index, depth_mm, label) in zip(axes, previews):
        depth_m = np.ma.masked_equal(depth_mm, 0).astype(np.float32) / 1000.0
        image = ax.imshow(depth_m, cmap=cmap, vmin=cam.min_range_m, vmax=cam.max_range_m)
        ax.set_title(f"#{index} {ACTIONS[label]}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes.tolist(), shrink=0.6, label="z-depth (m); magenta = no return")
    fig.suptitle(f"{scenario.name}: sample depth images and expert labels")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})


def _package_version(backend: str) -> str:
    distribution = {"isaac": "isaacsim"}.get(backend, backend)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    return int(value)


def generate(scenario: str | Path, num: int, out: str | Path, seed: int = 0, workers: int = 1,
             backend: str = "mujoco", shard_size: int = 500, progress: bool = True,
             balance: float | None | str = "scenario", resume: bool = False) -> dict:
    """Render ``num`` labelled depth images of ``scenario`` into the dataset folder ``out``.

    Returns the manifest written to ``out/manifest.json``. ``out`` must be new or empty, unless
    ``resume`` continues an interrupted run there (same arguments) or finds it already finished.
    ``balance`` is the target FORWARD fraction: ``"scenario"`` takes ``datagen.forward_fraction``
    from the scenario, ``None`` keeps the natural mix. ``workers > 1`` starts "spawn" processes,
    so a calling script needs the ``if __name__ == "__main__":`` guard.
    """
    spec = load_scenario(scenario)
    num = _check_count("num", num, 1)
    workers = _check_count("workers", workers, 1)
    shard_size = _check_count("shard_size", shard_size, 1)
    seed = _check_count("seed", seed, 0)
    if isinstance(balance, str):
        if balance != "scenario":
            raise ValueError(f"balance must be a forward fraction in [0, 1], None or 'scenario', not {balance!r}")
        balance = spec.datagen.forward_fraction
    if balance is not None:
        if isinstance(balance, bool) or not isinstance(balance, numbers.Real) or not 0.0 <= balance <= 1.0:
            raise ValueError(f"balance (forward fraction) must be between 0 and 1, got {balance!r}")
        balance = float(balance)
    registry.create(backend, spec).close()
    out = Path(out)
    key = _run_key(spec, num, seed, shard_size, backend, balance)

    preview_at = _preview_indices(num)
    jobs = []
    for index, start in enumerate(range(0, num, shard_size)):
        count = min(shard_size, num - start)
        previews = tuple(i - start for i in preview_at if start <= i < start + count)
        jobs.append(_ShardJob(spec, backend, seed, index, start, count, out / shard_name(index), previews, balance))

    done: dict[int, dict] = {}
    created = False
    if resume and (out / MANIFEST).exists():
        manifest = read_json(out / MANIFEST, what="dataset manifest")
        if manifest.get("run") != key:
            raise ValueError(f"output {out} already holds a finished dataset made with other arguments; "
                             f"choose a new folder")
        return manifest
    if resume and (out / PROGRESS).exists():
        _remove_temp_files(out)
        done = _resume_state(out, key, jobs)
    else:
        created = _prepare_out(out)

    results: dict[int, _ShardResult] = {}
    try:
        todo = [job for job in jobs if job.index not in done]
        initial = sum(job.count for job in jobs if job.index in done)
        with progress_bar(total=num, initial=initial, unit="img", desc="datagen", disable=not progress) as bar:
            stream = (_render_shard(job, bar.update) for job in todo) if workers == 1 or len(todo) <= 1 \
                else _run_pool(todo, workers, bar)
            for result in stream:
                results[result.index] = result
                done[result.index] = {"file": shard_name(result.index), "count": result.count,
                                      "sha256": result.sha256, "per_class": list(result.per_class)}
                _write_progress(out, key, done)
        previews = []
        for job in jobs:
            shard_previews = results[job.index].previews if job.index in results else _load_previews(job)
            previews += [(job.start + i, depth, label) for i, (depth, label) in zip(job.previews, shard_previews)]
        write_contact_sheet(out / CONTACT_SHEET, previews, spec)
        per_class = np.sum([done[job.index]["per_class"] for job in jobs], axis=0)
        cam = spec.camera
        manifest = new_manifest(
            "dataset",
            inputs={"scenario": spec.sha256()},
            format_version=FORMAT_VERSION,
            count=num,
            per_class={name: int(n) for name, n in zip(ACTIONS, per_class)},
            class_balance={"forward_fraction_target": balance,
                           "fractions": {name: round(int(n) / num, 4) for name, n in zip(ACTIONS, per_class)}},
            shards=[{"file": job.path.name, "count": job.count, "sha256": done[job.index]["sha256"],
                     "per_class": {name: int(n) for name, n in zip(ACTIONS, done[job.index]["per_class"])}}
                    for job in jobs],
            scenario=spec.to_dict(),
            scenario_name=spec.name,
            scenario_sha256=spec.sha256(),
            seed=seed,
            run=key,
            camera={"name": cam.name, "width": cam.width, "height": cam.height, "hfov_deg": cam.hfov_deg,
                    "min_range_m": cam.min_range_m, "max_range_m": cam.max_range_m,
                    "randomized": {"hfov_deg": spec.randomization.camera_hfov_deg,
                                   "aspect": spec.randomization.camera_aspect}},
            generator={"backend": backend, f"{backend}_version": _package_version(backend),
                       "sim2real_version": __version__, "generator_version": GENERATOR_VERSION,
                       "images_per_world": spec.datagen.images_per_world, "shard_size": shard_size},
        )
        write_json_atomic(out / MANIFEST, manifest)
        (out / PROGRESS).unlink(missing_ok=True)
    except BaseException:
        _clean_unfinished(out, jobs, done, created)
        raise
    return manifest
