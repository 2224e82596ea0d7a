"""Render a labelled depth dataset: random worlds, poses and cameras, labelled by the expert.

Images are split into shards; shard ``i`` draws everything from
``default_rng(SeedSequence([seed, i]))``, so a seed gives byte-identical shards whatever the
number of workers. Shards are written atomically and the manifest last: a folder without
``manifest.json`` is unfinished, and a failed run removes what it wrote.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import multiprocessing
import numbers
import queue as queue_module
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from sim2real import __version__
from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.dataset import FORMAT_VERSION, MANIFEST, shard_name, write_shard
from sim2real.contracts.manifest import atomic_path, new_manifest, write_json_atomic
from sim2real.contracts.preprocessing import depth_to_millimetres
from sim2real.contracts.scenario import Scenario, load_scenario
from sim2real.sim import registry
from sim2real.sim.expert import expert_action, signed_distances
from sim2real.sim.world import Pose2D, World, sample_camera, sample_free_pose, sample_world

CONTACT_SHEET = "contact_sheet.png"
IMAGES_PER_WORLD = 25
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


@dataclass(frozen=True)
class _ShardResult:
    index: int
    count: int
    sha256: str
    per_class: tuple[int, ...]
    previews: tuple[tuple[np.ndarray, int], ...]


def _render_shard(job: _ShardJob, report: Callable[[int], object]) -> _ShardResult:
    """Render and write one shard; ``report(1)`` after each image."""
    scenario = job.scenario
    radius, rule, cam = scenario.robot.radius_m, scenario.episode.expert, scenario.camera
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.index]))
    depth_mm = np.empty((job.count, cam.height, cam.width), dtype=np.uint16)
    labels = np.empty(job.count, dtype=np.uint8)
    backend = registry.create(job.backend, scenario)
    try:
        for i in range(job.count):
            if i % IMAGES_PER_WORLD == 0:
                world = sample_world(scenario, rng)
                backend.load(world)
            pose = sample_pose(world, radius, rng)
            camera = sample_camera(scenario, rng)
            labels[i] = expert_action(world, pose, radius, rule)
            depth_mm[i] = depth_to_millimetres(backend.render_depth(pose, camera, rng))
            report(1)
    finally:
        backend.close()
    sha256 = write_shard(job.path, depth_mm, labels)
    return _ShardResult(job.index, job.count, sha256,
                        tuple(int(n) for n in np.bincount(labels, minlength=len(ACTIONS))),
                        tuple((depth_mm[i].copy(), int(labels[i])) for i in job.previews))


_progress_queue = None


def _init_worker(progress_queue) -> None:
    """Pool initializer: keep the queue that carries per-image progress back to the parent."""
    global _progress_queue
    _progress_queue = progress_queue


def _pool_shard(job: _ShardJob) -> _ShardResult:
    return _render_shard(job, _progress_queue.put)


def _run_pool(jobs: list[_ShardJob], workers: int, bar: tqdm) -> list[_ShardResult]:
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Queue()
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(progress,)) as pool:
        pending = pool.map_async(_pool_shard, jobs, chunksize=1)
        while not pending.ready():
            with contextlib.suppress(queue_module.Empty):
                bar.update(progress.get(timeout=0.1))
        results = pending.get()
    bar.update(bar.total - bar.n)
    return results


def _prepare_out(out: Path) -> bool:
    """Check ``out`` is new or an empty folder; create it. Return whether it was created."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"output {out} exists and is not a folder")
        if (out / MANIFEST).exists():
            raise ValueError(f"output {out} already holds a finished dataset; choose a new folder")
        if any(out.iterdir()):
            raise ValueError(f"output {out} is not empty; choose a new or empty folder")
        return False
    out.mkdir(parents=True)
    return True


def _remove_partial(out: Path, jobs: list[_ShardJob], created: bool) -> None:
    """Remove the shards, sheet and temp files of an unfinished run (and ``out`` if it made it)."""
    for job in jobs:
        job.path.unlink(missing_ok=True)
    (out / CONTACT_SHEET).unlink(missing_ok=True)
    for pattern in (".shard-*.tmp", f".{CONTACT_SHEET}.*.tmp", f".{MANIFEST}.*.tmp"):
        for tmp in out.glob(pattern):
            tmp.unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _preview_indices(num: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, num - 1, min(num, SHEET_ROWS * SHEET_COLS)).round()})


def write_contact_sheet(path: Path, previews: list[tuple[int, np.ndarray, int]], scenario: Scenario) -> None:
    """Save a grid of ``(index, depth_mm, label)`` previews as a PNG (invalid pixels in magenta), atomically."""
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
        fig.colorbar(image, ax=axes.tolist(), shrink=0.6, label="z-depth (m); magenta = invalid")
    fig.suptitle(f"{scenario.name}: sample depth images and expert labels")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def generate(scenario: str | Path, num: int, out: str | Path, seed: int = 0, workers: int = 1,
             backend: str = "mujoco", shard_size: int = 500, progress: bool = True) -> dict:
    """Render ``num`` labelled depth images of ``scenario`` into the dataset folder ``out``.

    Returns the manifest written to ``out/manifest.json``. ``out`` must be new or empty.
    ``workers > 1`` starts "spawn" processes, so a calling script needs the
    ``if __name__ == "__main__":`` guard.
    """
    spec = load_scenario(scenario)
    for name, value, least in (("num", num, 1), ("workers", workers, 1), ("shard_size", shard_size, 1),
                               ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    num, workers, shard_size, seed = int(num), int(workers), int(shard_size), int(seed)
    registry.create(backend, spec).close()
    out = Path(out)
    created = _prepare_out(out)

    preview_at = _preview_indices(num)
    jobs = []
    for index, start in enumerate(range(0, num, shard_size)):
        count = min(shard_size, num - start)
        previews = tuple(i - start for i in preview_at if start <= i < start + count)
        jobs.append(_ShardJob(spec, backend, seed, index, start, count, out / shard_name(index), previews))

    try:
        with tqdm(total=num, unit="img", desc="datagen", file=sys.stderr, disable=not progress) as bar:
            if workers == 1:
                results = [_render_shard(job, bar.update) for job in jobs]
            else:
                results = _run_pool(jobs, workers, bar)
        previews = [(job.start + i, depth, label)
                    for job, result in zip(jobs, results) for i, (depth, label) in zip(job.previews, result.previews)]
        write_contact_sheet(out / CONTACT_SHEET, previews, spec)
        per_class = np.sum([r.per_class for r in results], axis=0)
        cam = spec.camera
        manifest = new_manifest(
            "dataset",
            inputs={"scenario": spec.sha256()},
            format_version=FORMAT_VERSION,
            count=num,
            per_class={name: int(n) for name, n in zip(ACTIONS, per_class)},
            shards=[{"file": job.path.name, "count": r.count, "sha256": r.sha256} for job, r in zip(jobs, results)],
            scenario=spec.to_dict(),
            scenario_name=spec.name,
            scenario_sha256=spec.sha256(),
            seed=seed,
            camera={"width": cam.width, "height": cam.height,
                    "min_range_m": cam.min_range_m, "max_range_m": cam.max_range_m},
            generator={"backend": backend, f"{backend}_version": importlib.metadata.version(backend),
                       "sim2real_version": __version__},
        )
        write_json_atomic(out / MANIFEST, manifest)
    except BaseException:
        _remove_partial(out, jobs, created)
        raise
    return manifest
