"""Shadow mode without ROS: the command labelling, the agreement window and the refused outputs."""

from __future__ import annotations

import math

import pytest
from sim2real.contracts.actions import FORWARD, LEFT, RIGHT, CommandThresholds, command_class, twist_for
from sim2real.runtime.node import NodeParams
from sim2real.runtime.params_file import read_params_file
from sim2real.runtime.shadow import ShadowAgreement


@pytest.mark.parametrize("linear, angular, want", [
    (0.5, 0.0, FORWARD), (0.3, 0.4, LEFT), (0.3, -0.4, RIGHT), (0.0, 0.3, LEFT), (0.0, -0.299, None),
    (0.3, 0.2, FORWARD),
    (0.04, 0.0, None), (-0.4, 0.0, None), (0.0, 0.0, None), (math.nan, 0.0, None), (0.5, math.inf, None),
])
def test_a_command_means_a_class_turns_first(linear, angular, want):
    assert command_class(linear, angular) == want


def test_the_policys_own_twists_map_back_to_their_actions():
    for action in (FORWARD, LEFT, RIGHT):
        twist = twist_for(action)
        assert command_class(twist.linear_x, twist.angular_z) == action


def test_thresholds_are_checked_and_move_the_boundary():
    assert command_class(0.0, 0.3, CommandThresholds(angular_z=0.4)) is None
    assert command_class(0.0, 0.2, CommandThresholds(angular_z=0.15)) == LEFT
    assert command_class(0.1, 0.0, CommandThresholds(linear_x=0.2)) is None
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="angular_z"):
            CommandThresholds(angular_z=bad)


def _drive(agreement: ShadowAgreement, seconds: float, driver: tuple[float, float], policy, start: float,
           rate_hz: float = 10.0) -> float:
    """The driver commands ``driver`` at 20 Hz and the policy decides ``policy`` at ``rate_hz``."""
    t = start
    steps = int(round(seconds * 20))
    for i in range(steps):
        agreement.teleop(t, *driver)
        if i % int(20 / rate_hz) == 0:
            agreement.policy(t, policy)
        t += 0.05
    return t


def test_agreement_counts_moving_frames_and_the_window_forgets():
    shadow = ShadowAgreement(window_s=2.0, lag_s=0.2, max_age_s=0.5)
    t = _drive(shadow, 2.0, (0.4, 0.0), FORWARD, 0.0)
    first = shadow.summary(t)
    assert first["agreement"] == 1.0 and first["unsafe"] == 0 and first["compared"] >= 15
    t = _drive(shadow, 3.0, (0.0, 0.5), FORWARD, t)     # the driver turns left, the policy goes on
    later = shadow.summary(t)
    assert later["agreement"] == 0.0 and later["unsafe"] == later["compared"] > 0
    assert later["driver_classes"]["left"] == later["compared"]


def test_stopped_driver_is_left_out_of_agreement_but_forward_then_is_unsafe():
    shadow = ShadowAgreement(window_s=10.0, lag_s=0.0, max_age_s=0.5)
    t = _drive(shadow, 1.0, (0.0, -0.5), RIGHT, 0.0)
    t = _drive(shadow, 1.0, (0.0, 0.0), FORWARD, t)
    figures = shadow.summary(t + 1.0)
    assert figures["agreement"] == 1.0
    assert figures["driver_stopped"] == figures["unsafe"] > 0
    assert figures["unsafe_rate"] == pytest.approx(figures["unsafe"] / (figures["compared"] + figures["unsafe"]))


def test_the_driver_is_read_after_the_lag_and_old_commands_do_not_count():
    shadow = ShadowAgreement(window_s=10.0, lag_s=0.3, max_age_s=0.2)
    shadow.teleop(0.0, 0.0, 0.5)          # left, until the driver turns right at 0.25 s
    shadow.teleop(0.25, 0.0, -0.5)
    shadow.policy(0.0, RIGHT)             # compared with the command in effect at 0.3 s: right
    assert shadow.summary(0.2)["decisions"] == 0, "not settled before the lag has passed"
    assert shadow.summary(0.31)["agreement"] == 1.0
    shadow.policy(1.0, LEFT)              # the driver's last command is 1.05 s old at 1.3 s
    figures = shadow.summary(2.0)
    assert figures["no_teleop"] == 1 and figures["compared"] == 1


def test_a_policy_stop_while_the_driver_moves_is_a_disagreement():
    shadow = ShadowAgreement(window_s=10.0, lag_s=0.0)
    t = _drive(shadow, 1.0, (0.4, 0.0), None, 0.0)
    figures = shadow.summary(t)
    assert figures["agreement"] == 0.0 and figures["policy_stopped"] == figures["compared"] > 0


@pytest.mark.parametrize("values", [
    {"window_s": 0.0}, {"window_s": math.inf}, {"lag_s": -0.1}, {"max_age_s": math.nan},
])
def test_bad_shadow_settings_are_refused(values):
    with pytest.raises(ValueError, match="shadow"):
        ShadowAgreement(**values)


@pytest.mark.parametrize("values", [
    {"shadow_topic": "/cmd_vel"}, {"shadow_topic": "cmd_vel"}, {"shadow_topic": "/robot/cmd_vel"},
    {"shadow_topic": "/drive", "teleop_topic": "/drive"}, {"cmd_vel_topic": "/robot/cmd_vel",
                                                           "shadow_topic": "robot/cmd_vel"},
])
def test_shadow_output_on_a_command_topic_is_refused(values):
    params = NodeParams(model_path="m", shadow=True, **{"teleop_topic": "/robot/cmd_vel", **values})
    with pytest.raises(ValueError, match="--shadow publishes nothing the robot obeys"):
        params.validate()
    NodeParams(model_path="m", **values).validate()      # outside shadow mode the topic is not shadow's


def test_a_params_file_cannot_turn_shadow_onto_cmd_vel(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("/**/sim2real_policy:\n  ros__parameters:\n    shadow: true\n    shadow_topic: /cmd_vel\n")
    params = NodeParams(model_path="m", **read_params_file(site))
    with pytest.raises(ValueError, match="resolves to /cmd_vel"):
        params.validate()


def test_remapping_is_seen_through_the_resolver():
    params = NodeParams(model_path="m", shadow=True)
    params.validate()
    remapped = {"/sim2real/shadow/cmd_vel": "/cmd_vel"}
    with pytest.raises(ValueError, match="resolves to /cmd_vel"):
        params.check_shadow_output(lambda name: remapped.get("/" + name.lstrip("/"), "/" + name.lstrip("/")))


def test_deploy_checks_shadow_node_args_as_the_node_does():
    from sim2real.runtime.cli import serve_overrides

    overrides = serve_overrides(["--shadow", "--ros-args", "-p", "shadow_topic:=/cmd_vel"])
    assert overrides["shadow"] is True
    with pytest.raises(ValueError, match="resolves to /cmd_vel"):
        NodeParams(model_path="m", **overrides).validate()
    NodeParams(model_path="m", **serve_overrides(["--shadow", "--teleop-topic", "/joy/cmd_vel"])).validate()
