"""Property-based tests (hypothesis) of the three parsers that take input from outside.

For any input: the scenario schema, the queue's message decoding and the ROS image decoding each
give a clear one-line error of their own type, or a valid result. Never another exception, and
never a hang: every example must finish within a generous deadline, which catches a hang, not a
slow machine.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from helpers_models import depth_scene, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim2real.contracts.actions import STOP
from sim2real.contracts.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from sim2real.jobs.messages import JobSpec, MessageError, Shard, ShardResult, decode, encode
from sim2real.runtime.node import DepthToTwist, NodeParams
from sim2real.runtime.ros_image import ENCODINGS, ImageError, RawImage, decode_depth, encode_depth

pytestmark = pytest.mark.timeout(600)
FAST = settings(max_examples=200, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JSON = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
NUMBER = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0, -1, 1e308, -1e308, 1e-300, 2**63, 0.001]))


def one_line(exc: BaseException) -> bool:
    return bool(str(exc)) and "\n" not in str(exc)


# ----------------------------------------------------------------------------- the scenario schema
BASE = load_scenario("tiny").to_dict()
PATHS = [(section, key) for section, body in BASE.items() if isinstance(body, dict) for key in body]


def _near(value):
    """Numbers around ``value`` (often valid), or like it in shape: a number, a pair, a pair of pairs."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return JSON
    if isinstance(value, (int, float)):
        return st.one_of(st.floats(0, 2 * abs(value) + 1), st.integers(0, 2 * int(abs(value)) + 2), NUMBER)
    if isinstance(value, list):
        return st.one_of(st.tuples(*map(_near, value)).map(list), st.lists(NUMBER, max_size=3))
    return JSON


def _number_or_pair(value):
    return st.one_of(_near(value), _near(value), _near(value), JSON)


@st.composite
def scenarios(draw) -> dict:
    """The tiny scenario with a few keys replaced by numbers, pairs or any JSON, dropped or misspelt."""
    data = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        section, key = draw(st.sampled_from(PATHS))
        action = draw(st.sampled_from(["replace"] * 6 + ["drop", "unknown"]))
        if action == "drop":
            data[section].pop(key, None)
        elif action == "unknown":
            data[section][key + "_x"] = draw(JSON)
        else:
            data[section][key] = draw(_number_or_pair(BASE[section][key]))
    if draw(st.integers(0, 3)) == 0:
        data[draw(st.sampled_from(["name", "seed", "extra"]))] = draw(JSON)
    return data


@FAST
@given(scenarios())
def test_scenario_schema_gives_a_bounded_scenario_or_one_line_naming_a_key(data):
    try:
        scenario = parse_scenario(data, "fuzz.yaml")
    except ScenarioError as exc:
        assert one_line(exc) and str(exc).startswith("scenario fuzz.yaml: ")
        return
    assert isinstance(scenario, Scenario)
    assert 1 <= scenario.episode.steps <= 600 * 200
    from sim2real.sim.world import sample_world

    world = sample_world(scenario, np.random.default_rng(0))        # finishes: bounded counts and sizes
    assert len(world.obstacles) <= scenario.obstacles.count[1] + scenario.arena.partitions.count[1]
    assert all(math.isfinite(v) for o in world.obstacles for v in (o.x, o.y, o.yaw, *o.size, o.height))


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["[" * 50_000, "{a: " * 20_000, "&a [*a]", "name: x\narena: &a {size_m: *a}\n",
                                  "name: !!python/object:os.system x", "\x00",
                                  "name: x\nepisode: {duration_s: .nan}"])))
def test_any_scenario_file_loads_or_is_one_clear_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("scenario") / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert one_line(exc)


# ----------------------------------------------------------------------------- queue messages
VALID_SHARD = json.loads(encode(Shard(JobSpec(job_id="j1", model="expert", model_sha256=None, scenario="tiny",
                                              episodes=5, shard_size=2), 1, 2, 4)))


@st.composite
def shard_payloads(draw) -> str:
    """A valid shard with some fields (at any depth) replaced, removed or added, as JSON text."""
    data = json.loads(json.dumps(VALID_SHARD))
    for _ in range(draw(st.integers(1, 3))):
        nested = isinstance(data.get("job"), dict) and draw(st.booleans())
        target = data["job"] if nested else data
        key = draw(st.sampled_from(sorted(target) + ["extra"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(st.one_of(JSON, NUMBER))
    return json.dumps(data)


@FAST
@given(st.one_of(shard_payloads(), st.text(max_size=200), JSON.map(json.dumps)))
def test_queue_message_decoding_gives_a_shard_or_one_message_error(text):
    try:
        shard = decode(text, Shard)
    except MessageError as exc:
        assert one_line(exc)
        return
    assert isinstance(shard, Shard) and 0 <= shard.start < shard.stop <= shard.job.episodes
    assert decode(encode(shard), Shard) == shard


@FAST
@given(st.dictionaries(st.sampled_from(["shard", "job_id", "other"]),
                       st.one_of(shard_payloads(), st.text(max_size=80), JSON.map(json.dumps)), max_size=3))
def test_a_stream_entry_of_any_shape_becomes_a_shard_or_a_reason(fields):
    from sim2real.jobs.messages import valid_job_id
    from sim2real.jobs.queue import Queue

    entry = Queue("redis://127.0.0.1:1/0")._entry("s", "1-0", fields)     # decoding only: no connection
    assert (entry.shard is None) != (entry.error is None)
    assert entry.job_id is None or valid_job_id(entry.job_id)


@FAST
@given(JSON)
def test_shard_results_decode_or_fail_in_one_line(data):
    try:
        ShardResult.from_dict(data)
    except MessageError as exc:
        assert one_line(exc)


# ----------------------------------------------------------------------------- ROS images
@st.composite
def raw_images(draw) -> RawImage:
    """Images whose fields agree (any size, padding, byte order), or whose fields are anything."""
    encoding = draw(st.sampled_from([*ENCODINGS, "rgb8", "32FC2", "", "16uc1"]) | st.text(max_size=8))
    if draw(st.booleans()):
        height, width, pad = draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(0, 5))
        size = {"32FC1": 4, "16UC1": 2}.get(encoding, draw(st.integers(1, 4)))
        step = width * size + pad
        data = draw(st.binary(min_size=height * step, max_size=height * step))
    else:
        height, width = draw(st.integers(-3, 2**32)), draw(st.integers(-3, 2**32))
        step = draw(st.integers(-3, 2**34))
        data = draw(st.binary(max_size=512))
    return RawImage(height=height, width=width, encoding=encoding, is_bigendian=draw(st.integers(0, 1)),
                    step=step, data=data)


@FAST
@given(raw_images())
def test_ros_image_decoding_gives_depth_or_one_image_error(msg):
    try:
        depth = decode_depth(msg)
    except ImageError as exc:
        assert one_line(exc)
        return
    assert depth.shape == (msg.height, msg.width) and depth.dtype == np.float32


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(ENCODINGS), st.booleans(), st.integers(0, 7),
       st.floats(0.05, 20.0))
def test_encoded_depth_decodes_back(height, width, encoding, big_endian, padding, scale):
    depth = (np.random.default_rng(height * 41 + width).random((height, width)) * scale).astype(np.float32)
    back = decode_depth(encode_depth(depth, encoding, big_endian=big_endian, row_padding=padding))
    valid = depth > (0 if encoding == "32FC1" else 0.0005)
    tolerance = 0 if encoding == "32FC1" else 0.0005 + 1e-6     # millimetres, rounded
    assert np.allclose(back[valid], depth[valid], atol=tolerance, rtol=0)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from sim2real.runtime.policy import ModelPolicy

    policy = ModelPolicy(tiny_model(tmp_path_factory.mktemp("model")))
    return DepthToTwist(policy, NodeParams(model_path="m"), lambda *_: None)


@FAST
@given(raw_images())
def test_the_node_answers_any_image_with_a_finite_command_inside_the_envelope(pipeline, msg):
    twist = pipeline.handle(msg)
    assert math.isfinite(twist.linear_x) and math.isfinite(twist.angular_z)
    assert pipeline.envelope.allows(twist)
    if pipeline.last_reason is not None:
        assert twist == STOP


def test_the_node_answers_a_real_scene_with_a_move(pipeline):
    """The properties above are not satisfied by a node that only ever stops."""
    assert pipeline.handle(encode_depth(depth_scene("open"))) != STOP
