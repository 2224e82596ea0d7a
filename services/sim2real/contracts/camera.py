"""Pinhole camera geometry shared by every backend, so both simulators see the same image grid."""

from __future__ import annotations

import math

import numpy as np


def vfov_deg(width: int, height: int, hfov_deg: float) -> float:
    """Vertical field of view of a pinhole camera with square pixels."""
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return math.degrees(2.0 * math.atan((height / 2.0) / fx))


def ray_directions(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Unit rays through pixel centres in the camera's body frame (x forward, y left, z up).

    Returns ``(height, width, 3)``; row 0 is the top of the image, column 0 its left edge.
    """
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    u = (np.arange(width) + 0.5 - width / 2.0) / fx
    v = (np.arange(height) + 0.5 - height / 2.0) / fx
    uu, vv = np.meshgrid(u, v)
    rays = np.stack([np.ones_like(uu), -uu, -vv], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def camera_rotation(yaw: float, pitch_down: float) -> np.ndarray:
    """World-from-camera rotation for a camera at heading ``yaw`` tilted down by ``pitch_down`` (radians)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch_down), math.sin(pitch_down)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    return rz @ ry
