"""Evaluation throughput: steps per second and the wall time of an N-episode evaluation with 1 and 2 workers.

The policy is the privileged expert (no model needed), the scenario the default one, the same seed
for every worker count, so the runs differ only in how many processes share the episodes.
"""

from __future__ import annotations

import argparse
import json
import sys

WORKER_COUNTS = (1, 2)


def bench_eval_wall(episodes: int = 100, scenario: str = "default", workers: tuple[int, ...] = WORKER_COUNTS,
                    seed: int = 1000) -> dict:
    """``{"eval_steps_per_s", "eval_wall_s": {"1": s, "2": s}, "eval_steps_per_s_by_workers", ...}``."""
    from sim2real.eval.evaluate import EvalConfig, evaluate

    wall, rate = {}, {}
    for n in workers:
        result = evaluate("expert", EvalConfig(scenario=scenario, episodes=episodes, seed=seed, workers=n),
                          progress=False)
        wall[str(n)] = result["wall_s"]
        rate[str(n)] = round(result["steps_per_s"], 1)
    out = {"eval_steps_per_s": rate[str(workers[0])], "eval_wall_s": wall, "eval_steps_per_s_by_workers": rate,
           "eval_episodes": episodes, "eval_scenario": scenario, "eval_policy": "expert"}
    if "1" in wall and "2" in wall:
        out["eval_speedup_2_workers"] = round(wall["1"] / wall["2"], 2)
    return out


def format_rows(results: dict) -> str:
    lines = [f"evaluation: {results['eval_episodes']} episodes of '{results['eval_scenario']}' "
             f"({results['eval_policy']})", f"{'workers':<10}{'wall s':>10}{'steps/s':>10}"]
    for n, seconds in results["eval_wall_s"].items():
        lines.append(f"{n:<10}{seconds:>10.1f}{results['eval_steps_per_s_by_workers'][n]:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--scenario", default="default")
    args = parser.parse_args(argv)
    results = bench_eval_wall(args.episodes, args.scenario)
    print(format_rows(results), file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
