"""The one preprocessing function: training, evaluation and the robot all call this.

Depth in metres goes in (any camera, any resolution), with the camera's intrinsics; the model's
input comes out: a float32 ``(2, height, width)`` tensor spanning the field of view the model was
trained for (:class:`~sim2real.contracts.camera.CameraContract`).

**Pixel states.** Every raw pixel is one of four (:func:`pixel_states`):

============  ===================================  ================================================
state         raw value                            what the model sees
============  ===================================  ================================================
valid         min_range ≤ d ≤ max_range            depth (d − min) / (max − min), validity 1
too near      0 < d < min_range, or −inf           depth 0 (the nearest there is), validity 1
too far       d > max_range, or +inf               depth 1 (free space), validity 1
no return     0, NaN (or a negative reading)       no data: validity 0 (and depth channel 0)
============  ===================================  ================================================

±inf follow REP 117, which REP 118 applies to 32FC1 depth images: −inf is "too close to measure",
+inf "no return within range, likely no object" (the ZED driver publishes both); NaN is an
erroneous reading. 16UC1 (REP 118's raw form) has only 0, "no return".

"Too far" is a measurement of free space, not a failure: it is never a hole. Only "no return"
counts toward the runtime's invalid-fraction refusal. The depth channel of an input pixel is the
mean depth of the returns it covers; its validity channel the share of its area that holds a
return. Where it covers none (holes, or outside the camera's image), both are 0: exactly what the
network's zero padding shows it beyond the image's edge, so "no data" looks the same everywhere.

**Camera mapping.** Each input pixel covers a fixed patch of the trained field of view; the
camera's intrinsics say which source pixels fall in it, and it averages them by area (fractional
overlaps included). A wider image is cropped, a narrower one covers the centre only. Both axes
keep the camera's own angles: an image is never squashed. Below ``min_overlap`` along an axis the
mapping refuses the camera (:class:`CameraMismatch`).

**Mirror-exact.** For an image flipped left-right with its mirrored intrinsics, the result is the
flipped result, bit for bit: the edges are computed as offsets from the image centre (negation is
exact), and each input pixel sums its source taps in mirror-symmetric pairs (IEEE addition is
commutative). The exported model is exactly mirror-equivariant in its input, so the whole path
from the camera's image to the command is.

The normalisation uses the fixed range, never a per-image statistic: an image of a flat wall has
zero variance, and a per-image mean would make a near wall look like a far one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from sim2real.contracts.camera import CameraContract, CameraError, Intrinsics

PREPROCESS_VERSION = 2
CHANNELS: tuple[str, ...] = ("depth", "validity")
NO_RETURN, TOO_NEAR, VALID, TOO_FAR = range(4)
PIXEL_STATES: tuple[str, ...] = ("no_return", "too_near", "valid", "too_far")


class CameraMismatch(CameraError):
    """A camera whose image covers too little of the model's field of view."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything a consumer needs, besides the camera, to turn depth into the model's input."""

    width: int = 128
    height: int = 72
    min_range_m: float = 0.1
    max_range_m: float = 5.0
    channels: int = len(CHANNELS)
    version: int = PREPROCESS_VERSION

    def __post_init__(self):
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 16:
                raise ValueError(f"preprocessing {name} must be a whole number of pixels ≥ 16, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("min_range_m", "max_range_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"preprocessing {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0 < self.min_range_m < self.max_range_m:
            raise ValueError("preprocessing needs 0 < min_range_m < max_range_m")
        if self.channels != len(CHANNELS):
            raise ValueError(f"preprocessing channels must be {len(CHANNELS)} {CHANNELS}, got {self.channels!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one model input."""
        return self.channels, self.height, self.width

    @classmethod
    def from_dict(cls, data: object) -> "PreprocessSpec":
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing block must be a mapping, got {type(data).__name__}")
        version = data.get("version", 1)
        if version != PREPROCESS_VERSION:
            raise ValueError(f"preprocessing version {version!r} (one depth channel, holes written as depth 0, "
                             f"square input) is not what this sim2real reads (version {PREPROCESS_VERSION}: depth "
                             f"and validity channels, the camera mapped by its intrinsics): retrain and re-export "
                             f"the model with this sim2real (sim2real train, then sim2real export)")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {unknown}: this sim2real reads version "
                             f"{PREPROCESS_VERSION}")
        return cls(**data)


def pixel_states(depth_m: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 per pixel: NO_RETURN, TOO_NEAR, VALID or TOO_FAR (see the module's table)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        states = np.where(depth < np.float32(spec.min_range_m), TOO_NEAR, VALID)
        states = np.where(depth > np.float32(spec.max_range_m), TOO_FAR, states)
    return np.where(has_return(depth), states, NO_RETURN).astype(np.uint8)


def has_return(depth_m: np.ndarray) -> np.ndarray:
    """True where a pixel holds a measurement: any positive reading (+inf: too far) or −inf (too near)."""
    with np.errstate(invalid="ignore"):
        return (depth_m > 0) | (depth_m == -np.inf)


def _snap(edges: np.ndarray, n_in: int, tolerance: float = 1e-6) -> np.ndarray:
    """Edges within ``tolerance`` pixels of a source pixel boundary become that boundary.

    Boundaries lie at integers (even ``n_in``) or half-integers (odd) from the image centre; the
    test works on ``|edge|``, so an edge and its mirror image snap alike. A camera equal to the
    trained one then covers the view exactly, whatever the rounding of its field of view.
    """
    half = 0.5 * (n_in % 2)
    magnitude = np.abs(edges) - half
    nearest = np.round(magnitude)
    snapped = np.sign(edges) * (nearest + half)
    return np.where((np.abs(magnitude - nearest) < tolerance) & (nearest >= 0), snapped, edges)


def _axis_taps(n_out: int, n_in: int, focal: float, centre: float, tan_half: float):
    """Source taps of each output index along one axis, as mirror-symmetric pairs.

    Output index ``i`` spans the tangent interval ``tan_half * [(2i - n)/n, (2i + 2 - n)/n]``; in
    source pixels measured from the image centre that is ``offset + focal * t``. Returns
    ``(left index, left weight, right index, right weight)``, each ``(n_out, pairs)``: the taps of an
    output index, first with last, second with second-last, ... (the middle one alone), so that its
    mirror image sums the same products in the same pairs. Also the covered share of the axis and
    the source range ``(first, stop)`` that any tap touches.
    """
    offset = centre - (n_in - 1) / 2.0
    a = (2.0 * np.arange(n_out + 1) - n_out) / n_out
    edges = _snap(offset + focal * (tan_half * a), n_in)
    lo, hi = edges[:-1], edges[1:]
    half_in = n_in / 2.0
    first = np.clip(np.floor(lo + half_in).astype(np.int64) - 1, 0, n_in - 1)
    last = np.clip(np.ceil(hi + half_in).astype(np.int64), 0, n_in - 1)
    count = int((last - first).max()) + 1
    k = first[:, None] + np.arange(count)[None, :]
    left_edge = k - half_in
    with np.errstate(invalid="ignore"):
        overlap = np.minimum(hi[:, None], left_edge + 1.0) - np.maximum(lo[:, None], left_edge)
        weight = np.where((k <= last[:, None]) & (overlap > 0), overlap / (hi - lo)[:, None], 0.0)
    nonzero = weight > 0
    taps = nonzero.sum(axis=1)
    start = np.where(taps > 0, nonzero.argmax(axis=1), 0)
    pairs = max(1, (int(taps.max()) + 1) // 2)
    q = np.arange(pairs)[None, :]
    left = start[:, None] + q
    right = start[:, None] + taps[:, None] - 1 - q
    rows = np.arange(n_out)[:, None]
    li, ri = np.clip(left, 0, count - 1), np.clip(right, 0, count - 1)
    w_left = np.where(left <= right, weight[rows, li], 0.0).astype(np.float32)
    w_right = np.where(left < right, weight[rows, ri], 0.0).astype(np.float32)
    idx_left, idx_right = np.clip(k[rows, li], 0, n_in - 1), np.clip(k[rows, ri], 0, n_in - 1)
    covered = max(0.0, min(hi[-1], half_in) - max(lo[0], -half_in)) / (hi[-1] - lo[0])
    used = k[nonzero]
    span = (int(used.min()), int(used.max()) + 1) if used.size else (0, 0)
    return (idx_left, w_left, idx_right, w_right), covered, span


def _resample(x: np.ndarray, taps, axis: int) -> np.ndarray:
    """Area-resample ``x`` along ``axis`` with :func:`_axis_taps`' pairs, summed in a fixed order."""
    idx_left, w_left, idx_right, w_right = taps
    shape = [1] * x.ndim
    shape[axis] = len(idx_left)
    out = None
    for q in range(idx_left.shape[1]):
        pair = (np.take(x, idx_left[:, q], axis=axis) * w_left[:, q].reshape(shape)
                + np.take(x, idx_right[:, q], axis=axis) * w_right[:, q].reshape(shape))
        out = pair if out is None else out + pair
    return out


class InputMapping:
    """How one camera's images become one model's input; made once per camera (:func:`input_mapping`).

    ``coverage`` is the share of the model's field of view the image covers, (horizontal,
    vertical); ``window`` the (rows, columns) slices of the image that fall inside that view.
    """

    def __init__(self, spec: PreprocessSpec, camera: CameraContract, intrinsics: Intrinsics):
        self.spec, self.camera, self.intrinsics = spec, camera, intrinsics
        tan_x, tan_y = camera.tan_half()
        self._cols, cover_x, cols = _axis_taps(spec.width, intrinsics.width, intrinsics.fx, intrinsics.cx, tan_x)
        self._rows, cover_y, rows = _axis_taps(spec.height, intrinsics.height, intrinsics.fy, intrinsics.cy, tan_y)
        self.coverage = (cover_x, cover_y)
        self.window = (slice(*rows), slice(*cols))
        # Taps relative to the window, so only the part of the image the model sees is touched.
        self._cols = (self._cols[0] - cols[0], self._cols[1], self._cols[2] - cols[0], self._cols[3])
        self._rows = (self._rows[0] - rows[0], self._rows[1], self._rows[2] - rows[0], self._rows[3])

    def check(self) -> None:
        """Raise :class:`CameraMismatch` (one line) when the image covers too little of the view."""
        low = self.camera.min_overlap
        if min(self.coverage) < low:
            h, v = self.intrinsics.fov_deg()
            raise CameraMismatch(
                f"the camera's image ({self.intrinsics.width}x{self.intrinsics.height}, {h:.0f}°x{v:.0f}°) covers "
                f"{self.coverage[0]:.0%} x {self.coverage[1]:.0%} of the model's {self.camera.hfov_deg:.0f}°x"
                f"{self.camera.vfov_deg:.0f}° field of view, below the {low:.0%} per axis it needs")

    def __call__(self, depth_m: np.ndarray) -> tuple[np.ndarray, float]:
        """Depth in metres ``(height, width)`` → (model input ``(2, H, W)`` float32, no-return share).

        The no-return share counts the pixels inside the window that hold no return (0, NaN):
        too-near and too-far pixels are measurements and do not count.
        """
        depth = np.asarray(depth_m)
        if depth.shape != (self.intrinsics.height, self.intrinsics.width):
            raise ValueError(f"depth image has shape {depth.shape}, its intrinsics say "
                             f"{self.intrinsics.width}x{self.intrinsics.height}")
        spec = self.spec
        window = depth[self.window]
        returned = has_return(window)
        stacked = np.empty((2, *window.shape), np.float32)
        np.copyto(stacked[1], returned)
        # fmax / fmin map NaN to the range's ends; those pixels are zeroed by the validity product.
        np.fmin(np.fmax(window, np.float32(spec.min_range_m), out=stacked[0]), np.float32(spec.max_range_m),
                out=stacked[0])
        stacked[0] -= np.float32(spec.min_range_m)
        stacked[0] *= np.float32(1.0 / (spec.max_range_m - spec.min_range_m))
        stacked[0] *= stacked[1]
        resampled = _resample(_resample(stacked, self._rows, axis=1), self._cols, axis=2)
        weighted, covered = resampled[0], resampled[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            resampled[0] = np.where(covered > 0, np.fmin(weighted / covered, np.float32(1.0)), np.float32(0.0))
        covered[covered > np.float32(1.0 - 1e-6)] = 1.0      # a full pixel's weights sum to 1 ± a few ulp
        no_return = 1.0 - float(np.count_nonzero(returned)) / returned.size if returned.size else 1.0
        return resampled, no_return


@lru_cache(maxsize=4096)
def input_mapping(spec: PreprocessSpec, camera: CameraContract, intrinsics: Intrinsics) -> InputMapping:
    """The (cached) mapping of a camera's images onto a model's input."""
    return InputMapping(spec, camera, intrinsics)


def preprocess(depth_m: np.ndarray, spec: PreprocessSpec, camera: CameraContract,
               intrinsics: Intrinsics | None = None) -> np.ndarray:
    """Depth image in metres (H, W) → model input ``(2, spec.height, spec.width)`` float32.

    ``intrinsics`` default to :meth:`CameraContract.assumed_intrinsics` (the trained horizontal
    field of view, centred, square pixels). The coverage check is the caller's
    (:meth:`InputMapping.check`); this maps whatever it is given.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth image must be 2-D (H, W), got shape {depth.shape}")
    if intrinsics is None:
        intrinsics = camera.assumed_intrinsics(depth.shape[1], depth.shape[0])
    return input_mapping(spec, camera, intrinsics)(depth)[0]


def preprocess_batch(depths_m, spec: PreprocessSpec, camera: CameraContract,
                     intrinsics: list[Intrinsics | None] | None = None) -> np.ndarray:
    """N depth images in metres (a sequence or an (N, H, W) array) → (N, 2, H, W) float32 model input."""
    intrinsics = list(intrinsics) if intrinsics is not None else [None] * len(depths_m)
    out = np.empty((len(depths_m), *spec.input_shape()), np.float32)
    for i, (depth, camera_i) in enumerate(zip(depths_m, intrinsics)):
        out[i] = preprocess(depth, spec, camera, camera_i)
    return out


def depth_from_millimetres(depth_mm: np.ndarray) -> np.ndarray:
    """16UC1 (uint16 millimetres, 0 = no return) → 32FC1 (float32 metres, NaN = no return)."""
    depth = depth_mm.astype(np.float32) / 1000.0
    depth[depth_mm == 0] = np.nan
    return depth


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """32FC1 (float32 metres) → 16UC1 (uint16 millimetres, 0 = no return), keeping every pixel's state.

    A return stays a return: readings beyond 65.535 m and +inf saturate at 65535 mm (too far), and
    readings below half a millimetre and −inf become 1 mm (too near); NaN, 0 and negative readings
    become 0.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        metres = np.clip(np.nan_to_num(depth, nan=0.0, posinf=65.535, neginf=0.0), 0.0, 65.535)
        mm = np.clip(np.rint(metres.astype(np.float64) * 1000.0), 1.0, 65535.0)   # float64: rounded to the nearest mm
    return np.where(has_return(depth), mm, 0.0).astype(np.uint16)
