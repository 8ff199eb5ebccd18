"""The GPU an engine is built for: name, compute capability, integrated (Jetson) or discrete.

Engines are only valid on the GPU and TensorRT that built them, so these fields key the cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .cuda_binding import CUDA_HINT, check, cudart_module, pycuda_driver
from .errors import CudaUnavailable


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: tuple[int, int]
    integrated: bool            # shares memory with the CPU (Jetson): mapped zero-copy buffers pay off
    total_memory_bytes: int
    index: int = 0

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}{self.compute_capability[1]}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        return d


def _text(raw: object) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).split(b"\0", 1)[0].decode(errors="replace").strip()
    return str(raw).strip()


def _query_cuda_python(cudart, index: int) -> DeviceInfo:
    count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount (is the NVIDIA driver installed?)", cudart)
    if count <= index:
        raise CudaUnavailable(f"no CUDA device {index}: this machine has {count}")
    prop = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties", cudart)
    return DeviceInfo(_text(prop.name), (int(prop.major), int(prop.minor)), bool(prop.integrated),
                      int(prop.totalGlobalMem), index)


def _query_pycuda(drv, index: int) -> DeviceInfo:
    try:
        drv.init()
        dev = drv.Device(index)
        integrated = bool(dev.get_attribute(drv.device_attribute.INTEGRATED))
        cc = tuple(dev.compute_capability())
        return DeviceInfo(dev.name(), cc, integrated, int(dev.total_memory()), index)
    except drv.Error as exc:
        raise CudaUnavailable(f"pycuda could not open CUDA device {index}: {exc}") from exc


def query_device(index: int = 0) -> DeviceInfo:
    """Ask the driver about one GPU; CudaUnavailable says what is missing (binding, driver, device)."""
    cudart = cudart_module()
    if cudart is not None:
        return _query_cuda_python(cudart, index)
    drv = pycuda_driver()
    if drv is not None:
        return _query_pycuda(drv, index)
    raise CudaUnavailable(f"no CUDA Python binding is installed: {CUDA_HINT}")
