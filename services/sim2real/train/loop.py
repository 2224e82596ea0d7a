"""The training loop: seeded batches (clean or sensor-augmented, mirrored), the optimisation step,
validation after every epoch, BatchNorm recalibration, and the files a run writes."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from sim2real.contracts import actions
from sim2real.contracts.actions import ACTIONS, LEFT, RIGHT
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import Dataset
from sim2real.contracts.manifest import manifest_path, new_manifest, write_json_atomic
from sim2real.contracts.preprocessing import CHANNELS, PreprocessSpec
from sim2real.progress import progress_bar
from sim2real.train import distributed
from sim2real.train.augment import SensorAugment, augment_millimetres
from sim2real.train.checkpoint import CHECKPOINT, RESUME, restore_rng, rng_state, write_weights
from sim2real.train.config import TrainConfig
from sim2real.train.distributed import DistEnv
from sim2real.train.metrics import (CONFUSION_PNG, METRICS, TENSORBOARD, confusion, log_epoch, plot_confusion,
                                    summarise, summary_writer)
from sim2real.train.model import build_model

BN_SAMPLES = 4096


def mirror(x: torch.Tensor, y: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the samples where ``flip`` is set; a mirrored scene swaps left and right turns."""
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    swapped = torch.where(y == LEFT, RIGHT, torch.where(y == RIGHT, LEFT, y))
    return x, torch.where(flip, swapped, y)


def class_weights(labels: np.ndarray, num_classes: int = len(ACTIONS)) -> torch.Tensor:
    """Inverse-frequency weights for the label mix seen after mirroring (left and right pooled)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[LEFT] = counts[RIGHT] = (counts[LEFT] + counts[RIGHT]) / 2
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)



def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int,
                          device: torch.device | None = None) -> None:
    """Set BatchNorm running statistics to the exact averages of the final weights over ``x``.

    The moving averages lag the weights; after a short run they are far off and evaluation-mode
    accuracy collapses. One forward pass with a cumulative average fixes that for any run length.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            if len(batch) >= 2:
                model(batch.to(device or "cpu").contiguous(memory_format=torch.channels_last))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """``auto`` is this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {name} requested but this PyTorch sees no CUDA GPU "
                           f"(torch {torch.__version__}); use --device cpu")
    index = int(name[5:]) if name.startswith("cuda:") else env.local_rank
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device cuda:{index} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device("cuda", index)


def steps_per_epoch(count: int, batch_size: int, world_size: int = 1) -> int:
    """Global batches per epoch; a short last batch counts when every rank gets ≥ 2 images of it."""
    return count // batch_size + (count % batch_size >= 2 * world_size)


@contextlib.contextmanager
def torch_settings(threads: int, device: torch.device) -> Iterator[None]:
    """Thread count and deterministic algorithms for the duration of training, then restored."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_bench = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_bench



@dataclass
class _Progress:
    """What a run has done so far; saved in ``last.pt`` and restored on resume."""

    epoch: int = 0
    global_step: int = 0
    seen: int = 0
    train_seconds: float = 0.0
    history: list = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.history = list(self.history or [])



@dataclass
class Run:
    """One training run's data and settings; ``fit`` does the epochs and writes the files."""

    config: TrainConfig
    env: DistEnv
    device: torch.device
    dataset: Dataset
    data: Path
    out: Path
    spec: PreprocessSpec
    camera: CameraContract
    augment: SensorAugment
    depth_mm: np.ndarray | None
    cameras: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    labels: np.ndarray
    progress: bool

    def fit(self, payload: dict | None, resumed_from: dict | None, stop_after: int | None, threads: int) -> Path:
        config, env, device = self.config, self.env, self.device
        model = build_model(config.arch, len(ACTIONS), seed=config.seed, in_channels=len(CHANNELS))
        model = model.to(device=device, memory_format=torch.channels_last)
        criterion = nn.CrossEntropyLoss(weight=class_weights(self.labels[self.train_idx]).to(device))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
        steps = steps_per_epoch(len(self.x_train), config.batch_size, env.world_size)
        total_steps = config.epochs * steps
        # Warm up for a quarter of the run, but for at least two steps: OneCycle needs both phases non-empty.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(total_steps, 4),
            pct_start=min(0.5, max(0.25, 2.0 / max(total_steps, 4))))
        use_amp = device.type == "cuda" and config.amp
        scaler = torch.amp.GradScaler("cuda") if use_amp else None
        done = _Progress()
        torch.manual_seed(config.seed)
        if payload is not None:
            state = payload["train_state"]
            model.load_state_dict(payload["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"], device)
            done = _Progress(epoch=int(state["epoch"]), global_step=int(state["global_step"]),
                             seen=int(state["seen"]), train_seconds=float(state["train_seconds"]),
                             history=list(state["history"]))
        net = distributed.wrap(model, env, device)
        writer = None
        if config.tensorboard and env.is_main:
            writer = summary_writer(self.out / TENSORBOARD, purge_step=done.global_step or None)
        try:
            matrix = None
            for epoch in range(done.epoch + 1, config.epochs + 1):
                loss, accuracy, count, seconds = self._epoch(epoch, steps, net, criterion, optimizer,
                                                             scheduler, scaler, writer, done.global_step)
                done.epoch, done.global_step = epoch, done.global_step + steps
                done.seen += count
                done.train_seconds += seconds
                if epoch == config.epochs:
                    if env.is_main:
                        sample = np.random.default_rng([config.seed, 0xB4]).permutation(len(self.x_train))
                        recalibrate_batchnorm(model, self.x_train[torch.from_numpy(sample[:BN_SAMPLES])],
                                              config.batch_size, device)
                    distributed.broadcast_buffers(model, env)
                matrix = self._validate(model)
                summary = summarise(matrix)
                done.history.append({"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy,
                                     "val_accuracy": summary["val_accuracy"],
                                     "val_per_class_accuracy": summary["per_class_accuracy"]})
                if writer is not None:
                    log_epoch(writer, done.global_step, epoch, loss, accuracy, summary, count / max(seconds, 1e-9))
                if self.progress:
                    print(f"epoch {epoch}/{config.epochs}: loss {loss:.4f} train acc {accuracy:.3f} "
                          f"val acc {summary['val_accuracy']:.3f}", file=sys.stderr)
                if epoch < config.epochs and env.is_main:
                    self._save_state(model, optimizer, scheduler, scaler, done)
                if stop_after is not None and epoch >= stop_after and epoch < config.epochs:
                    distributed.barrier(env)
                    if self.progress:
                        print(f"stopped after epoch {epoch}/{config.epochs}; continue with --resume "
                              f"{self.out / RESUME}", file=sys.stderr)
                    return self.out / RESUME
        finally:
            if writer is not None:
                writer.close()
        if env.is_main:
            self._finish(model, matrix, done, resumed_from, use_amp, threads)
        distributed.barrier(env)
        return self.out / CHECKPOINT

    def _batch(self, epoch: int, step: int, order: np.ndarray,
               flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of global batch ``step``: clean or sensor-augmented, then mirrored."""
        config, env = self.config, self.env
        index = order[step * config.batch_size:(step + 1) * config.batch_size][env.rank::env.world_size]
        local = torch.from_numpy(index)
        x = self.x_train[local]
        if self.augment.enabled:
            rng = np.random.default_rng([config.seed, epoch, step, env.rank, 0xA06])
            pick = np.flatnonzero(rng.random(len(index)) < self.augment.probability)
            if len(pick):
                rows = self.train_idx[index[pick]]
                x[torch.from_numpy(pick)] = torch.from_numpy(augment_millimetres(
                    self.depth_mm[rows], self.cameras[rows], self.augment, self.spec, self.camera, rng))
        return mirror(x, self.y_train[local], flips[local])

    def _epoch(self, epoch: int, steps: int, net: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: Any, writer: Any, global_step: int) -> tuple[float, float, int, float]:
        """One epoch of training; returns (mean loss, accuracy, images, seconds) over all ranks."""
        config, device = self.config, self.device
        net.train()
        epoch_rng = np.random.default_rng([config.seed, epoch])
        order = epoch_rng.permutation(len(self.x_train))
        flips = torch.from_numpy(epoch_rng.random(len(self.x_train)) < 0.5)
        bar = progress_bar(range(steps), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                           disable=not self.progress, leave=False)
        total_loss, correct, count = 0.0, 0, 0
        started = time.perf_counter()
        # The next batch (sensor augmentation + the contract's preprocessing, numpy, mostly outside the
        # GIL) is made in a background thread while this one trains; a batch is a pure function of
        # (seed, epoch, step, rank), so the overlap changes nothing in the result.
        prefetch = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim2real-batch")
                    if self.augment.enabled else None)
        pending = prefetch.submit(self._batch, epoch, 0, order, flips) if prefetch else None
        try:
            for step in bar:
                if pending is not None:
                    x, y = pending.result()
                    if step + 1 < steps:
                        pending = prefetch.submit(self._batch, epoch, step + 1, order, flips)
                else:
                    x, y = self._batch(epoch, step, order, flips)
                total_loss, correct, count = self._step(x, y, net, criterion, optimizer, scheduler, scaler,
                                                        writer, global_step + step + 1, total_loss, correct, count)
                bar.set_postfix(loss=f"{total_loss / count:.3f}", acc=f"{correct / count:.3f}")
        finally:
            if prefetch is not None:
                prefetch.shutdown(wait=True, cancel_futures=True)
        bar.close()
        seconds = time.perf_counter() - started
        totals = torch.tensor([total_loss, correct, count], dtype=torch.float64, device=device)
        total_loss, correct, count = distributed.all_reduce_sum(totals, self.env).tolist()
        return total_loss / count, correct / count, int(count), seconds

    def _step(self, x: torch.Tensor, y: torch.Tensor, net: nn.Module, criterion: nn.Module,
              optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, writer: Any, global_step: int,
              total_loss: float, correct: int, count: int) -> tuple[float, int, int]:
        """One optimisation step (mixed precision with a GradScaler on CUDA); returns the running sums."""
        device = self.device
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        if scaler is not None:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                logits = net(x)
                loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            logits = net(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        step_loss = float(loss.detach())
        if writer is not None:
            writer.add_scalar("train/loss_step", step_loss, global_step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], global_step)
        return (total_loss + step_loss * len(y), correct + int((logits.argmax(1) == y).sum()), count + len(y))

    def _validate(self, model: nn.Module) -> np.ndarray:
        """The confusion matrix on the validation split, each rank evaluating its share."""
        env = self.env
        part = slice(env.rank, None, env.world_size)
        matrix = confusion(model, self.x_val[part], self.y_val[part], self.config.batch_size * 2, device=self.device)
        if env.enabled:
            total = distributed.all_reduce_sum(torch.from_numpy(matrix).to(self.device), env)
            matrix = total.cpu().numpy()
        return matrix

    def _meta(self, epoch: int) -> dict:
        return {"arch": self.config.arch, "input_size": self.config.input_size, "num_classes": len(ACTIONS),
                "in_channels": len(CHANNELS), "epoch": epoch, "seed": self.config.seed}

    def _inputs(self) -> dict:
        return {"dataset": self.dataset.sha256, "scenario": self.dataset.manifest.get("scenario_sha256")}

    def _save_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                    done: _Progress) -> None:
        """Write ``last.pt``: everything needed to continue exactly after epoch ``done.epoch``."""
        path = self.out / RESUME
        state = {"epoch": done.epoch, "global_step": done.global_step, "seen": done.seen,
                 "train_seconds": done.train_seconds, "history": done.history,
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_state(self.device)}
        write_weights(path, model, self._meta(done.epoch), new_manifest(
            "training-state", inputs=self._inputs(), epoch=done.epoch, arch=self.config.arch,
            preprocessing=self.spec.to_dict(), camera=self.camera.to_dict(), actions=actions.spec(),
            dataset_path=str(self.data),
            train_config=asdict(self.config), world_size=self.env.world_size, device=str(self.device)),
            train_state=state)

    def _finish(self, model: nn.Module, matrix: np.ndarray, done: _Progress, resumed_from: dict | None,
                use_amp: bool, threads: int) -> None:
        """Write metrics, the confusion-matrix PNG and the checkpoint (last), then drop ``last.pt``."""
        config, out = self.config, self.out
        summary = summarise(matrix)
        images_per_second = done.seen / done.train_seconds if done.train_seconds > 0 else 0.0
        training = {"device": str(self.device), "amp": use_amp, "world_size": self.env.world_size,
                    "backend": distributed.backend_name(self.env), "threads_per_process": threads,
                    "resumed_from": resumed_from}
        metrics = {**summary, "epochs": config.epochs, "history": done.history,
                   "train_images": int(len(self.train_idx)), "val_images": int(len(self.val_idx)),
                   "train_images_per_second": round(images_per_second, 1),
                   "train_seconds": round(done.train_seconds, 2), "training": training}
        write_json_atomic(out / METRICS, metrics)
        plot_confusion(matrix, out / CONFUSION_PNG,
                       f"{config.arch} @ {config.input_size}px, val acc {summary['val_accuracy']:.3f}")
        checkpoint = out / CHECKPOINT
        write_weights(checkpoint, model, self._meta(config.epochs), new_manifest(
            "checkpoint", inputs=self._inputs(),
            lineage=[{"kind": "dataset", "sha256": self.dataset.sha256, "path": str(self.data)}],
            arch=config.arch, preprocessing=self.spec.to_dict(), camera=self.camera.to_dict(), actions=actions.spec(),
            dataset_path=str(self.data),
            metrics={key: metrics[key] for key in ("val_accuracy", "per_class_accuracy", "confusion_matrix",
                                                   "train_images", "val_images")},
            train_config=asdict(config), augmentation=self.augment.to_dict(), training=training))
        for stale in (out / RESUME, manifest_path(out / RESUME)):
            stale.unlink(missing_ok=True)

