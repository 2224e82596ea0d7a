"""Checkpoint and training-state files: written atomically with a manifest, read with
``torch.load(weights_only=True)`` after the sha256 check (tensors and primitives, never pickled code)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import Dataset
from sim2real.contracts.preprocessing import PreprocessSpec
from sim2real.contracts.manifest import atomic_path, read_manifest, write_manifest
from sim2real.train.config import RESUME_KEYS, TrainConfig
from sim2real.train.model import arch_names, build_model

CHECKPOINT = "checkpoint.pt"
RESUME = "last.pt"


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


def check_resumable(path: Path, manifest: dict, config: TrainConfig, datasets: list[Dataset]) -> None:
    """Refuse a training state made with other settings (older states: missing keys are the defaults)
    or on other datasets."""
    recorded = {**TrainConfig().recorded(), **(manifest.get("train_config") or {})}
    current = config.recorded()
    differences = [f"{key} {recorded.get(key)!r} → {current[key]!r}" for key in RESUME_KEYS
                   if recorded.get(key) != current[key]]
    if differences:
        raise ValueError(f"{path} was made with other settings ({'; '.join(differences)}): a run resumes "
                         f"only with the settings it started with (leave them out to reuse them)")
    was = ([entry.get("sha256") for entry in manifest.get("datasets") or []]
           or [manifest.get("inputs", {}).get("dataset")])
    now = [dataset.sha256 for dataset in datasets]
    if was != now:
        raise ValueError(f"{path} was trained on other data (sha256 {', '.join(str(s)[:12] + '…' for s in was)}), "
                         f"not {', '.join(f'{d.root} ({d.sha256[:12]}…)' for d in datasets)}")


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)



def write_weights(path: Path, model: nn.Module, meta: dict, manifest: dict, **extra) -> None:
    """``{"state_dict", "meta", **extra}`` into ``path`` (atomically), then its manifest."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": cpu_state(model), "meta": meta, **extra}, tmp)
    write_manifest(path, manifest)


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


def contract_of(ck: dict, checkpoint: Path) -> tuple[PreprocessSpec, CameraContract]:
    """The preprocessing and camera a checkpoint was trained with (one-line errors for older ones)."""
    if not isinstance(ck.get("camera"), dict):
        raise ValueError(f"{checkpoint} records no camera block: it was trained by an older sim2real (one depth "
                         f"channel, no camera contract); retrain it with this sim2real (sim2real train)")
    try:
        return PreprocessSpec.from_dict(ck.get("preprocessing")), CameraContract.from_dict(ck["camera"])
    except ValueError as exc:
        raise ValueError(f"{checkpoint}: {str(exc).splitlines()[0]}") from None
