"""The machine this process runs on: CPU model, cores, instruction set, GPU.

One helper for every service: the exporter records the ISA its INT8 kernels were measured on, the
runtime compares it with its own, the trainer and the benchmarks name the machine of every figure.

INT8 results on a CPU depend on the integer-kernel class more than on the model name:

========================  ==================================================================
``isa``                   what ONNX Runtime's U8S8 products run on
========================  ==================================================================
``AVX2``                  ``VPMADDUBSW``: pairs of u8×s8 products summed in 16 bits, which
                          saturate (above 32767) unless weights use 7 bits (``reduce_range``)
``AVX-512``               the same instruction at 512 bits (Skylake-SP, Zen 3 and older …)
``AVX-VNNI``              ``VPDPBUSD`` at 256 bits: 32-bit sums, no saturation (Alder Lake …)
``AVX-512 VNNI``          ``VPDPBUSD`` at 512 bits (Cascade Lake, Ice Lake, Zen 4 …)
``AMX``                   tile multiply, 32-bit sums (Sapphire Rapids …)
``ARM dot-product``       ``SDOT``/``UDOT``
``ARM NEON``              widening multiply-accumulate
========================  ==================================================================

The instruction set comes from what this process can execute (numpy's CPUID probe), so an
emulated CPU (``qemu-x86_64 -cpu max``) reports its own class; ``/proc/cpuinfo`` adds the flags
numpy does not probe (AVX-VNNI, AMX), but only when the process can run AVX-512 or AVX2 at all.
Set ``SIM2REAL_ISA`` to one of :data:`ISA_CLASSES` to override the detection.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess

ISA_CLASSES: tuple[str, ...] = ("AVX2", "AVX-512", "AVX-VNNI", "AVX-512 VNNI", "AMX",
                                "ARM NEON", "ARM dot-product", "other")
# Classes whose U8S8 products go through VPMADDUBSW and can saturate in 16 bits.
SATURATING_U8S8: frozenset[str] = frozenset({"AVX2", "AVX-512"})


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_features() -> dict[str, bool]:
    """What numpy's runtime CPUID probe found (the features this process can execute)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def classify(arch: str, features: dict[str, bool], flags: set[str]) -> str:
    """The ISA class of a CPU from its architecture, numpy's feature probe and /proc/cpuinfo flags."""
    if arch in ("x86_64", "amd64", "i686", "x86"):
        if features.get("AVX512F"):
            if "amx_int8" in flags:
                return "AMX"
            return "AVX-512 VNNI" if features.get("AVX512VNNI") else "AVX-512"
        if features.get("AVX2"):
            return "AVX-VNNI" if "avx_vnni" in flags else "AVX2"
        return "other"
    if arch in ("aarch64", "arm64"):
        return "ARM dot-product" if features.get("ASIMDDP") or "asimddp" in flags else "ARM NEON"
    return "other"


@functools.lru_cache(maxsize=1)
def isa() -> str:
    """This process's ISA class, one of :data:`ISA_CLASSES` (``SIM2REAL_ISA`` overrides)."""
    forced = os.environ.get("SIM2REAL_ISA")
    if forced:
        if forced not in ISA_CLASSES:
            raise ValueError(f"SIM2REAL_ISA={forced!r} is not one of {', '.join(ISA_CLASSES)}")
        return forced
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return classify(platform.machine().lower(), _cpu_features(), flags)


def is_x86(isa_class: str) -> bool:
    return isa_class in ("AVX2", "AVX-512", "AVX-VNNI", "AVX-512 VNNI", "AMX")


def int8_kernel_class(isa_class: str) -> str:
    """Which integer products a class computes: ``saturating-u8s8``, ``exact-u8s8`` (x86) or ``arm``."""
    if isa_class in SATURATING_U8S8:
        return "saturating-u8s8"
    if is_x86(isa_class):
        return "exact-u8s8"
    return "arm" if isa_class.startswith("ARM") else "other"


@functools.lru_cache(maxsize=1)
def gpu() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def cpu() -> dict:
    """CPU model, cores and ISA class: what every recorded figure names."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "isa": isa(), "arch": platform.machine()}


def describe() -> dict:
    """Everything about this machine that a figure depends on."""
    return {**cpu(), "gpu": gpu(), "python": platform.python_version(), "platform": platform.platform()}


def label() -> str:
    """One line for logs and tables: ``AMD EPYC, 2 cores, AVX-512 VNNI``."""
    info = cpu()
    return f"{info['cpu']}, {info['cores']} cores, {info['isa']}"
