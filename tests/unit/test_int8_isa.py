"""INT8 on CPUs of both integer-kernel classes: the export's gate gives the same verdict on each.

On AVX2 (and AVX-512 without VNNI) ONNX Runtime's U8S8 kernels add pairs of u8×s8 products in
16 bits (``VPMADDUBSW``) and saturate; VNNI and AMX sum in 32 bits. The tests below check each
class where it runs: natively on this machine, and on an emulated AVX2-only CPU (QEMU) on every
x86 machine, so a VNNI machine also checks the saturating class.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from helpers_data import make_toy_dataset
from helpers_int8 import run_on_emulated_avx2, saturation_probe

from sim2real import machine
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.manifest import read_manifest
from sim2real.contracts.preprocessing import PreprocessSpec
from sim2real.export import exporter
from sim2real.runtime.policy import isa_note
from sim2real.train.trainer import TrainConfig, train

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("arch, features, flags, expected", [
    ("x86_64", {"AVX2": True}, set(), "AVX2"),
    ("x86_64", {"AVX2": True}, {"avx_vnni"}, "AVX-VNNI"),
    ("x86_64", {"AVX2": True, "AVX512F": True}, set(), "AVX-512"),
    ("x86_64", {"AVX2": True, "AVX512F": True, "AVX512VNNI": True}, {"avx512_vnni"}, "AVX-512 VNNI"),
    ("x86_64", {"AVX2": True, "AVX512F": True, "AVX512VNNI": True}, {"amx_int8", "amx_tile"}, "AMX"),
    ("x86_64", {}, set(), "other"),
    ("aarch64", {"NEON": True, "ASIMDDP": True}, set(), "ARM dot-product"),
    ("aarch64", {"NEON": True}, set(), "ARM NEON"),
])
def test_isa_classes(arch, features, flags, expected):
    assert machine.classify(arch, features, flags) == expected


def test_kernel_classes_and_the_override(monkeypatch):
    assert {machine.int8_kernel_class(c) for c in ("AVX2", "AVX-512")} == {"saturating-u8s8"}
    assert {machine.int8_kernel_class(c) for c in ("AVX-VNNI", "AVX-512 VNNI", "AMX")} == {"exact-u8s8"}
    assert machine.int8_kernel_class("ARM NEON") == "arm"
    machine.isa.cache_clear()
    monkeypatch.setenv("SIM2REAL_ISA", "AVX9")
    with pytest.raises(ValueError, match="SIM2REAL_ISA='AVX9' is not one of"):
        machine.isa()
    machine.isa.cache_clear()
    monkeypatch.setenv("SIM2REAL_ISA", "AVX2")
    assert machine.isa() == "AVX2" and "AVX2" in machine.label()
    machine.isa.cache_clear()


def test_runtime_note_only_for_another_x86_class():
    manifest = {"local_kernels": {"isa": "AVX-512 VNNI", "top1_agreement": 1.0},
                "int8_agreement": {"top1_agreement": 0.99}}
    note = isa_note(manifest, "m/model.int8.onnx", running="AVX2")
    assert note.startswith("model.int8.onnx: its INT8 kernels were measured on AVX-512 VNNI")
    assert "this CPU is AVX2" in note and "0.99" in note and note.count("\n") == 0
    assert isa_note(manifest, "model.int8.onnx", running="AVX-512 VNNI") is None
    assert isa_note(manifest, "model.int8.onnx", running="ARM dot-product") is None
    assert isa_note({"local_kernels": {"isa": "ARM NEON"}}, "model.int8.onnx", running="AVX2") is None
    assert isa_note({"precision": "fp32"}, "model.onnx", running="AVX2") is None


def test_this_cpu_saturates_full_range_weights_only_if_its_class_does():
    """Natively: 7-bit weights are exact everywhere; 8-bit ones only on 32-bit-sum kernels."""
    seven, full = saturation_probe(63), saturation_probe(127)
    assert seven["local"] == pytest.approx(seven["fake_quant"], rel=0.01)
    assert seven["fake_quant"] == pytest.approx(seven["exact"], rel=0.01)
    if machine.int8_kernel_class(machine.isa()) == "saturating-u8s8":
        assert full["local"] < 0.6 * full["exact"], "AVX2 / AVX-512 without VNNI: VPMADDUBSW saturates"
    else:
        assert full["local"] == pytest.approx(full["exact"], rel=0.01), "VNNI / AMX / ARM: exact 32-bit sums"


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory) -> Path:
    data = make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", count=360)
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, val_fraction=0.25, input_size=32, threads=1,
                         arch="resnet10", tensorboard=False, seed=1)
    checkpoint = train(data, tmp_path_factory.mktemp("run"), config, progress=False)
    out = tmp_path_factory.mktemp("model")
    exporter.export(checkpoint, out, min_int8_agreement=0.95, progress=False)
    ck = read_manifest(checkpoint)
    held_x, _, _, _ = exporter._samples(ck, None, PreprocessSpec.from_dict(ck["preprocessing"]),
                                        CameraContract.from_dict(ck["camera"]))
    np.save(out / "held_out.npy", held_x)
    return out


@pytest.mark.skipif(not X86, reason="emulates an x86 AVX2 CPU; this machine is not x86")
def test_on_emulated_avx2_the_onnxruntime_form_computes_what_the_gate_judged(toy_export):
    """On an AVX2-only CPU: full-range U8S8 saturates, 7-bit weights do not, and the exported
    ONNX Runtime model's integer kernels compute its fake-quantized graph (same action on every
    held-out image, logits equal to rounding), so the agreement the gate measured holds there too."""
    report = run_on_emulated_avx2(str(toy_export))
    assert report["isa"] == "AVX2", "the probe must run on the emulated CPU, not natively"
    full, seven = report["full_range"], report["seven_bit"]
    assert full["local"] < 0.6 * full["exact"] and full["fake_quant"] == pytest.approx(full["exact"], rel=0.01)
    assert seven["local"] == pytest.approx(seven["exact"], rel=0.01)
    model = report["model"]
    assert model["top1_agreement"] == 1.0
    # Integer and float arithmetic round alike when nothing saturates: the logits match to rounding
    # (full 8-bit weights differ here by about 8 % of the logit range).
    assert model["max_abs_diff"] <= 0.02 * model["logit_range"]
    manifest = read_manifest(toy_export / "model.int8.onnx")
    assert manifest["int8_agreement"]["top1_agreement"] >= 0.95


def test_cpu_score_names_both_kinds_of_arithmetic():
    from sim2real.bench.cpu_score import cpu_score

    score = cpu_score(repeats=2)
    assert score["fp32_gflops"] > 0 and score["int8_gops"] > 0
    assert score["int8_over_fp32"] == pytest.approx(score["int8_gops"] / score["fp32_gflops"], rel=0.02)
