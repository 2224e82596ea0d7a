"""Closed-loop evaluation in PyBullet: the success metric, the result JSON, the gate, the report."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

from helpers_eval import ForwardPolicy, forward_episode  # noqa: E402
from helpers_models import tiny_model  # noqa: E402
from sim2real.contracts.actions import FORWARD, STOP, twist_for  # noqa: E402
from sim2real.contracts.scenario import load_scenario  # noqa: E402
from sim2real.eval.evaluate import EvalConfig, evaluate, gate, run_episode, wilson_interval  # noqa: E402
from sim2real.eval.policies import ExpertPolicy, ModelPolicyAdapter, Policy, SpinPolicy, make_policy  # noqa: E402
from sim2real.sim.pybullet_backend import PybulletBackend  # noqa: E402

REQUIRED = {"success_rate", "success_ci95", "episodes", "successes", "collisions", "mean_progress_m",
            "latency_ms", "model_sha256", "model", "policy", "scenario", "scenario_sha256", "backend",
            "seed", "steps_per_s", "wall_s", "per_episode", "turn_reversals", "episodes_with_turn_reversals",
            "turn_in_place_failures", "turn_in_place_fail_s", "hysteresis"}
PER_EPISODE = {"index", "success", "collided", "progress_m", "path_length_m", "steps", "trajectory",
               "collision_point", "obstacles", "latency_ms_mean", "latency_ms_p99", "turn_reversals",
               "longest_turn_in_place_s", "physics"}


def tiny(episodes: int, **kw) -> EvalConfig:
    return EvalConfig(scenario="tiny", episodes=episodes, **kw)


@pytest.fixture(scope="module")
def expert_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    result = evaluate("expert", tiny(8), json_out=out / "expert.json", report_out=out / "report.html",
                      progress=False)
    return result, out


def test_spin_never_collides_and_always_fails():
    result = evaluate("spin", tiny(4), progress=False)
    assert result["success_rate"] == 0.0 and result["successes"] == 0
    assert result["collisions"] == 0
    assert result["mean_progress_m"] < 0.05
    assert result["policy"] == "spin" and result["model_sha256"] is None
    assert all(ep["steps"] == 50 for ep in result["per_episode"])   # 5 s at 10 Hz, no early stop


def test_expert_succeeds_on_most_tiny_episodes(expert_result):
    result, _ = expert_result
    assert result["success_rate"] >= 0.7
    assert result["collisions"] == 0


def test_result_json_has_every_field(expert_result):
    result, out = expert_result
    on_disk = json.loads((out / "expert.json").read_text())
    assert REQUIRED <= set(on_disk)
    assert on_disk["episodes"] == 8 and on_disk["scenario"] == "tiny" and on_disk["backend"] == "pybullet"
    assert on_disk["scenario_sha256"] == load_scenario("tiny").sha256()
    assert set(on_disk["latency_ms"]) == {"p50", "p99", "mean"}
    lo, hi = on_disk["success_ci95"]
    assert 0.0 <= lo <= on_disk["success_rate"] <= hi <= 1.0
    assert [ep["index"] for ep in on_disk["per_episode"]] == list(range(8))
    for ep in on_disk["per_episode"]:
        assert PER_EPISODE <= set(ep)
        assert ep["success"] == (not ep["collided"] and ep["progress_m"] >= 0.5)
        assert ep["path_length_m"] >= ep["progress_m"] - 1e-6
        assert len(ep["trajectory"]) >= 2 and len(ep["trajectory"][0]) == 2
        start, end = ep["trajectory"][0], ep["trajectory"][-1]
        assert math.dist(start, end) == pytest.approx(ep["progress_m"], abs=0.01)


def test_report_is_self_contained_html_with_a_trajectory_png(expert_result):
    _, out = expert_result
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") >= 2
    assert "http" not in page.split("<body>")[1]          # nothing fetched from elsewhere
    png = (out / "report_trajectories.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_compares_side_by_side(expert_result, tmp_path):
    from sim2real.eval.report import write_report

    result, _ = expert_result
    spin = evaluate("spin", tiny(2), progress=False)
    write_report(spin, tmp_path / "r.html", compare=result)
    page = (tmp_path / "r.html").read_text()
    assert "expert (ceiling)" in page and "spin" in page
    assert "Turn reversals (left↔right, no forward between)" in page and "<th>turn reversals</th>" in page
    assert spin["per_episode"][0]["longest_turn_in_place_s"] == pytest.approx(5.0)    # all 50 steps turn left
    assert spin["turn_reversals"] == 0


def test_each_episode_records_its_arena_and_the_report_draws_every_size(tmp_path):
    from sim2real.eval.report import write_report

    scenario = tmp_path / "rooms.yaml"
    scenario.write_text("name: rooms\narena:\n  size_range_m: [[3.0, 6.0], [3.0, 6.0]]\n"
                        "obstacles:\n  count: [1, 2]\ncamera:\n  width: 64\n  height: 64\n"
                        "episode:\n  duration_s: 2.0\n")
    result = evaluate("spin", EvalConfig(scenario=str(scenario), episodes=3), progress=False)
    sizes = [tuple(ep["arena_size_m"]) for ep in result["per_episode"]]
    assert len(set(sizes)) == 3 and all(3.0 <= side <= 6.0 for size in sizes for side in size)
    write_report(result, tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") >= 2


def test_same_seed_same_episodes_and_workers_do_not_change_results():
    one = evaluate("expert", tiny(3, seed=7), progress=False)
    two = evaluate("expert", tiny(3, seed=7, workers=2), progress=False)
    keep = ("index", "success", "collided", "progress_m", "steps", "trajectory", "obstacles")
    assert [{k: ep[k] for k in keep} for ep in one["per_episode"]] == \
           [{k: ep[k] for k in keep} for ep in two["per_episode"]]
    assert two["workers"] == 2


def test_driving_straight_stops_at_the_first_collision():
    ep = forward_episode(index=0)
    assert ep["collided"] and not ep["success"]
    assert ep["steps"] < 200 and ep["collision_point"] is not None
    assert ep["progress_m"] == pytest.approx(ep["path_length_m"], rel=0.02)   # a straight line


class _Stopped(Policy):
    """Answers with a zero Twist, as the ROS 2 node's fail-safe does."""

    kind = "stopped"

    def command(self, depth, pose, world, robot):
        return STOP


def test_zero_twist_commands_are_counted_and_the_robot_stays_put():
    scenario = load_scenario("tiny")
    backend = PybulletBackend(scenario)
    try:
        stopped = run_episode(backend, _Stopped(), scenario, seed=3, index=0)
        spinning = run_episode(backend, SpinPolicy(), scenario, seed=3, index=0)
    finally:
        backend.close()
    assert stopped["stop_commands"] == stopped["steps"] == 50 and stopped["path_length_m"] < 0.01
    assert spinning["stop_commands"] == 0


def test_the_default_command_is_the_robots_twist_for_the_action():
    robot = load_scenario("tiny").robot
    assert ForwardPolicy().command(None, None, None, robot) == twist_for(FORWARD, robot.forward_speed_mps,
                                                                    robot.turn_rate_radps)


def test_injected_latency_still_runs_whole_episodes():
    result = evaluate("spin", tiny(1, latency_ms=150.0), progress=False)
    assert result["per_episode"][0]["steps"] == 50 and result["injected_latency_ms"] == 150.0


def test_gate():
    assert gate({"success_rate": 0.5}, None) == 0
    assert gate({"success_rate": 0.9, "success_ci95": [0.8, 0.95], "episodes": 100}, 0.8) == 0
    assert gate({"success_rate": 0.8}, 0.8) == 0


def test_gate_fails_below_threshold_with_one_line(capsys):
    assert gate({"success_rate": 0.5, "success_ci95": [0.3, 0.7], "episodes": 10}, 0.8) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0.8" in err


@pytest.mark.parametrize("config, error", [
    (tiny(0), ValueError),
    (tiny(-3), ValueError),
    (EvalConfig(scenario="tiny", episodes=2, backend="no-such-sim"), ValueError),
    (EvalConfig(scenario="no-such-scenario", episodes=2), ValueError),
    (tiny(2, workers=0), ValueError),
    (tiny(2, policy="grpc"), ValueError),
])
def test_bad_config_is_a_clear_error(config, error):
    with pytest.raises(error) as info:
        evaluate("spin", config, progress=False)
    assert "\n" not in str(info.value)


def test_missing_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        evaluate(tmp_path / "nope.onnx", tiny(1), progress=False)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(95, 100)
    assert lo == pytest.approx(0.8882, abs=1e-3) and hi == pytest.approx(0.9785, abs=1e-3)


def test_make_policy_names():
    assert isinstance(make_policy("expert"), ExpertPolicy)
    assert isinstance(make_policy("spin"), SpinPolicy)


@pytest.mark.parametrize("model, via, fragment", [
    ("expert", "ros2", "in-process only"),
    ("spin", "ros2", "in-process only"),
    ("expert", "grpc", "unknown policy transport"),
])
def test_the_ros2_transport_serves_model_files_only(model, via, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        make_policy(model, via=via)
    assert "\n" not in str(info.value)


def test_a_missing_model_fails_before_any_node_starts(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        make_policy(tmp_path / "nope.onnx", via="ros2")


def test_a_model_file_is_evaluated_with_its_sha_and_latency(tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_model(tmp_path)
    policy = make_policy(model)
    assert isinstance(policy, ModelPolicyAdapter)
    action = policy.act(np.full((64, 64), 3.0, np.float32), None, None)
    assert action == FORWARD and policy.last_latency_ms > 0
    result = evaluate(model, tiny(2), progress=False)
    assert result["policy"] == "model" and result["model"] == str(model)
    assert result["model_sha256"] == policy.sha256 and len(result["model_sha256"]) == 64
    assert result["latency_ms"]["p50"] > 0
    assert result["left_right_ties"] == sum(r["left_right_ties"] for r in result["per_episode"]) >= 0
