"""image/env checks: interpreter, torch import and versions vs labels, /dev/shm, NVIDIA env vars."""

from __future__ import annotations

import os
import platform
import sys

from . import versions
from .context import Context
from .outcome import FAIL, PASS, SKIP, WARN, Outcome, worst
from .torchfacts import facts, import_torch, shipped

SHM_MIN_BYTES = 1 << 30
_NVIDIA_VARS = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")
_REPORTED_VARS = (*_NVIDIA_VARS, "CUDA_VISIBLE_DEVICES", "CUDA_VERSION", "LD_LIBRARY_PATH")


def check_python(ctx: Context) -> Outcome:
    """env.python: the interpreter's version and path."""
    version = platform.python_version()
    details = {
        "version": version,
        "executable": sys.executable,
        "implementation": platform.python_implementation(),
        "prefix": sys.prefix,
    }
    return Outcome(status=PASS, summary=f"Python {version} at {sys.executable}", details=details)


def check_torch(ctx: Context) -> Outcome:
    """env.torch: torch imports; its CUDA/cuDNN/NCCL versions, debug flag and arch list."""
    torch, error, seconds = import_torch()
    if torch is None:
        return Outcome(
            status=FAIL,
            summary=f"torch is not importable: {error}",
            hint=f"install torch into this interpreter ({sys.executable} -m pip install torch), or point "
            "the runner at the Python that has it",
            metrics={"import_s": round(seconds, 3)},
            details={"error": error, "executable": sys.executable},
        )
    found = facts(torch)
    summary = (
        f"torch {found['torch']} (CUDA {found['cuda'] or 'none'}, cuDNN {found['cudnn'] or 'none'}, "
        f"NCCL {found['nccl'] or 'none'})"
    )
    metrics = {"import_s": round(seconds, 3)}
    if found["debug"]:
        return Outcome(
            status=WARN,
            summary=summary + " is a debug build",
            metrics=metrics,
            details=found,
            hint="debug builds are several times slower; install a release wheel",
        )
    return Outcome(status=PASS, summary=summary, metrics=metrics, details=found)


def check_versions(ctx: Context) -> Outcome:
    """env.versions: what the image ships against what its io.envkit.* labels promise."""
    torch = import_torch()[0]
    have = shipped(torch)
    details = {
        "shipped": {"python": have.python, "torch": have.torch, "cuda": have.cuda, "cudnn": have.cudnn},
        "labels": {k: v for k, v in ctx.labels.items() if k.startswith("io.envkit.")},
    }
    findings = versions.compare_all(ctx.labels, have)
    if not findings:
        return Outcome(status=SKIP, summary="no io.envkit labels to compare with", details=details)
    details["findings"] = [{"status": f.status, "message": f.message} for f in findings]
    status = worst(f.status for f in findings)
    hint = None
    if status == FAIL:
        hint = (
            "the image does not ship what its labels promise: check the torch index URL / wheel "
            "variant and the base image in the Dockerfile, then rebuild"
        )
    return Outcome(status=status, summary=versions.summarise(findings), hint=hint, details=details)


def check_shm(ctx: Context) -> Outcome:
    """env.shm: /dev/shm size (DataLoader workers pass tensors through it)."""
    try:
        stat = os.statvfs("/dev/shm")
    except OSError as error:
        return Outcome(
            status=WARN,
            summary=f"/dev/shm not available: {error}",
            hint="mount a tmpfs at /dev/shm (docker run --shm-size=8g or --ipc=host)",
        )
    size = stat.f_frsize * stat.f_blocks
    metrics: dict[str, float] = {"shm_bytes": size, "shm_mib": size // (1 << 20)}
    if size < SHM_MIN_BYTES:
        return Outcome(
            status=WARN,
            summary=f"/dev/shm is {size / (1 << 20):.0f} MiB (< 1 GiB)",
            metrics=metrics,
            hint="DataLoader workers need shared memory: docker run --shm-size=8g or --ipc=host",
        )
    return Outcome(status=PASS, summary=f"/dev/shm is {size / (1 << 30):.1f} GiB", metrics=metrics)


def check_nvidia_env(ctx: Context) -> Outcome:
    """env.nvidia-env: the NVIDIA_* / CUDA_* / LD_LIBRARY_PATH variables a GPU container relies on."""
    found = {name: os.environ.get(name) for name in _REPORTED_VARS}
    cuda_image = bool(ctx.label("cuda")) or bool(found["CUDA_VERSION"])
    missing = [name for name in _NVIDIA_VARS if not found[name]]
    details = {"variables": found, "cuda_image": cuda_image}
    if cuda_image and missing:
        return Outcome(
            status=WARN,
            summary=f"CUDA image without {', '.join(missing)}",
            hint="the NVIDIA Container Toolkit uses these to inject the driver: set "
            "NVIDIA_VISIBLE_DEVICES=all and NVIDIA_DRIVER_CAPABILITIES=compute,utility in the image",
            details=details,
        )
    capabilities = found["NVIDIA_DRIVER_CAPABILITIES"] or ""
    if cuda_image and not _has_compute(capabilities):
        return Outcome(
            status=WARN,
            summary=f"NVIDIA_DRIVER_CAPABILITIES={capabilities} lacks compute",
            hint="set NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            details=details,
        )
    shown = ", ".join(
        f"{name}={value}" for name, value in found.items() if value and name != "LD_LIBRARY_PATH"
    )
    return Outcome(
        status=PASS, summary=shown or "no NVIDIA/CUDA variables (not a CUDA image)", details=details
    )


def _has_compute(capabilities: str) -> bool:
    parts = {part.strip() for part in capabilities.split(",")}
    return bool(parts & {"compute", "all"})
