"""`sim2real suite`: a model and the expert side by side on a suite of scenarios, with intervals.

A suite is a YAML file (``contracts/scenarios/<suite>/suite.yaml``, or a path) listing scenarios,
each with its own evaluation seed, and the episodes per scenario. For each entry the model and
the privileged expert drive the same episodes; the table gives both success rates (95 % Wilson
intervals), the paired difference (95 % Newcombe interval, :mod:`sim2real.eval.compare`), the
episodes the policy failed by turning in place while the expert succeeded, and turn reversals.

``heldout`` is committed before any tuning and never used to tune; ``validation`` is where tuning
happens. Output: ``OUT/<scenario>.policy.json`` and ``.expert.json`` per entry (an expert result
already there for the same scenario, seed and episodes is reused), ``OUT/suite.json`` and
``OUT/suite.md`` (the table for the README).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from sim2real.contracts.evaluation import MAX_EPISODES
from sim2real.contracts.manifest import atomic_path, read_json, write_json_atomic
from sim2real.contracts.scenario import BUILTIN_DIR, load_scenario
from sim2real.eval.compare import paired_difference
from sim2real.eval.evaluate import EvalConfig, evaluate
from sim2real.eval.turns import TURN_IN_PLACE_FAIL_S, failed_turning_in_place

SUITES = ("heldout", "validation")
MARGIN = -0.05      # the goal: each scenario within 5 points of the expert


def load_suite(name_or_path: str) -> dict:
    """The suite's name, episodes per scenario and entries ``{scenario, seed}`` (each scenario loads)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = BUILTIN_DIR / name_or_path / "suite.yaml"
        if not path.exists():
            raise ValueError(f"suite '{name_or_path}' is neither a file nor a built-in "
                             f"(built-ins: {', '.join(SUITES)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"suite {path}: {str(exc).splitlines()[0]}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    episodes = data.get("episodes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"suite {path}: needs a non-empty 'entries' list of {{scenario, seed}}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"suite {path}: 'episodes' must be a whole number from 1 to {MAX_EPISODES}")
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"scenario", "seed"} or not isinstance(entry["seed"], int):
            raise ValueError(f"suite {path}: entries[{k}] must be {{scenario: NAME, seed: INTEGER}}")
        load_scenario(entry["scenario"])
    return {"name": str(data.get("name") or path.parent.name), "episodes": episodes, "entries": entries,
            "path": str(path)}


def _row(entry: dict, policy: dict, expert: dict) -> dict:
    pol = {r["index"]: r for r in policy["per_episode"]}
    exp = {r["index"]: r for r in expert["per_episode"]}
    common = sorted(set(pol) & set(exp))
    paired = paired_difference([pol[i]["success"] for i in common], [exp[i]["success"] for i in common])
    turned = [i for i in common if exp[i]["success"] and failed_turning_in_place(pol[i])]
    return {"scenario": entry["scenario"], "name": policy["scenario"], "seed": entry["seed"], "episodes": len(common),
            "policy": {k: policy[k] for k in ("success_rate", "success_ci95", "collisions", "turn_reversals",
                                              "turn_in_place_failures", "mean_progress_m")},
            "expert": {k: expert[k] for k in ("success_rate", "success_ci95", "collisions", "turn_reversals",
                                              "turn_in_place_failures", "mean_progress_m")},
            "difference": round(paired["difference"], 4), "difference_ci95": [round(v, 4) for v in paired["ci95"]],
            "within_5_points": paired["difference"] >= MARGIN,
            "turned_in_place_where_expert_succeeded": turned}


def markdown(result: dict) -> str:
    """The suite's table (one row per scenario)."""
    lines = [f"| {result['suite']} ({result['episodes']} episodes each, paired) | policy success (95% CI) | "
             f"expert (95% CI) | policy − expert (95% CI) | collisions | turned in place > {TURN_IN_PLACE_FAIL_S:g} s "
             f"(expert succeeded) | turn reversals policy / expert |", "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        p, e = row["policy"], row["expert"]
        lo, hi = row["difference_ci95"]
        turned = len(row["turned_in_place_where_expert_succeeded"])
        lines.append(f"| `{row['scenario']}` (seed {row['seed']}) | **{p['success_rate']:.2f}** "
                     f"({p['success_ci95'][0]:.2f}–{p['success_ci95'][1]:.2f}) | {e['success_rate']:.2f} "
                     f"({e['success_ci95'][0]:.2f}–{e['success_ci95'][1]:.2f}) | {row['difference']:+.2f} "
                     f"({lo:+.2f} … {hi:+.2f}) | {p['collisions']} | {turned} "
                     f"| {p['turn_reversals']} / {e['turn_reversals']} |")
    return "\n".join(lines) + "\n"


def _expert(config: EvalConfig, path: Path) -> dict:
    """The expert on ``config``'s episodes; a result already at ``path`` for the same scenario content,
    seed and episodes is reused (the expert is deterministic), so several models share it."""
    if path.exists():
        try:
            found = read_json(path, "expert result")
        except ValueError:
            found = None
        scenario = load_scenario(config.scenario)
        if isinstance(found, dict) and found.get("policy") == "expert" and found.get("seed") == config.seed \
                and found.get("episodes") == config.episodes and found.get("scenario_sha256") == scenario.sha256():
            return found
    return evaluate("expert", replace(config, failed_bags=None, hysteresis="model"), json_out=path)


def run_suite(model: str, suite: str, out: Path, config: EvalConfig, episodes: int | None = None) -> dict:
    """Evaluate ``model`` and the expert on every entry of ``suite``; write the files in ``out``."""
    spec = load_suite(suite)
    n = episodes or spec["episodes"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in spec["entries"]:
        stem = Path(entry["scenario"]).name
        bags = str(Path(config.failed_bags) / stem) if config.failed_bags else None
        cfg = replace(config, scenario=entry["scenario"], seed=entry["seed"], episodes=n, failed_bags=bags)
        policy = evaluate(model, cfg, json_out=out / f"{stem}.policy.json")
        expert = _expert(cfg, out / f"{stem}.expert.json")
        rows.append(_row(entry, policy, expert))
    result = {"suite": spec["name"], "suite_file": spec["path"], "model": model, "episodes": n,
              "hysteresis": config.hysteresis, "rows": rows}
    write_json_atomic(out / "suite.json", result)
    with atomic_path(out / "suite.md") as tmp:
        Path(tmp).write_text(markdown(result), encoding="utf-8")
    return result
