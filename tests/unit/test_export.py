"""The exporter: ONNX parity with PyTorch, INT8 agreement and its gate, the TensorRT form of the
INT8 model, lineage, engine builds (with a stand-in for TensorRT), bad files, and the CLI."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers_data import make_toy_dataset
from onnx import numpy_helper
from sim2real import machine
from sim2real.cli import main
from sim2real.contracts import model_contract
from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, MIRROR, RIGHT, choose
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.engine_metadata import EngineMetadataError, check_engine_file
from sim2real.contracts.manifest import manifest_path, read_manifest, sha256_file, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, preprocess
from sim2real.export import tensorrt_build
from sim2real.export import exporter
from sim2real.export.exporter import FAKE_QUANT, INT8_NAME, INT8_TRT_NAME, ONNX_NAME, export
from sim2real.export.tensorrt_build import build_engine
from sim2real.runtime.policy import ModelPolicy
from sim2real.train.model import build_model
from sim2real.train.trainer import TrainConfig, load_checkpoint, train


# Trained to full validation accuracy, so its logits have margins and INT8 agreement means the same
# on every CPU; 120 held-out images make a 0.9 gate a real test (one flip is 0.8 %).
TOY_TRAINING = dict(epochs=4, batch_size=32, lr=1e-2, val_fraction=0.25, input_size=32, threads=1,
                    arch="resnet10", tensorboard=False)
HELD_OUT = 120


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    data = make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", count=480)
    return train(data, tmp_path_factory.mktemp("run"), TrainConfig(**TOY_TRAINING), progress=False)


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
    assert manifest["camera"] == ckpt["camera"] and manifest["mirror"].startswith("exact")
    parity = manifest["parity"]
    assert parity["top1_agreement"] >= 0.99 and parity["max_abs_diff"] <= 1e-3
    assert parity["images"] == manifest["checks"]["held_out_images"] == HELD_OUT
    assert manifest["checks"]["held_out"] == "validation split"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["depth"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = np.random.default_rng(0).random((5, 2, 32, 32), dtype=np.float32)
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        f = model(torch.from_numpy(x)).numpy()
        f_mirrored = model(torch.from_numpy(x).flip(-1)).numpy()
    expected = 0.5 * (f + f_mirrored[:, list(MIRROR)])
    np.testing.assert_allclose(session.run(None, {"depth": x})[0], expected, atol=1e-4)


def test_every_model_carries_its_contract_covered_by_its_sha256(exported):
    for path in exported.values():
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        contract = json.loads(props[model_contract.METADATA_KEY])
        manifest = read_manifest(path)
        assert {block: contract[block] for block in model_contract.BLOCKS} == \
            {block: manifest[block] for block in model_contract.BLOCKS}
        assert contract["input"] == {"name": "depth", "shape": ["batch", 2, 32, 32], "channels": ["depth", "validity"]}
        assert contract["output"] == {"name": "logits", "shape": ["batch", len(ACTIONS)]}


def test_export_refuses_a_head_or_input_that_does_not_fit_the_contract(checkpoint, tmp_path):
    """Adversarial case 16: a checkpoint with a 5-class head, consistent with its manifest."""
    payload = torch.load(checkpoint, weights_only=True)
    for name, change in (("five", {"num_classes": 5}), ("three_channels", {"in_channels": 3})):
        model = build_model("resnet10", **{"num_classes": 3, "in_channels": 2, **change})
        bad = tmp_path / name / "checkpoint.pt"
        bad.parent.mkdir()
        torch.save({"state_dict": model.state_dict(), "meta": {**payload["meta"], **change}}, bad)
        write_manifest(bad, {k: v for k, v in read_manifest(checkpoint).items() if k not in ("sha256", "file")})
        message = "head has 5 outputs, the action contract has 3" if name == "five" else "takes 3 input channel"
        with pytest.raises(ValueError, match=message):
            export(bad, tmp_path / name / "out", progress=False)
        assert not (tmp_path / name / "out").exists()


def test_a_checkpoint_from_an_older_sim2real_says_to_retrain(checkpoint, tmp_path):
    old = tmp_path / "checkpoint.pt"
    shutil.copy(checkpoint, old)
    manifest = {k: v for k, v in read_manifest(checkpoint).items() if k not in ("camera", "sha256", "file")}
    write_manifest(old, {**manifest, "preprocessing": {"size": 96, "min_range_m": 0.1, "max_range_m": 5.0,
                                                       "invalid_value": 0.0, "version": 1}})
    with pytest.raises(ValueError, match="older sim2real .* retrain it with this sim2real"):
        export(old, tmp_path / "out", progress=False)


def _ort(path: Path, threads: int, fake_quant: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if fake_quant:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fake_quant", [False, True], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("key", ["onnx", "int8", "int8_trt"])
def test_mirror_equivariance_is_exact_for_every_form(checkpoint, exported, key, fake_quant, threads):
    """The mirrored input gives exactly the mirrored logits (left <-> right), bit for bit: FP32 and
    both INT8 forms, with ONNX Runtime's default optimisations (fused integer kernels) and without
    (fake quantization), one and two threads, batches of 1 and of 5, on 200 random inputs and on
    the held-out images."""
    ck = read_manifest(checkpoint)
    held_x, _, _, _ = exporter._samples(ck, None, PreprocessSpec.from_dict(ck["preprocessing"]),
                                        CameraContract.from_dict(ck["camera"]))
    rng = np.random.default_rng(11)
    noise = rng.random((200, 2, 32, 32), dtype=np.float32)
    noise[:, 1] = noise[:, 1] > 0.3
    x = np.concatenate([held_x, noise * np.stack([noise[:, 1], np.ones_like(noise[:, 1])], axis=1)])
    session = _ort(exported[key], threads, fake_quant)
    for batch in (1, 5):
        for i in range(0, len(x), batch):
            direct = session.run(None, {"depth": x[i:i + batch]})[0]
            mirrored = session.run(None, {"depth": np.ascontiguousarray(x[i:i + batch, ..., ::-1])})[0]
            np.testing.assert_array_equal(mirrored, direct[:, list(MIRROR)])


def test_a_mirror_symmetric_view_is_an_exact_tie_resolved_to_left(exported):
    """Only a view that is its own mirror image ties: the INT8 forms keep the head in float, so
    their logits do not fall on a 256-value grid where unrelated views would tie."""
    x = np.random.default_rng(5).random((200, 2, 32, 32), dtype=np.float32)
    symmetric = np.concatenate([x[..., :16], x[..., :16][..., ::-1]], axis=-1)   # each its own mirror image
    for key in ("onnx", "int8", "int8_trt"):
        session = _ort(exported[key], 1, False)
        asymmetric = session.run(None, {"depth": x})[0]
        assert not (asymmetric[:, LEFT] == asymmetric[:, RIGHT]).any()
        logits = session.run(None, {"depth": symmetric})[0]
        assert (logits[:, LEFT] == logits[:, RIGHT]).all()
        for row in logits:
            action, tie = choose(row)
            assert (action, tie) == ((LEFT, True) if row[LEFT] > row[FORWARD] else (FORWARD, False))


def test_int8_agreement_is_recorded(exported):
    for key, name in (("int8", INT8_NAME), ("int8_trt", INT8_TRT_NAME)):
        assert exported[key].name == name
        manifest = read_manifest(exported[key])
        assert manifest["precision"] == "int8" and manifest["quantization"]["format"] == "QDQ"
        agreement = manifest["int8_agreement"]
        assert agreement["images"] == HELD_OUT and agreement["evaluated"] == FAKE_QUANT
        assert 0.9 <= agreement["top1_agreement"] <= 1.0
        ops = {node.op_type for node in onnx.load(str(exported[key])).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_gate_is_the_quantized_graph_and_local_kernels_are_recorded_with_the_isa(checkpoint, exported):
    """The gate's figure is the QDQ graph in float; this CPU's integer kernels are a separate record."""
    ck = read_manifest(checkpoint)
    held_x, _, _, _ = exporter._samples(ck, None, PreprocessSpec.from_dict(ck["preprocessing"]),
                                        CameraContract.from_dict(ck["camera"]))
    for key in ("int8", "int8_trt"):
        manifest = read_manifest(exported[key])
        local = manifest["local_kernels"]
        assert local["isa"] == machine.isa() and local["cpu"] == machine.cpu_model()
        assert local["int8_kernels"] == machine.int8_kernel_class(machine.isa())
        assert 0.0 <= local["top1_agreement"] <= 1.0 and local["latency_ms_batch1"] > 0
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        fake = ort.InferenceSession(str(exported[key]), options, providers=["CPUExecutionProvider"])
        fp32 = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
        agree = (fake.run(None, {"depth": held_x})[0].argmax(1) == fp32.run(None, {"depth": held_x})[0].argmax(1))
        assert manifest["int8_agreement"]["top1_agreement"] == pytest.approx(agree.mean())


def test_onnxruntime_int8_weights_use_seven_bits_and_tensorrt_weights_eight(exported):
    """7-bit weights keep every pair of u8×s8 products within 16 bits (255·63·2 < 32767)."""
    def weight_range(path: Path) -> int:
        model = onnx.load(str(path))
        initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        weights = [initializers[n.input[0]] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and initializers.get(n.input[0], np.zeros(0)).dtype == np.int8
                   and initializers[n.input[0]].ndim > 1]
        assert weights
        return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)

    assert weight_range(exported["int8"]) <= 64
    assert "reduce_range" in read_manifest(exported["int8"])["quantization"]["weights"]
    trt = onnx.load(str(exported["int8_trt"]))
    initializers = {t.name: numpy_helper.to_array(t) for t in trt.graph.initializer}
    quantized = [initializers[n.input[0]] for n in trt.graph.node if n.op_type == "QuantizeLinear"
                 and n.input[0] in initializers and initializers[n.input[0]].ndim > 1]
    assert quantized, "TensorRT form keeps FP32 weights behind Q/DQ pairs"


def test_runtime_policy_loads_every_export(exported):
    depth = np.full((64, 64), 4.0, np.float32)
    depth[10:, :20] = 0.6
    fp32 = ModelPolicy(exported["onnx"])
    assert fp32.engine.infer(preprocess(depth, fp32.spec, fp32.camera)[None]).shape == (1, len(ACTIONS))
    for path in exported.values():
        policy = ModelPolicy(path)
        assert policy.sha256 == sha256_file(path)
        assert policy.act(depth) in range(len(ACTIONS))
    assert fp32.act(depth) == RIGHT


def test_int8_below_threshold_fails_and_leaves_no_int8(checkpoint, tmp_path, monkeypatch):
    """Calibration on the wrong preprocessing (inputs 1000× too small) clips every activation."""
    class WrongCalibration(exporter._CalibrationReader):
        def __init__(self, x, batch=16):
            super().__init__(x * 1e-3, batch)

    monkeypatch.setattr(exporter, "_CalibrationReader", WrongCalibration)
    (tmp_path / INT8_NAME).write_bytes(b"stale")
    with pytest.raises(ValueError, match="INT8 top-1 agreement .* below the required 0.95"):
        export(checkpoint, tmp_path, min_int8_agreement=0.95, progress=False)
    assert read_manifest(tmp_path / ONNX_NAME)["precision"] == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ONNX_NAME, ONNX_NAME + ".manifest.json"]


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")])
def test_agreement_threshold_outside_zero_to_one_is_refused_before_any_work(checkpoint, tmp_path, value):
    with pytest.raises(ValueError, match="min_int8_agreement must be a fraction between 0 and 1"):
        export(checkpoint, tmp_path / "out", min_int8_agreement=value, progress=False)
    assert not (tmp_path / "out").exists()


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


def test_tensorrt_int8_model_is_symmetric_and_traceable(checkpoint, exported):
    model = onnx.load(str(exported["int8_trt"]))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    qdq = [node for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [numpy_helper.to_array(initializers[node.input[2]]) for node in qdq]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # FP32 weights behind Q/DQ pairs, no INT32 bias DequantizeLinear (TensorRT's explicit-quantization form)
    assert not [node for node in qdq if node.op_type == "DequantizeLinear" and node.input[0] in initializers]
    manifest = read_manifest(exported["int8_trt"])
    assert manifest["quantization"]["target"] == "tensorrt" and manifest["int8_agreement"]["required"] == 0.9
    fp32_sha = read_manifest(exported["onnx"])["sha256"]
    assert manifest["inputs"]["onnx"] == fp32_sha and manifest["inputs"]["checkpoint"] == read_manifest(checkpoint)["sha256"]
    assert [(link["kind"], link["sha256"]) for link in manifest["lineage"]] == [
        ("dataset", manifest["inputs"]["dataset"]), ("checkpoint", manifest["inputs"]["checkpoint"]),
        ("onnx-model", fp32_sha)]


def test_corrupt_or_truncated_onnx_is_a_clear_error(exported, tmp_path):
    copy = tmp_path / "model.onnx"
    copy.write_bytes(exported["onnx"].read_bytes()[:5000])
    shutil.copy(manifest_path(exported["onnx"]), manifest_path(copy))
    with pytest.raises(ValueError, match="model.onnx does not match its manifest"):
        ModelPolicy(copy)
    with pytest.raises(ValueError, match="model.onnx does not match its manifest"):
        build_engine(copy, tmp_path / "engine", "fp16")
    write_manifest(copy, read_manifest(exported["onnx"]))  # a manifest that vouches for the broken file
    with pytest.raises(ValueError, match="model.onnx is not a loadable ONNX model"):
        ModelPolicy(copy)
    with pytest.raises(ValueError, match="model.onnx is not a readable ONNX model"):
        build_engine(copy, tmp_path / "engine", "fp16")
    assert not (tmp_path / "engine").exists()


def test_engine_sources_are_checked(exported, tmp_path):
    with pytest.raises(ValueError, match="quantized for ONNX Runtime"):
        build_engine(exported["int8"], tmp_path, "int8")
    with pytest.raises(ValueError, match="fp16 builds from the FP32 model"):
        build_engine(exported["int8_trt"], tmp_path, "fp16")
    with pytest.raises(ValueError, match="unknown TensorRT precision"):
        build_engine(exported["onnx"], tmp_path, "fp8")


def fake_tensorrt(version: str, weak_typing: bool = True) -> tuple[types.ModuleType, dict]:
    """Just enough of the TensorRT Python builder API to drive build_engine without a GPU."""
    calls: dict = {"flags": [], "cache_in": []}

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob) or f"cache {version}".encode()

        def serialize(self):
            return self.blob

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = (pool, size)

        def set_flag(self, flag):
            calls["flags"].append(flag)

        def add_optimization_profile(self, profile):
            calls["profile"] = profile.shapes

        def create_timing_cache(self, blob):
            calls["cache_in"].append(bytes(blob))
            return Cache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = {name: (low, opt, high)}

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return SimpleNamespace(num_inputs=1, get_input=lambda i: SimpleNamespace(name="depth"))

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"ENGINE " + version.encode()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"] = path
            return True

    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.Logger, module.Builder, module.OnnxParser = Logger, Builder, Parser
    module.BuilderFlag = SimpleNamespace(INT8="INT8", FP16="FP16") if weak_typing else SimpleNamespace()
    module.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    module.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    return module, calls


def test_tensorrt_engine_build_records_metadata_and_lineage(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(tensorrt_build, "cuda_device", lambda index=0: {"name": "Orin", "compute_capability": "8.7"})
    trt, calls = fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    engine = build_engine(exported["int8_trt"], tmp_path, "int8")
    assert engine == tmp_path / "model.int8.engine" and engine.read_bytes() == b"ENGINE 10.3.0"
    manifest = read_manifest(engine)
    source = read_manifest(exported["int8_trt"])
    assert manifest["kind"] == "tensorrt-engine" and manifest["precision"] == "int8"
    assert (manifest["tensorrt_version"], manifest["compute_capability"], manifest["gpu_name"]) == ("10.3.0", "8.7", "Orin")
    assert manifest["onnx_sha256"] == manifest["inputs"]["onnx"] == sha256_file(exported["int8_trt"])
    assert manifest["inputs"]["checkpoint"] == source["inputs"]["checkpoint"]
    assert [link["kind"] for link in manifest["lineage"]] == ["dataset", "checkpoint", "onnx-model", "onnx-model"]
    assert manifest["lineage"][-1]["sha256"] == source["sha256"]
    assert manifest["preprocessing"] == source["preprocessing"] and manifest["actions"] == source["actions"]
    assert calls["flags"] == ["INT8", "FP16"] and calls["network_flags"] == 0
    assert calls["profile"] == {"depth": ((1, 2, 32, 32), (1, 2, 32, 32), (8, 2, 32, 32))}
    assert manifest["camera"] == source["camera"]
    props = {p.key: p.value for p in onnx.load(str(exported["int8_trt"])).metadata_props}
    assert manifest["contract"] == json.loads(props[model_contract.METADATA_KEY])
    assert (tmp_path / "tensorrt.timing.cache").read_bytes() == b"cache 10.3.0"
    assert manifest["timing_cache"]["status"] == "new"
    assert check_engine_file(engine, "10.3.0", (8, 7))["sha256"] == sha256_file(engine)
    with pytest.raises(EngineMetadataError, match="rebuild with: sim2real export --checkpoint .* --tensorrt int8"):
        check_engine_file(engine, "10.7.0", "8.7")

    again = read_manifest(build_engine(exported["int8_trt"], tmp_path, "int8"))
    assert calls["cache_in"][-1] == b"cache 10.3.0" and again["timing_cache"]["status"] == "reused"

    trt11, calls11 = fake_tensorrt("11.0.0", weak_typing=False)
    monkeypatch.setitem(sys.modules, "tensorrt", trt11)
    strong = read_manifest(build_engine(exported["int8_trt"], tmp_path / "trt11", "int8"))
    assert strong["builder"]["typing"] == "strong" and calls11["network_flags"] == 2 and not calls11["flags"]
    with pytest.raises(RuntimeError, match="no FP16 builder flag"):
        build_engine(exported["onnx"], tmp_path / "trt11", "fp16")


def test_cli_tensorrt_without_tensorrt_is_one_clear_line(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"), "--tensorrt", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs TensorRT" in err and "jetson-runtime" in err
    assert not (tmp_path / "x").exists()


def test_cli_train_stop_resume_and_export_int8(tmp_path, capsys):
    data = make_toy_dataset(tmp_path / "data", count=360)
    train_args = ["train", "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*train_args, "--arch", "resnet10", "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
                 "--val-fraction", "0.25", "--input-size", "32", "--threads", "1", "--no-tensorboard", "--seed", "1",
                 "--stop-after", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"resume_state": str(tmp_path / "run" / "last.pt")}
    with pytest.raises(ValueError, match="training-state, not a finished checkpoint"):
        export(tmp_path / "run" / "last.pt", tmp_path / "early", progress=False)
    assert main([*train_args, "--resume", str(tmp_path / "run")]) == 0  # settings come from last.pt
    checkpoint = Path(json.loads(capsys.readouterr().out)["checkpoint"])
    manifest = read_manifest(checkpoint)
    assert manifest["arch"] == "resnet10" and manifest["train_config"]["seed"] == 1
    assert manifest["training"]["resumed_from"]["epoch"] == 1
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "model"), "--int8"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert set(paths) == {"onnx", "int8", "int8_trt"}
    for key in ("int8", "int8_trt"):
        agreement = read_manifest(paths[key])["int8_agreement"]
        assert agreement["required"] == 0.95 and agreement["top1_agreement"] >= 0.95 and agreement["images"] == 90
