"""Sample depth frames: compact encoding, command labels, which frames are kept, and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

from helpers_eval import forward_episode  # noqa: E402
from sim2real.contracts.actions import STOP, Twist  # noqa: E402
from sim2real.eval.evaluate import EvalConfig, evaluate  # noqa: E402
from sim2real.eval.frames import (  # noqa: E402
    MAX_COLLISION_FRAMES,
    MAX_SIDE,
    command_label,
    decode_frame,
    encode_frame,
    frame_steps,
    select_samples,
)


def test_a_frame_round_trips_within_quantisation_and_keeps_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.2, 4.9, (224, 224)).astype(np.float32)
    depth[:10] = np.nan
    frame = encode_frame(depth, 5.0, episode=1, step=4, t_s=0.4, twist=Twist(0.5, 0.0), label="forward")

    back = decode_frame(json.loads(json.dumps(frame)))
    stride = math.ceil(224 / MAX_SIDE)
    assert back.shape == depth[::stride, ::stride].shape and max(back.shape) <= MAX_SIDE
    assert np.isnan(back[:10 // stride]).all()
    valid = ~np.isnan(depth[::stride, ::stride])
    assert np.abs(back[valid] - depth[::stride, ::stride][valid]).max() <= 5.0 / 254 / 2 + 1e-6


@pytest.mark.parametrize("twist, label", [
    (Twist(0.5, 0.0), "forward"), (Twist(0.0, 0.5), "left"), (Twist(0.0, -0.5), "right"), (STOP, "stop"),
    (Twist(0.2, 0.1), "v 0.20 m/s, w 0.10 rad/s"),
])
def test_commands_are_named_by_their_action(twist, label):
    assert command_label(twist, 0.5, 0.5) == label


def test_only_the_first_episodes_keep_regular_frames_and_collisions_are_capped():
    assert frame_steps(0, 300) == {0, 100, 200} and frame_steps(5, 300) == set()
    crash = [[{"episode": i, "step": 7, "collision": True}] for i in range(10)]
    chosen = select_samples([[{"episode": 0, "step": 0, "collision": False}], *crash])
    assert len(chosen) == 1 + MAX_COLLISION_FRAMES and chosen[0]["step"] == 0


def test_a_collision_keeps_the_frame_that_drove_into_it():
    record = forward_episode(index=7)
    assert record["collided"]
    (frame,) = record["_frames"]
    assert frame["collision"] and frame["command"] == "forward" and frame["step"] == record["steps"] - 1


def test_results_carry_sample_frames_and_the_report_shows_them(tmp_path):
    from sim2real.eval.report import write_report

    result = evaluate("spin", EvalConfig(scenario="tiny", episodes=4), progress=False)
    frames = result["sample_frames"]
    assert [(f["episode"], f["step"]) for f in frames] == [(e, s) for e in range(3) for s in (0, 16, 33)]
    assert {f["command"] for f in frames} == {"left"}
    assert all("_frames" not in record for record in result["per_episode"])
    write_report(result, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "What the policy saw" in page and page.count("data:image/png;base64,") == 3
