"""`sim2real calibrate`: fit the scenario's sensor model to a recording and write a scenario overlay.

The overlay names its base scenario (``base:``) and sets the fitted values: ``noise`` (what
evaluation uses), ``camera.min_range_m`` (the effective minimum range; it is also the near end of
a model's depth scaling) and, for data generation, the matching ``randomization`` ranges: each
fitted value ± ``spread`` (0: exactly the fitted value). Any verb takes the overlay as its
``--scenario``. It is written atomically, after it has been loaded back as a valid scenario; on
any error nothing is written.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import yaml

from sim2real.calibrate.fit import fit_noise
from sim2real.calibrate.recording import MAX_FRAMES, bag_sha256, read_depth_frames
from sim2real.contracts.manifest import atomic_path, write_json_atomic
from sim2real.contracts.scenario import BUILTIN_DIR, Scenario, load_scenario, merge_overlay, parse_scenario
from sim2real.progress import progress_bar

# randomization key → (fitted value's key, highest value it may take)
RANDOMIZED = {"stereo_sigma_per_m2": ("noise.stereo_sigma_per_m2", 1.0), "dropout": ("noise.dropout", 1.0),
              "edge_hole_prob": ("noise.edge_hole_prob", 1.0),
              "shadow_baseline_m": ("noise.shadow_baseline_m", 0.5),
              "quantization_m": ("noise.quantization_m", 0.5), "min_range_m": ("camera.min_range_m", 100.0),
              "max_return_m": ("noise.max_return_m", 20.0)}


def _base_reference(scenario: str, out: Path) -> str:
    """How the overlay names its base: a built-in's name, else the file relative to the overlay's folder."""
    path = Path(scenario)
    if not path.suffix and not path.exists() and (BUILTIN_DIR / f"{scenario}.yaml").exists():
        return scenario
    return os.path.relpath(path.resolve(), out.resolve().parent)


def overlay_for(values: dict, base: Scenario, spread: float) -> dict:
    """The overlay's keys for ``values`` (``section.key`` → value) over ``base``."""
    overlay: dict = {"name": f"{base.name}-calibrated"[:100]}
    for dotted, value in values.items():
        section, key = dotted.split(".")
        overlay.setdefault(section, {})[key] = value
    randomization = {}
    for key, (dotted, highest) in RANDOMIZED.items():
        value = values[dotted]
        low, high = value * (1 - spread), min(value * (1 + spread), highest)
        if key == "min_range_m":
            high = min(high, 0.99 * base.camera.max_range_m)
        randomization[key] = [round(low, 6), round(high, 6)]
    overlay["randomization"] = randomization
    return overlay


def calibrate(bag: Path, out: Path, scenario: str = "default", *, image_topic: str = "/camera/depth/image_raw",
              camera_info_topic: str = "/camera/depth/camera_info", spread: float = 0.25,
              json_out: Path | None = None, seed: int = 0, max_frames: int = MAX_FRAMES) -> dict:
    """Fit the sensor model to ``bag``, write the overlay to ``out``; return the fit's report."""
    if not 0.0 <= spread < 1.0:
        raise ValueError(f"--spread must be within [0, 1), got {spread}")
    if max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the overlay's file name (e.g. calibrated.yaml)")
    base = load_scenario(scenario)
    bar = progress_bar(desc="calibrate: reading", unit="frames")
    try:
        frames = read_depth_frames(bag, image_topic, camera_info_topic, progress=bar, max_frames=max_frames)
    except BaseException:
        bar.disable = True      # the error is the last word, not a progress line
        raise
    finally:
        bar.close()
    fit = fit_noise(frames, base, seed=seed)
    overlay = overlay_for(fit.values, base, spread)
    merged = parse_scenario(merge_overlay(base.to_dict(), overlay), f"overlay for {out}")
    report = {"bag": str(bag), "bag_sha256": bag_sha256(Path(bag)), "frames": len(frames),
              "image_topic": image_topic, "base": scenario, "out": str(out), "fitted": fit.values,
              "evidence": fit.evidence, "scenario_sha256": merged.sha256()}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (f"# sim2real calibrate, {stamp}: the sensor model fitted to {len(frames)} frames of\n"
              f"# {bag} (sha256 {report['bag_sha256']}), over the scenario '{scenario}'.\n"
              f"# Use it as any verb's --scenario. How each value was found: sim2real calibrate --json.\n")
    document = {"base": _base_reference(scenario, out), **overlay}
    text = header + yaml.safe_dump(document, sort_keys=False)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    if json_out is not None:
        write_json_atomic(json_out, report)
    return report


def main_report(report: dict) -> str:
    """The one JSON line ``calibrate`` prints."""
    return json.dumps({"out": report["out"], "frames": report["frames"], "fitted": report["fitted"],
                       "not_observed": report["evidence"]["not_observed"]})
