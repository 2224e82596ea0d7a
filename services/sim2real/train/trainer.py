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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from sim2real.contracts.dataset import Dataset
from sim2real.contracts.manifest import read_manifest
from sim2real.train import distributed
from sim2real.train.augment import SensorAugment
from sim2real.train.checkpoint import (CHECKPOINT, RESUME, check_resumable, contract_of, load_checkpoint,
                                       read_training_state, resume_file, stored_config)
from sim2real.train.config import TrainConfig, check_memory, check_output_folder
from sim2real.train.data import (batch_counts, check_classes, parse_sources, preprocess_millimetres, spec_for,
                                 split_indices)
from sim2real.train.loop import Run, Source, resolve_device, steps_per_epoch, torch_settings

__all__ = ["CHECKPOINT", "RESUME", "TrainConfig", "init_config", "load_checkpoint", "preprocess_millimetres",
           "read_training_state", "spec_for", "split_indices", "stored_config", "train"]


def train(data: str | Path | Sequence[str | Path] | Mapping[str, str | Path], out: Path, config: TrainConfig,
          progress: bool = True, resume: str | Path | None = None, stop_after: int | None = None) -> Path:
    """Train on the dataset(s) at ``data``; return the checkpoint path ``out/checkpoint.pt``.

    ``data``: one dataset folder, or several (``NAME=FOLDER`` strings or a {name: folder} mapping;
    see ``data.parse_sources``), pooled, or mixed per batch by ``config.mix``. The first is the
    primary one: its camera and range make the input contract unless ``config.init`` brings one.
    ``resume``: a ``last.pt`` (or the run folder holding it) to continue from, with the same
    settings. ``stop_after``: stop after this epoch, leaving ``out/last.pt`` to resume from (for
    time-sliced jobs); then the return value is that file.
    """
    config.validate()
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an epoch number ≥ 1, got {stop_after!r}")
    named, out = parse_sources(data), Path(out)
    for _, folder in named:
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset not found: {folder}")
    check_output_folder(out)
    env = distributed.from_env()
    if config.batch_size < 2 * env.world_size:
        raise ValueError(f"batch_size {config.batch_size} is the global batch: it must give each of the "
                         f"{env.world_size} processes at least 2 images")
    datasets = [Dataset(folder) for _, folder in named]
    names = [name for name, _ in named]
    train_sizes = [len(split_indices(len(dataset), config.val_fraction, config.seed)[0]) for dataset in datasets]
    groups = batch_counts(train_sizes, names, config.mix, config.batch_size) if config.mix else None
    init = _init(config) if config.init else None
    payload, resumed_from = None, None
    if resume is not None:
        resume = resume_file(resume)
        payload, resume_manifest = read_training_state(resume)
        check_resumable(resume, resume_manifest, config, datasets)
        resumed_from = {"file": str(resume), "sha256": resume_manifest["sha256"],
                        "epoch": int(payload["train_state"]["epoch"])}
        if stop_after is not None and stop_after <= resumed_from["epoch"]:
            raise ValueError(f"stop_after={stop_after} but {resume} has already trained "
                             f"{resumed_from['epoch']} epochs")
    device = resolve_device(config.device, env)
    check_memory(sum(len(dataset) for dataset in datasets), config.input_size)
    spec, camera = (init["spec"], init["camera"]) if init else spec_for(datasets[0], config.input_size)
    augment = SensorAugment.for_dataset(datasets[0].manifest, config.augment, config.noise_sigma_per_m2,
                                        config.dropout, config.holes)
    augment.validate()
    sources, x_parts, y_parts = [], [], []
    for (name, folder), dataset in zip(named, datasets):
        depth_mm, labels, cameras = dataset.load()
        train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)
        inputs = torch.from_numpy(preprocess_millimetres(depth_mm, cameras, spec, camera))
        targets = torch.from_numpy(labels.astype(np.int64))
        x_parts.append((inputs[train_idx], inputs[val_idx]))
        y_parts.append((targets[train_idx], targets[val_idx]))
        del inputs
        # Only the augmentation goes back to the raw depth: free it when there is none.
        sources.append(Source(name=name, path=folder, dataset=dataset, train_idx=train_idx, val_idx=val_idx,
                              depth_mm=depth_mm if augment.enabled else None, cameras=cameras, labels=labels))
    all_labels = np.concatenate([source.labels for source in sources])
    check_classes(all_labels, named[0][1] if len(named) == 1 else ", ".join(map(str, (f for _, f in named))),
                  config.allow_missing_classes)
    if steps_per_epoch(sum(train_sizes), config.batch_size, env.world_size) < 1:
        raise ValueError(f"{sum(train_sizes)} training images are too few for {env.world_size} processes")
    run = Run(config=config, env=env, device=device, sources=sources, out=out, spec=spec, camera=camera,
              augment=augment, x_train=_joined([x for x, _ in x_parts]), y_train=_joined([y for y, _ in y_parts]),
              train_src=np.repeat(np.arange(len(sources)), train_sizes),
              train_row=np.concatenate([source.train_idx for source in sources]),
              x_val=_joined([x for _, x in x_parts]), y_val=_joined([y for _, y in y_parts]),
              val_src=np.repeat(np.arange(len(sources)), [len(source.val_idx) for source in sources]),
              groups=groups, init=init, progress=progress and env.is_main)
    del x_parts, y_parts
    threads = config.threads or max(1, _cores() // max(1, env.local_world_size))
    with torch_settings(threads, device), distributed.process_group(env, device):
        return run.fit(payload, resumed_from, stop_after, threads)


def init_config(init: str | Path) -> TrainConfig:
    """The settings the checkpoint ``init`` (a file, or the run folder holding it) was trained with."""
    path = Path(init) / CHECKPOINT if Path(init).is_dir() else Path(init)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to start from not found: {path}")
    return TrainConfig.from_dict(read_manifest(path, verify=False).get("train_config") or {})


def _init(config: TrainConfig) -> dict:
    """The finished checkpoint a fine-tuning run starts from, checked against the settings."""
    path = Path(config.init) / CHECKPOINT if Path(config.init).is_dir() else Path(config.init)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to start from not found: {path}")
    model, manifest = load_checkpoint(path)
    if manifest.get("kind") != "checkpoint":
        raise ValueError(f"{path} is a {manifest.get('kind', 'file of unknown kind')}, not a finished checkpoint: "
                         f"start from the {CHECKPOINT} a finished run writes")
    recorded = manifest.get("train_config") or {}
    for key in ("arch", "input_size"):
        if recorded.get(key) != getattr(config, key):
            raise ValueError(f"{path} was trained with {key} {recorded.get(key)!r}, the settings say "
                             f"{getattr(config, key)!r} (leave --{key.replace('_', '-')} out to take the checkpoint's)")
    spec, camera = contract_of(manifest, path)
    return {"path": str(path), "sha256": manifest["sha256"], "state_dict": model.state_dict(),
            "lineage": list(manifest.get("lineage") or []), "spec": spec, "camera": camera}


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container's cpuset limits)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The sources' tensors end to end (one source: itself, not a copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
