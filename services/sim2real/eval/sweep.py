"""Success rate against command latency: the "never control from the cloud" argument, measured.

``sweep`` evaluates the same model on the same episodes (same seed) once per injected latency:
each command takes effect ``latency_ms`` after the observation it answers (``EvalConfig.latency_ms``),
as if the policy ran on a server a network round trip away. The report plots success (with its 95%
interval) and collisions against latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sim2real.contracts.manifest import write_json_atomic
from sim2real.eval.evaluate import EvalConfig, evaluate

DEFAULT_LATENCIES_MS = (0.0, 50.0, 100.0, 200.0, 400.0)
_POINT_KEYS = ("success_rate", "success_ci95", "successes", "episodes", "collisions", "mean_progress_m")


def parse_latencies(text: str) -> list[float]:
    """``"0,50,100"`` → ``[0.0, 50.0, 100.0]``; each a finite number ≥ 0; sorted, duplicates dropped."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"latencies must be comma-separated numbers of ms (got {text!r})") from None
    return check_latencies(values)


def check_latencies(values: Sequence[float]) -> list[float]:
    if not values:
        raise ValueError("a latency sweep needs at least one latency")
    bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"latencies must be finite and at least 0 ms (got {bad[0]!r})")
    return sorted({float(v) for v in values})


def sweep(model: str | Path, config: EvalConfig, latencies_ms: Sequence[float] = DEFAULT_LATENCIES_MS,
          json_out: Path | None = None, report_out: Path | None = None, progress: bool = False) -> dict:
    """Evaluate ``model`` at each latency on the same episodes.

    Returns (and writes to ``json_out``) the lowest-latency result, the usual fields, with the sweep
    under ``latency_sweep`` (``points``: one per latency). The report is that result's report with
    the sweep's plot and table added.
    """
    latencies = check_latencies(latencies_ms)
    points, baseline = [], None
    for latency in latencies:
        result = evaluate(model, replace(config, latency_ms=latency), progress=progress)
        baseline = baseline or result
        points.append({"latency_ms": latency, **{k: result[k] for k in _POINT_KEYS},
                       "collision_rate": round(result["collisions"] / result["episodes"], 4)})
    summary = {"points": points, "model": baseline["model"], "model_sha256": baseline["model_sha256"],
               "policy": baseline["policy"], "scenario": baseline["scenario"], "backend": baseline["backend"],
               "seed": baseline["seed"], "episodes": baseline["episodes"]}
    out = {**baseline, "latency_sweep": summary}
    if json_out is not None:
        write_json_atomic(json_out, out)
    if report_out is not None:
        from sim2real.eval.report import write_report

        write_report(baseline, Path(report_out), sweep=summary)
    return out
