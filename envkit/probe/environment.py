"""What a measurement's numbers depend on, as the process itself sees it: CPU model, CPUs it may use,
its cgroup CPU quota, and the load average. Standard library only; anything unreadable is None.

These are what the container observed (claims of the image, not facts about the host): the runner
records the host's own view separately.
"""

from __future__ import annotations

import os
import platform
from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first "model name" in /proc/cpuinfo, else platform.processor(), else "unknown"."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpus_available() -> int:
    """How many CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_cpu_quota(root: str = CGROUP_ROOT) -> float | None:
    """The cgroup CPU limit in cores (cgroup v2 cpu.max, else v1 cfs quota/period); None when unlimited
    or unreadable."""
    text = _read(os.path.join(root, "cpu.max"))
    if text is not None:
        parts = text.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    quota = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us"))
    period = _read(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    if quota is None or period is None or quota.strip().startswith("-"):
        return None
    return _ratio(quota, period)


def _ratio(numerator: str, denominator: str) -> float | None:
    try:
        value = int(numerator) / int(denominator)
    except (ValueError, ZeroDivisionError):
        return None
    return round(value, 3) if value > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def effective_cpus(environment: dict[str, Any]) -> float:
    """The CPUs a measurement can really use: the affinity count, lowered by a cgroup quota."""
    cpus = float(environment.get("cpus_available") or 1)
    quota = environment.get("cgroup_cpu_quota")
    return min(cpus, quota) if quota else cpus


def observe() -> dict[str, Any]:
    """{"cpu_model", "cpus_available", "cgroup_cpu_quota", "loadavg_before"}; call `finish` afterwards."""
    return {
        "cpu_model": cpu_model(),
        "cpus_available": cpus_available(),
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "loadavg_before": loadavg(),
    }


def finish(environment: dict[str, Any]) -> dict[str, Any]:
    """`environment` with "loadavg_after" added (a new dict)."""
    return {**environment, "loadavg_after": loadavg()}
