"""Latency sweep: success against injected command latency, in the JSON and the report."""

import json

import pytest

pytest.importorskip("pybullet")

from sim2real.eval.evaluate import EvalConfig  # noqa: E402
from sim2real.eval.sweep import parse_latencies, sweep  # noqa: E402


def test_parse_latencies():
    assert parse_latencies("100, 0,50,100") == [0.0, 50.0, 100.0]
    for bad in ("", "a,b", "-5", "nan", "inf"):
        with pytest.raises(ValueError) as info:
            parse_latencies(bad)
        assert "\n" not in str(info.value)


def test_a_latency_as_long_as_the_episode_means_the_robot_never_moves(tmp_path):
    # Tiny episodes last 5 s: a 6 s delay means no command ever takes effect.
    result = sweep("expert", EvalConfig(scenario="tiny", episodes=2, seed=1), [6000, 0],
                   json_out=tmp_path / "sweep.json", report_out=tmp_path / "sweep.html")
    points = result["latency_sweep"]["points"]
    assert [pt["latency_ms"] for pt in points] == [0.0, 6000.0]
    assert points[0]["success_rate"] == 1.0
    assert points[1]["success_rate"] == 0.0 and points[1]["mean_progress_m"] < 0.05 and points[1]["collisions"] == 0
    assert result["injected_latency_ms"] == 0.0 and result["episodes"] == 2   # the headline is the 0 ms run

    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert on_disk["latency_sweep"]["points"] == points
    assert {"success_rate", "episodes", "collisions", "mean_progress_m", "latency_ms", "scenario"} <= set(on_disk)
    page = (tmp_path / "sweep.html").read_text()
    assert "Success against command latency" in page and page.count("data:image/png;base64,") >= 3
    assert "6000" in page
