"""No dithering: turn reversals are counted, and the turn hysteresis commits to a turn until the way is clear."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from helpers_models import depth_scene, tiny_model
from sim2real.contracts import hysteresis, model_contract
from sim2real.contracts.actions import FORWARD, LEFT, MIRROR, RIGHT, Twist
from sim2real.contracts.hysteresis import HysteresisParams, TurnHysteresis
from sim2real.contracts.manifest import read_manifest
from sim2real.eval.turns import failed_turning_in_place, longest_turn_in_place_steps, turn_reversals
from sim2real.runtime.node import DepthToTwist, NodeParams
from sim2real.runtime.policy import ModelPolicy
from sim2real.runtime.ros_image import encode_depth, fill_image_msg

F, L, R, S = Twist(0.5, 0.0), Twist(0.0, 0.5), Twist(0.0, -0.5), Twist(0.0, 0.0)


def test_a_reversal_is_left_right_with_no_forward_between():
    assert turn_reversals([L, R, L, R]) == 3
    assert turn_reversals([L, S, R]) == 1                    # a stop does not separate them
    assert turn_reversals([L, F, R, F, L]) == 0
    assert turn_reversals([L, L, L, F, R, R]) == 0
    assert longest_turn_in_place_steps([F, L, R, L, F, S, S, F, R, R]) == 3
    assert longest_turn_in_place_steps([S, S, S]) == 0       # standing still is not turning
    record = {"success": False, "collided": False, "longest_turn_in_place_s": 5.1}
    assert failed_turning_in_place(record)
    assert not failed_turning_in_place({**record, "longest_turn_in_place_s": 4.9})
    assert not failed_turning_in_place({**record, "collided": True})


def logit(action: int, margin: float = 1.0) -> list[float]:
    values = [0.0, 0.0, 0.0]
    values[action] = margin
    return values


TIE = [0.0, 1.0, 1.0]


def run(params: HysteresisParams, sequence) -> list[int]:
    layer = TurnHysteresis(params)
    return [layer.step(x)[0] for x in sequence]


def test_a_committed_turn_holds_until_forward_is_chosen_k_times():
    seq = [logit(LEFT), logit(RIGHT), logit(LEFT), logit(FORWARD), logit(RIGHT), logit(FORWARD), logit(FORWARD),
           logit(RIGHT), logit(FORWARD)]
    assert run(hysteresis.OFF, seq) == [LEFT, RIGHT, LEFT, FORWARD, RIGHT, FORWARD, FORWARD, RIGHT, FORWARD]
    assert run(HysteresisParams(clear_steps=1), seq) == [LEFT, LEFT, LEFT, FORWARD, RIGHT, FORWARD, FORWARD,
                                                         RIGHT, FORWARD]
    assert run(HysteresisParams(clear_steps=2), seq) == [LEFT, LEFT, LEFT, LEFT, LEFT, LEFT, FORWARD, RIGHT, RIGHT]
    # A forward choice below the probability threshold does not clear the way.
    weak = [logit(LEFT), [1.0, 0.9, 0.9], [1.0, 0.9, 0.9], [3.0, 0.0, 0.0]]
    assert run(HysteresisParams(clear_steps=1, min_forward_prob=0.6), weak) == [LEFT, LEFT, LEFT, FORWARD]
    layer = TurnHysteresis(HysteresisParams(clear_steps=3))
    layer.step(logit(RIGHT))
    layer.reset()
    assert layer.step(logit(LEFT))[0] == LEFT


def mirror(logits):
    return [logits[MIRROR[i]] for i in range(3)]


@pytest.mark.parametrize("params", [HysteresisParams(1), HysteresisParams(2), HysteresisParams(3, 0.4), hysteresis.OFF])
def test_mirror_equivariant_over_sequences(params):
    rng = np.random.default_rng(0)
    for _ in range(300):
        seq = [list(rng.normal(size=3)) for _ in range(int(rng.integers(1, 30)))]
        assert run(params, [mirror(x) for x in seq]) == [MIRROR[a] for a in run(params, seq)]
    # Every sequence of strict choices, exhaustively up to length 6.
    for seq in itertools.product([logit(FORWARD), logit(LEFT), logit(RIGHT)], repeat=6):
        assert run(params, [mirror(x) for x in seq]) == [MIRROR[a] for a in run(params, seq)]


def test_the_tie_rule_is_the_one_asymmetry():
    params = HysteresisParams(2)
    # A tie while committed keeps the committed side, in the sequence and its mirror alike.
    seq = [logit(RIGHT), TIE, TIE, logit(FORWARD), logit(FORWARD)]
    assert run(params, seq) == [RIGHT, RIGHT, RIGHT, RIGHT, FORWARD]
    assert run(params, [mirror(x) for x in seq]) == [LEFT, LEFT, LEFT, LEFT, FORWARD]
    # An uncommitted tie resolves to LEFT (choose's rule) in both, and is reported as a tie; after it
    # the two runs are the same (the mirror of the tie is the tie itself).
    layer = TurnHysteresis(params)
    assert layer.step(TIE) == (LEFT, True)
    seq = [TIE, logit(RIGHT), logit(FORWARD), logit(FORWARD)]
    assert run(params, seq) == run(params, [mirror(x) for x in seq]) == [LEFT, LEFT, LEFT, FORWARD]


def test_parameters_are_bounded_and_overrides_parse():
    for bad in (dict(clear_steps=-1), dict(clear_steps=51), dict(clear_steps=1.5), dict(min_forward_prob=1.2)):
        with pytest.raises(ValueError, match="hysteresis"):
            HysteresisParams(**bad)
    model = HysteresisParams(3, 0.5)
    assert hysteresis.parse("model", model) is model
    assert hysteresis.parse("off", model) == hysteresis.OFF
    assert hysteresis.parse("2,0.7", model) == HysteresisParams(2, 0.7)
    with pytest.raises(ValueError, match="'model', 'off' or K"):
        hysteresis.parse("sometimes", model)


def msg(kind: str, t: float):
    image = fill_image_msg(SimpleNamespace(header=SimpleNamespace(stamp=None, frame_id="")),
                           encode_depth(depth_scene(kind), "32FC1"))
    image.header.stamp = SimpleNamespace(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
    return image


def test_the_model_carries_its_hysteresis_and_the_node_runs_it(tmp_path):
    path = tiny_model(tmp_path, runtime=HysteresisParams(2))
    manifest = read_manifest(path)
    assert manifest["runtime"] == {"version": 1, "hysteresis": {"clear_steps": 2, "min_forward_prob": 0.0}}
    policy = ModelPolicy(path)
    assert policy.hysteresis == HysteresisParams(2)
    node = DepthToTwist(policy, NodeParams(model_path=str(path)), lambda *_: None)
    # Obstacle on the right: turn left; then the obstacle appears on the left: keep turning left.
    kinds = ["obstacle_right", "obstacle_left", "obstacle_left", "open", "open", "obstacle_left"]
    actions = [node.handle(msg(k, 0.1 * i)).angular_z for i, k in enumerate(kinds)]
    assert actions == [0.5, 0.5, 0.5, 0.5, 0.0, -0.5]
    # A stamp that goes back (a new run) forgets the committed side; so does a gap beyond the watchdog.
    node.handle(msg("obstacle_right", 5.0))
    assert node.handle(msg("obstacle_left", 0.0)).angular_z == -0.5
    assert node.handle(msg("obstacle_right", 10.0)).angular_z == 0.5
    off = DepthToTwist(policy, NodeParams(model_path=str(path), hysteresis="off"), lambda *_: None)
    assert [off.handle(msg(k, 0.1 * i)).angular_z for i, k in enumerate(kinds)] == [0.5, -0.5, -0.5, 0, 0, -0.5]


def test_an_edited_runtime_block_is_refused(tmp_path):
    path = tiny_model(tmp_path, runtime=HysteresisParams(2))
    manifest_file = path.parent / f"{path.name}.manifest.json"
    import json

    manifest = json.loads(manifest_file.read_text())
    manifest["runtime"]["hysteresis"]["clear_steps"] = 5
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(model_contract.ModelContractError, match="runtime.hysteresis.clear_steps"):
        ModelPolicy(path)
    del manifest["runtime"]
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(model_contract.ModelContractError, match="says runtime = '<absent>'"):
        ModelPolicy(path)
