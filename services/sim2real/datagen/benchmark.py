"""Datagen throughput: labelled 224x224 images per second, whole pipeline, per worker count.

``python -m sim2real.datagen.benchmark [--num 1200] [--workers 1 2] [--scenario default]``

Each run is a real ``generate`` call (world sampling, pose sampling with class balance, expert
labels, raycasting, sensor models, 16UC1 encoding, shard writing and hashing, contact sheet), with
one shard per worker so every worker is busy for the whole run. Process start-up is included.
``--profile`` also prints where one worker's time goes, per stage, in milliseconds per image.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(scenario: str, num: int, workers: int, seed: int = 0) -> dict[str, float]:
    """Wall-clock images per second, and CPU milliseconds per image (this process and its workers).

    On a shared machine the wall-clock figure depends on what else runs; the CPU time does much
    less, and ``workers * 1000 / cpu_ms`` is what idle cores would reach.
    """
    from sim2real.datagen.generate import generate

    with tempfile.TemporaryDirectory(prefix="sim2real-datagen-bench-") as tmp:
        cpu0, start = _cpu_seconds(), time.perf_counter()
        generate(scenario, num=num, out=Path(tmp) / "data", seed=seed, workers=workers,
                 shard_size=-(-num // workers), progress=False)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    return {"images_per_s": round(num / wall, 1), "cpu_ms_per_image": round(cpu / num * 1e3, 3)}


def profile_stages(scenario: str, num: int = 200, seed: int = 0) -> dict[str, float]:
    """CPU milliseconds per image of each datagen stage in this process (one worker, MuJoCo, one pose
    proposal per image: class balance adds a few pose+expert proposals on top)."""
    from sim2real.contracts.preprocessing import depth_to_millimetres
    from sim2real.contracts.scenario import load_scenario
    from sim2real.datagen.generate import sample_pose
    from sim2real.sim.expert import expert_action
    from sim2real.sim.mujoco_backend import MujocoBackend
    from sim2real.sim.sensors import apply_sensor_model
    from sim2real.sim.world import sample_camera, sample_world

    spec = load_scenario(scenario)
    rng = np.random.default_rng(seed)
    backend = MujocoBackend(spec)
    radius, rule = spec.robot.radius_m, spec.episode.expert
    totals = dict.fromkeys(("world", "pose+expert", "camera", "raycast", "sensor model", "encode"), 0.0)
    world = None
    for i in range(num):
        t0 = time.process_time()
        if i % spec.datagen.images_per_world == 0:
            world = sample_world(spec, rng)
            backend.load(world)
        t1 = time.process_time()
        pose = sample_pose(world, radius, rng)
        expert_action(world, pose, radius, rule)
        t2 = time.process_time()
        camera = sample_camera(spec, rng)
        t3 = time.process_time()
        ideal = backend.render_ideal(pose, camera)
        t4 = time.process_time()
        depth = apply_sensor_model(ideal, spec.camera, camera, rng)
        t5 = time.process_time()
        depth_to_millimetres(depth)
        t6 = time.process_time()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            totals[key] += dt
    backend.close()
    return {key: round(value / num * 1e3, 3) for key, value in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--num", type=int, default=1200, help="images per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true", help="also print per-stage milliseconds per image")
    args = parser.parse_args(argv)
    from sim2real.contracts.scenario import load_scenario

    cam = load_scenario(args.scenario).camera
    results = {"scenario": args.scenario, "resolution": f"{cam.width}x{cam.height}", "num": args.num,
               "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
               "images_per_s": {}}
    results["cpu_ms_per_image"] = {}
    for workers in args.workers:
        figures = measure(args.scenario, args.num, workers)
        results["images_per_s"][str(workers)] = figures["images_per_s"]
        results["cpu_ms_per_image"][str(workers)] = figures["cpu_ms_per_image"]
    if args.profile:
        results["ms_per_image_one_worker"] = profile_stages(args.scenario)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
