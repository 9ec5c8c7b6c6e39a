"""Import torch inside a check child and read the facts every check family needs."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from .outcome import SKIP, Outcome
from .versions import Shipped, format_cudnn

NO_GPU_HINT = (
    "run the container with --gpus all (the host needs the NVIDIA Container Toolkit and a driver); "
    "with --local, check nvidia-smi and CUDA_VISIBLE_DEVICES"
)


def import_torch() -> tuple[Any, str | None, float]:
    """(torch module or None, the import error as text or None, seconds the import took)."""
    started = time.perf_counter()
    try:
        import torch
    except Exception as error:
        return None, f"{type(error).__name__}: {error}", time.perf_counter() - started
    return torch, None, time.perf_counter() - started


def facts(torch: Any) -> dict[str, Any]:
    """torch/CUDA/cuDNN/NCCL versions, debug flag and arch list, as JSON-ready values."""
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": format_cudnn(_safe(torch.backends.cudnn.version)),
        "nccl": _nccl(torch),
        "debug": bool(getattr(torch.version, "debug", False)),
        "git_version": getattr(torch.version, "git_version", None),
        "hip": getattr(torch.version, "hip", None),
        "arch_list": list(_safe(torch.cuda.get_arch_list) or []),
    }


def shipped(torch: Any) -> Shipped:
    """What the image ships, for versions.compare_all; torch may be None (not importable)."""
    python = platform.python_version()
    if torch is None:
        return Shipped(python=python, torch=None, cuda=None, cudnn=None)
    found = facts(torch)
    return Shipped(
        python=python,
        torch=found["torch"],
        cuda=found["cuda"],
        cudnn=found["cudnn"],
        arch_list=tuple(found["arch_list"]),
    )


def _nccl(torch: Any) -> str | None:
    if not torch.version.cuda:
        return None
    version = _safe(lambda: torch.cuda.nccl.version())
    if isinstance(version, tuple):
        return ".".join(str(part) for part in version)
    return None if version is None else str(version)


def _safe(function: Any) -> Any:
    try:
        return function()
    except Exception:
        return None


def torch_or_skip() -> tuple[Any, Outcome | None]:
    """(torch, None), or (None, a SKIP outcome pointing at env.torch) when torch does not import."""
    torch, error, _ = import_torch()
    if torch is None:
        return None, Outcome(
            status=SKIP, summary="torch not importable (see env.torch)", details={"error": error}
        )
    return torch, None


def no_nvidia_device_nodes() -> bool:
    """True on Linux when no NVIDIA device node exists: no GPU can be visible, whatever torch says.

    Lets GPU checks skip without the seconds a torch import costs on CPU-only hosts and images.
    """
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(path) for path in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def no_gpu_outcome() -> Outcome:
    """The SKIP every GPU check returns when no GPU is visible."""
    return Outcome(status=SKIP, summary="no GPU visible", hint=NO_GPU_HINT)


def gpu_or_skip() -> tuple[Any, Outcome | None]:
    """(torch, None) when torch sees a CUDA GPU, else (torch or None, a SKIP outcome)."""
    if no_nvidia_device_nodes():
        return None, no_gpu_outcome()
    torch, skipped = torch_or_skip()
    if skipped:
        return None, skipped
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return torch, no_gpu_outcome()
    return torch, None
