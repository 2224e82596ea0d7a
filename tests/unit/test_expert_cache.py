"""The expert's result is reused across runs, keyed by what it depends on, never by a model."""

import json
import shutil
from dataclasses import replace

import pytest

pytest.importorskip("pybullet")

from sim2real import cli
from sim2real.eval import evaluate as evaluate_module
from sim2real.eval import expert_cache
from sim2real.eval.evaluate import EvalConfig
from sim2real.eval.expert_cache import (
    cache_key,
    evaluate_expert,
    key_fields,
    sources_sha256,
)

KEEP = ("index", "success", "collided", "progress_m", "steps", "trajectory")


def tiny(**kw) -> EvalConfig:
    return EvalConfig(scenario="tiny", episodes=2, seed=3, **kw)


@pytest.fixture
def counted(monkeypatch):
    """Counts the evaluations that really run."""
    calls = []
    real = evaluate_module.evaluate

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", counting)
    return calls


def episodes(result: dict) -> list[dict]:
    return [{k: ep[k] for k in KEEP} for ep in result["per_episode"]]


def test_miss_then_hit_gives_the_same_result_without_evaluating(tmp_path, counted, capsys):
    first = evaluate_expert(tiny(), tmp_path, json_out=tmp_path / "a.json", progress=False)
    second = evaluate_expert(tiny(), tmp_path, json_out=tmp_path / "b.json", progress=False)
    assert counted == ["expert"]
    assert first["cache"]["hit"] is False and second["cache"]["hit"] is True
    assert episodes(first) == episodes(second) and first["success_rate"] == second["success_rate"]
    assert json.loads((tmp_path / "b.json").read_text())["cache"]["hit"] is True
    assert "reused from" in capsys.readouterr().err
    evaluate_expert(replace(tiny(), workers=2), tmp_path, progress=False)   # workers do not change the result
    assert counted == ["expert"]


def test_without_a_cache_dir_it_always_evaluates(tmp_path, counted):
    evaluate_expert(tiny(), None, progress=False)
    evaluate_expert(tiny(), None, progress=False)
    assert counted == ["expert", "expert"]


@pytest.mark.parametrize("change", [{"seed": 4}, {"episodes": 3}, {"scenario": "default"}, {"latency_ms": 50.0}])
def test_the_key_changes_with_what_the_result_depends_on(change):
    assert cache_key(key_fields(tiny())) != cache_key(key_fields(replace(tiny(), **change)))


def test_the_key_ignores_what_the_result_does_not_depend_on():
    assert cache_key(key_fields(tiny())) == cache_key(key_fields(replace(tiny(), workers=2, engine="onnxruntime")))


def test_the_key_names_the_simulator_build_not_the_package_version():
    fields = key_fields(tiny())
    assert fields["simulator"]["module"] == "pybullet" and len(fields["simulator"]["file_sha256"]) == 64
    assert "sim2real" not in json.dumps(fields)


def test_a_backend_without_a_simulator_identity_is_not_cached(tmp_path):
    assert key_fields(replace(tiny(), backend="gazebo")) is None
    assert key_fields(replace(tiny(), policy="ros2")) is None


@pytest.mark.parametrize("edit", ["sim/expert.py", "sim/pybullet_backend.py", "contracts/scenarios/tiny.yaml",
                                  "eval/evaluate.py"])
def test_the_source_hash_changes_when_a_source_file_does(tmp_path, edit):
    root = tmp_path / "sim2real"
    shutil.copytree(expert_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = sources_sha256(root)
    (root / "train" / "model.py").write_text("# not an expert source\n")
    assert sources_sha256(root) == before
    with open(root / edit, "a") as handle:
        handle.write("\n# edited\n")
    assert sources_sha256(root) != before


@pytest.mark.parametrize("content", ["{not json", json.dumps({"key": "other", "result": {}}), json.dumps([1, 2])])
def test_a_corrupt_entry_is_ignored_with_one_line_and_rewritten(tmp_path, counted, capsys, content):
    key = cache_key(key_fields(tiny()))
    entry = tmp_path / expert_cache.SUBDIR / f"{key}.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(content)
    result = evaluate_expert(tiny(), tmp_path, progress=False)
    assert counted == ["expert"] and result["cache"]["hit"] is False
    lines = [line for line in capsys.readouterr().err.splitlines() if "corrupt expert cache entry" in line]
    assert len(lines) == 1 and str(entry) in lines[0]
    assert json.loads(entry.read_text())["key"] == key
    assert evaluate_expert(tiny(), tmp_path, progress=False)["cache"]["hit"] is True


def test_cli_uses_the_cache_dir_and_no_cache_stores_nothing(tmp_path, monkeypatch, counted):
    monkeypatch.setenv("SIM2REAL_CACHE_DIR", str(tmp_path / "env-cache"))
    args = ["eval", "--model", "expert", "--scenario", "tiny", "--episodes", "1"]
    assert cli.main(args + ["--no-cache"]) == 0
    assert not (tmp_path / "env-cache").exists()
    assert cli.main(args) == 0
    assert len(list((tmp_path / "env-cache" / expert_cache.SUBDIR).glob("*.json"))) == 1
    assert cli.main(args + ["--cache-dir", str(tmp_path / "flag-cache")]) == 0
    assert len(list((tmp_path / "flag-cache" / expert_cache.SUBDIR).glob("*.json"))) == 1
    assert cli.main(args) == 0
    assert counted == ["expert"] * 3


def test_an_unwritable_cache_dir_is_one_line_not_a_failure(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = evaluate_expert(tiny(), blocker, progress=False)
    assert result["episodes"] == 2 and "could not store the expert result" in capsys.readouterr().err


def test_a_second_run_reuses_the_expert_and_says_so(tmp_path, monkeypatch, counted):
    """`sim2real run` twice: the expert is evaluated once (datagen, training and export stubbed out,
    the learned policy stood in for by `spin`; the expert and the cache are real)."""
    from sim2real.datagen import generate
    from sim2real.export import exporter
    from sim2real.pipeline import PipelineConfig, run_pipeline
    from sim2real.train import trainer

    real = evaluate_module.evaluate
    monkeypatch.setattr(generate, "generate", lambda *a, **k: None)
    monkeypatch.setattr(trainer, "train", lambda data, out, *a, **k: out / "checkpoint.pt")
    monkeypatch.setattr(exporter, "export", lambda checkpoint, out, **k: {"int8": out / "model.int8.onnx"})
    monkeypatch.setattr(evaluate_module, "evaluate",
                        lambda model, *a, **k: real("expert" if model == "expert" else "spin", *a, **k))
    runs = []
    for run_id in ("r1", "r2"):
        run_pipeline(PipelineConfig(scenario="tiny", episodes=2, workers=1, artifacts=tmp_path / "a", run_id=run_id,
                                    progress=False, cache_dir=tmp_path / "cache"))
        run_dir = tmp_path / "a" / "runs" / run_id
        runs.append((json.loads((run_dir / "run.json").read_text()),
                     json.loads((run_dir / "eval_expert.json").read_text())))
    assert counted.count("expert") == 1
    assert [r["expert_cached"] for r, _ in runs] == [False, True]
    assert episodes(runs[0][1]) == episodes(runs[1][1])
