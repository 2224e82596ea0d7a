"""Sample depth frames for the report: what the policy saw, and what it commanded.

An episode keeps a few frames (:func:`frame_steps`) plus, when it collides, the frame whose
command it was executing. Frames travel in the result JSON (and through the queue), so each is
small: at most ``MAX_SIDE`` pixels a side, quantised to 8 bits over the camera's range.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from sim2real.contracts.actions import ACTIONS, STOP, Twist, twist_for

MAX_SIDE = 64                 # pixels on the longer side
SAMPLED_EPISODES = 3          # episodes 0..2 keep frames at a third and two thirds of the way
MAX_COLLISION_FRAMES = 6      # of the collided episodes, the first few in index order


def frame_steps(index: int, n_steps: int) -> set[int]:
    """Steps of episode ``index`` whose frame is kept (none beyond the first episodes)."""
    if index >= SAMPLED_EPISODES:
        return set()
    return {0, n_steps // 3, (2 * n_steps) // 3}


def command_label(twist: Twist, forward_speed: float, turn_rate: float) -> str:
    """The action name the twist stands for, ``stop`` for zero, or the velocities themselves."""
    if twist == STOP:
        return "stop"
    for index, name in enumerate(ACTIONS):
        ref = twist_for(index, forward_speed, turn_rate)
        if math.isclose(twist.linear_x, ref.linear_x, abs_tol=1e-6) and \
                math.isclose(twist.angular_z, ref.angular_z, abs_tol=1e-6):
            return name
    return f"v {twist.linear_x:.2f} m/s, w {twist.angular_z:.2f} rad/s"


def encode_frame(depth_m: np.ndarray, max_range_m: float, *, episode: int, step: int, t_s: float,
                 twist: Twist, label: str, collision: bool = False) -> dict:
    """A JSON-able frame: depth down-sampled to ``MAX_SIDE`` and quantised (0 = invalid, 1..255 = range)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    stride = max(1, math.ceil(max(depth.shape) / MAX_SIDE))
    small = depth[::stride, ::stride]
    valid = np.isfinite(small) & (small > 0)
    scaled = np.clip(np.where(valid, small, 0.0) / max_range_m, 0.0, 1.0)
    pixels = np.where(valid, 1 + np.round(scaled * 254), 0).astype(np.uint8)
    return {"episode": episode, "step": step, "t_s": round(t_s, 3), "command": label,
            "twist": [round(twist.linear_x, 4), round(twist.angular_z, 4)], "collision": collision,
            "shape": list(pixels.shape), "max_range_m": max_range_m,
            "depth_u8": base64.b64encode(pixels.tobytes()).decode("ascii")}


def decode_frame(frame: dict) -> np.ndarray:
    """Depth in metres (NaN where invalid) from :func:`encode_frame`'s output."""
    pixels = np.frombuffer(base64.b64decode(frame["depth_u8"]), dtype=np.uint8).reshape(frame["shape"])
    depth = (pixels.astype(np.float32) - 1) / 254 * float(frame["max_range_m"])
    depth[pixels == 0] = np.nan
    return depth


def select_samples(frames_by_episode: list[list[dict]]) -> list[dict]:
    """Frames for the report, in episode order: the sampled episodes', then up to a few collisions'."""
    frames = [f for episode in frames_by_episode for f in episode]
    regular = [f for f in frames if not f["collision"]]
    collisions = [f for f in frames if f["collision"]][:MAX_COLLISION_FRAMES]
    return sorted(regular + collisions, key=lambda f: (f["episode"], f["step"]))
