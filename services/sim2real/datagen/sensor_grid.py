"""One scene under each depth sensor model, side by side: the figure in docs/datagen.md.

``sim2real datagen --sensor-grid docs/img/sensor_models.png [--scenario default]`` or
``python -m sim2real.datagen.sensor_grid OUT.png``. Each model is shown alone at the high end of
the scenario's randomization range (or its nominal value when it has no range, or a demonstration
value when both are 0), then all of them together; the lower row shows what each changed against
the ideal image (error in metres, invalid pixels in magenta).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from sim2real.contracts.manifest import atomic_path
from sim2real.contracts.scenario import Scenario, load_scenario
from sim2real.sim import registry
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample, Obstacle, Pose2D, World, nominal_camera

# Shown when the scenario leaves a model off and has no range for it.
DEMO = {"stereo_sigma_per_m2": 0.01, "edge_hole_prob": 0.5, "shadow_baseline_m": 0.05,
        "quantization_m": 0.006, "dropout": 0.03, "min_range_m": 0.2, "max_return_m": 4.0}


def demo_world() -> World:
    """A 9 m x 6 m room with tall walls and one obstacle of each shape 0.8-2.5 m ahead of the camera."""
    return World((9.0, 6.0), 3.5, 0.1, [
        Obstacle("box", 1.2, 0.6, 0.5, (0.25, 0.2), 0.6, "box"),
        Obstacle("cylinder", 1.9, -0.75, 0.0, (0.3, 0.3), 0.9, "cylinder"),
        Obstacle("cylinder", 0.9, -0.1, 0.0, (0.04, 0.04), 1.5, "pole"),
        Obstacle("box", 2.6, 0.2, 1.2, (0.7, 0.05), 0.5, "wall"),
        Obstacle("box", 2.0, 2.2, 0.0, (2.5, 0.05), 1.0, "partition"),
    ])


def _value(scenario: Scenario, name: str, source: str) -> float:
    rng_range = getattr(scenario.randomization, name, None)
    if rng_range is not None and rng_range[1] > 0:
        return float(rng_range[1] if name != "max_return_m" else rng_range[0])
    nominal = getattr(scenario.noise if source == "noise" else scenario.camera, name)
    return float(nominal) if nominal and name != "min_range_m" else DEMO[name]


def panels(scenario: Scenario) -> list[tuple[str, CameraSample]]:
    """(title, camera) for: ideal, each model alone, all together."""
    base = dataclasses.replace(nominal_camera(scenario), stereo_sigma_per_m2=0.0, dropout=0.0, edge_hole_prob=0.0,
                               shadow_baseline_m=0.0, quantization_m=0.0,
                               min_range_m=0.01, max_return_m=0.0)
    models = [
        ("stereo noise", {"stereo_sigma_per_m2": _value(scenario, "stereo_sigma_per_m2", "noise")},
         "σ = {stereo_sigma_per_m2:g}·z² m"),
        ("edge holes", {"edge_hole_prob": _value(scenario, "edge_hole_prob", "noise")}, "p = {edge_hole_prob:g}"),
        ("stereo shadows", {"shadow_baseline_m": _value(scenario, "shadow_baseline_m", "noise")},
         "baseline {shadow_baseline_m:g} m"),
        ("quantisation", {"quantization_m": _value(scenario, "quantization_m", "noise")},
         scenario.noise.quantization_mode + ", {quantization_m:g} m at 1 m"),
        ("min range / reach", {"min_range_m": _value(scenario, "min_range_m", "camera"),
                               "max_return_m": _value(scenario, "max_return_m", "noise")},
         "no return below {min_range_m:g} m, beyond {max_return_m:g} m"),
        ("dropout", {"dropout": _value(scenario, "dropout", "noise")}, "p = {dropout:g}"),
    ]
    out = [("ideal", "", base)]
    combined = {}
    for title, values, label in models:
        out.append((title, label.format(**values), dataclasses.replace(base, **values)))
        combined.update(values)
    out.append(("all together", "", dataclasses.replace(base, **combined)))
    return [(f"{title}\n{label}" if label else title, camera) for title, label, camera in out]


def write_sensor_grid(scenario: str | Path | Scenario, out: Path, seed: int = 0, backend: str = "mujoco") -> Path:
    """Render the grid to ``out`` (PNG, written atomically); return ``out``."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    sim = registry.create(backend, spec)
    try:
        sim.load(demo_world())
        pose = Pose2D(-0.2, 0.0, math.radians(3.0))
        cells = panels(spec)
        ideal_camera = cells[0][1]
        ideal = sim.render_ideal(pose, ideal_camera)
        images = [apply_sensor_model(ideal, spec.camera, camera, np.random.default_rng([seed, k]))
                  for k, (_, camera) in enumerate(cells)]
    finally:
        sim.close()
    cmap = colormaps["viridis"].with_extremes(bad="magenta")
    err_cmap = colormaps["coolwarm"].with_extremes(bad="magenta")
    cols = len(cells)
    fig = Figure(figsize=(2.1 * cols, 5.0), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    depth_im = err_im = None
    for k, ((title, _), image) in enumerate(zip(cells, images)):
        depth_im = axes[0, k].imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=0.0, vmax=spec.camera.max_range_m)
        axes[0, k].set_title(title, fontsize=8)
        error = np.ma.masked_invalid(image - ideal)
        err_im = axes[1, k].imshow(error, cmap=err_cmap, vmin=-0.1, vmax=0.1)
        invalid = 100.0 * float(np.mean(~np.isfinite(image)))
        axes[1, k].set_title(f"invalid {invalid:.1f} %", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.colorbar(depth_im, ax=axes[0].tolist(), shrink=0.8, label="z-depth (m)")
    fig.colorbar(err_im, ax=axes[1].tolist(), shrink=0.8, label="minus ideal (m)")
    fig.suptitle(f"{spec.name}: one scene under each depth sensor model (magenta = invalid: 0 in 16UC1, "
                 f"NaN in 32FC1)", fontsize=10)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_sensor_grid(args.scenario, Path(args.out), seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
