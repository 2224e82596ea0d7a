"""Engine metadata: an engine that does not match the running TensorRT or GPU is refused with a
message that says how to rebuild (pure Python: no TensorRT, no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sim2real.contracts.engine_metadata import (EngineMetadataError, check_engine_file, check_engine_metadata,
                                                cuda_device, engine_metadata, normalise_compute_capability)
from sim2real.contracts.manifest import new_manifest, write_manifest


def _manifest(**change) -> dict:
    fields = engine_metadata(tensorrt_version="10.3.0", compute_capability="8.7", gpu_name="Orin",
                             precision="int8", onnx_sha256="a" * 64)
    return {**new_manifest("tensorrt-engine"), **fields, "source_onnx": "model.int8-trt.onnx", **change}


def test_matching_engine_passes():
    check_engine_metadata(_manifest(), "10.3.0", "8.7")
    check_engine_metadata(_manifest(), " 10.3.0", (8, 7))


@pytest.mark.parametrize("trt_version, capability, reason", [
    ("10.7.0", "8.7", "TensorRT 10.3.0 built it, this device runs TensorRT 10.7.0"),
    ("10.3.0", "9.0", r"built for compute capability 8.7 \(Orin\), this GPU is 9.0"),
    ("11.0.0", "sm_90", "TensorRT 10.3.0 built it.*this GPU is 9.0"),
])
def test_mismatched_engine_is_refused_with_how_to_rebuild(trt_version, capability, reason):
    with pytest.raises(EngineMetadataError, match=reason) as caught:
        check_engine_metadata(_manifest(), trt_version, capability, "model.int8.engine")
    message = str(caught.value)
    assert message.startswith("model.int8.engine cannot run here")
    assert "rebuild with: sim2real export --checkpoint CHECKPOINT --out DIR --tensorrt int8 on this device" in message
    assert "--onnx model.int8-trt.onnx" in message and "\n" not in message


def test_incomplete_or_foreign_metadata_is_refused():
    with pytest.raises(EngineMetadataError, match="lacks tensorrt_version, compute_capability"):
        check_engine_metadata(_manifest(tensorrt_version="", compute_capability=None), "10.3.0", "8.7")
    with pytest.raises(EngineMetadataError, match="describes a 'onnx-model'"):
        check_engine_metadata(_manifest(kind="onnx-model"), "10.3.0", "8.7")
    with pytest.raises(EngineMetadataError, match="not a JSON object"):
        check_engine_metadata(["x"], "10.3.0", "8.7")  # type: ignore[arg-type]
    with pytest.raises(EngineMetadataError, match="unknown engine precision"):
        engine_metadata(tensorrt_version="10", compute_capability="8.7", gpu_name="x", precision="fp8", onnx_sha256="a")


def test_compute_capability_forms():
    assert {normalise_compute_capability(v) for v in ("8.7", (8, 7), "sm_87", "87", 8.7, "SM87")} == {"8.7"}
    assert normalise_compute_capability("sm_120") == "12.0" and normalise_compute_capability("10.0") == "10.0"
    with pytest.raises(EngineMetadataError, match="not a GPU compute capability"):
        normalise_compute_capability("ampere")


def test_engine_file_is_verified_before_its_metadata(tmp_path):
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"engine bytes")
    with pytest.raises(EngineMetadataError, match="no engine metadata beside it"):
        check_engine_file(engine, "10.3.0", "8.7")
    write_manifest(engine, _manifest())
    assert check_engine_file(engine, "10.3.0", "8.7")["gpu_name"] == "Orin"
    engine.write_bytes(b"engine bytes, changed")
    with pytest.raises(ValueError, match="does not match its manifest"):
        check_engine_file(engine, "10.3.0", "8.7")


def test_module_is_pure_python_and_gpu_query_is_safe():
    code = ("import sys, sim2real.contracts.engine_metadata as m; d = m.cuda_device(); "
            "assert d is None or set(d) == {'name', 'compute_capability'}; "
            "print(sorted(k for k in ('numpy', 'torch', 'tensorrt', 'onnx') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    assert cuda_device(index=99) is None
