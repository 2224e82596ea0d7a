"""The whole pipeline through the real CLI on a tiny setting: datagen → train → export → eval."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED_FIELDS = {"success_rate", "episodes", "collisions", "mean_progress_m", "latency_ms",
                   "model_sha256", "scenario", "backend"}


def sim2real(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim2real", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path):
    # Trained enough for margins (validation accuracy about 0.8) and 100 held-out images, so the INT8
    # gate at 0.9 gives the same verdict whichever CPU trained and checked it.
    proc = sim2real("run", "--scenario", "tiny", "--num", "1000", "--epochs", "4", "--input-size", "32",
                    "--episodes", "3", "--workers", "1", "--min-int8-agreement", "0.9",
                    "--artifacts", str(tmp_path / "artifacts"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    latest = tmp_path / "artifacts" / "latest"
    assert latest.is_symlink() and latest.resolve().parent == (tmp_path / "artifacts" / "runs").resolve()

    result = json.loads((latest / "eval.json").read_text())
    assert REQUIRED_FIELDS <= set(result)
    assert result["episodes"] == 3 and result["backend"] == "pybullet" and result["scenario"] == "tiny"
    assert {"p50", "p99"} <= set(result["latency_ms"])
    assert 0.0 <= result["expert"]["success_rate"] <= 1.0

    model_manifest = json.loads(next((latest / "model").glob("model.int8.onnx.manifest.json")).read_text())
    assert model_manifest["int8_agreement"]["images"] == 100 and model_manifest["int8_agreement"]["required"] == 0.9
    assert result["model_sha256"] == model_manifest["sha256"]
    checkpoint_manifest = json.loads((latest / "train" / "checkpoint.pt.manifest.json").read_text())
    dataset_manifest = latest / "dataset" / "manifest.json"
    from sim2real.contracts.manifest import sha256_file

    assert checkpoint_manifest["inputs"]["dataset"] == sha256_file(dataset_manifest), "lineage: checkpoint → dataset"
    assert model_manifest["inputs"]["checkpoint"] == checkpoint_manifest["sha256"], "lineage: model → checkpoint"
    report = (latest / "report.html").read_text()
    assert "data:image/png;base64," in report


def test_run_rejects_bad_input_with_one_line_and_leaves_nothing(tmp_path):
    proc = sim2real("run", "--scenario", "no-such-scenario", "--artifacts", str(tmp_path / "a"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no-such-scenario" in proc.stderr
    assert not (tmp_path / "a").exists()


def test_eval_gate_exit_code_follows_min_success(tmp_path):
    args = ["eval", "--model", "spin", "--scenario", "tiny", "--episodes", "2", "--json", str(tmp_path / "r.json")]
    assert sim2real(*args, cwd=tmp_path).returncode == 0
    failed = sim2real(*args, "--min-success", "0.5", cwd=tmp_path)
    assert failed.returncode == 1 and "below" in failed.stderr
    assert json.loads((tmp_path / "r.json").read_text())["success_rate"] == 0.0


def test_a_failed_run_is_marked_and_latest_is_untouched(tmp_path, monkeypatch):
    from sim2real.pipeline import PipelineConfig, run_pipeline
    from sim2real.train import trainer

    def broken_train(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(trainer, "train", broken_train)
    artifacts = tmp_path / "artifacts"
    config = PipelineConfig(scenario="tiny", num_images=8, workers=1, artifacts=artifacts, run_id="r1",
                            progress=False)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_pipeline(config)

    assert sorted(p.name for p in (artifacts / "runs").iterdir()) == ["r1.failed"]
    failed = json.loads((artifacts / "runs" / "r1.failed" / "failed.json").read_text())
    assert failed["stage"] == "train" and failed["error"] == "RuntimeError: out of memory"
    assert "datagen" in failed["stage_seconds"] and (artifacts / "runs" / "r1.failed" / "dataset").is_dir()
    assert not (artifacts / "latest").exists()
    with pytest.raises(ValueError, match="already exists"):
        run_pipeline(config)
