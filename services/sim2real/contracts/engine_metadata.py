"""What a TensorRT engine was built for, and the check that it can run here.

A serialized TensorRT engine runs only under the TensorRT version that built it and on GPUs of the
compute capability it was built for. ``sim2real export --tensorrt`` records both, with the GPU's
name, the precision and the sha256 of the source ONNX, in ``<name>.engine.manifest.json``; the
runtime calls ``check_engine_metadata`` (or ``check_engine_file``) before deserializing, so a
mismatch is a clear error that says how to rebuild rather than a failure deep inside TensorRT.

Pure Python (no numpy, torch or tensorrt): the exporter and the runtime on the robot import it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from pathlib import Path
from typing import Any

ENGINE_KIND = "tensorrt-engine"
PRECISIONS = ("fp16", "int8")
REQUIRED_FIELDS = ("tensorrt_version", "compute_capability", "precision", "onnx_sha256")
# CUdevice_attribute values of the CUDA driver API.
_CC_MAJOR, _CC_MINOR = 75, 76


class EngineMetadataError(ValueError):
    """An engine that cannot run here, or whose metadata is missing or malformed."""


def normalise_compute_capability(value: Any) -> str:
    """``"8.7"``, ``(8, 7)``, ``"sm_87"`` or ``87`` → ``"8.7"``."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}.{value[1]}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    if match:
        return f"{int(match[1])}.{int(match[2])}"
    match = re.fullmatch(r"(?:sm_?|compute_)?(\d+)(\d)", text)
    if match and not isinstance(value, float):
        return f"{int(match[1])}.{int(match[2])}"
    raise EngineMetadataError(f"not a GPU compute capability: {value!r} (expected e.g. '8.7')")


def engine_metadata(*, tensorrt_version: str, compute_capability: Any, gpu_name: str, precision: str,
                    onnx_sha256: str) -> dict:
    """The fields an engine's manifest must carry (the exporter adds lineage and the rest)."""
    if precision not in PRECISIONS:
        raise EngineMetadataError(f"unknown engine precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return {"tensorrt_version": str(tensorrt_version),
            "compute_capability": normalise_compute_capability(compute_capability),
            "gpu_name": str(gpu_name), "precision": precision, "onnx_sha256": str(onnx_sha256)}


def rebuild_command(manifest: dict) -> str:
    """How to make an engine for this device from the same model."""
    precision = manifest.get("precision") if manifest.get("precision") in PRECISIONS else "int8"
    source = manifest.get("source_onnx") or ("model.int8-trt.onnx" if precision == "int8" else "model.onnx")
    return (f"sim2real export --checkpoint CHECKPOINT --out DIR --tensorrt {precision} on this device "
            f"(or --onnx {source} in place of --checkpoint)")


def check_engine_metadata(manifest: dict, trt_version: str, compute_capability: Any,
                          engine: str | Path | None = None) -> None:
    """Raise EngineMetadataError unless the engine described by ``manifest`` runs under TensorRT
    ``trt_version`` on a GPU of ``compute_capability``."""
    what = str(engine) if engine is not None else "TensorRT engine"
    if not isinstance(manifest, dict):
        raise EngineMetadataError(f"{what}: engine metadata is not a JSON object")
    if manifest.get("kind") not in (None, ENGINE_KIND):
        raise EngineMetadataError(f"{what}: its manifest describes a {manifest.get('kind')!r}, not a TensorRT engine")
    missing = [key for key in REQUIRED_FIELDS if not manifest.get(key)]
    if missing:
        raise EngineMetadataError(f"{what}: engine metadata lacks {', '.join(missing)}, so it cannot be checked "
                                  f"against this device; rebuild with: {rebuild_command(manifest)}")
    built_cc = normalise_compute_capability(manifest["compute_capability"])
    here_cc = normalise_compute_capability(compute_capability)
    built_trt, here_trt = str(manifest["tensorrt_version"]).strip(), str(trt_version).strip()
    problems = []
    if built_trt != here_trt:
        problems.append(f"TensorRT {built_trt} built it, this device runs TensorRT {here_trt}")
    if built_cc != here_cc:
        gpu = f" ({manifest['gpu_name']})" if manifest.get("gpu_name") else ""
        problems.append(f"it was built for compute capability {built_cc}{gpu}, this GPU is {here_cc}")
    if problems:
        raise EngineMetadataError(f"{what} cannot run here: {'; '.join(problems)}. An engine runs only under the "
                                  f"TensorRT version and on the GPU architecture it was built for; rebuild with: "
                                  f"{rebuild_command(manifest)}")


def check_engine_file(engine: str | Path, trt_version: str, compute_capability: Any) -> dict:
    """Read ``engine``'s manifest (verifying the file's sha256), check it, and return it."""
    from sim2real.contracts.manifest import read_manifest

    try:
        manifest = read_manifest(engine, verify=True)
    except FileNotFoundError:
        raise EngineMetadataError(f"{engine}: no engine metadata beside it ({Path(engine).name}.manifest.json), "
                                  f"so it cannot be checked against this device; rebuild with: "
                                  f"{rebuild_command({})}") from None
    check_engine_metadata(manifest, trt_version, compute_capability, engine)
    return manifest


def cuda_device(index: int = 0) -> dict | None:
    """{"name", "compute_capability"} of CUDA device ``index`` from the driver (libcuda), or None
    where there is no driver or no such GPU. Honours CUDA_VISIBLE_DEVICES."""
    library = None
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda"), "nvcuda.dll"):
        if not name:
            continue
        try:
            library = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if library is None:
        return None
    try:
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name_buffer = ctypes.create_string_buffer(256)
        if (library.cuInit(0) != 0 or library.cuDeviceGet(ctypes.byref(device), index) != 0
                or library.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) != 0
                or library.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) != 0
                or library.cuDeviceGetName(name_buffer, len(name_buffer), device) != 0):
            return None
    except AttributeError:
        return None
    return {"name": name_buffer.value.decode(errors="replace"),
            "compute_capability": f"{major.value}.{minor.value}"}
