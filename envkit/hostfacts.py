"""What moves the numbers, read on the host that runs the probe (never taken from inside the image).

CPU model, logical CPUs, the cores envkit's process may use (affinity) and its cgroup CPU quota, the
load average before and after a run, and per GPU the clocks and power limit that NVML reports. Every
reader returns None when the host does not tell: a missing fact is recorded as null, never guessed.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROC_CPUINFO = Path("/proc/cpuinfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages, or None where the platform has none."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def cpu_facts(*, cpuinfo: Path = PROC_CPUINFO, cgroup: Path = CGROUP_ROOT) -> dict[str, Any]:
    """{"cpu_model", "cpu_count", "cpus_available", "cgroup_cpu_quota"} of this host (report schema 2)."""
    return {
        "cpu_model": cpu_model(cpuinfo),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available(),
        "cgroup_cpu_quota": cgroup_cpu_quota(cgroup),
    }


def cpu_model(cpuinfo: Path = PROC_CPUINFO) -> str | None:
    """The CPU's model name ("model name" in /proc/cpuinfo; "Hardware"/"CPU part" elsewhere)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return " ".join(value.split())[:200]
    return platform.processor() or None


def cpus_available() -> int | None:
    """Logical CPUs this process may run on (its affinity mask), else the host's CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2 cpu.max or v1 CFS files); None: none."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _cores(quota, period)
    return _cores(
        _read(root / "cpu" / "cpu.cfs_quota_us") or "", _read(root / "cpu" / "cpu.cfs_period_us") or ""
    )


def _cores(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None  # "max" (v2) or unreadable
    if quota_us <= 0 or period_us <= 0:
        return None  # -1 is v1's "no quota"
    return round(quota_us / period_us, 3)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def gpu_facts(nvml: Any) -> dict[str, dict[str, Any]]:
    """Current SM/memory clocks and the power limit per GPU UUID (and per index as "#i"), read through
    an initialised pynvml module `nvml`; a value NVML does not give is None."""
    facts: dict[str, dict[str, Any]] = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        power_mw = _nvml(lambda h=handle: nvml.nvmlDeviceGetPowerManagementLimit(h))
        found = {
            "sm_clock_mhz": _nvml(lambda h=handle: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": _nvml(lambda h=handle: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)),
            "power_limit_w": None if power_mw is None else round(power_mw / 1000, 1),
        }
        uuid = _nvml(lambda h=handle: nvml.nvmlDeviceGetUUID(h))
        if isinstance(uuid, bytes):
            uuid = uuid.decode("ascii", "replace")
        if uuid:
            facts[str(uuid)] = found
        facts[f"#{index}"] = found
    return facts


def _nvml(read: Any) -> Any:
    try:
        return read()
    except Exception:  # NVMLError_NotSupported and friends: the fact is absent, not an error
        return None


def host_gpu_facts() -> dict[str, dict[str, Any]]:
    """`gpu_facts` of this host's NVML, or {} when NVML (nvidia-ml-py or the driver) is not there."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        return gpu_facts(pynvml)
    except Exception:
        return {}
    finally:
        _nvml(pynvml.nvmlShutdown)


def with_gpu_facts(
    gpus: Sequence[Mapping[str, Any]], facts: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`gpus` (report GPU objects) with the host's clocks and power limit added, matched by UUID (a
    container may number its GPUs differently), by index only for a GPU without one."""
    enriched = []
    for gpu in gpus:
        uuid = gpu.get("uuid")
        extra = facts.get(str(uuid)) if uuid else facts.get(f"#{gpu.get('index')}")
        enriched.append({**gpu, **(extra or {})})
    return enriched
