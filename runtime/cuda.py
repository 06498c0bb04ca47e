"""CUDA and TensorRT plumbing shared by the TensorRT engine backend and the engine builder.

``tensorrt``, ``cuda-python`` and ``pycuda`` are imported inside the functions that need them: they come
with JetPack on a Jetson and with NVIDIA's containers, so a machine without them fails only when an engine
is actually chosen.
"""

from __future__ import annotations

import contextlib
import subprocess

import numpy as np

from fer_engine.errors import FerError


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise FerError(
            "TensorRT is not installed in this Python. It comes with JetPack on a Jetson (python3-libnvinfer) and "
            "in NVIDIA's TensorRT containers; PyPI's 'tensorrt' only works where NVIDIA's own index is reachable. "
            "Build the engine where TensorRT is, with fer-export --tensorrt or the trtexec command printed above."
        ) from exc
    return trt


def _device_properties():
    """cudaGetDeviceProperties(0) through cuda-python, or None without it (or without a GPU)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    err, props = cudart.cudaGetDeviceProperties(0)
    return props if int(err) == 0 else None


def gpu_compute_capability() -> str:
    """e.g. '87' for a Jetson Orin, '90' for an H100."""
    props = _device_properties()
    if props is not None:
        return f"{props.major}{props.minor}"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split()
        return out[0].replace(".", "")
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    try:  # Jetson boards have no nvidia-smi; pycuda is common there
        import pycuda.driver as cuda

        cuda.init()
        major, minor = cuda.Device(0).compute_capability()
        return f"{major}{minor}"
    except ImportError:
        raise FerError("cannot tell the GPU's compute capability: install cuda-python or pycuda") from None


def gpu_device_name() -> str:
    """The GPU's name (e.g. 'Orin', 'NVIDIA H100 80GB HBM3'), or '' when no CUDA binding can tell."""
    props = _device_properties()
    if props is not None:
        name = props.name
        return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device(0).name()
    except ImportError:
        return ""


class DeviceBuffer:
    """One device allocation (calibration batches, engine inputs and outputs), through cuda-python or pycuda."""

    def __init__(self, nbytes: int):
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart
            self._cudart = cudart
            err, self.ptr = cudart.cudaMalloc(nbytes)
            if int(err) != 0:
                raise FerError(f"cudaMalloc of {nbytes} bytes failed: {err}")
        except ImportError:
            try:
                import pycuda.driver as cuda
            except ImportError:
                raise FerError("TensorRT needs cuda-python (pip install cuda-python) or pycuda to move data to the GPU") from None
            # The device's primary context, the one TensorRT (CUDA runtime) uses on every thread; pycuda.autoinit
            # would make a context of its own, current only on the importing thread, and fer-run infers on
            # another thread.
            cuda.init()
            self._cudart, self._pycuda = None, cuda
            self._context = cuda.Device(0).retain_primary_context()
            with self._current():
                self._alloc = cuda.mem_alloc(nbytes)
            self.ptr = int(self._alloc)

    @contextlib.contextmanager
    def _current(self):
        self._context.push()
        try:
            yield
        finally:
            self._pycuda.Context.pop()

    def upload(self, host: np.ndarray) -> int:
        host = np.ascontiguousarray(host, np.float32)
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._cudart.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind)
        else:
            with self._current():
                self._pycuda.memcpy_htod(self._alloc, host)
        return int(self.ptr)

    def download(self, host: np.ndarray) -> np.ndarray:
        """Copy the device buffer's first ``host.nbytes`` bytes into ``host`` (contiguous) and return it."""
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._cudart.cudaMemcpy(host.ctypes.data, self.ptr, host.nbytes, kind)
        else:
            with self._current():
                self._pycuda.memcpy_dtoh(host, self._alloc)
        return host
