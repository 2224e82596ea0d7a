"""Root causes 4 and 5 (scenarios): values without upper bounds, degenerate arenas, meaningless gates.

Cases 1-8 of the adversarial list, through the real CLI entry point (`sim2real.cli.main`): each is
one `sim2real <verb>: error:` line naming the key, exit 2, before any work and with nothing
written. The bounds themselves are documented in docs/scenarios.md, generated from the schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sim2real.cli import main
from sim2real.contracts.scenario import MIN_GATE_STEPS, bounds_table, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, body: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return str(path)


def refused(capsys, argv: list[str], key: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sim2real {argv[0]}: error: "), err
    assert key in lines[0], err
    return lines[0]


@pytest.mark.parametrize("case, body, key", [
    (1, "arena:\n  size_m: [2.0, 2.0]\nobstacles:\n  count: [500, 500]\n", "'obstacles.count': 500 is above 100"),
    (1, "arena:\n  size_m: [2.0, 2.0]\nobstacles:\n  count: [10, 10]\n", "'obstacles.count': 10 obstacles"),
    (2, "obstacles:\n  count: [1000000000, 1000000000]\n", "'obstacles.count': 1000000000 is above 100"),
    ("15a", "arena:\n  size_m: [5.0, 5.0]\nobstacles:\n  count: [2, 4]\n  people:\n    count: [30, 30]\n",
     "'obstacles.people.count': 30 people"),
    ("15b", "obstacles:\n  shapes: [table]\n  table:\n    height_m: [0.3, 0.5]\n    drive_under: true\n",
     "'obstacles.table.height_m': with drive_under"),
    ("15c", "obstacles:\n  shapes: [box, sofa]\n", "'obstacles.shapes': unknown kind 'sofa'"),
])
def test_datagen_refuses_scenarios_it_cannot_honour_and_writes_nothing(capsys, tmp_path, case, body, key):
    scenario = write(tmp_path, f"case{case}", body)
    refused(capsys, ["datagen", "--scenario", scenario, "--num", "10", "--out", str(tmp_path / "data"),
                     "--no-progress"], key)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("case, body, key", [
    (3, "obstacles:\n  count: [1000000000, 1000000000]\n", "'obstacles.count'"),
    (4, "episode:\n  duration_s: 1.0e+300\n", "'episode.duration_s': Input should be less than or equal to 600"),
    (5, "arena:\n  size_m: [1.0e+308, 1.0e+308]\n", "'arena.size_m.0': Input should be less than or equal to 100"),
    (6, "arena:\n  size_m: [.inf, .nan]\n", "'arena.size_m.0': Input should be a finite number"),
    (7, "episode:\n  duration_s: 0.001\n", "'episode.duration_s': 0.001 s at 10.0 Hz is no control step"),
])
def test_eval_refuses_unbounded_or_empty_episodes(capsys, tmp_path, case, body, key):
    scenario = write(tmp_path, f"case{case}", body)
    refused(capsys, ["eval", "--model", "expert", "--scenario", scenario, "--episodes", "1",
                     "--json", str(tmp_path / "eval.json")], key)
    assert not (tmp_path / "eval.json").exists()


def test_a_gate_refuses_a_scenario_that_cannot_tell_a_policy_from_standing_still(capsys, tmp_path):
    """Case 8: with `min_progress_m: 0` the spinning policy passed `--min-success 1`."""
    no_progress = write(tmp_path, "case8", "episode:\n  min_progress_m: 0\n")
    refused(capsys, ["eval", "--model", "spin", "--scenario", no_progress, "--min-success", "1"],
            "episode.min_progress_m is 0")
    refused(capsys, ["submit", "--model", "spin", "--scenario", no_progress, "--wait", "--min-success", "1",
                     "--redis", "redis://127.0.0.1:1/0"], "episode.min_progress_m is 0")
    refused(capsys, ["run", "--scenario", no_progress, "--min-success", "0.5", "--artifacts", str(tmp_path / "a")],
            "episode.min_progress_m is 0")
    assert not (tmp_path / "a").exists()
    results = []
    for name in ("spin", "expert"):
        results.append(tmp_path / f"{name}.json")
        results[-1].write_text(json.dumps({"per_episode": [{"index": 0, "success": True}], "seed": 1000,
                                           "min_progress_m": 0.0, "duration_s": 20.0, "control_hz": 10.0}))
    refused(capsys, ["compare", str(results[0]), str(results[1])], "episode.min_progress_m is 0")
    short = write(tmp_path, "short", "episode:\n  duration_s: 0.5\n")
    refused(capsys, ["eval", "--model", "spin", "--scenario", short, "--min-success", "0.5"],
            f"gives 5 control steps per episode; a gate needs at least {MIN_GATE_STEPS}")
    refused(capsys, ["eval", "--model", "spin", "--scenario", "tiny", "--min-success", "1.5"],
            "--min-success must be a fraction between 0 and 1")
    # Without a gate the same scenario runs, and the spinning policy fails the tiny scenario's gate.
    assert main(["eval", "--model", "spin", "--scenario", short, "--episodes", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", "spin", "--scenario", "tiny", "--episodes", "2", "--min-success", "0.5"]) == 1


def test_every_number_has_an_upper_bound_and_the_docs_list_them():
    rows = bounds_table()
    assert len(rows) > 50
    assert all(high not in ("", None) for _, _, high in rows), [row for row in rows if not row[2]]
    for name in ("default", "tiny"):
        load_scenario(name)
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    table = [tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
             for line in docs.splitlines() if re.match(r"^\| `[a-z0-9_.]+` \|", line)]
    assert table == rows, "docs/scenarios.md's bounds table differs from the schema: regenerate it " \
                          "(python -m sim2real.contracts.scenario --bounds)"
