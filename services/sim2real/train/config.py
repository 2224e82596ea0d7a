"""Training settings (``TrainConfig``) and the checks made before any work starts."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sim2real.contracts.preprocessing import CHANNELS
from sim2real.train.augment import SensorAugment
from sim2real.train.model import arch_names

MAX_INPUT_SIZE = 1024            # the largest model input side (the largest scenario camera is 1280x1024)
MEMORY_SHARE = 0.8               # refuse a run whose preprocessed images alone need more of the RAM than this
# Settings that change what is computed: a run resumes only with the same values.
RESUME_KEYS = ("epochs", "batch_size", "lr", "input_size", "seed", "val_fraction", "arch", "augment",
               "noise_sigma_per_m2", "dropout", "holes", "amp", "mix", "freeze", "init", "schedule", "patience")
FREEZABLE = ("stem", "layer1", "layer2", "layer3", "layer4")     # the network's early-to-late parts
SCHEDULES = ("onecycle", "plateau")


@dataclass
class TrainConfig:
    """Training hyper-parameters; recorded verbatim in the checkpoint manifest.

    ``augment`` is the probability that a training image gets the sensor-model augmentation
    (0 disables it); ``noise_sigma_per_m2`` and ``dropout`` are its ceilings (None: the widest
    values of the scenario that made the dataset), ``holes`` the most invalid patches per image.
    ``device`` is ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    ``allow_missing_classes`` trains on a dataset that lacks an action (refused by default: such a
    policy can never choose it).

    Fine-tuning and co-training: ``init`` is a finished checkpoint (or the run folder holding it)
    to start from; ``freeze`` names parts of the network (``FREEZABLE``) whose weights and
    BatchNorm statistics stay as ``init`` left them; ``mix`` maps dataset names to the share of
    every batch drawn from them (the other datasets fill the rest, pooled).

    Stopping: ``patience`` ≥ 1 checks the validation loss after every epoch and stops after that
    many epochs without improvement, keeping the best epoch's weights (0: run every epoch).
    ``schedule`` is ``onecycle`` (warm-up then anneal over ``epochs``) or ``plateau`` (warm-up over
    the first epoch, then a constant rate cut tenfold at each plateau; the second plateau stops;
    needs ``patience``). ``epochs`` is always the cap.
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
    init: str | None = None
    freeze: tuple[str, ...] = ()
    mix: dict[str, float] | None = None
    schedule: str = "onecycle"
    patience: int = 0

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
        unknown = [name for name in self.freeze if name not in FREEZABLE]
        if unknown:
            raise ValueError(f"cannot freeze {', '.join(map(repr, unknown))}: the parts are {', '.join(FREEZABLE)}")
        if self.freeze and not self.init:
            raise ValueError("freeze needs init: frozen layers keep the weights of the checkpoint training starts from")
        for name, share in (self.mix or {}).items():
            if not (isinstance(share, (int, float)) and 0.0 < share < 1.0):
                raise ValueError(f"mix share of '{name}' must be between 0 and 1 (exclusive), got {share!r}")
        if self.mix and sum(self.mix.values()) > 1.0 + 1e-9:
            raise ValueError(f"mix shares add up to {sum(self.mix.values()):g}, more than 1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience must be an integer ≥ 0 (epochs), got {self.patience!r}")
        if self.schedule == "plateau" and self.patience < 1:
            raise ValueError("the plateau schedule needs patience ≥ 1 (epochs without improvement before a cut)")

    def recorded(self) -> dict:
        """The config as JSON keeps it (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A config from its recorded form (unknown keys from other versions are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "freeze" in values:
            values["freeze"] = tuple(values["freeze"] or ())
        return cls(**values)


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

