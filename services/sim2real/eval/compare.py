"""`sim2real compare`: the gate protocol for "no worse than" claims between two evaluations.

Two ``eval.json`` results on the same seeds (policy against expert, or a new model against an old
one) are paired episode by episode. The claim "A is no worse than B by more than ``margin``" holds
when the lower 95 % bound of the paired difference in success rate (A − B) is at or above
``margin`` (−0.05 unless stated). The interval is Newcombe's hybrid score interval for paired
proportions (method 10: Wilson intervals of each rate, combined with the pairs' correlation), which
stays inside [−1, 1] and behaves at rates near 0 and 1 where the normal interval does not.
"""

from __future__ import annotations

import math
from pathlib import Path

from sim2real.contracts.manifest import read_json, write_json_atomic
from sim2real.contracts.scenario import gate_problem
from sim2real.eval.evaluate import WILSON_Z, wilson_interval

DEFAULT_MARGIN = -0.05
MIN_EPISODES = 200


def paired_difference(a: list[bool], b: list[bool], z: float = WILSON_Z) -> dict:
    """Difference of success rates a − b over paired episodes, with its 95 % Newcombe interval."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes need equal, non-zero lengths (got {len(a)} and {len(b)})")
    n = len(a)
    both = sum(x and y for x, y in zip(a, b))
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson_interval(both + only_a, n, z)
    l2, u2 = wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return {"episodes": n, "rate_a": p1, "rate_b": p2, "difference": diff,
            "ci95": [max(-1.0, diff - delta), min(1.0, diff + epsilon)],
            "pairs": {"both": both, "only_a": only_a, "only_b": only_b, "neither": neither}}


def _outcomes(result: dict, source: str) -> dict[int, bool]:
    episodes = result.get("per_episode") if isinstance(result, dict) else None
    if not isinstance(episodes, list) or not episodes:
        raise ValueError(f"{source} has no per_episode records: compare needs the JSON that `sim2real eval --json` writes")
    try:
        return {int(e["index"]): bool(e["success"]) for e in episodes}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{source}: a per_episode record lacks an integer 'index' or a 'success'") from None


def compare(a_path: str | Path, b_path: str | Path, margin: float = DEFAULT_MARGIN,
            min_episodes: int = MIN_EPISODES) -> dict:
    """Pair two eval results by episode index and judge "a is no worse than b by more than margin"."""
    if not (math.isfinite(margin) and -1.0 <= margin <= 0.0):
        raise ValueError(f"--margin must be between -1 and 0, got {margin}")
    a, b = read_json(a_path, "eval result"), read_json(b_path, "eval result")
    out_a, out_b = _outcomes(a, str(a_path)), _outcomes(b, str(b_path))
    for result, source in ((a, a_path), (b, b_path)):
        rules = [result.get(key) for key in ("min_progress_m", "duration_s", "control_hz")]
        problem = gate_problem(*rules) if all(isinstance(v, (int, float)) for v in rules) else None
        if problem:
            raise ValueError(f"{source} cannot enter a gate: {problem}")
    if a.get("seed") != b.get("seed"):
        raise ValueError(f"the results used different seeds ({a.get('seed')} and {b.get('seed')}): "
                         f"episodes only pair on the same seeds")
    common = sorted(set(out_a) & set(out_b))
    if len(common) < min_episodes:
        raise ValueError(f"only {len(common)} paired episodes; the gate protocol needs at least {min_episodes} "
                         f"(evaluate both with --episodes {min_episodes} and the same --seed)")
    stats = paired_difference([out_a[i] for i in common], [out_b[i] for i in common])
    same_scenario = a.get("scenario_sha256") == b.get("scenario_sha256")
    return {"a": {"file": str(a_path), "model": a.get("model"), "scenario": a.get("scenario")},
            "b": {"file": str(b_path), "model": b.get("model"), "scenario": b.get("scenario")},
            "seed": a.get("seed"), "same_scenario": same_scenario, "margin": margin, **stats,
            "holds": stats["ci95"][0] >= margin}


def summary_line(result: dict) -> str:
    lo, hi = result["ci95"]
    verdict = "holds" if result["holds"] else "FAILS"
    note = "" if result["same_scenario"] else " (different scenario files on the same seeds)"
    return (f"a − b = {result['difference']:+.3f} (95% CI {lo:+.3f} … {hi:+.3f}) over {result['episodes']} paired "
            f"episodes, a {result['rate_a']:.3f} vs b {result['rate_b']:.3f}: 'no worse than {result['margin']:+.2f}' "
            f"{verdict}{note}")


def run(a_path: Path, b_path: Path, margin: float, min_episodes: int, json_out: Path | None) -> dict:
    result = compare(a_path, b_path, margin, min_episodes)
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result
