"""Fitting the scenario's sensor model (``noise``, ``sim.sensors``) to recorded depth frames (numpy only).

Each parameter is read from the statistic the sensor model makes it drive, and only from pixels
where no other stage of the model can act:

- **quantisation** (``quantization_m``, ``quantization_mode``): the valid readings lie on a lattice,
  of inverse depth (``disparity``: a step of ``quantization_m`` per metre) or of depth; the step is
  the typical gap between neighbouring distinct values, kept when at least 90 % of the readings sit
  on it. A 16UC1 recording's own millimetre is the encoding, not the sensor's.
- **σ(z)** (``stereo_sigma_per_m2``): noise of ``k z²`` in depth is ``k`` in inverse depth, at every
  range. Over a static stretch (consecutive frames whose differences have no systematic part),
  ``k²`` is the mean per-pixel variance of inverse depth; without one, the mean residual variance
  of planes fitted to 5×5 patches of inverse depth (a plane in space is a plane there). The
  quantisation's share (step²/12) is taken off.
- **dropout**: the share of no-return pixels among those whose eight neighbours are valid, on one
  smooth surface and inside the range: no edge, shadow or range stage can reach them.
- **edge holes** (``edge_hole_prob``): at a depth step (between valid readings, above the model's
  ``edge_jump_m * z²``) the two pixels beside it are edge pixels; the number of missing pixels between
  the valid ends (0, 1 or 2) is binomial in the chance that one is missing. Read on steps with no
  stereo shadow: vertical steps, and steps from near (left) to far (right) along a row.
- **stereo shadow** (``shadow_baseline_m``): along a row, a step from far (left) to near (right)
  leaves ``floor(fx · b · (1/z_near − 1/z_far))`` far pixels unseen by the second imager; ``b`` is
  the fit of that law (plus the edge holes) to the gaps observed, by least squares truncated at
  3 pixels (a gap that far off has another cause: open space or another object behind). Where the
  law so fitted misses the median gap by more than a pixel (real shadows scatter widely around
  it), ``b`` is the smallest baseline whose predicted median gap reaches the observed one.
- **range** (``camera.min_range_m``, ``max_return_m``): the nearest valid reading when no-return
  pixels border readings close to it (else the recording never came near, and the base value is
  kept, capped at the nearest reading); the 21st smallest reading, so that a stray pixel does not
  set it. A far cut when a quarter or more of the farthest readings
  (within 10 % of the farthest) border no-return pixels, and the frames that see far all end at
  about the same depth (their farthest readings within 10 %; with fewer than 10 frames, when 40 %
  or more border holes instead); it lies at the median depth of that border. When every surface
  returns, the farthest readings are mostly inside surfaces, and each frame ends where its room does.

:func:`hole_statistics` gives the figures a fit must reproduce (hole share, isolated holes, holes
beside steps, shadow gaps); tests compare them between a recording and the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MIN_QUANTUM = 1e-4          # smaller lattice steps are the float format's, not a sensor's
LATTICE_SHARE = 0.9
STEP_FACTOR = 1.0           # a step above STEP_FACTOR * edge_jump_m * z_near² is a depth edge
MAX_SHADOW_GAP = 200
OUTLIER_PX = 3.0            # a gap this far from the shadow law has another cause (open space, another object)
NEAREST_RANK = 20          # the nearest reading is the 21st smallest: a stray pixel does not set the range
MIN_COUNT = 30              # fewest samples behind a fitted value


@dataclass
class Frame:
    """One depth image: metres with NaN for no return, the focal length in pixels, the stamp."""

    depth_m: np.ndarray
    fx: float
    stamp_ns: int = 0
    millimetres: bool = False
    valid: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        with np.errstate(invalid="ignore"):
            self.valid = np.isfinite(self.depth_m) & (self.depth_m > 0)


@dataclass
class Fit:
    """The fitted values (scenario keys), and for each how it was found (``evidence``)."""

    values: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)


def _inverse(frame: Frame, dtype=np.float64) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(frame.valid, 1.0 / frame.depth_m.astype(dtype), np.nan).astype(dtype, copy=False)


def _sample(values: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= limit else rng.choice(values, limit, replace=False)


# ----------------------------------------------------------------------------- quantisation
def _lattice(x: np.ndarray) -> tuple[float, float] | None:
    """(step, share of ``x`` on it) of the lattice ``x`` lies on, or None."""
    levels = np.unique(x)
    if levels.size < 10:
        return None
    step = float(np.median(np.diff(levels)))
    if step < MIN_QUANTUM:
        return None
    index = np.round(x / step)
    step = float(np.sum(x * index) / np.sum(index * index))
    offset = x / step - np.round(x / step)
    return step, float(np.mean(np.abs(offset) < 0.1))


def fit_quantization(frames: list[Frame], rng: np.random.Generator) -> tuple[float, str, dict]:
    """(step, mode, evidence); a step of 0 when the readings lie on no lattice."""
    z = np.concatenate([f.depth_m[f.valid].astype(np.float64) for f in frames])
    millimetres = any(f.millimetres for f in frames)
    found = {}
    for mode in ("disparity", "depth"):
        values = z
        if mode == "disparity" and millimetres and np.count_nonzero(z > 2.0) >= 2000:
            values = z[z > 2.0]      # nearer, the millimetre rounding hides the disparity lattice
        x = _sample(1.0 / values if mode == "disparity" else values, 200_000, rng)
        lattice = _lattice(x)
        if lattice is None:
            continue
        step, share = lattice
        if mode == "depth" and millimetres and step < 0.0015:
            continue                 # the 16UC1 millimetre
        found[mode] = (step, share)
    best = max(found.items(), key=lambda item: (item[1][1], item[0] == "disparity"), default=None)
    if best is None or best[1][1] < LATTICE_SHARE:
        return 0.0, "disparity", {"lattice": {m: {"step": s, "share": round(a, 3)} for m, (s, a) in found.items()}}
    mode, (step, share) = best
    return step, mode, {"mode": mode, "share_on_lattice": round(share, 3)}


# ----------------------------------------------------------------------------- neighbourhoods
def _ring(valid: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For interior pixels: all 8 neighbours valid, and their inverse-depth min and max (``u`` is
    NaN where no reading)."""
    h, w = valid.shape
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    all_valid = np.ones((h - 2, w - 2), bool)
    low = np.full((h - 2, w - 2), np.inf, u.dtype)
    high = np.full((h - 2, w - 2), -np.inf, u.dtype)
    for dy, dx in shifts:
        window = (slice(1 + dy, h - 1 + dy), slice(1 + dx, w - 1 + dx))
        all_valid &= valid[window]
        np.fmin(low, u[window], out=low)
        np.fmax(high, u[window], out=high)
    return all_valid, low, high


def _borders_hole(valid: np.ndarray) -> np.ndarray:
    """Valid pixels with a no-return 4-neighbour (the image border does not count)."""
    hole = ~valid
    out = np.zeros_like(valid)
    out[1:, :] |= hole[:-1, :]
    out[:-1, :] |= hole[1:, :]
    out[:, 1:] |= hole[:, :-1]
    out[:, :-1] |= hole[:, 1:]
    return out & valid


# ----------------------------------------------------------------------------- range
def fit_range(frames: list[Frame], base_min_m: float) -> tuple[float, float, dict]:
    """(min range, max return or 0, evidence)."""
    readings = np.concatenate([f.depth_m[f.valid] for f in frames])
    rank = min(NEAREST_RANK, readings.size - 1)
    nearest = float(np.partition(readings, rank)[rank])
    farthest = max(float(np.max(f.depth_m[f.valid])) for f in frames if f.valid.any())
    near_border = far_border = far_top = 0
    border_depths = []
    for f in frames:
        border = _borders_hole(f.valid)
        z = np.where(f.valid, f.depth_m, np.nan)
        with np.errstate(invalid="ignore"):
            near_border += int(np.count_nonzero(border & (z < 1.1 * nearest)))
            top = f.valid & (z >= 0.9 * farthest)
        far_top += int(np.count_nonzero(top))
        far_border += int(np.count_nonzero(top & border))
        border_depths.append(z[top & border])
    evidence = {"nearest_m": round(nearest, 4), "farthest_m": round(farthest, 4),
                "holes_beside_nearest": near_border}
    if near_border >= MIN_COUNT:
        min_range = nearest
        evidence["min_range"] = "observed: no-return pixels border the nearest readings"
    else:
        min_range = min(base_min_m, nearest)
        evidence["min_range"] = "not observed (nothing came nearer than the sensor's limit): base value, " \
                                "capped at the nearest reading"
    share = far_border / far_top if far_top else 0.0
    evidence["farthest_bordering_holes"] = round(share, 3)
    maxima = np.sort([float(np.max(f.depth_m[f.valid])) for f in frames if f.valid.any()])
    far_frames = maxima[len(maxima) // 2:]
    spread = None
    if far_frames.size >= 5:
        spread = float((np.percentile(far_frames, 90) - np.median(far_frames)) / np.median(far_frames))
        evidence["farthest_per_frame_spread"] = round(spread, 3)
    cut = share >= 0.25 and (share >= 0.4 if spread is None else spread < 0.1)
    if far_top >= MIN_COUNT and cut:
        max_return = float(np.median(np.concatenate(border_depths)))
        evidence["max_return"] = "a far cut: the farthest readings border no-return pixels"
    else:
        max_return = 0.0
        evidence["max_return"] = "no far cut: every surface returns"
    return min_range, max_return, evidence


def _inside(z: np.ndarray, min_range: float, max_return: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ok = z > 1.2 * min_range
        if max_return > 0:
            ok &= z < 0.9 * max_return
    return ok


# ----------------------------------------------------------------------------- dropout
def fit_dropout(frames: list[Frame], jump_m: float, min_range: float,
                max_return: float) -> tuple[float | None, dict]:
    holes = candidates = 0
    for f in frames:
        valid, u = f.valid, _inverse(f, np.float32)
        ring_valid, low, high = _ring(valid, u)
        with np.errstate(invalid="ignore"):
            smooth = ring_valid & (high - low < 0.5 * jump_m) & _inside(1.0 / high, min_range, max_return) \
                & _inside(1.0 / low, min_range, max_return)
        candidates += int(np.count_nonzero(smooth))
        holes += int(np.count_nonzero(smooth & ~valid[1:-1, 1:-1]))
    evidence = {"smooth_pixels": candidates, "holes_among_them": holes}
    return (holes / candidates if candidates >= MIN_COUNT else None), evidence


# ----------------------------------------------------------------------------- steps along lines
@dataclass
class Steps:
    """Depth steps between consecutive valid pixels of a line: the gap between them and both depths."""

    gap: np.ndarray
    z_first: np.ndarray
    z_second: np.ndarray
    fx: np.ndarray


def _steps(frames: list[Frame], axis: int, jump_m: float, min_range: float, max_return: float) -> Steps:
    """Steps along rows (``axis`` 1, left → right) or columns (``axis`` 0, top → bottom)."""
    gaps, firsts, seconds, fxs = [], [], [], []
    for f in frames:
        z = f.depth_m if axis == 1 else np.ascontiguousarray(f.depth_m.T)
        valid = f.valid if axis == 1 else np.ascontiguousarray(f.valid.T)
        index = np.arange(z.shape[1], dtype=np.int32)
        last = np.maximum.accumulate(np.where(valid, index, -1), axis=1)   # latest valid at or before
        before = np.full_like(last, -1)
        before[:, 1:] = last[:, :-1]                                        # latest valid strictly before
        rows, cols = np.nonzero(valid & (before >= 0))
        previous = before[rows, cols]
        za, zb = z[rows, previous].astype(np.float64), z[rows, cols].astype(np.float64)
        step = np.abs(za - zb) > STEP_FACTOR * jump_m * np.minimum(za, zb) ** 2
        keep = step & _inside(za, min_range, max_return) & _inside(zb, min_range, max_return)
        gaps.append((cols - previous - 1)[keep])
        firsts.append(za[keep])
        seconds.append(zb[keep])
        fxs.append(np.full(int(keep.sum()), f.fx))
    return Steps(*(np.concatenate(x) for x in (gaps, firsts, seconds, fxs)))


def _missing_share(gaps: np.ndarray) -> tuple[float, int]:
    """Chance that an edge pixel is missing, from the gaps (0, 1, 2) at steps: binomial(2, m)."""
    counted = gaps[gaps <= 2]
    if counted.size < MIN_COUNT:
        return math.nan, int(counted.size)
    return float(counted.sum() / (2 * counted.size)), int(counted.size)


def fit_edges_and_shadow(frames: list[Frame], jump_m: float, dropout: float, min_range: float,
                         max_return: float, base_edge: float) -> tuple[float | None, float | None, dict]:
    """(edge_hole_prob, shadow_baseline_m, evidence); None where the recording shows too few steps
    (``base_edge`` then stands for the edge holes in the shadow fit)."""
    rows = _steps(frames, 1, jump_m, min_range, max_return)
    cols = _steps(frames, 0, jump_m, min_range, max_return)
    near_to_far = rows.z_first < rows.z_second
    unshadowed = np.concatenate([cols.gap, rows.gap[near_to_far]])
    missing, steps = _missing_share(unshadowed)
    if math.isnan(missing):
        edge = None
        missing = 1.0 - (1.0 - base_edge) * (1.0 - dropout)
    else:
        edge = max(0.0, 1.0 - (1.0 - missing) / (1.0 - dropout)) if dropout < 1 else 0.0
    far_to_near = ~near_to_far & (rows.gap <= MAX_SHADOW_GAP)
    gap = rows.gap[far_to_near].astype(np.float64)
    disparity = rows.fx[far_to_near] * (1.0 / rows.z_second[far_to_near] - 1.0 / rows.z_first[far_to_near])
    evidence = {"steps_without_shadow": steps, "edge_pixel_missing": round(missing, 4),
                "steps_with_shadow_side": int(gap.size)}
    if gap.size < MIN_COUNT:
        return edge, None, evidence
    baselines = np.arange(0.0, 0.5 + 1e-9, 0.0005)
    width = np.floor(disparity[None, :] * baselines[:, None])
    expected = width + missing + (width == 0) * missing
    residual = np.abs(gap[None, :] - expected)
    best = int(np.argmin(np.mean(np.minimum(residual, OUTLIER_PX) ** 2, axis=1)))
    rng = np.random.default_rng(0)
    near_missing, far_missing = rng.random(gap.size) < missing, rng.random(gap.size) < missing
    medians = np.median(width + near_missing + (width == 0) * far_missing, axis=1)
    evidence["shadow_median_gap_px"] = float(np.median(gap))
    if abs(medians[best] - np.median(gap)) <= 1.0:
        return edge, float(baselines[best]), {**evidence, "shadow": "least squares, truncated at 3 px"}
    # Real sensors' shadows scatter widely around the law: match the median gap instead.
    best = min(int(np.searchsorted(medians, np.median(gap))), len(baselines) - 1)
    return edge, float(baselines[best]), {**evidence, "shadow": "the median gap matched"}


# ----------------------------------------------------------------------------- noise
def _static_runs(frames: list[Frame], min_length: int = 3) -> list[list[Frame]]:
    """Runs of consecutive frames of an unmoving scene: their differences are noise, without a shift."""
    runs, current = [], [frames[0]]
    for before, after in zip(frames, frames[1:]):
        same_size = before.depth_m.shape == after.depth_m.shape
        both = before.valid & after.valid if same_size else None
        static = False
        if same_size and np.count_nonzero(both) >= 100:
            za, zb = before.depth_m[both].astype(np.float64), after.depth_m[both].astype(np.float64)
            d = zb - za
            spread = 1.4826 * float(np.median(np.abs(d - np.median(d))))
            static = (abs(float(np.median(d))) <= 0.1 * spread + 1e-4
                      and float(np.mean(np.abs(d) > 0.2 * za)) < 0.005)
        if static:
            current.append(after)
        else:
            if len(current) >= min_length:
                runs.append(current)
            current = [after]
    if len(current) >= min_length:
        runs.append(current)
    return runs


def _quantum_variance(z: np.ndarray, step: float, mode: str, millimetres: bool) -> np.ndarray:
    """Variance in inverse depth that rounding adds (step²/12), per reading at depth ``z``."""
    variance = np.zeros_like(z)
    if step > 0:
        variance += step ** 2 / 12 if mode == "disparity" else (step / z ** 2) ** 2 / 12
    if millimetres:
        variance += (0.001 / z ** 2) ** 2 / 12
    return variance


def fit_sigma(frames: list[Frame], step: float, mode: str, jump_m: float, min_range: float,
              max_return: float) -> tuple[float | None, dict]:
    """``k`` of σ = k z² from a static stretch (temporal spread) or, without one, from plane fits."""
    millimetres = any(f.millimetres for f in frames)
    runs = _static_runs(frames)
    ratios = []
    if runs:
        for run in runs:
            stack = np.stack([_inverse(f) for f in run])
            count = np.sum(np.isfinite(stack), axis=0)
            ok = count >= 3
            if not ok.any():
                continue
            mean = np.nanmean(stack[:, ok], axis=0)
            variance = np.nanvar(stack[:, ok], axis=0, ddof=1)
            z = 1.0 / mean
            inside = _inside(z, min_range, max_return)
            ratios.append((variance - _quantum_variance(z, step, mode, millimetres))[inside])
        method = f"temporal spread over {len(runs)} static stretch(es) of {sum(len(r) for r in runs)} frames"
    if not ratios or sum(r.size for r in ratios) < MIN_COUNT:
        ratios = [_plane_residuals(f, step, mode, jump_m, min_range, max_return, millimetres) for f in frames]
        method = "plane fits to 5x5 patches"
    values = np.concatenate(ratios)
    if values.size < MIN_COUNT:
        return None, {"method": method, "samples": int(values.size)}
    k2 = float(np.mean(np.clip(values, np.percentile(values, 0.5), np.percentile(values, 99.5))))
    return math.sqrt(max(k2, 0.0)), {"method": method, "samples": int(values.size)}


def _plane_residuals(frame: Frame, step: float, mode: str, jump_m: float, min_range: float, max_return: float,
                     millimetres: bool, size: int = 5) -> np.ndarray:
    """Per 5x5 patch of one surface: residual variance of a plane fitted to inverse depth, less rounding."""
    u = _inverse(frame)
    h, w = u.shape
    h, w = h - h % size, w - w % size
    patches = u[:h, :w].reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size * size)
    ok = np.all(np.isfinite(patches), axis=1)
    patches = patches[ok]
    if patches.size == 0:
        return np.empty(0)
    ok = (patches.max(axis=1) - patches.min(axis=1) < 0.5 * jump_m)
    patches = patches[ok]
    z = 1.0 / patches.mean(axis=1)
    inside = _inside(z, min_range, max_return)
    patches, z = patches[inside], z[inside]
    yy, xx = np.mgrid[0:size, 0:size]
    design = np.stack([np.ones(size * size), xx.ravel(), yy.ravel()], axis=1)
    residual = patches - (patches @ np.linalg.pinv(design).T) @ design.T
    variance = np.sum(residual ** 2, axis=1) / (size * size - 3)
    return variance - _quantum_variance(z, step, mode, millimetres)


# ----------------------------------------------------------------------------- all of it
def fit_noise(frames: list[Frame], base, seed: int = 0) -> Fit:
    """Fit every parameter of the sensor model to ``frames`` (see the module docstring).

    ``base`` is the scenario the fit starts from: its ``noise.edge_jump_m`` defines an edge, and a
    value the recording does not show (no smooth surface, no step, no static stretch or flat
    patch, nothing near) is kept from it and listed in ``evidence["not_observed"]``.
    """
    if not frames:
        raise ValueError("no depth frame to fit")
    if not any(f.valid.any() for f in frames):
        raise ValueError("no frame holds a valid depth reading")
    rng = np.random.default_rng(seed)
    noise, jump = base.noise, base.noise.edge_jump_m
    fit = Fit()
    step, mode, fit.evidence["quantization"] = fit_quantization(frames, rng)
    min_range, max_return, fit.evidence["range"] = fit_range(frames, base.camera.min_range_m)
    dropout, fit.evidence["dropout"] = fit_dropout(frames, jump, min_range, max_return)
    not_observed = [] if dropout is not None else ["noise.dropout"]
    dropout = noise.dropout if dropout is None else dropout
    edge, baseline, fit.evidence["edges"] = fit_edges_and_shadow(frames, jump, dropout, min_range, max_return,
                                                                 noise.edge_hole_prob)
    sigma, fit.evidence["sigma"] = fit_sigma(frames, step, mode, jump, min_range, max_return)
    for key, value in (("noise.edge_hole_prob", edge), ("noise.shadow_baseline_m", baseline),
                       ("noise.stereo_sigma_per_m2", sigma)):
        if value is None:
            not_observed.append(key)
    if fit.evidence["range"]["min_range"].startswith("not observed"):
        not_observed.append("camera.min_range_m")
    fit.values = {"camera.min_range_m": round(min_range, 4),
                  "noise.stereo_sigma_per_m2": round(noise.stereo_sigma_per_m2 if sigma is None else sigma, 6),
                  "noise.dropout": round(dropout, 5),
                  "noise.edge_hole_prob": round(noise.edge_hole_prob if edge is None else edge, 4),
                  "noise.edge_jump_m": jump,
                  "noise.shadow_baseline_m": round(noise.shadow_baseline_m if baseline is None else baseline, 4),
                  "noise.quantization_m": round(step, 6), "noise.quantization_mode": mode,
                  "noise.max_return_m": round(max_return, 3)}
    fit.evidence["not_observed"] = not_observed
    fit.evidence["hole_fraction"] = round(float(np.mean([1.0 - f.valid.mean() for f in frames])), 4)
    return fit


def hole_statistics(frames: list[Frame], jump_m: float, min_range: float, max_return: float) -> dict:
    """What the sensor model must reproduce: the hole share, the isolated holes' share, the chance that
    a pixel beside a step is missing, and the median gap at far-to-near steps along rows (shadows);
    None for a figure the frames show too little of."""
    dropout, _ = fit_dropout(frames, jump_m, min_range, max_return)
    rows = _steps(frames, 1, jump_m, min_range, max_return)
    cols = _steps(frames, 0, jump_m, min_range, max_return)
    near_to_far = rows.z_first < rows.z_second
    missing, steps = _missing_share(np.concatenate([cols.gap, rows.gap[near_to_far]]))
    far_to_near = ~near_to_far
    return {"hole_fraction": float(np.mean([1.0 - f.valid.mean() for f in frames])),
            "isolated_holes": dropout, "edge_pixel_missing": None if math.isnan(missing) else missing,
            "steps": steps,
            "shadow_gap_px": float(np.median(rows.gap[far_to_near])) if far_to_near.sum() >= MIN_COUNT else None}


def fill_small_holes(depth_m: np.ndarray, iterations: int) -> np.ndarray:
    """The surfaces behind the small holes of a frame: each hole pixel within ``iterations`` pixels of
    a reading takes its farthest valid 4-neighbour's depth (the holes at steps and in shadows lie
    on the far surface), repeatedly; larger no-return regions stay NaN."""
    depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)
    for _ in range(iterations):
        hole = np.isnan(depth)
        if not hole.any():
            break
        padded = np.pad(depth, 1, constant_values=np.nan)
        neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        depth = np.where(hole, np.fmax.reduce(neighbours, axis=0), depth)
    return depth
