"""The TensorRT backend without a GPU: a clear error when TensorRT is absent, and the TensorRT 10
call sequence (named tensors, set_input_shape, set_tensor_address, execute_async_v3) driven
through stand-ins for ``tensorrt`` and the CUDA bindings that move real bytes."""

from __future__ import annotations

import ctypes
import enum
import sys
import types

import numpy as np
import pytest

from sim2real.contracts import engine_metadata as metadata
from sim2real.contracts.engine_metadata import ENGINE_KIND, EngineMetadataError, engine_metadata
from sim2real.contracts.manifest import new_manifest, write_manifest
from sim2real.runtime import engines
from sim2real.runtime.engines import tensorrt_engine

SIZE = 8
ENGINE_MAGIC = b"fake-trt-engine"
TRT_VERSION, GPU = "10.8.0", {"name": "Fake Orin", "compute_capability": "8.7"}


def _logits(x: np.ndarray) -> np.ndarray:
    """What the fake engine computes: left-half mean, right-half mean, overall mean."""
    left = x[:, 0, :, : SIZE // 2].mean(axis=(1, 2))
    right = x[:, 0, :, SIZE // 2:].mean(axis=(1, 2))
    return np.stack([x.mean(axis=(1, 2, 3)), left, right], axis=1).astype(np.float32)


def _fake_tensorrt(version: str = TRT_VERSION, dynamic: bool = True, calls: list | None = None):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls = [] if calls is None else calls

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.Enum):
        FLOAT = 0

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    batch_dim = -1 if dynamic else 2
    shapes = {"input": (batch_dim, 1, SIZE, SIZE), "logits": (batch_dim, 3)}

    class Context:
        def __init__(self):
            self.addresses, self.batch = {}, None if dynamic else 2

        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, tuple(shape)))
            self.batch = shape[0]
            return True

        def get_tensor_shape(self, name):
            return (self.batch, *shapes[name][1:])

        def set_tensor_address(self, name, ptr):
            calls.append(("set_tensor_address", name))
            self.addresses[name] = ptr

        def execute_async_v3(self, stream_handle):
            calls.append(("execute_async_v3", stream_handle))
            count = self.batch * SIZE * SIZE
            x = np.frombuffer((ctypes.c_float * count).from_address(self.addresses["input"]), np.float32)
            out = _logits(x.reshape(self.batch, 1, SIZE, SIZE).copy())
            ctypes.memmove(self.addresses["logits"], out.ctypes.data, out.nbytes)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index):
            return ["input", "logits"][index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 1, SIZE, SIZE), (1, 1, SIZE, SIZE), (4, 1, SIZE, SIZE)]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == ENGINE_MAGIC else None

    trt.TensorIOMode, trt.DataType, trt.Logger, trt.Runtime = TensorIOMode, DataType, Logger, Runtime
    trt.nptype = lambda dtype: np.float32
    return trt


class _Memory:
    """Host memory standing in for device memory: pointers are real addresses."""

    def __init__(self):
        self.blocks = {}

    def alloc(self, nbytes):
        block = ctypes.create_string_buffer(max(nbytes, 1))
        self.blocks[ctypes.addressof(block)] = block
        return ctypes.addressof(block)

    def free(self, ptr):
        del self.blocks[ptr]


def _fake_cudart(memory: _Memory, calls: list):
    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.Enum):
        cudaSuccess = 0

    class cudaMemcpyKind(enum.Enum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    ok = cudaError_t.cudaSuccess
    rt.cudaError_t, rt.cudaMemcpyKind = cudaError_t, cudaMemcpyKind
    rt.cudaStreamCreate = lambda: (ok, 77)
    rt.cudaStreamDestroy = lambda stream: (ok,)
    rt.cudaMalloc = lambda nbytes: (ok, memory.alloc(nbytes))
    rt.cudaFree = lambda ptr: (memory.free(ptr), ok)[1:]
    rt.cudaMallocHost = lambda nbytes: (ok, memory.alloc(nbytes))
    rt.cudaFreeHost = lambda ptr: (memory.free(ptr), ok)[1:]

    def memcpy(dst, src, count, kind, stream):
        calls.append(("memcpy", kind.name, stream))
        ctypes.memmove(dst, src, count)
        return (ok,)

    rt.cudaMemcpyAsync = memcpy
    rt.cudaStreamSynchronize = lambda stream: (calls.append(("sync", stream)), ok)[1:]
    return rt


def _fake_pycuda(memory: _Memory, calls: list):
    driver = types.ModuleType("pycuda.driver")

    class Allocation:
        def __init__(self, nbytes):
            self.ptr = memory.alloc(nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            memory.free(self.ptr)

    class Stream:
        handle = 55

        def synchronize(self):
            calls.append(("sync", self.handle))

    class PrimaryContext:
        def push(self):
            calls.append(("push",))

    class Device:
        def __init__(self, index):
            pass

        def retain_primary_context(self):
            return PrimaryContext()

    driver.init = lambda: None
    driver.Device, driver.Stream, driver.mem_alloc = Device, Stream, Allocation
    driver.Context = types.SimpleNamespace(pop=lambda: calls.append(("pop",)))
    driver.pagelocked_empty = lambda count, dtype: np.empty(count, dtype)

    def htod(allocation, host, stream):
        calls.append(("memcpy", "htod", stream.handle))
        ctypes.memmove(int(allocation), host.ctypes.data, host.nbytes)

    def dtoh(host, allocation, stream):
        calls.append(("memcpy", "dtoh", stream.handle))
        ctypes.memmove(host.ctypes.data, int(allocation), host.nbytes)

    driver.memcpy_htod_async, driver.memcpy_dtoh_async = htod, dtoh
    package = types.ModuleType("pycuda")
    package.driver = driver
    return {"pycuda": package, "pycuda.driver": driver}


def _engine(path, data=ENGINE_MAGIC, trt_version=TRT_VERSION, compute_capability="8.7"):
    path.write_bytes(data)
    write_manifest(path, new_manifest(ENGINE_KIND, **engine_metadata(
        tensorrt_version=trt_version, compute_capability=compute_capability, gpu_name="Fake Orin",
        precision="int8", onnx_sha256="0" * 64)))
    return path


@pytest.fixture
def engine_file(tmp_path, monkeypatch):
    monkeypatch.setattr(metadata, "cuda_device", lambda index=0: dict(GPU))
    return _engine(tmp_path / "model.int8.engine")


def _install(monkeypatch, trt=None, cudart=None, pycuda=None):
    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda",
                 "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)
    if trt is not None:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
    if cudart is not None:
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart
        monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    for name, module in (pycuda or {}).items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("name", ["tensorrt", "auto"])
def test_missing_tensorrt_is_a_clear_error(monkeypatch, engine_file, name):
    _install(monkeypatch)
    with pytest.raises(RuntimeError, match="needs the 'tensorrt' Python package.*--backend onnxruntime"):
        engines.create(name, engine_file)


def test_old_tensorrt_is_refused(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt(version="8.6.1"), cudart=_fake_cudart(_Memory(), []))
    with pytest.raises(RuntimeError, match="TensorRT 8.6.1 is too old"):
        engines.create("tensorrt", engine_file)


def test_missing_cuda_bindings_is_a_clear_error(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt())
    with pytest.raises(RuntimeError, match="needs cuda-python or pycuda"):
        engines.create("tensorrt", engine_file)


def test_missing_engine_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        engines.create("tensorrt", tmp_path / "absent.engine")


def test_unloadable_engine_is_a_value_error(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt(), cudart=_fake_cudart(_Memory(), []))
    path = _engine(engine_file.with_name("corrupt.engine"), data=b"not an engine")
    with pytest.raises(ValueError, match="rebuild it on this device"):
        engines.create("tensorrt", path)


def test_no_gpu_is_a_clear_error(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt(), cudart=_fake_cudart(_Memory(), []))
    monkeypatch.setattr(metadata, "cuda_device", lambda index=0: None)
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        engines.create("tensorrt", engine_file)


@pytest.mark.parametrize("built_with, problem", [
    ({"compute_capability": "8.6"}, "built for compute capability 8.6 .*this GPU is 8.7"),
    ({"trt_version": "10.3.0"}, "TensorRT 10.3.0 built it, this device runs TensorRT 10.8.0"),
])
def test_engine_built_elsewhere_is_refused_before_deserializing(monkeypatch, engine_file, built_with, problem):
    _install(monkeypatch, trt=_fake_tensorrt(), cudart=_fake_cudart(_Memory(), []))
    path = _engine(engine_file.with_name("elsewhere.engine"), **built_with)
    with pytest.raises(EngineMetadataError, match=problem):
        engines.create("tensorrt", path)


def test_engine_without_manifest_is_refused(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt(), cudart=_fake_cudart(_Memory(), []))
    path = engine_file.with_name("bare.engine")
    path.write_bytes(ENGINE_MAGIC)
    with pytest.raises(EngineMetadataError, match="no engine metadata beside it"):
        engines.create("tensorrt", path)


def test_dynamic_batch_runs_through_named_tensors_with_cuda_python(monkeypatch, engine_file):
    calls, memory = [], _Memory()
    _install(monkeypatch, trt=_fake_tensorrt(calls=calls), cudart=_fake_cudart(memory, calls))
    engine = engines.create("auto", engine_file)
    assert isinstance(engine, tensorrt_engine.TensorRTEngine)
    assert (engine.input_name, engine.output_name, engine.input_shape) == ("input", "logits", (-1, 1, SIZE, SIZE))
    assert engine.cuda.name == "cuda-python"
    rng = np.random.default_rng(0)
    for batch in (1, 3, 2):
        x = rng.random((batch, 1, SIZE, SIZE), dtype=np.float32)
        out = engine.infer(x)
        assert out.shape == (batch, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, _logits(x), rtol=1e-6)
    shapes = [c[2] for c in calls if c[0] == "set_input_shape"]
    assert shapes == [(1, 1, SIZE, SIZE), (3, 1, SIZE, SIZE), (2, 1, SIZE, SIZE)]
    run = calls[-4:]
    assert [c[0] for c in run] == ["memcpy", "execute_async_v3", "memcpy", "sync"]
    assert run[0][1] == "cudaMemcpyHostToDevice" and run[2][1] == "cudaMemcpyDeviceToHost"
    assert {c[-1] for c in run} == {77}
    engine.close()
    assert memory.blocks == {}


def test_batch_outside_profile_and_wrong_shape_are_refused(monkeypatch, engine_file):
    _install(monkeypatch, trt=_fake_tensorrt(), cudart=_fake_cudart(_Memory(), []))
    engine = engines.create("tensorrt", engine_file)
    with pytest.raises(ValueError, match=r"outside the engine's profile range \[1, 4\]"):
        engine.infer(np.zeros((5, 1, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        engine.infer(np.zeros((1, 1, SIZE + 1, SIZE), np.float32))


def test_static_batch_engine_with_pycuda(monkeypatch, engine_file):
    calls, memory = [], _Memory()
    _install(monkeypatch, trt=_fake_tensorrt(dynamic=False, calls=calls), pycuda=_fake_pycuda(memory, calls))
    engine = engines.create("tensorrt", engine_file)
    assert engine.cuda.name == "pycuda" and engine.batch_range == (2, 2)
    x = np.random.default_rng(1).random((2, 1, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(engine.infer(x), _logits(x), rtol=1e-6)
    assert not any(c[0] == "set_input_shape" for c in calls)
    assert calls.count(("push",)) == calls.count(("pop",))
    with pytest.raises(ValueError, match="profile range"):
        engine.infer(x[:1])
