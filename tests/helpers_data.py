"""Test data builders shared by the trainer and exporter tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, RIGHT
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.dataset import FORMAT_VERSION, MANIFEST, shard_name, write_shard

HFOV_DEG = 87.0


def make_toy_dataset(root: Path, count: int = 240, size: int = 64, seed: int = 0) -> Path:
    """A learnable dataset: a near obstacle on the left (→ right), on the right (→ left), or none."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([FORWARD, LEFT, RIGHT], size=count, p=[0.5, 0.25, 0.25]).astype(np.uint8)
    depth = rng.uniform(3.5, 4.5, (count, size, size))
    for image, label in zip(depth, labels):
        if label != FORWARD:
            width = int(rng.integers(size // 4, size // 2))
            start = int(rng.integers(0, size // 2 - width // 2))
            cols = slice(start, start + width) if label == RIGHT else slice(size - start - width, size - start)
            image[size // 6:, cols] = rng.uniform(0.5, 1.2)
    mm = np.rint(depth * 1000).astype(np.uint16)
    mm[rng.random(mm.shape) < 0.02] = 0
    cameras = np.tile(Intrinsics.from_fov(size, size, HFOV_DEG).to_list(), (count, 1))
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for index, part in enumerate(np.array_split(np.arange(count), 2)):
        sha = write_shard(root / shard_name(index), mm[part], labels[part], cameras[part])
        shards.append({"file": shard_name(index), "count": len(part), "sha256": sha})
    manifest = {"format_version": FORMAT_VERSION, "kind": "dataset", "count": count, "seed": seed,
                "per_class": {name: int((labels == i).sum()) for i, name in enumerate(ACTIONS)},
                "shards": shards, "scenario_sha256": "x" * 64,
                "camera": {"name": "toy", "width": size, "height": size, "hfov_deg": HFOV_DEG,
                           "min_range_m": 0.1, "max_range_m": 5.0}}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root
