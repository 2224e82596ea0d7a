"""Queue payloads: JSON round trips, validation with one-line errors, and shard-result aggregation."""

import json
import math

import pytest

from sim2real.jobs.messages import JobSpec, MessageError, Shard, ShardResult, decode, encode

SHA = "ab" * 32


def job(**kw) -> JobSpec:
    fields = dict(job_id="j1", model="expert", model_sha256=None, scenario="tiny", episodes=7, seed=3, shard_size=3)
    fields.update(kw)
    return JobSpec(**fields)


def record(index: int, success: bool = True) -> dict:
    return {"index": index, "success": success, "collided": not success, "progress_m": 1.0 if success else 0.2,
            "path_length_m": 1.5, "steps": 50, "_latencies": [0.1 * (index + 1), 0.2]}


def test_shards_cover_every_episode_once():
    shards = job().shards()
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 7)]
    assert job(episodes=6, shard_size=3).num_shards == 2 and job(episodes=1, shard_size=10).num_shards == 1


@pytest.mark.parametrize("message", [
    job(),
    job(model="models/m.onnx", model_sha256=SHA, latency_ms=120.5, engine="onnxruntime", scenario_sha256=SHA),
    job(model="models/m.onnx", model_sha256=SHA, policy="ros2"),
    Shard(job(), 2, 6, 7),
    ShardResult("j1", 1, "worker-1", [record(3), record(4, False), record(5)], 1.25),
])
def test_round_trip_is_plain_json(message):
    text = encode(message)
    assert isinstance(json.loads(text), dict) and json.loads(text)["schema"] == 1
    assert decode(text, type(message)) == message
    assert decode(text.encode(), type(message)) == message


@pytest.mark.parametrize("kw, fragment", [
    ({"job_id": "has space"}, "job_id"),
    ({"job_id": ""}, "job_id"),
    ({"episodes": 0}, "episodes"),
    ({"episodes": True}, "episodes"),
    ({"shard_size": -1}, "shard_size"),
    ({"latency_ms": math.nan}, "latency_ms"),
    ({"latency_ms": -5.0}, "latency_ms"),
    ({"model": "m.onnx"}, "model_sha256"),
    ({"model": "m.onnx", "model_sha256": "ABC"}, "model_sha256"),
    ({"model_sha256": SHA}, "built-in"),
    ({"scenario": ""}, "non-empty"),
    ({"scenario_sha256": "x"}, "scenario_sha256"),
    ({"model": "m.onnx", "model_sha256": SHA, "policy": "grpc"}, "policy"),
    ({"policy": "ros2"}, "in-process only"),
])
def test_bad_jobs_are_refused_in_one_line(kw, fragment):
    with pytest.raises(MessageError, match=fragment) as info:
        job(**kw)
    assert "\n" not in str(info.value)


def test_a_job_from_before_the_policy_field_runs_in_process():
    data = json.loads(encode(job()))
    del data["policy"]
    assert decode(json.dumps(data), JobSpec).policy == "inprocess"


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(schema=2), "schema"),
    (lambda d: d.update(type="job"), "type"),
    (lambda d: d.pop("index"), "index"),
    (lambda d: d.update(index="0"), "index"),
    (lambda d: d.update(stop=5), r"\[0, 3\)"),
    (lambda d: d.update(index=9), "outside"),
    (lambda d: d["job"].update(seed=1.5), "seed"),
    (lambda d: d["job"].update(episodes=False), "boolean"),
    (lambda d: d["job"].pop("scenario"), "scenario"),
])
def test_bad_shards_are_refused(mutate, fragment):
    data = json.loads(encode(Shard(job(), 0, 0, 3)))
    mutate(data)
    with pytest.raises(MessageError, match=fragment):
        decode(json.dumps(data), Shard)


def test_garbage_is_refused():
    for text in ("", "not json", "[]", "null", '{"schema": 1}'):
        with pytest.raises(MessageError):
            decode(text, Shard)


def test_shard_result_validates_its_records():
    ok = json.loads(encode(ShardResult("j1", 0, "w", [record(0)], 0.5)))
    ok["records"][0].pop("_latencies")
    with pytest.raises(MessageError, match="_latencies"):
        decode(json.dumps(ok), ShardResult)
    with pytest.raises(MessageError, match="records"):
        decode(json.dumps({**ok, "records": [1]}), ShardResult)
    with pytest.raises(MessageError, match="JSON"):
        encode(ShardResult("j1", 0, "w", [{**record(0), "progress_m": math.inf}], 0.5))


def test_shard_result_must_be_exactly_its_episodes():
    shard = Shard(job(), 1, 3, 6)
    ShardResult("j1", 1, "w", [record(5), record(3), record(4)], 1.0).check(shard)
    for indices in ([3, 4], [3, 4, 4], [3, 4, 5, 6], [2, 3, 4]):
        with pytest.raises(MessageError, match="expected 3..5"):
            ShardResult("j1", 1, "w", [record(i) for i in indices], 1.0).check(shard)


class _StoredResults:
    """The two reads ``aggregate`` makes of the queue, over results already in the hash."""

    def __init__(self, results):
        self.results = results

    def shard_results(self, job_id):
        return [decode(encode(r), ShardResult) for r in self.results]

    def timeline(self, job_id):
        return {"submitted_at": 100.0, "started_at": 101.0, "now": 105.0, "reclaimed": 1}


def test_aggregate_has_evaluates_shape_and_counts_each_episode_once():
    from sim2real.contracts.scenario import load_scenario
    from sim2real.eval.evaluate import EvalConfig, summarize
    from sim2real.jobs.queue import aggregate

    spec = job()
    outcomes = [True, False, True, True, True, False, True]
    results = [ShardResult("j1", s.index, f"w{s.index % 2}", [record(i, outcomes[i]) for i in range(s.start, s.stop)],
                           1.0) for s in spec.shards()]
    assert aggregate(_StoredResults(results[:2]), spec) is None          # a shard still missing

    result = aggregate(_StoredResults(results[::-1]), spec)
    config = EvalConfig(scenario="tiny", episodes=7, seed=3, workers=2)
    direct = summarize([record(i, outcomes[i]) for i in range(7)], config, load_scenario("tiny"), model="expert",
                       policy_kind="expert", model_sha256=None, workers=2, wall_s=4.0)
    assert set(result) == set(direct) | {"job_id", "queue"}
    for key in ("success_rate", "success_ci95", "episodes", "successes", "collisions", "mean_progress_m",
                "latency_ms", "scenario", "backend", "seed", "per_episode", "steps", "wall_s"):
        assert result[key] == direct[key], key
    assert result["successes"] == 5 and [ep["index"] for ep in result["per_episode"]] == list(range(7))
    assert result["queue"]["workers"] == ["w0", "w1"] and result["queue"]["reclaimed_shards"] == 1

    wrong = results[:2] + [ShardResult("j1", 2, "w", [record(5)], 1.0)]
    with pytest.raises(MessageError, match="expected 6..6"):
        aggregate(_StoredResults(wrong), spec)
