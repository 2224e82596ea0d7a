"""Evaluation throughput: steps per second and the wall time of an N-episode evaluation with 1 and 2 workers.

The policy is the privileged expert (no model needed), the scenario the default one, the same seed
for every worker count, so the runs differ only in how many processes share the episodes.
``bench_eval_transports`` runs one exported model in-process and through the ROS 2 node (``--policy
ros2``) on the same episodes: what evaluating the shipped node over topics costs per step.
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


def bench_eval_transports(model: str, episodes: int = 10, scenario: str = "default", seed: int = 1000) -> dict:
    """``{"eval_by_policy": {"inprocess" | "ros2": {"steps_per_s", "latency_ms": {p50, p99}, "success_rate"}}}``.

    Both with one ONNX Runtime thread, as the node runs it; ros2 is skipped when rclpy is missing.
    """
    from sim2real.environment import scoped_environ
    from sim2real.eval.evaluate import EvalConfig, evaluate

    transports = ["inprocess"]
    try:
        import rclpy  # noqa: F401

        transports.append("ros2")
    except ImportError:
        pass
    out = {}
    with scoped_environ({"SIM2REAL_ORT_THREADS": "1"}):
        for via in transports:
            result = evaluate(model, EvalConfig(scenario=scenario, episodes=episodes, seed=seed, policy=via),
                              progress=False)
            out[via] = {"steps_per_s": result["steps_per_s"], "success_rate": result["success_rate"],
                        "latency_ms": {k: result["latency_ms"][k] for k in ("p50", "p99")}}
    return {"eval_by_policy": out, "eval_by_policy_episodes": episodes}


def format_rows(results: dict) -> str:
    lines = [f"evaluation: {results['eval_episodes']} episodes of '{results['eval_scenario']}' "
             f"({results['eval_policy']})", f"{'workers':<10}{'wall s':>10}{'steps/s':>10}"]
    for n, seconds in results["eval_wall_s"].items():
        lines.append(f"{n:<10}{seconds:>10.1f}{results['eval_steps_per_s_by_workers'][n]:>10.1f}")
    by_policy = results.get("eval_by_policy")
    if by_policy:
        lines += ["", f"model in the loop, {results['eval_by_policy_episodes']} episodes, 1 worker",
                  f"{'policy':<10}{'steps/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
        lines += [f"{via:<10}{f['steps_per_s']:>10.1f}{f['latency_ms']['p50']:>10.2f}{f['latency_ms']['p99']:>10.2f}"
                  for via, f in by_policy.items()]
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
