"""TensorRT engine files (``.engine``) on an NVIDIA GPU, with the TensorRT 10+ Python API.

Before deserializing, the engine's manifest (written by ``sim2real export --tensorrt``) is checked
against this device's TensorRT version and GPU compute capability (``contracts.engine_metadata``),
so an engine built elsewhere is a clear error that says how to rebuild it.

Written against the name-based tensor API (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); the input and
output names, shapes and dtypes are read from the engine. Device buffers go through cuda-python
(``cuda.bindings.runtime``, or the older ``cuda.cudart``) or, failing that, pycuda.

Status: not executed in this project's CI (no GPU there); the unit tests drive it with stand-ins
for ``tensorrt`` and ``cudart`` that check the call sequence and move real bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
from pathlib import Path

import numpy as np

from sim2real.contracts import engine_metadata
from sim2real.runtime.engines.base import Engine

MIN_TENSORRT_MAJOR = 10


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeError("the TensorRT backend needs the 'tensorrt' Python package (TensorRT 10+) and an "
                           "NVIDIA GPU; it is not installed here: use --backend onnxruntime") from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < MIN_TENSORRT_MAJOR:
        raise RuntimeError(f"TensorRT {trt.__version__} is too old: this backend uses the TensorRT "
                           f"{MIN_TENSORRT_MAJOR}+ API (named tensors, execute_async_v3)")
    return trt


class _CudaPython:
    """Buffers and a stream through cuda-python's runtime API (the primary context)."""

    name = "cuda-python"

    def __init__(self):
        try:
            self.rt = importlib.import_module("cuda.bindings.runtime")
        except ImportError:
            self.rt = importlib.import_module("cuda.cudart")
        self._host: dict[int, int] = {}

    def _call(self, result):
        err, *values = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA runtime error: {err}")
        return values[0] if len(values) == 1 else values

    def stream(self) -> int:
        return int(self._call(self.rt.cudaStreamCreate()))

    def device_alloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes)))

    def device_free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def host_alloc(self, count: int, dtype: np.dtype) -> np.ndarray:
        """Page-locked host memory as a 1-D numpy array."""
        ptr = int(self._call(self.rt.cudaMallocHost(count * dtype.itemsize)))
        raw = (ctypes.c_byte * (count * dtype.itemsize)).from_address(ptr)
        array = np.frombuffer(raw, dtype=dtype, count=count)
        self._host[array.ctypes.data] = ptr
        return array

    def host_free(self, array: np.ndarray) -> None:
        ptr = self._host.pop(array.ctypes.data, None)
        if ptr is not None:
            self._call(self.rt.cudaFreeHost(ptr))

    def to_device(self, device: int, host: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, stream))

    def to_host(self, host: np.ndarray, device: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind, stream))

    def synchronize(self, stream: int) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def destroy_stream(self, stream: int) -> None:
        self._call(self.rt.cudaStreamDestroy(stream))


class _PyCuda:
    """Buffers and a stream through pycuda, in the device's primary context (the one TensorRT uses)."""

    name = "pycuda"

    def __init__(self):
        self.cuda = importlib.import_module("pycuda.driver")
        self.cuda.init()
        self.context = self.cuda.Device(0).retain_primary_context()
        self._device: dict[int, object] = {}
        self._streams: dict[int, object] = {}

    @contextlib.contextmanager
    def _active(self):
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def stream(self) -> int:
        with self._active():
            stream = self.cuda.Stream()
        self._streams[stream.handle] = stream
        return int(stream.handle)

    def device_alloc(self, nbytes: int) -> int:
        with self._active():
            allocation = self.cuda.mem_alloc(nbytes)
        self._device[int(allocation)] = allocation
        return int(allocation)

    def device_free(self, ptr: int) -> None:
        allocation = self._device.pop(ptr, None)
        if allocation is not None:
            with self._active():
                allocation.free()

    def host_alloc(self, count: int, dtype: np.dtype) -> np.ndarray:
        with self._active():
            return self.cuda.pagelocked_empty(count, dtype)

    def host_free(self, array: np.ndarray) -> None:
        """pycuda frees page-locked memory with the array."""

    def to_device(self, device: int, host: np.ndarray, stream: int) -> None:
        with self._active():
            self.cuda.memcpy_htod_async(self._device[device], host, self._streams[stream])

    def to_host(self, host: np.ndarray, device: int, stream: int) -> None:
        with self._active():
            self.cuda.memcpy_dtoh_async(host, self._device[device], self._streams[stream])

    def synchronize(self, stream: int) -> None:
        with self._active():
            self._streams[stream].synchronize()

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)


def _cuda_bindings():
    errors = []
    for binding in (_CudaPython, _PyCuda):
        try:
            return binding()
        except ImportError as exc:
            errors.append(exc.name or str(exc))
    raise RuntimeError(f"the TensorRT backend needs cuda-python or pycuda for device buffers "
                       f"(missing: {', '.join(errors)})")


class TensorRTEngine(Engine):
    """One input (N, C, H, W), one output (N, len(ACTIONS)); names, shapes and dtypes from the engine.

    An engine holds no metadata: its contract is the one its manifest copied from the source ONNX
    (checked against that file's own when the engine was built)."""

    name = "tensorrt"

    def __init__(self, model_path: Path):
        super().__init__(model_path)
        trt = _import_tensorrt()
        gpu = engine_metadata.cuda_device()
        if gpu is None:
            raise RuntimeError("the TensorRT backend needs an NVIDIA GPU and its driver; none is visible here")
        self.manifest = engine_metadata.check_engine_file(model_path, trt.__version__, gpu["compute_capability"])
        self.cuda = _cuda_bindings()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(model_path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{model_path} is not a TensorRT engine this TensorRT {trt.__version__} and GPU can "
                             f"load (engines are built per TensorRT version and GPU: rebuild it on this device)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{model_path}: expected one input and one output tensor, got inputs {inputs} "
                             f"and outputs {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.input_name))
        if len(self.input_shape) != 4 or min(self.input_shape[1:]) <= 0:
            raise ValueError(f"{model_path}: input '{self.input_name}' has shape {self.input_shape}, "
                             f"expected (N, C, H, W)")
        self.output_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.output_name))
        self.contract = self.manifest.get("contract")
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.dynamic_batch = self.input_shape[0] < 0
        if self.dynamic_batch:
            low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.batch_range = (int(low[0]), int(high[0]))
        else:
            self.batch_range = (self.input_shape[0], self.input_shape[0])
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._batch = 0
        self._capacity = 0
        self._device_in = self._device_out = 0
        self._host_in: np.ndarray | None = None
        self._host_out: np.ndarray | None = None

    def _ensure_buffers(self, batch: int) -> tuple[int, ...]:
        """Set the input shape for ``batch``; (re)allocate buffers; return the output shape."""
        if batch != self._batch:
            if self.dynamic_batch and not self.context.set_input_shape(self.input_name, (batch, *self.input_shape[1:])):
                raise ValueError(f"TensorRT rejected input shape {(batch, *self.input_shape[1:])}")
            self._batch = batch
        output_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        if batch > self._capacity:
            self._free_buffers()
            in_count = batch * int(np.prod(self.input_shape[1:]))
            out_count = batch * int(np.prod(output_shape[1:]))
            self._device_in = self.cuda.device_alloc(in_count * self.input_dtype.itemsize)
            self._device_out = self.cuda.device_alloc(out_count * self.output_dtype.itemsize)
            self._host_in = self.cuda.host_alloc(in_count, self.input_dtype)
            self._host_out = self.cuda.host_alloc(out_count, self.output_dtype)
            self.context.set_tensor_address(self.input_name, self._device_in)
            self.context.set_tensor_address(self.output_name, self._device_out)
            self._capacity = batch
        return output_shape

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"input shape {tuple(batch.shape)} does not fit the engine's {self.input_shape}")
        count = batch.shape[0]
        low, high = self.batch_range
        if not low <= count <= high:
            raise ValueError(f"batch of {count} is outside the engine's profile range [{low}, {high}]")
        output_shape = self._ensure_buffers(count)
        host_in = self._host_in[: batch.size]
        np.copyto(host_in.reshape(batch.shape), batch, casting="same_kind")
        host_out = self._host_out[: int(np.prod(output_shape))]
        self.cuda.to_device(self._device_in, host_in, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.cuda.to_host(host_out, self._device_out, self.stream)
        self.cuda.synchronize(self.stream)
        return host_out.reshape(output_shape).astype(np.float32)

    def _free_buffers(self) -> None:
        for ptr in (self._device_in, self._device_out):
            if ptr:
                self.cuda.device_free(ptr)
        for array in (self._host_in, self._host_out):
            if array is not None:
                self.cuda.host_free(array)
        self._device_in = self._device_out = 0
        self._host_in = self._host_out = None
        self._capacity = 0

    def close(self) -> None:
        """Free device and host buffers and the stream."""
        self._free_buffers()
        if self.stream:
            self.cuda.destroy_stream(self.stream)
            self.stream = 0

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()
