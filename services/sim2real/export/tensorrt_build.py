"""Build a TensorRT engine from an exported ONNX model, on the device that will run it.

``build_engine(onnx, out, "int8")`` uses the TensorRT Python builder (10.x and 11.x):

- the network comes from ``OnnxParser`` (explicit batch, the only mode since TensorRT 10);
- ``int8`` builds from ``model.int8-trt.onnx``, whose Q/DQ nodes fix the INT8 scales (explicit
  quantization: no calibrator). TensorRT 10 gets the INT8 and FP16 builder flags (layers left
  unquantized may use FP16); TensorRT 11, which removed those flags, builds the same file as a
  strongly typed network. ``fp16`` builds from the FP32 ``model.onnx`` with the FP16 flag
  (TensorRT 10 only: 11 wants an FP16 ONNX, which this exporter does not write);
- an optimisation profile for the dynamic batch dimension: min 1, opt 1, max ``max_batch``;
- a workspace memory-pool limit, and a timing cache read from and written back to
  ``timing_cache`` (default ``out/tensorrt.timing.cache``), so rebuilding on the same device is
  fast. A cache made by another TensorRT or GPU is discarded, not trusted.

It writes ``out/model.<precision>.engine`` and ``model.<precision>.engine.manifest.json`` with
``contracts.engine_metadata``'s fields (TensorRT version, compute capability, GPU name, precision,
source ONNX sha256), the preprocessing, camera and actions the runtime needs, the source model's
contract (read from its metadata and checked against its manifest before the build; an engine
cannot hold metadata itself), and the lineage chain.
No torch here: the jetson-runtime image builds engines with ``sim2real export --onnx``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sim2real.contracts.engine_metadata import (ENGINE_KIND, PRECISIONS, check_engine_metadata, cuda_device,
                                                engine_metadata)
from sim2real.contracts.manifest import new_manifest, read_manifest, write_bytes_atomic, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec

TIMING_CACHE = "tensorrt.timing.cache"
DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_MB = 1024
SOURCES = {"int8": "model.int8-trt.onnx", "fp16": "model.onnx"}


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a one-line RuntimeError saying where engines are built."""
    try:
        import tensorrt
    except ImportError:
        raise RuntimeError("--tensorrt needs TensorRT, which is not installed here (no 'tensorrt' Python module): "
                           "build the engine where it will run, in the jetson-runtime image on the device: "
                           "sim2real export --onnx model.int8-trt.onnx --out DIR --tensorrt int8") from None
    return tensorrt


def engine_path(out: str | Path, precision: str) -> Path:
    return Path(out) / f"model.{precision}.engine"


def _check_onnx_readable(path: Path) -> None:
    """A clear error for a file that is not a complete ONNX model (where the onnx package exists)."""
    try:
        import onnx
    except ImportError:
        return  # TensorRT's own parser reports it below
    try:
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path} is not a readable ONNX model (corrupt or truncated?): {reason}") from None


def check_source(onnx_path: Path, precision: str) -> dict:
    """The verified manifest of the ONNX model an engine of ``precision`` is built from."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown TensorRT precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    manifest = read_manifest(onnx_path, verify=True)
    if manifest.get("kind") != "onnx-model" or "preprocessing" not in manifest:
        raise ValueError(f"{onnx_path}: its manifest is not a sim2real ONNX model's (kind {manifest.get('kind')!r})")
    have = manifest.get("precision")
    target = (manifest.get("quantization") or {}).get("target")
    if precision == "int8" and (have != "int8" or target != "tensorrt"):
        why = {None: " from an older export: export it again"}.get(target, " quantized for ONNX Runtime")
        raise ValueError(f"--tensorrt int8 builds from the symmetric INT8 QDQ model ({SOURCES['int8']}); "
                         f"{onnx_path.name} is a {have} model" + (why if have == "int8" else ""))
    if precision == "fp16" and have != "fp32":
        raise ValueError(f"--tensorrt fp16 builds from the FP32 model ({SOURCES['fp16']}); {onnx_path.name} is {have}")
    _check_onnx_readable(onnx_path)
    manifest["contract"] = _source_contract(onnx_path, manifest)
    return manifest


def _source_contract(onnx_path: Path, manifest: dict) -> dict:
    """The contract inside the source ONNX, checked against its manifest (where onnx can read it)."""
    from sim2real.contracts import model_contract

    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        embedded = props.get(model_contract.METADATA_KEY)
    else:
        import onnxruntime as ort

        meta = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_modelmeta()
        embedded = meta.custom_metadata_map.get(model_contract.METADATA_KEY)
    model_contract.verify(onnx_path, manifest, embedded, None, None)
    return json.loads(embedded)


def _timing_cache(config: Any, path: Path) -> tuple[Any, str]:
    """Attach a timing cache to the builder config: the file's, or a new one when it does not fit."""
    blob = path.read_bytes() if path.is_file() else b""
    if blob:
        try:
            cache = config.create_timing_cache(blob)
            if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
                return cache, "reused"
        except Exception:  # noqa: BLE001 - a cache from another TensorRT or GPU is just not reused
            pass
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, "discarded (made by another TensorRT or GPU)" if blob else "new"


def build_engine(onnx_path: str | Path, out: str | Path, precision: str, timing_cache: str | Path | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, workspace_mb: int = DEFAULT_WORKSPACE_MB) -> Path:
    """Build ``out/model.<precision>.engine`` from ``onnx_path`` on this machine's GPU; return its path."""
    onnx_path, out = Path(onnx_path), Path(out)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer ≥ 1, got {max_batch!r}")
    if not isinstance(workspace_mb, int) or workspace_mb < 16:
        raise ValueError(f"workspace_mb must be an integer ≥ 16, got {workspace_mb!r}")
    source = check_source(onnx_path, precision)
    trt = require_tensorrt()
    gpu = cuda_device()
    if gpu is None:
        raise RuntimeError("no CUDA GPU is visible: a TensorRT engine is built on the GPU that will run it")
    channels, height, width = PreprocessSpec.from_dict(source["preprocessing"]).input_shape()
    input_name = source.get("input_name", "depth")
    started = time.perf_counter()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weak_int8 = hasattr(trt.BuilderFlag, "INT8")
    strongly_typed = precision == "int8" and not weak_int8
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: "
                         f"{errors[0] if errors else 'no reason given'}")
    if network.num_inputs != 1 or network.get_input(0).name != input_name:
        raise ValueError(f"{onnx_path}: expected one input named {input_name!r}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no FP16 builder flag (TensorRT 11 builds strongly "
                               f"typed networks only): use --tensorrt int8, whose QDQ model carries its precision")
        config.set_flag(trt.BuilderFlag.FP16)
    elif weak_int8:
        config.set_flag(trt.BuilderFlag.INT8)
        if hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    one = (1, channels, height, width)
    profile.set_shape(input_name, one, one, (max_batch, channels, height, width))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else out / TIMING_CACHE
    _, cache_status = _timing_cache(config, cache_path)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} could not build an engine from {onnx_path} "
                           f"(its log above says why)")
    engine = engine_path(out, precision)
    write_bytes_atomic(engine, bytes(memoryview(serialized)))
    write_bytes_atomic(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))

    metadata = engine_metadata(tensorrt_version=trt.__version__, compute_capability=gpu["compute_capability"],
                               gpu_name=gpu["name"], precision=precision, onnx_sha256=source["sha256"])
    check_engine_metadata(metadata, trt.__version__, gpu["compute_capability"], engine)
    lineage = list(source.get("lineage") or [])
    lineage.append({"kind": "onnx-model", "file": onnx_path.name, "sha256": source["sha256"],
                    "precision": source.get("precision")})
    inputs = {**{k: v for k, v in (source.get("inputs") or {}).items() if k != "onnx"}, "onnx": source["sha256"]}
    write_manifest(engine, new_manifest(
        ENGINE_KIND, inputs=inputs, lineage=lineage, source_onnx=onnx_path.name, **metadata,
        preprocessing=source["preprocessing"], camera=source["camera"], actions=source["actions"],
        **({"runtime": source["runtime"]} if "runtime" in source else {}),
        contract=source["contract"], mirror=source.get("mirror"), arch=source.get("arch"),
        input_name=input_name, output_name=source.get("output_name", "logits"),
        profile={"input": input_name, "min": list(one), "opt": list(one),
                 "max": [max_batch, channels, height, width]},
        builder={"typing": "strong" if strongly_typed else "weak",
                 "flags": [] if strongly_typed else (["FP16"] if precision == "fp16" else ["INT8", "FP16"]),
                 "workspace_mb": workspace_mb},
        timing_cache={"file": str(cache_path), "status": cache_status},
        build_seconds=round(time.perf_counter() - started, 2)))
    return engine
