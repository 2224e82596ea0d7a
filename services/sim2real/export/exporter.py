"""Export a checkpoint to ONNX (FP32) and INT8 QDQ, each checked against the model it came from.

``export(checkpoint, out)`` writes into ``out``::

    model.onnx             FP32, opset 17, input "depth" (N, 2, H, W): depth and validity, output
                           "logits" (N, 3); mirror-equivariant by construction (``equivariance``)
    model.int8.onnx        INT8 QDQ for ONNX Runtime on a CPU: QUInt8 activations, per-channel
                           QInt8 weights in 7 bits (``reduce_range``), so no x86 kernel saturates
    model.int8-trt.onnx    INT8 QDQ in TensorRT's explicit-quantization form: symmetric QInt8
                           activations and weights, every zero-point 0, FP32 weights and biases behind
                           Q/DQ pairs, same calibration. The one file TensorRT 10 and 11 build from
                           (``--tensorrt int8``) and ONNX Runtime runs (slowly on a CPU); its ORT
                           agreement with FP32 is recorded and gated like the other's.

Each file carries its contract (preprocessing, camera, actions, input and output) inside, in the
ONNX metadata, covered by its sha256, and the same blocks in ``<file>.manifest.json``; the runtime
checks one against the other (``contracts.model_contract``). Every graph is the trained network
``f`` wrapped as ``0.5 * (f(x) + swap(f(flip(x))))``, so a mirrored image gives exactly the mirrored
logits; the INT8 forms quantize ``f`` and are wrapped after, so both halves share one set of
scales. Export refuses a checkpoint whose head or input does not fit the contract. Held-out images
(the checkpoint's own validation split when the dataset is the one it was trained on) check FP32
parity with PyTorch and INT8 agreement with FP32; calibration (activation ranges at the 99.99th
percentile, which agrees with FP32 more often than min/max) uses a disjoint seeded subset of
training images drawn from every dataset the checkpoint was trained on (co-training), in
proportion to each one's share of the training batches. A file is renamed into place only
after its check passes, so a failed check leaves no file behind.

Gates: FP32 must agree with PyTorch on ≥ 99 % of held-out top-1 decisions with max |diff| ≤ 1e-3;
each INT8 model must agree with FP32 on ≥ ``min_int8_agreement`` (default 0.95, see
docs/training-and-export.md) or the export fails and removes every INT8 file.

The INT8 gate judges what the quantized model computes, not what this CPU's integer kernels make
of it: the QDQ graph runs in ONNX Runtime with every graph optimisation off, so each
QuantizeLinear / DequantizeLinear pair rounds and clips in float (fake quantization) and no fused
integer kernel is chosen. The verdict is the same on every CPU. The local integer kernels (ORT's
default fusions, chosen for this CPU's instruction set) are measured separately and recorded
under ``local_kernels`` with the CPU and its ISA class (:mod:`sim2real.machine`).

Why 7-bit weights in the ONNX Runtime form: on AVX2 and on AVX-512 without VNNI, ORT's U8S8
products go through ``VPMADDUBSW``, which adds two u8×s8 products in a signed 16-bit lane:
255 × 127 × 2 = 64770 saturates at 32767. With weights in [-63, 63], 255 × 63 × 2 = 32130 cannot.
VNNI, AMX and ARM kernels sum in 32 bits and compute the same as the gate either way. The
TensorRT form keeps full 8-bit symmetric weights: TensorRT sums in 32 bits on the GPU.

Lineage: each manifest's ``inputs`` holds the sha256 of what it was made from (INT8: the FP32
ONNX as well as the checkpoint and dataset) and ``lineage`` the whole chain, oldest first:
dataset → checkpoint → model.onnx → INT8 model (→ TensorRT engine, written by ``tensorrt_build``).
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from sim2real import machine
from sim2real.progress import progress_bar
from sim2real.contracts import model_contract
from sim2real.contracts.actions import ACTIONS, MIRROR
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import Dataset
from sim2real.contracts.manifest import atomic_path, manifest_path, new_manifest, read_manifest, write_manifest
from sim2real.contracts.preprocessing import CHANNELS, PreprocessSpec
from sim2real.export.equivariance import embed_contract, mirror_equivariant
from sim2real.train.checkpoint import contract_of, load_checkpoint
from sim2real.train.data import preprocess_millimetres, split_indices

ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
INT8_TRT_NAME = "model.int8-trt.onnx"
OPSET = 17
INPUT_NAME = "depth"
OUTPUT_NAME = "logits"
MAX_HELD_OUT = 512
CALIBRATION_IMAGES = 256
CALIBRATION_PERCENTILE = 99.99
MIN_PARITY_AGREEMENT = 0.99
MAX_PARITY_DIFF = 1e-3
# INT8 must pick the same action as FP32 on at least this share of held-out images (see
# docs/training-and-export.md for why 0.95).
DEFAULT_MIN_INT8_AGREEMENT = 0.95
FAKE_QUANT = "QDQ graph in float (ONNX Runtime, graph optimizations off): the same on every CPU"
_BATCH = 64


def _session(path: Path, fake_quant: bool = False) -> ort.InferenceSession:
    """A CPU session; ``fake_quant`` turns graph optimisations off, so a QDQ model runs in float."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if fake_quant:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + _BATCH]})[0]
                           for i in range(0, len(x), _BATCH)])


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """What the exported graph computes, in PyTorch: 0.5 * (f(x) + swap(f(flip(x))))."""
    swap = torch.tensor(MIRROR)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), _BATCH):
            batch = torch.from_numpy(x[i:i + _BATCH])
            out.append((0.5 * (model(batch) + model(batch.flip(-1))[:, swap])).numpy())
    return np.concatenate(out)


def _write_wrapped(core: Path, target: Path, contract: dict) -> None:
    """The network in ``core`` made mirror-equivariant, with ``contract`` in its metadata, into ``target``."""
    wrapped = embed_contract(mirror_equivariant(onnx.load(str(core))), contract)
    onnx.save(wrapped, str(target))


def _latency_ms(session: ort.InferenceSession, x: np.ndarray, repeats: int = 20) -> float:
    """Median wall time of one batch-1 inference."""
    sample = x[:1]
    session.run([OUTPUT_NAME], {INPUT_NAME: sample})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run([OUTPUT_NAME], {INPUT_NAME: sample})
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def _compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict:
    return {"images": int(len(labels)),
            "max_abs_diff": float(np.abs(reference - candidate).max()),
            "top1_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
            "accuracy": float((candidate.argmax(1) == labels).mean())}


def _recorded_datasets(manifest: dict) -> list[dict]:
    """Every dataset behind a checkpoint as {name, path, sha256, share} (older ones: the one dataset).
    The primary dataset's path is ``dataset_path``, as for a checkpoint trained on one dataset."""
    recorded = manifest.get("datasets")
    if isinstance(recorded, list) and recorded:
        entries = [{"name": entry.get("name"), "path": entry.get("path"), "sha256": entry.get("sha256"),
                    "share": float(entry.get("share") or 0.0)} for entry in recorded]
        entries[0]["path"] = manifest.get("dataset_path") or entries[0]["path"]
        return entries
    return [{"name": None, "path": manifest.get("dataset_path"), "sha256": manifest.get("inputs", {}).get("dataset"),
             "share": 1.0}]


def _samples(manifest: dict, data: Path | None, spec: PreprocessSpec,
             camera: CameraContract) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(held-out inputs, held-out labels, calibration inputs, provenance).

    Without ``data``, from every dataset the checkpoint was trained on: held-out images from each
    one's validation split, calibration images from each one's training split in proportion to its
    share of the training batches (at least one each), so INT8 ranges cover all of them. ``data``
    replaces them with that one dataset.
    """
    if data is not None:
        if not Path(data).is_dir():
            raise FileNotFoundError(f"dataset not found: {data}")
        entries = [{"name": None, "path": str(data), "sha256": None, "share": 1.0}]
    else:
        entries = _recorded_datasets(manifest)
        for entry in entries:
            if not entry["path"] or not Path(entry["path"]).is_dir():
                where = entry["path"] or "the checkpoint manifest names none"
                raise FileNotFoundError(f"export needs the training dataset for parity checks and INT8 "
                                        f"calibration, but {where} is not there: pass --data")
    config = manifest.get("train_config") or {}
    seed = int(config.get("seed", 0))
    rng = np.random.default_rng(seed + 1)
    shares = np.array([entry["share"] for entry in entries], float)
    shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(entries), 1.0 / len(entries))
    wanted = np.maximum(1, np.round(shares * CALIBRATION_IMAGES).astype(int))
    held_x, held_y, calib_x, records = [], [], [], []
    for entry, calib_count in zip(entries, wanted):
        dataset = Dataset(entry["path"])
        depth_mm, labels, cameras = dataset.load()
        if len(labels) < 2:
            raise ValueError(f"{entry['path']}: {len(labels)} image(s) are too few to check and calibrate an export")
        recorded_sha = entry["sha256"] if data is None else manifest.get("inputs", {}).get("dataset")
        same = dataset.sha256 == recorded_sha and "val_fraction" in config
        if same:
            train_idx, held_idx = split_indices(len(labels), float(config["val_fraction"]), seed)
        else:
            order = rng.permutation(len(labels))
            n_held = min(MAX_HELD_OUT, max(1, len(labels) // 2))
            held_idx, train_idx = order[:n_held], order[n_held:]
        if len(held_idx) > MAX_HELD_OUT:
            held_idx = np.sort(rng.choice(held_idx, MAX_HELD_OUT, replace=False))
        calib_idx = np.sort(rng.choice(train_idx, min(int(calib_count), len(train_idx)), replace=False))
        held_x.append(preprocess_millimetres(depth_mm[held_idx], cameras[held_idx], spec, camera))
        held_y.append(labels[held_idx].astype(np.int64))
        calib_x.append(preprocess_millimetres(depth_mm[calib_idx], cameras[calib_idx], spec, camera))
        records.append({"name": entry["name"], "sha256": dataset.sha256,
                        "held_out": "validation split" if same else "seeded subset",
                        "held_out_images": int(len(held_idx)), "calibration_images": int(len(calib_idx))})
    x, y = np.concatenate(held_x), np.concatenate(held_y)
    if len(y) > MAX_HELD_OUT:
        keep = np.sort(rng.choice(len(y), MAX_HELD_OUT, replace=False))
        x, y = x[keep], y[keep]
    calibration = np.concatenate(calib_x)
    provenance = {"dataset_sha256": records[0]["sha256"], "held_out": records[0]["held_out"],
                  "held_out_images": int(len(y)), "calibration_images": int(len(calibration))}
    if len(records) > 1:
        provenance["datasets"] = records
    return x, y, calibration, provenance


class _CalibrationReader:
    """ONNX Runtime calibration data reader over preprocessed images, in equal-sized batches.

    The histogram calibrators stack every batch's activations, so a short last batch is dropped.
    """

    def __init__(self, x: np.ndarray, batch: int = 16):
        batch = max(1, min(batch, len(x)))
        self._batches = iter([{INPUT_NAME: x[i:i + batch]} for i in range(0, len(x) - batch + 1, batch)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def _quantize(source: Path, target: Path, calibration: np.ndarray, cache: Path, trt: bool) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    options = {"CalibPercentile": CALIBRATION_PERCENTILE}
    if trt:
        # TensorRT's explicit-quantization form (what NVIDIA's own toolkits emit): symmetric INT8,
        # zero-point 0, FP32 weights behind a Q/DQ pair, FP32 biases (TensorRT rejects an INT32
        # DequantizeLinear), one Q/DQ pair per consumer.
        options.update(ActivationSymmetric=True, WeightSymmetric=True, AddQDQPairToWeight=True,
                       QuantizeBias=False, DedicatedQDQPair=True)
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(source, target, _CalibrationReader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=not trt,
                        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=[_head_node(source)], extra_options=options,
                        calibration_cache_path=cache)


def _head_node(model: Path) -> str:
    """The node that computes the logits. It stays in float: quantized logits lie on a grid of 256
    values, where left and right would tie far more often than by a view's own symmetry."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return next(node.name for node in graph.node if graph.output[0].name in node.output)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    manifest_path(path).unlink(missing_ok=True)


def _export_fp32(model: torch.nn.Module, core: Path, target: Path, held_x: np.ndarray, held_y: np.ndarray,
                 contract: dict, common: dict) -> np.ndarray:
    """Write the network ``f`` to ``core`` (for quantization) and the FP32 model to ``target`` once it
    passes the checker and PyTorch parity; return its logits."""
    started = time.perf_counter()
    reference = _torch_logits(model, held_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(held_x[:1]),), str(core), dynamo=False,
                          opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    with atomic_path(target) as tmp:
        try:
            onnx.checker.check_model(str(core))
            _write_wrapped(core, tmp, contract)
        except onnx.checker.ValidationError as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(f"exported {target.name} fails the ONNX checker: {reason}") from None
        session = _session(tmp)
        logits = _run(session, held_x)
        parity = _compare(reference, logits, held_y)
        if parity["top1_agreement"] < MIN_PARITY_AGREEMENT or parity["max_abs_diff"] > MAX_PARITY_DIFF:
            raise ValueError(f"ONNX FP32 disagrees with PyTorch on {parity['images']} held-out images "
                             f"(top-1 agreement {parity['top1_agreement']:.4f}, max |diff| "
                             f"{parity['max_abs_diff']:.2e}; need ≥ {MIN_PARITY_AGREEMENT}, ≤ {MAX_PARITY_DIFF})")
        parity["latency_ms_batch1"] = _latency_ms(session, held_x)
        parity["export_seconds"] = round(time.perf_counter() - started, 2)
    write_manifest(target, new_manifest("onnx-model", precision="fp32", parity=parity, **common))
    return logits


def _link(kind: str, path: Path, sha256: str, **extra) -> dict:
    """One step of a lineage chain."""
    return {"kind": kind, "file": path.name, "sha256": sha256, **extra}


def _local_kernels(session: ort.InferenceSession, fp32: np.ndarray, held_x: np.ndarray,
                   held_y: np.ndarray) -> dict:
    """Agreement and latency of the integer kernels ONNX Runtime picks for this CPU."""
    measured = _compare(fp32, _run(session, held_x), held_y)
    isa = machine.isa()
    return {**machine.cpu(), "int8_kernels": machine.int8_kernel_class(isa),
            "onnxruntime": ort.__version__, "top1_agreement": measured["top1_agreement"],
            "max_abs_diff": measured["max_abs_diff"], "latency_ms_batch1": _latency_ms(session, held_x)}


def _export_int8(prepared: Path, target: Path, trt: bool, fp32: np.ndarray, held_x: np.ndarray,
                 held_y: np.ndarray, calib_x: np.ndarray, cache: Path, min_agreement: float, contract: dict,
                 common: dict) -> None:
    """Write one INT8 QDQ model once its fake-quantized top-1 agreement with FP32 reaches ``min_agreement``.

    The network ``f`` is quantized alone, then wrapped: both halves of the mirrored batch go through
    the same quantized nodes, with the same scales.
    """
    started = time.perf_counter()
    core = prepared.with_name(f"core-{target.name}")
    with atomic_path(target) as tmp:
        _quantize(prepared, core, calib_x, cache, trt)
        _write_wrapped(core, tmp, contract)
        agreement = _compare(fp32, _run(_session(tmp, fake_quant=True), held_x), held_y)
        if agreement["top1_agreement"] < min_agreement:
            for stale in (INT8_NAME, INT8_TRT_NAME):
                _remove(target.parent / stale)
            raise ValueError(f"{target.name}: INT8 top-1 agreement with FP32 is "
                             f"{agreement['top1_agreement']:.4f} on {agreement['images']} held-out "
                             f"images, below the required {min_agreement}; no INT8 model written")
        local = _local_kernels(_session(tmp), fp32, held_x, held_y)
        agreement["quantize_seconds"] = round(time.perf_counter() - started, 2)
    agreement.update(required=min_agreement, evaluated=FAKE_QUANT)
    if not trt and local["top1_agreement"] < min_agreement:
        print(f"sim2real export: warning: on this CPU ({local['isa']}) ONNX Runtime's integer kernels agree "
              f"with FP32 on {local['top1_agreement']:.4f} of held-out images, below {min_agreement}; the "
              f"quantized graph itself agrees on {agreement['top1_agreement']:.4f}", file=sys.stderr)
    quantization = {"format": "QDQ", "calibration": f"percentile {CALIBRATION_PERCENTILE}",
                    "float": "the head (the logits' Gemm) stays FP32, so logits are not on an INT8 grid",
                    "calibration_images": int(len(calib_x)),
                    "weights": "QInt8 per-channel symmetric" + ("" if trt else ", 7-bit range (reduce_range)"),
                    "activations": "QInt8 symmetric (TensorRT)" if trt else "QUInt8 asymmetric (ORT CPU)",
                    "zero_point": "0 everywhere" if trt else "asymmetric activations",
                    "target": "tensorrt" if trt else "onnxruntime-cpu"}
    if trt:
        quantization["weights_storage"] = "FP32 weights and biases behind Q/DQ pairs"
    write_manifest(target, new_manifest("onnx-model", precision="int8", quantization=quantization,
                                        int8_agreement=agreement, local_kernels=local, **common))


def export(checkpoint: Path, out: Path, data: Path | None = None, int8: bool = True,
           min_int8_agreement: float = DEFAULT_MIN_INT8_AGREEMENT, progress: bool = True) -> dict[str, Path]:
    """Export ``checkpoint`` into ``out``.

    Returns {"onnx": out/model.onnx} plus, with ``int8``, {"int8": out/model.int8.onnx,
    "int8_trt": out/model.int8-trt.onnx}. ``data`` defaults to the checkpoint's dataset.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if not 0.0 <= min_int8_agreement <= 1.0:
        raise ValueError(f"min_int8_agreement must be a fraction between 0 and 1, got {min_int8_agreement!r}")
    model, ck = load_checkpoint(checkpoint)
    if ck.get("kind") != "checkpoint":
        raise ValueError(f"{checkpoint} is a {ck.get('kind', 'file of unknown kind')}, not a finished checkpoint: "
                         f"export the checkpoint.pt that training writes when it completes")
    spec, camera = contract_of(ck, checkpoint)
    check_head(model, spec, checkpoint)
    contract = model_contract.build(spec, camera, INPUT_NAME, OUTPUT_NAME)
    with progress_bar(total=4 if int8 else 2, desc="export", unit="step", disable=not progress) as bar, \
            tempfile.TemporaryDirectory(prefix="sim2real-export-") as work:
        bar.set_postfix_str("held-out and calibration images")
        held_x, held_y, calib_x, provenance = _samples(ck, None if data is None else Path(data), spec, camera)
        lineage = list(ck.get("lineage") or [{"kind": "dataset", "sha256": ck["inputs"].get("dataset")}])
        lineage.append(_link("checkpoint", checkpoint, ck["sha256"]))
        inputs = {"checkpoint": ck["sha256"], "dataset": ck["inputs"].get("dataset"),
                  "scenario": ck["inputs"].get("scenario"),
                  **{key: value for key, value in ck["inputs"].items() if key.startswith("dataset.")}}
        common = {"inputs": inputs, "lineage": lineage,
                  **model_contract.manifest_blocks(contract), "mirror": contract["mirror"],
                  "arch": ck.get("arch"), "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "opset": OPSET,
                  "checks": provenance}
        bar.update()
        bar.set_postfix_str(f"{ONNX_NAME}: export, check, parity")
        paths = {"onnx": out / ONNX_NAME}
        core = Path(work) / "core.onnx"
        fp32 = _export_fp32(model, core, paths["onnx"], held_x, held_y, contract, common)
        bar.update()
        if not int8:
            return paths
        from onnxruntime.quantization.shape_inference import quant_pre_process

        fp32_sha = read_manifest(paths["onnx"])["sha256"]
        common = {**common, "inputs": {**common["inputs"], "onnx": fp32_sha},
                  "lineage": lineage + [_link("onnx-model", paths["onnx"], fp32_sha, precision="fp32")]}
        cache, prepared = Path(work) / "calibration.json", Path(work) / "prepared.onnx"
        quant_pre_process(core, prepared)
        for key, name, trt in (("int8", INT8_NAME, False), ("int8_trt", INT8_TRT_NAME, True)):
            bar.set_postfix_str(f"{name}: calibrate, quantize, agreement")
            _export_int8(prepared, out / name, trt, fp32, held_x, held_y, calib_x, cache,
                         min_int8_agreement, contract, common)
            paths[key] = out / name
            bar.update()
    return paths


def check_head(model: torch.nn.Module, spec: PreprocessSpec, checkpoint: Path) -> None:
    """Refuse a network whose input channels or head do not match the contract."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    if first.in_channels != spec.channels:
        raise ValueError(f"{checkpoint}: the network takes {first.in_channels} input channel(s), the preprocessing "
                         f"contract gives {spec.channels} {CHANNELS}")
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    if head.out_features != len(ACTIONS):
        raise ValueError(f"{checkpoint}: the network's head has {head.out_features} outputs, the action contract "
                         f"has {len(ACTIONS)} {list(ACTIONS)}; retrain with this sim2real")
