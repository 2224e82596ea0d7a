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
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from sim2real.contracts import actions
from sim2real.contracts.actions import ACTIONS, LEFT, RIGHT
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import Dataset, image_of, intrinsics_of
from sim2real.contracts.manifest import (atomic_path, manifest_path, new_manifest, read_manifest, write_json_atomic,
                                         write_manifest)
from sim2real.contracts.preprocessing import CHANNELS, PreprocessSpec, depth_from_millimetres, preprocess
from sim2real.progress import progress_bar
from sim2real.train import distributed
from sim2real.train.augment import SensorAugment, augment_millimetres
from sim2real.train.distributed import DistEnv
from sim2real.train.model import arch_names, build_model

CHECKPOINT = "checkpoint.pt"
RESUME = "last.pt"
METRICS = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
TENSORBOARD = "tensorboard"
_CHUNK = 256
MAX_INPUT_SIZE = 1024            # the largest model input side (the largest scenario camera is 1280x1024)
MEMORY_SHARE = 0.8               # refuse a run whose preprocessed images alone need more of the RAM than this
_BN_SAMPLES = 4096
# Settings that change what is computed: a run resumes only with the same values.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "input_size", "seed", "val_fraction", "arch", "augment",
                "noise_sigma_per_m2", "dropout", "holes", "amp")


@dataclass
class TrainConfig:
    """Training hyper-parameters; recorded verbatim in the checkpoint manifest.

    ``augment`` is the probability that a training image gets the sensor-model augmentation
    (0 disables it); ``noise_sigma_per_m2`` and ``dropout`` are its ceilings (None: the widest
    values of the scenario that made the dataset), ``holes`` the most invalid patches per image.
    ``device`` is ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    ``allow_missing_classes`` trains on a dataset that lacks an action (refused by default: such a
    policy can never choose it).
    """

    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    input_size: int = 128
    seed: int = 0
    val_fraction: float = 0.1
    arch: str = "resnet18"
    threads: int | None = None
    augment: float = 0.5
    noise_sigma_per_m2: float | None = None
    dropout: float | None = None
    holes: int = 3
    device: str = "auto"
    amp: bool = True
    tensorboard: bool = True
    allow_missing_classes: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for a setting that cannot train."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer ≥ 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer ≥ 2, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.input_size, int) or not 16 <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"input_size must be an integer from 16 to {MAX_INPUT_SIZE}, got {self.input_size!r} "
                             f"(the model input's width in pixels)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {self.seed!r}")
        if not (0.0 < self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction!r}")
        if self.arch not in arch_names():
            raise ValueError(f"unknown arch '{self.arch}' (known: {', '.join(arch_names())})")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an integer ≥ 1, got {self.threads!r}")
        SensorAugment(probability=self.augment, holes=self.holes,
                      sigma_per_m2=0.0 if self.noise_sigma_per_m2 is None else self.noise_sigma_per_m2,
                      dropout=0.0 if self.dropout is None else self.dropout).validate()
        if not (self.device in ("auto", "cpu", "cuda") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A config from its recorded form (unknown keys from other versions are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) index split; the exporter reuses it to find held-out images."""
    n_val = int(round(count * val_fraction))
    if n_val < 1 or count - n_val < 2:
        raise ValueError(f"{count} images cannot be split into ≥ 2 training and ≥ 1 validation images "
                         f"with val_fraction={val_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def preprocess_millimetres(depth_mm: np.ndarray, cameras: np.ndarray, spec: PreprocessSpec,
                           camera: CameraContract) -> np.ndarray:
    """(N, H, W) uint16 millimetres with (N, 6) intrinsics → (N, 2, h, w) float32 model input.

    Each image goes through the contract's mapping with its own intrinsics, as on the robot.
    """
    out = np.empty((len(depth_mm), *spec.input_shape()), np.float32)
    for i, (image, intrinsics) in enumerate(zip(depth_mm, intrinsics_of(cameras))):
        out[i] = preprocess(depth_from_millimetres(image_of(image, cameras[i])), spec, camera, intrinsics)
    return out


def spec_for(dataset: Dataset, input_size: int) -> tuple[PreprocessSpec, CameraContract]:
    """The preprocessing and camera contract for a dataset: its nominal camera's range and field of view,
    an input ``input_size`` pixels wide and as high as that field of view makes square pixels."""
    camera = dataset.manifest.get("camera") or {}
    contract = dataset.camera_contract()
    tan_x, tan_y = contract.tan_half()
    try:
        spec = PreprocessSpec(width=input_size, height=max(1, round(input_size * tan_y / tan_x)),
                              min_range_m=float(camera["min_range_m"]), max_range_m=float(camera["max_range_m"]))
    except KeyError as exc:
        raise ValueError(f"{dataset.root}: dataset manifest camera has no {exc.args[0]}") from None
    return spec, contract


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


def confusion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              num_classes: int = len(ACTIONS), device: torch.device | None = None) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted) of ``model`` on a set."""
    model.eval()
    matrix = np.zeros((num_classes, num_classes), np.int64)
    if len(x) == 0:
        return matrix
    preds = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device or "cpu").contiguous(memory_format=torch.channels_last)
            preds.append(model(batch).argmax(1).cpu())
    pred = torch.cat(preds).numpy()
    np.add.at(matrix, (y.numpy(), pred), 1)
    return matrix


def summarise(matrix: np.ndarray) -> dict:
    """Accuracy, per-class accuracy (recall; None for an absent class) and the matrix itself."""
    per_class = {name: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
                 for i, name in enumerate(ACTIONS)}
    return {"val_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "per_class_accuracy": per_class, "confusion_matrix": matrix.tolist()}


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
def _torch_settings(threads: int, device: torch.device) -> Iterator[None]:
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


def _plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 3.6), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(ACTIONS)), ACTIONS)
    ax.set_yticks(range(len(ACTIONS)), ACTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


_TENSORBOARD_MISSING_SAID = False


def summary_writer(log_dir: Path, purge_step: int | None = None) -> Any | None:
    """A TensorBoard SummaryWriter, or None (said once per process) when tensorboard is missing."""
    global _TENSORBOARD_MISSING_SAID
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TENSORBOARD_MISSING_SAID:
            _TENSORBOARD_MISSING_SAID = True
            print("sim2real train: the tensorboard package is not installed, so no TensorBoard scalars are "
                  "written (pip install tensorboard); training continues", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def resume_file(path: str | Path) -> Path:
    """The training-state file for ``--resume``: the file itself, or ``last.pt`` in a run folder."""
    path = Path(path)
    return path / RESUME if path.is_dir() else path


def _existing_state(path: str | Path) -> Path:
    path = resume_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state not found: {path} (a run writes {RESUME} after every "
                                f"epoch and removes it when it finishes)")
    return path


def read_training_state(path: str | Path) -> tuple[dict, dict]:
    """A ``last.pt`` as (payload, verified manifest); tensors and primitives only (weights_only)."""
    path = _existing_state(path)
    manifest = read_manifest(path, verify=True)
    if manifest.get("kind") != "training-state":
        raise ValueError(f"{path} is a finished {manifest.get('kind', 'artifact')}, not a training state: "
                         f"resume from the {RESUME} of an unfinished run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable training state: {str(exc).splitlines()[0]}") from None
    state = payload.get("train_state") if isinstance(payload, dict) else None
    if not (isinstance(state, dict) and isinstance(payload.get("state_dict"), dict)
            and {"epoch", "optimizer", "scheduler", "rng"} <= set(state)):
        raise ValueError(f"{path} is not a sim2real training state: expected weights, optimizer, "
                         f"scheduler, RNG state and epoch")
    return payload, manifest


def stored_config(path: str | Path) -> TrainConfig:
    """The settings a training state was made with (what ``--resume`` continues with by default)."""
    path = _existing_state(path)
    manifest = read_manifest(path, verify=False)
    if not isinstance(manifest.get("train_config"), dict):
        raise ValueError(f"{path}: its manifest records no train_config (resume from a sim2real {RESUME})")
    return TrainConfig.from_dict(manifest["train_config"])


def _check_resumable(path: Path, manifest: dict, config: TrainConfig, dataset: Dataset) -> None:
    recorded = manifest.get("train_config") or {}
    differences = [f"{key} {recorded.get(key)!r} → {getattr(config, key)!r}" for key in _RESUME_KEYS
                   if recorded.get(key) != getattr(config, key)]
    if differences:
        raise ValueError(f"{path} was made with other settings ({'; '.join(differences)}): a run resumes "
                         f"only with the settings it started with (leave them out to reuse them)")
    if manifest.get("inputs", {}).get("dataset") != dataset.sha256:
        raise ValueError(f"{path} was trained on another dataset (sha256 "
                         f"{str(manifest.get('inputs', {}).get('dataset'))[:12]}…), not {dataset.root} "
                         f"({dataset.sha256[:12]}…)")


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, an output that is a file or cannot be written (nothing is created)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output {out} cannot be created: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sim2real-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"output {out} is not writable ({exc.strerror or type(exc).__name__} in {existing})") from None


def check_memory(images: int, input_size: int) -> None:
    """Refuse a run whose preprocessed inputs (float32, kept with their train/validation split) do not fit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = 2 * images * len(CHANNELS) * input_size * input_size * 4     # an upper bound: height <= width
    if need > MEMORY_SHARE * total:
        raise ValueError(f"input_size {input_size} on {images} images needs about {need / 2**30:.1f} GiB for the "
                         f"preprocessed inputs, more than {MEMORY_SHARE:.0%} of this machine's "
                         f"{total / 2**30:.1f} GiB: lower --input-size")


def check_classes(labels: np.ndarray, root: Path, allow_missing: bool) -> None:
    """Refuse a dataset in which an action never occurs (unless ``allow_missing``)."""
    counts = np.bincount(labels, minlength=len(ACTIONS))
    missing = [name for name, count in zip(ACTIONS, counts) if count == 0]
    if missing and not allow_missing:
        mix = ", ".join(f"{name} {int(count)}" for name, count in zip(ACTIONS, counts))
        names = "', '".join(missing)
        raise ValueError(f"dataset {root} has no '{names}' images ({mix}): a policy trained on it "
                         f"can never choose that action; generate a balanced dataset (datagen --balance) or pass "
                         f"--allow-missing-classes")


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
        _check_resumable(resume, resume_manifest, config, dataset)
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
    run = _Run(config=config, env=env, device=device, dataset=dataset, data=data, out=out, spec=spec,
               camera=camera, augment=augment, depth_mm=depth_mm, cameras=cameras, train_idx=train_idx,
               val_idx=val_idx,
               x_train=inputs[train_idx], y_train=targets[train_idx], x_val=inputs[val_idx],
               y_val=targets[val_idx], labels=labels, progress=progress and env.is_main)
    del inputs
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, env.local_world_size))
    with _torch_settings(threads, device), distributed.process_group(env, device):
        return run.fit(payload, resumed_from, stop_after, threads)


@dataclass
class _Run:
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
            _restore_rng(state["rng"], device)
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
                        recalibrate_batchnorm(model, self.x_train[torch.from_numpy(sample[:_BN_SAMPLES])],
                                              config.batch_size, device)
                    distributed.broadcast_buffers(model, env)
                matrix = self._validate(model)
                summary = summarise(matrix)
                done.history.append({"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy,
                                     "val_accuracy": summary["val_accuracy"],
                                     "val_per_class_accuracy": summary["per_class_accuracy"]})
                if writer is not None:
                    self._log_epoch(writer, done.global_step, epoch, loss, accuracy, summary, count / max(seconds, 1e-9))
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

    def _batch(self, epoch: int, step: int, order: np.ndarray, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
        prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim2real-batch") if self.augment.enabled else None
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

    @staticmethod
    def _log_epoch(writer: Any, step: int, epoch: int, loss: float, accuracy: float, summary: dict,
                   images_per_second: float) -> None:
        writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/accuracy", accuracy, step)
        writer.add_scalar("train/images_per_second", images_per_second, step)
        writer.add_scalar("val/accuracy", summary["val_accuracy"], step)
        for name, value in summary["per_class_accuracy"].items():
            if value is not None:
                writer.add_scalar(f"val/accuracy_{name}", value, step)
        writer.flush()

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
                 "scaler": scaler.state_dict() if scaler is not None else None, "rng": _rng_state(self.device)}
        with atomic_path(path) as tmp:
            torch.save({"state_dict": _cpu_state(model), "meta": self._meta(done.epoch), "train_state": state}, tmp)
        write_manifest(path, new_manifest(
            "training-state", inputs=self._inputs(), epoch=done.epoch, arch=self.config.arch,
            preprocessing=self.spec.to_dict(), camera=self.camera.to_dict(), actions=actions.spec(),
            dataset_path=str(self.data),
            train_config=asdict(self.config), world_size=self.env.world_size, device=str(self.device)))

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
        _plot_confusion(matrix, out / CONFUSION_PNG,
                        f"{config.arch} @ {config.input_size}px, val acc {summary['val_accuracy']:.3f}")
        checkpoint = out / CHECKPOINT
        with atomic_path(checkpoint) as tmp:
            torch.save({"state_dict": _cpu_state(model), "meta": self._meta(config.epochs)}, tmp)
        write_manifest(checkpoint, new_manifest(
            "checkpoint", inputs=self._inputs(),
            lineage=[{"kind": "dataset", "sha256": self.dataset.sha256, "path": str(self.data)}],
            arch=config.arch, preprocessing=self.spec.to_dict(), camera=self.camera.to_dict(), actions=actions.spec(),
            dataset_path=str(self.data),
            metrics={key: metrics[key] for key in ("val_accuracy", "per_class_accuracy", "confusion_matrix",
                                                   "train_images", "val_images")},
            train_config=asdict(config), augmentation=self.augment.to_dict(), training=training))
        for stale in (out / RESUME, manifest_path(out / RESUME)):
            stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """A checkpoint as (model in eval mode, verified manifest); tensors only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    manifest = read_manifest(path, verify=True)
    if "sha256" not in manifest:
        raise ValueError(f"{path}: its manifest records no sha256, so the file cannot be verified")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {str(exc).splitlines()[0]}") from None
    if not (isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict)
            and isinstance(payload.get("meta"), dict)):
        raise ValueError(f"{path} is not a sim2real checkpoint: expected {{'state_dict', 'meta'}}")
    meta = payload["meta"]
    if str(meta.get("arch")) not in arch_names():
        raise ValueError(f"{path}: unknown architecture {meta.get('arch')!r} (known: {', '.join(arch_names())})")
    model = build_model(str(meta.get("arch")), int(meta.get("num_classes", len(ACTIONS))),
                        in_channels=int(meta.get("in_channels", 1)))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit {meta.get('arch')}: {str(exc).splitlines()[0]}") from None
    return model.eval(), manifest
