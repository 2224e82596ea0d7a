"""The gate protocol: paired episodes, Newcombe's interval, and the compare verb's exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim2real.cli import main
from sim2real.eval.compare import compare, paired_difference


def _result(path, successes, seed=5000, sha="s" * 64):
    path.write_text(json.dumps({"seed": seed, "scenario_sha256": sha, "model": path.stem,
                                "per_episode": [{"index": i, "success": s} for i, s in enumerate(successes)]}))
    return path


def test_identical_outcomes_give_zero_with_a_tight_interval():
    stats = paired_difference([True] * 180 + [False] * 20, [True] * 180 + [False] * 20)
    assert stats["difference"] == 0.0 and -0.02 < stats["ci95"][0] < 0.0 < stats["ci95"][1] < 0.02
    assert stats["pairs"] == {"both": 180, "only_a": 0, "only_b": 0, "neither": 20}


def test_interval_is_close_to_the_paired_wald_interval_at_large_n():
    rng = np.random.default_rng(0)
    a = rng.random(5000) < 0.8
    b = np.where(rng.random(5000) < 0.7, a, rng.random(5000) < 0.75)
    stats = paired_difference(a.tolist(), b.tolist())
    d = a.astype(float) - b.astype(float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert stats["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], abs=0.003)


def test_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """200 paired episodes with correlated outcomes, true difference -0.025."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        old = rng.random(200) < 0.9
        new = np.where(rng.random(200) < 0.5, old, rng.random(200) < 0.85)   # P(new) = 0.875
        lo, hi = paired_difference(new.tolist(), old.tolist())["ci95"]
        covered += lo <= -0.025 <= hi
    assert 0.93 <= covered / 2000 <= 0.98


def test_unequal_or_empty_pairs_are_refused():
    with pytest.raises(ValueError, match="equal, non-zero lengths"):
        paired_difference([True], [])


def test_pairing_is_by_index_and_needs_the_same_seed(tmp_path):
    a = _result(tmp_path / "a.json", [True] * 200)
    b = _result(tmp_path / "b.json", [True] * 190 + [False] * 10)
    result = compare(a, b)
    assert result["holds"] and result["difference"] == pytest.approx(0.05) and result["same_scenario"]
    with pytest.raises(ValueError, match="different seeds"):
        compare(a, _result(tmp_path / "c.json", [True] * 200, seed=1))
    with pytest.raises(ValueError, match="only 100 paired episodes; the gate protocol needs at least 200"):
        compare(a, _result(tmp_path / "d.json", [True] * 100))


def test_cli_exit_code_follows_the_verdict(tmp_path, capsys):
    good = _result(tmp_path / "good.json", [True] * 190 + [False] * 10)
    worse = _result(tmp_path / "worse.json", [True] * 160 + [False] * 40)
    assert main(["compare", str(good), str(worse), "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads(capsys.readouterr().out)["holds"] is True
    assert main(["compare", str(worse), str(good)]) == 1
    captured = capsys.readouterr()
    assert "FAILS" in captured.err and captured.err.count("\n") == 1
    assert json.loads((tmp_path / "c.json").read_text())["pairs"]["only_a"] == 30
    assert main(["compare", str(good), str(tmp_path / "missing.json")]) == 2
    assert "eval result not found" in capsys.readouterr().err
