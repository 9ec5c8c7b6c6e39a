"""Optional NVML access through pynvml (nvidia-ml-py): the image may lack it, and the runner may copy
the host's pynvml.py next to the probe (as a top-level module or inside this package)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class NvmlGpu:
    """One GPU as NVML sees it; fields NVML could not answer are None."""

    index: int
    name: str
    uuid: str | None
    memory_total_mib: int | None
    compute_capability: str | None
    mem_clock_max_mhz: int | None
    bus_width_bits: int | None
    sm_clock_max_mhz: int | None


@dataclasses.dataclass(frozen=True)
class NvmlInfo:
    """Driver version ("550.54.14"), the CUDA version the driver supports ("12.4"), and the GPUs."""

    driver: str
    cuda_driver: str | None
    gpus: tuple[NvmlGpu, ...]


def load_pynvml() -> Any:
    """The pynvml module, or None when neither a top-level nor a package-local copy imports."""
    try:
        import pynvml

        return pynvml
    except Exception:
        pass
    try:
        from . import pynvml as local  # type: ignore[attr-defined]

        return local
    except Exception:
        return None


def query() -> tuple[NvmlInfo | None, str]:
    """(info, "") when NVML answered, else (None, why it did not)."""
    nvml = load_pynvml()
    if nvml is None:
        return None, "pynvml not importable"
    try:
        nvml.nvmlInit()
    except Exception as error:
        return None, f"nvmlInit failed: {error}"
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = _safe(nvml.nvmlSystemGetCudaDriverVersion)
        count = int(nvml.nvmlDeviceGetCount())
        gpus = tuple(_gpu(nvml, index) for index in range(count))
        return NvmlInfo(driver=driver, cuda_driver=_cuda_text(cuda), gpus=gpus), ""
    except Exception as error:
        return None, f"NVML query failed: {error}"
    finally:
        _safe(nvml.nvmlShutdown)


def _gpu(nvml: Any, index: int) -> NvmlGpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = _safe(nvml.nvmlDeviceGetMemoryInfo, handle)
    capability = _safe(nvml.nvmlDeviceGetCudaComputeCapability, handle)
    return NvmlGpu(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_maybe_text(_safe(nvml.nvmlDeviceGetUUID, handle)),
        memory_total_mib=int(memory.total) // (1 << 20) if memory is not None else None,
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        mem_clock_max_mhz=_maybe_int(_safe(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM)),
        bus_width_bits=_maybe_int(_safe(getattr(nvml, "nvmlDeviceGetMemoryBusWidth", None), handle)),
        sm_clock_max_mhz=_maybe_int(_safe(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM)),
    )


def _safe(function: Callable[..., Any] | None, *args: Any) -> Any:
    if function is None:
        return None
    try:
        return function(*args)
    except Exception:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _maybe_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _cuda_text(version: Any) -> str | None:
    # NVML encodes CUDA 12.4 as 12040.
    if not version:
        return None
    version = int(version)
    return f"{version // 1000}.{version % 1000 // 10}"
