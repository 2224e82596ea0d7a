"""The exporter: ONNX parity with PyTorch, INT8 agreement and its gate, and loading by the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from helpers_data import make_toy_dataset
from sim2real.contracts.actions import ACTIONS, RIGHT
from sim2real.contracts.manifest import read_manifest, sha256_file, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, preprocess
from sim2real.export.exporter import INT8_NAME, INT8_TRT_NAME, ONNX_NAME, export
from sim2real.runtime.policy import ModelPolicy
from sim2real.train.trainer import TrainConfig, load_checkpoint, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    data = make_toy_dataset(tmp_path_factory.mktemp("toy") / "data")
    config = TrainConfig(epochs=2, batch_size=32, input_size=32, threads=1)
    return train(data, tmp_path_factory.mktemp("run"), config, progress=False)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> dict[str, Path]:
    return export(checkpoint, tmp_path_factory.mktemp("export"), min_int8_agreement=0.9, progress=False)


def test_fp32_onnx_matches_pytorch(checkpoint, exported):
    path = exported["onnx"]
    assert path.name == ONNX_NAME
    onnx.checker.check_model(str(path))
    manifest = read_manifest(path)
    ckpt = read_manifest(checkpoint)
    assert manifest["kind"] == "onnx-model" and manifest["precision"] == "fp32" and manifest["opset"] == 17
    assert manifest["inputs"] == {"checkpoint": ckpt["sha256"], "dataset": ckpt["inputs"]["dataset"],
                                  "scenario": "x" * 64}
    assert manifest["preprocessing"] == ckpt["preprocessing"] and manifest["actions"] == ckpt["actions"]
    parity = manifest["parity"]
    assert parity["top1_agreement"] >= 0.99 and parity["max_abs_diff"] <= 1e-3
    assert parity["images"] == manifest["checks"]["held_out_images"] == 24
    assert manifest["checks"]["held_out"] == "validation split"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["depth"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = np.random.default_rng(0).random((5, 1, 32, 32), dtype=np.float32)
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"depth": x})[0], expected, atol=1e-4)


def test_int8_agreement_is_recorded(exported):
    for key, name in (("int8", INT8_NAME), ("int8_trt", INT8_TRT_NAME)):
        assert exported[key].name == name
        manifest = read_manifest(exported[key])
        assert manifest["precision"] == "int8" and manifest["quantization"]["format"] == "QDQ"
        assert manifest["int8_agreement"]["images"] == 24
        assert 0.9 <= manifest["int8_agreement"]["top1_agreement"] <= 1.0
        ops = {node.op_type for node in onnx.load(str(exported[key])).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_runtime_policy_loads_every_export(exported):
    depth = np.full((64, 64), 4.0, np.float32)
    depth[10:, :20] = 0.6
    fp32 = ModelPolicy(exported["onnx"])
    spec = PreprocessSpec.from_dict(fp32.manifest["preprocessing"])
    assert fp32.engine.infer(preprocess(depth, spec)[None, None]).shape == (1, len(ACTIONS))
    for path in exported.values():
        policy = ModelPolicy(path)
        assert policy.sha256 == sha256_file(path)
        assert policy.act(depth) in range(len(ACTIONS))
    assert fp32.act(depth) == RIGHT


def test_int8_below_threshold_fails_and_leaves_no_int8(checkpoint, tmp_path):
    (tmp_path / INT8_NAME).write_bytes(b"stale")
    with pytest.raises(ValueError, match="INT8 top-1 agreement .* below the required 1.01"):
        export(checkpoint, tmp_path, min_int8_agreement=1.01, progress=False)
    assert read_manifest(tmp_path / ONNX_NAME)["precision"] == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ONNX_NAME, ONNX_NAME + ".manifest.json"]


def test_fp32_only_and_bad_data(checkpoint, tmp_path):
    assert export(checkpoint, tmp_path, int8=False, progress=False) == {"onnx": tmp_path / ONNX_NAME}
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        export(checkpoint, tmp_path / "x", data=tmp_path / "missing", progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export(tmp_path / "missing.pt", tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_checkpoint_whose_dataset_is_gone_needs_data(checkpoint, tmp_path):
    moved = tmp_path / "checkpoint.pt"
    moved.write_bytes(checkpoint.read_bytes())
    write_manifest(moved, {**read_manifest(checkpoint), "dataset_path": str(tmp_path / "gone")})
    with pytest.raises(FileNotFoundError, match="export needs the training dataset .* pass --data"):
        export(moved, tmp_path / "out", progress=False)
