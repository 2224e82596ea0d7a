"""Figures over labelled frames with block-bootstrap intervals, for one model or two paired.

Consecutive frames are strongly correlated: at 15-30 Hz the scene and the driver's decision
change over seconds, not frames, so counting frames as independent would make intervals several
times too narrow. The frames of each recording are cut into blocks of a few seconds (longer than
a typical manoeuvre), and the 95 % interval is the 2.5-97.5 percentile range of the figure over
bootstrap draws of whole blocks with replacement (a non-overlapping block bootstrap, Carlstein
1986): the correlation inside a block is kept, and blocks a few seconds apart are nearly
independent. Two models are compared on the same frames with the same drawn blocks (a paired
block bootstrap), so what the frames share cancels out of the difference. From a single block
there is no interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim2real.contracts.actions import FORWARD
from sim2real.recordings.labels import STOPPED


@dataclass
class Frames:
    """Per labelled or unlabelled frame, in recording order."""

    recording: list[int]
    t_s: list[float]
    label: list[int]       # -1: unlabelled
    commands: list[list[int]]   # per model


def _interval(values: np.ndarray, blocks: int) -> list[float] | None:
    """The 2.5-97.5 percentile range of the bootstrap draws (None from fewer than 2 blocks)."""
    finite = values[np.isfinite(values)]
    if not finite.size or blocks < 2:
        return None
    lo, hi = np.percentile(finite, (2.5, 97.5))
    return [round(float(lo), 4), round(float(hi), 4)]


def ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def block_bootstrap(block: np.ndarray, frames: Frames, n_models: int, resamples: int, seed: int) -> dict:
    """Agreement and unsafe rate per model (and their paired differences) with block-bootstrap intervals."""
    label = np.array(frames.label)
    commands = np.array(frames.commands, dtype=np.int64).reshape(len(label), n_models)
    labelled = label >= 0
    moving = labelled & (label != STOPPED)
    blocks, index = np.unique(block[labelled], return_inverse=True)
    lab_cmd, lab_label = commands[labelled], label[labelled]
    lab_moving = lab_label != STOPPED

    def per_block(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values.astype(float), minlength=len(blocks))

    n_moving, n_labelled = per_block(lab_moving), per_block(np.ones(len(lab_label)))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(blocks), np.full(len(blocks), 1.0 / len(blocks)), size=resamples) \
        if len(blocks) else np.zeros((resamples, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        draws_moving, draws_labelled = weights @ n_moving, weights @ n_labelled
        figures, draws = [], []
        for m in range(n_models):
            agree = per_block(lab_moving & (lab_cmd[:, m] == lab_label))
            unsafe = per_block((lab_cmd[:, m] == FORWARD) & (lab_label != FORWARD))
            draw = {"agreement": (weights @ agree) / draws_moving, "unsafe_rate": (weights @ unsafe) / draws_labelled}
            draws.append(draw)
            figures.append({
                "agreement": {"value": ratio(agree.sum(), n_moving.sum()),
                              "ci95": _interval(draw["agreement"], len(blocks)),
                              "frames": int(n_moving.sum()), "agreeing": int(agree.sum())},
                "unsafe_rate": {"value": ratio(unsafe.sum(), n_labelled.sum()),
                                "ci95": _interval(draw["unsafe_rate"], len(blocks)), "frames": int(n_labelled.sum()),
                                "unsafe": int(unsafe.sum())}})
    result = {"figures": figures, "blocks": len(blocks), "moving_frames": int(moving.sum())}
    if n_models == 2:
        a_ok = lab_moving & (lab_cmd[:, 0] == lab_label)
        b_ok = lab_moving & (lab_cmd[:, 1] == lab_label)
        comparison = {"frames": int(lab_moving.sum()),
                      "pairs": {"both": int((a_ok & b_ok).sum()), "only_a": int((a_ok & ~b_ok).sum()),
                                "only_b": int((~a_ok & b_ok & lab_moving).sum()),
                                "neither": int((~a_ok & ~b_ok & lab_moving).sum())}}
        for name in ("agreement", "unsafe_rate"):
            a, b = figures[0][name]["value"], figures[1][name]["value"]
            comparison[f"{name}_difference"] = {
                "value": None if a is None or b is None else round(a - b, 4),
                "ci95": _interval(draws[0][name] - draws[1][name], len(blocks))}
        result["comparison"] = comparison
    return result


def flips(frames: Frames, n_models: int, durations: list[float]) -> tuple[list[float | None], float | None]:
    """Command changes per second between consecutive frames, per model and for the driver's labels."""
    recording = np.array(frames.recording)
    same = recording[1:] == recording[:-1]
    commands = np.array(frames.commands, dtype=np.int64).reshape(len(recording), n_models)
    total = sum(durations)
    per_model = [ratio(float(((commands[1:, m] != commands[:-1, m]) & same).sum()), total) for m in range(n_models)]
    label = np.array(frames.label)
    both = same & (label[1:] >= 0) & (label[:-1] >= 0)
    return per_model, ratio(float(((label[1:] != label[:-1]) & both).sum()), total)
