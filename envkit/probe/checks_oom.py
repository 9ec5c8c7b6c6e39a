"""oom checks: an over-limit allocation raises the typed error, the process survives, memory returns
to its baseline and the next allocation succeeds — on the GPU under a memory-fraction cap, and on the
CPU under an address-space limit (RLIMIT_AS)."""

from __future__ import annotations

import gc
from typing import Any

from .checks_gpu import not_applicable
from .context import Context
from .outcome import FAIL, PASS, SKIP, Outcome
from .torchfacts import gpu_or_skip, torch_or_skip

MIB = 1 << 20
GPU_CAP_BYTES = 1 << 30  # the deterministic cap: 1 GiB whatever the card
SMALL_BYTES = 64 * MIB
CPU_MARGIN_BYTES = 512 * MIB
RSS_TOLERANCE_BYTES = 96 * MIB


def check_oom_gpu(ctx: Context) -> Outcome:
    """oom.gpu: over a per-process memory cap -> torch.cuda.OutOfMemoryError; then recover."""
    torch: Any = None
    skipped = not_applicable(ctx)
    if not skipped:
        torch, skipped = gpu_or_skip()
    if skipped:
        return skipped
    error_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if error_type is None:
        return Outcome(
            status=FAIL,
            summary="torch.cuda.OutOfMemoryError does not exist in this torch",
            hint="torch >= 1.13 raises a typed OOM error; upgrade torch",
        )
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, GPU_CAP_BYTES / total)
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    try:
        return _gpu_contract(torch, error_type, fraction, total)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)


def _gpu_contract(torch: Any, error_type: Any, fraction: float, total: int) -> Outcome:
    device = torch.device("cuda", 0)
    baseline = torch.cuda.memory_allocated(device)
    attempt = 2 * GPU_CAP_BYTES
    details: dict[str, Any] = {
        "cap_mib": GPU_CAP_BYTES // MIB,
        "attempt_mib": attempt // MIB,
        "fraction": fraction,
        "total_mib": total // MIB,
    }
    raised = _try_allocate(lambda: torch.empty(attempt, dtype=torch.uint8, device=device))
    details["raised"] = raised["type"]
    details["message"] = raised["message"]
    gc.collect()
    torch.cuda.empty_cache()
    after = torch.cuda.memory_allocated(device)
    follow_up = _try_allocate(lambda: torch.ones(SMALL_BYTES // 4, device=device).sum().item())
    metrics = {"baseline_bytes": baseline, "after_bytes": after, "cap_mib": GPU_CAP_BYTES // MIB}
    problems = _contract_problems(raised, error_type, baseline, after, 0, follow_up)
    return _verdict(
        problems,
        metrics,
        details,
        f"{attempt // MIB} MiB over a {GPU_CAP_BYTES // MIB} MiB cap raised "
        "torch.cuda.OutOfMemoryError; memory back to baseline; next allocation ok",
        device=0,
    )


def check_oom_cpu(ctx: Context) -> Outcome:
    """oom.cpu: over an RLIMIT_AS cap -> RuntimeError about the allocation; then recover."""
    try:
        import resource
    except ImportError:
        return Outcome(status=SKIP, summary="resource module not available on this platform")
    torch, skipped = torch_or_skip()
    if skipped:
        return skipped
    # Warm up thread pools first: they reserve address space that must exist before the cap.
    torch.ones(1 << 16).mul(2).sum().item()
    vm_before = _proc_status_bytes("VmSize")
    if vm_before is None:
        return Outcome(
            status=SKIP, summary="/proc/self/status not readable; cannot size an address-space cap"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_before + CPU_MARGIN_BYTES
    if hard != resource.RLIM_INFINITY and hard < cap:
        return Outcome(
            status=SKIP, summary=f"hard RLIMIT_AS {hard} below the cap needed", details={"hard": hard}
        )
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        return _cpu_contract(torch, cap, vm_before)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _cpu_contract(torch: Any, cap: int, vm_before: int) -> Outcome:
    attempt = 4 * CPU_MARGIN_BYTES
    rss_before = _proc_status_bytes("VmRSS") or 0
    raised = _try_allocate(lambda: torch.empty(attempt, dtype=torch.uint8))
    gc.collect()
    rss_after = _proc_status_bytes("VmRSS") or 0
    follow_up = _try_allocate(lambda: torch.ones(SMALL_BYTES // 4).sum().item())
    details = {
        "cap_bytes": cap,
        "vm_before_bytes": vm_before,
        "attempt_mib": attempt // MIB,
        "raised": raised["type"],
        "message": raised["message"],
    }
    metrics = {
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "margin_mib": CPU_MARGIN_BYTES // MIB,
    }
    problems = _contract_problems(raised, RuntimeError, rss_before, rss_after, RSS_TOLERANCE_BYTES, follow_up)
    if raised["cls"] is not None and "alloc" not in raised["message"].lower():
        problems.append(f"the error does not mention the allocation: {raised['message'][:120]}")
    return _verdict(
        problems,
        metrics,
        details,
        f"{attempt // MIB} MiB over an address-space cap raised "
        "RuntimeError; RSS back to baseline; next allocation ok",
        device=None,
    )


def _try_allocate(function: Any) -> dict[str, Any]:
    """Run `function`; describe what it raised ("cls" None when it raised nothing)."""
    try:
        result = function()
        del result
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return {"cls": type(error), "type": type(error).__name__, "message": message[:500]}
    return {"cls": None, "type": None, "message": ""}


def _contract_problems(
    raised: dict[str, Any],
    expected: type,
    baseline: int,
    after: int,
    tolerance: int,
    follow_up: dict[str, Any],
) -> list[str]:
    problems = []
    if raised["cls"] is None:
        problems.append(f"the over-limit allocation did not raise {expected.__name__}")
    elif not issubclass(raised["cls"], expected):
        problems.append(f"raised {raised['type']}, not {expected.__name__}")
    if after - baseline > tolerance:
        problems.append(f"memory did not return to baseline ({(after - baseline) / MIB:.1f} MiB left over)")
    if follow_up["cls"] is not None:
        problems.append(
            f"the next small allocation failed: {follow_up['type']}: {follow_up['message'][:120]}"
        )
    return problems


def _verdict(
    problems: list[str], metrics: dict[str, Any], details: dict[str, Any], ok_summary: str, device: int | None
) -> Outcome:
    if problems:
        return Outcome(
            status=FAIL,
            summary="; ".join(problems),
            metrics=metrics,
            details=details,
            device=device,
            hint="an out-of-memory error must be catchable and recoverable; check the allocator "
            "settings (PYTORCH_CUDA_ALLOC_CONF) and torch version",
        )
    return Outcome(status=PASS, summary=ok_summary, metrics=metrics, details=details, device=device)


def _proc_status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status in bytes, or None when unreadable."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
