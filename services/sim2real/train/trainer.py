"""Train the policy on a datagen dataset: deterministic, class-balanced, sensor- and mirror-augmented.

``train(data, out, config)`` writes into ``out``::

    checkpoint.pt                 {"state_dict", "meta"} (tensors and primitives: weights_only loads)
    checkpoint.pt.manifest.json   sha256, dataset/scenario inputs, lineage, preprocessing, actions, metrics
    metrics.json                  validation accuracy, per-class accuracy, confusion matrix, history
    confusion_matrix.png
    tensorboard/                  TensorBoard scalars (when the ``tensorboard`` package is installed)
    last.pt (+ manifest)          the training state after each epoch (weights, optimizer, scheduler,
                                  grad-scaler, RNG, history); ``resume=`` continues from it exactly,
                                  and it is removed once checkpoint.pt is written

Every file is written atomically and the checkpoint last, so a crash never leaves a checkpoint
that looks complete. The preprocessing is ``contracts.preprocessing``, called on every image.

Determinism: every random draw (batch order, mirroring, sensor augmentation, the BatchNorm
recalibration sample) is a pure function of (seed, epoch, step, rank), so a run is reproducible
and a run resumed from ``last.pt`` ends bit-for-bit where an uninterrupted one does (same device
type and thread count). On CUDA, training uses mixed precision (autocast + GradScaler) unless
``amp=False``; the CPU path is plain FP32. Under ``torchrun`` it is data-parallel (see
``train.distributed``) and only rank 0 writes.

The parts: ``config`` (settings and up-front checks), ``data`` (split, preprocessing, dataset
checks), ``checkpoint`` (file I/O), ``loop`` (the epochs), ``metrics`` (what a run reports).
This module is the entry point and names the public pieces.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sim2real.contracts.dataset import Dataset
from sim2real.train import distributed
from sim2real.train.augment import SensorAugment
from sim2real.train.checkpoint import (CHECKPOINT, RESUME, check_resumable, load_checkpoint, read_training_state,
                                       resume_file, stored_config)
from sim2real.train.config import TrainConfig, check_memory, check_output_folder
from sim2real.train.data import check_classes, preprocess_millimetres, spec_for, split_indices
from sim2real.train.loop import Run, resolve_device, steps_per_epoch, torch_settings

__all__ = ["CHECKPOINT", "RESUME", "TrainConfig", "load_checkpoint", "preprocess_millimetres", "read_training_state",
           "spec_for", "split_indices", "stored_config", "train"]


def train(data: Path, out: Path, config: TrainConfig, progress: bool = True,
          resume: str | Path | None = None, stop_after: int | None = None) -> Path:
    """Train on the dataset at ``data``; return the checkpoint path ``out/checkpoint.pt``.

    ``resume``: a ``last.pt`` (or the run folder holding it) to continue from, with the same
    settings. ``stop_after``: stop after this epoch, leaving ``out/last.pt`` to resume from (for
    time-sliced jobs); then the return value is that file.
    """
    config.validate()
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an epoch number ≥ 1, got {stop_after!r}")
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise FileNotFoundError(f"dataset not found: {data}")
    check_output_folder(out)
    env = distributed.from_env()
    if config.batch_size < 2 * env.world_size:
        raise ValueError(f"batch_size {config.batch_size} is the global batch: it must give each of the "
                         f"{env.world_size} processes at least 2 images")
    dataset = Dataset(data)
    payload, resumed_from = None, None
    if resume is not None:
        resume = resume_file(resume)
        payload, resume_manifest = read_training_state(resume)
        check_resumable(resume, resume_manifest, config, dataset)
        resumed_from = {"file": str(resume), "sha256": resume_manifest["sha256"],
                        "epoch": int(payload["train_state"]["epoch"])}
        if stop_after is not None and stop_after <= resumed_from["epoch"]:
            raise ValueError(f"stop_after={stop_after} but {resume} has already trained "
                             f"{resumed_from['epoch']} epochs")
    device = resolve_device(config.device, env)
    check_memory(len(dataset), config.input_size)
    depth_mm, labels, cameras = dataset.load()
    check_classes(labels, data, config.allow_missing_classes)
    spec, camera = spec_for(dataset, config.input_size)
    augment = SensorAugment.for_dataset(dataset.manifest, config.augment, config.noise_sigma_per_m2,
                                        config.dropout, config.holes)
    augment.validate()
    train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)
    if steps_per_epoch(len(train_idx), config.batch_size, env.world_size) < 1:
        raise ValueError(f"{len(train_idx)} training images are too few for {env.world_size} processes")

    inputs = torch.from_numpy(preprocess_millimetres(depth_mm, cameras, spec, camera))
    if not augment.enabled:
        depth_mm = None  # free it: only the augmentation goes back to the raw depth
    targets = torch.from_numpy(labels.astype(np.int64))
    run = Run(config=config, env=env, device=device, dataset=dataset, data=data, out=out, spec=spec,
               camera=camera, augment=augment, depth_mm=depth_mm, cameras=cameras, train_idx=train_idx,
               val_idx=val_idx,
               x_train=inputs[train_idx], y_train=targets[train_idx], x_val=inputs[val_idx],
               y_val=targets[val_idx], labels=labels, progress=progress and env.is_main)
    del inputs
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, env.local_world_size))
    with torch_settings(threads, device), distributed.process_group(env, device):
        return run.fit(payload, resumed_from, stop_after, threads)

