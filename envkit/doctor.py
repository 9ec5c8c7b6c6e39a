"""Host preflight: can this host build and validate images, and which planned cells can its driver run?

Every probe here answers; none raises for a missing piece ("no NVIDIA driver" is a normal answer on a
CPU host). Only the engine decides the exit code: the rest is advice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from envkit import __version__
from envkit.compat import KnowledgeBase, version_key
from envkit.engine import Engine
from envkit.errors import EnvkitError
from envkit.probe.nvml import NvmlGpu, NvmlInfo, query
from envkit.resolve import Cell

DOCTOR_SCHEMA = "envkit.doctor/1"
NVIDIA_RUNTIME = "nvidia"
VERDICTS = ("runs", "reduced", "driver-too-old", "no-driver", "unknown", "cpu")

NvmlQuery = Callable[[], "tuple[NvmlInfo | None, str]"]


@dataclass(frozen=True, kw_only=True)
class EngineStatus:
    """Whether the engine answered, and what it said (or why it did not)."""

    host: str
    reachable: bool
    version: str | None = None
    api_version: str | None = None
    runtimes: tuple[str, ...] | None = None
    error: str | None = None

    @property
    def nvidia_runtime(self) -> bool | None:
        return None if self.runtimes is None else NVIDIA_RUNTIME in self.runtimes


@dataclass(frozen=True, kw_only=True)
class BuildKitStatus:
    """The docker CLI that can build with BuildKit, or why none can."""

    cli: str | None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class GpuStatus:
    """The NVIDIA driver and GPUs NVML reports; `error` says why there are none."""

    driver: str | None
    cuda_driver: str | None
    gpus: tuple[NvmlGpu, ...]
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class CellFit:
    """Whether this host's driver can run one planned cell (a verdict from VERDICTS, and why)."""

    cell: str
    cuda: str | None
    driver_floor: str | None
    compat_floor: str | None
    verdict: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class Diagnosis:
    """Everything doctor found; `ok` is whether the engine answered."""

    engine: EngineStatus
    buildkit: BuildKitStatus
    gpu: GpuStatus
    cells: tuple[CellFit, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.engine.reachable

    def to_dict(self) -> dict[str, Any]:
        """The findings as JSON-ready data (schema envkit.doctor/1)."""
        return _lists(
            {
                "schema": DOCTOR_SCHEMA,
                "envkit_version": __version__,
                "engine": asdict(self.engine) | {"nvidia_runtime": self.engine.nvidia_runtime},
                "buildkit": asdict(self.buildkit),
                "gpu": asdict(self.gpu),
                "cells": None if self.cells is None else [asdict(fit) for fit in self.cells],
            }
        )


def diagnose(
    engine: Engine,
    *,
    host: str,
    nvml: NvmlQuery = query,
    find_buildkit: Callable[[], str] | None = None,
    cells: Iterable[Cell] | None = None,
    kb: KnowledgeBase | None = None,
) -> Diagnosis:
    """Probe the engine, the BuildKit CLI and NVML; with `cells` (and `kb`), judge each against the driver."""
    gpu = gpu_status(nvml)
    fits = None
    if cells is not None:
        if kb is None:
            raise ValueError("judging cells needs the knowledge base")
        fits = tuple(cell_fit(cell, gpu.driver, kb) for cell in cells)
    return Diagnosis(
        engine=engine_status(engine, host), buildkit=buildkit_status(find_buildkit), gpu=gpu, cells=fits
    )


def engine_status(engine: Engine, host: str) -> EngineStatus:
    """What the engine says about itself, or why it cannot be reached."""
    try:
        info = engine.info()
    except EnvkitError as error:
        return EngineStatus(host=host, reachable=False, error=error.message)
    try:
        runtimes = engine.runtimes()
    except EnvkitError:
        runtimes = None
    return EngineStatus(
        host=info.host, reachable=True, version=info.version, api_version=info.api_version, runtimes=runtimes
    )


def buildkit_status(find: Callable[[], str] | None = None) -> BuildKitStatus:
    """The first docker CLI that can build with BuildKit (envkit.engine.buildkit's finder)."""
    # Imported here: the backends import docker-py, which costs most of envkit's start-up time.
    from envkit.engine.buildkit import cli_candidates, find_cli

    finder = find or (lambda: find_cli(cli_candidates(os.environ)))
    try:
        return BuildKitStatus(cli=finder())
    except EnvkitError as error:
        return BuildKitStatus(cli=None, error=error.message)


def gpu_status(nvml: NvmlQuery = query) -> GpuStatus:
    """Driver and GPUs from NVML; "no NVIDIA driver" is an answer, not an error."""
    info, why = nvml()
    if info is None:
        return GpuStatus(driver=None, cuda_driver=None, gpus=(), error=f"no NVIDIA driver ({why})")
    return GpuStatus(driver=info.driver, cuda_driver=info.cuda_driver, gpus=info.gpus)


def cell_fit(cell: Cell, driver: str | None, kb: KnowledgeBase) -> CellFit:
    """Whether a host with `driver` runs `cell`: at its CUDA's driver floor, only under minor-version
    compatibility (reduced features), or not at all."""
    if not cell.cuda:
        return _fit(cell, None, None, "cpu", "CPU image: runs anywhere")
    floor, compat = kb.driver_floor(cell.cuda), kb.compat_floor(cell.cuda)
    if driver is None:
        return _fit(cell, floor, compat, "no-driver", "no NVIDIA driver here: GPU checks will be skipped")
    if floor is None:
        return _fit(cell, floor, compat, "unknown", f"no known driver floor for CUDA {cell.cuda}")
    have = _version(driver)
    if have is not None and have >= version_key(floor):
        return _fit(cell, floor, compat, "runs", f"driver {driver} ≥ {floor} (CUDA {cell.cuda})")
    if have is not None and compat is not None and have >= version_key(compat):
        return _fit(
            cell,
            floor,
            compat,
            "reduced",
            f"runs with reduced features: driver {driver} is below {floor} for CUDA {cell.cuda} but "
            f"≥ {compat}, the CUDA {cell.cuda.split('.')[0]}.x minor-version compatibility floor "
            "(no PTX JIT; newer-toolkit APIs fail)",
        )
    return _fit(
        cell,
        floor,
        compat,
        "driver-too-old",
        f"driver {driver} is below {floor} for CUDA {cell.cuda}: upgrade it, or pick an older CUDA",
    )


def _fit(cell: Cell, floor: str | None, compat: str | None, verdict: str, detail: str) -> CellFit:
    return CellFit(
        cell=cell.id, cuda=cell.cuda, driver_floor=floor, compat_floor=compat, verdict=verdict, detail=detail
    )


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return value


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return version_key(text.strip())
    except ValueError:
        return None
