"""gpu checks: visibility (torch vs NVML), driver floor, arch coverage, kernels vs a CPU reference."""

from __future__ import annotations

import ast
import collections
import importlib.util
import os
from typing import Any

from . import arch, nvml, versions
from .context import Context
from .outcome import ERROR, FAIL, NA, PASS, SKIP, WARN, Outcome, worst
from .torchfacts import NO_GPU_HINT, gpu_or_skip, no_gpu_outcome, no_nvidia_device_nodes, torch_or_skip

NVML_HINT = "install nvidia-ml-py in the image (or let the runner copy pynvml.py next to the probe)"

# Relative error (max |gpu - cpu| / max |cpu|) each kernel must stay within.
TOLERANCES = {"matmul_fp32": 1e-4, "matmul_fp16": 1e-2, "matmul_bf16": 4e-2, "conv2d_fp32": 1e-3}


def not_applicable(ctx: Context) -> Outcome | None:
    """An N/A outcome when GPU checks do not apply to this image, else None.

    They do not apply when the image promises no CUDA (its io.envkit labels name no CUDA version and
    no CUDA wheel variant) and ships a torch built without CUDA or ROCm. A CUDA image on a host without
    a GPU is not N/A: its GPU checks could have run, so they SKIP (and `--require-gpu` fails them).
    """
    promised = [value for value in (ctx.label("cuda"), ctx.label("torch-variant")) if value]
    if any(value.lower() not in ("none", "cpu") for value in promised):
        return None
    built_for = _torch_gpu_build()
    if built_for != "":
        return None  # a CUDA/ROCm torch, or torch not found (env.torch says why)
    return Outcome(
        status=NA,
        summary="not applicable: a CPU image (no CUDA promised by its labels, torch built without CUDA)",
        details={"labels": {"cuda": ctx.label("cuda"), "torch-variant": ctx.label("torch-variant")}},
    )


def _torch_gpu_build() -> str | None:
    """torch.version.cuda (or .hip) read from torch/version.py without importing torch (seconds on a
    CPU host); "" for a CPU-only build, None when torch or its version file cannot be found."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py"), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return None
    found: dict[str, Any] = {}
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            found[target.id] = value.value
    if "cuda" not in found:
        return None
    return str(found.get("cuda") or found.get("hip") or "")


def check_visibility(ctx: Context) -> Outcome:
    """gpu.visibility: torch.cuda and NVML agree on how many GPUs and which models."""
    skipped = not_applicable(ctx)
    if skipped:
        return skipped
    if no_nvidia_device_nodes():
        return no_gpu_outcome()
    torch, skipped = torch_or_skip()
    if skipped:
        return skipped
    info, why = nvml.query()
    nvml_names = [gpu.name for gpu in info.gpus] if info else []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    details = {
        "torch_names": names,
        "nvml_names": nvml_names,
        "nvml": why or "ok",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    metrics = {"torch_gpus": count, "nvml_gpus": len(nvml_names)}
    if count == 0:
        return _torch_sees_none(torch, nvml_names, metrics, details)
    if info is None:
        return Outcome(
            status=WARN,
            summary=f"{count} GPU(s) visible to torch; NVML not available, counts not cross-checked",
            hint=NVML_HINT,
            metrics=metrics,
            details=details,
        )
    restricted = bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if (count > len(nvml_names)) or (not restricted and count != len(nvml_names)):
        return Outcome(
            status=FAIL,
            summary=f"torch sees {count} GPU(s), NVML sees {len(nvml_names)}",
            hint="check CUDA_VISIBLE_DEVICES and the --gpus option of the container",
            metrics=metrics,
            details=details,
        )
    if not restricted and collections.Counter(names) != collections.Counter(nvml_names):
        return Outcome(
            status=WARN,
            summary=f"GPU models differ: torch {names}, NVML {nvml_names}",
            metrics=metrics,
            details=details,
        )
    return Outcome(
        status=PASS,
        summary=f"{count} GPU(s): {', '.join(sorted(set(names)))} (torch and NVML agree)",
        metrics=metrics,
        details=details,
    )


def _torch_sees_none(
    torch: Any, nvml_names: list[str], metrics: dict[str, Any], details: dict[str, Any]
) -> Outcome:
    if not nvml_names:
        return Outcome(
            status=SKIP, summary="no GPU visible", hint=NO_GPU_HINT, metrics=metrics, details=details
        )
    if not torch.version.cuda:
        hint = "this torch is a CPU-only build: install a CUDA wheel variant (e.g. from the cu124 index)"
    else:
        hint = "torch's CUDA cannot use this driver or device: see gpu.driver and CUDA_VISIBLE_DEVICES"
    return Outcome(
        status=FAIL,
        summary=f"NVML sees {len(nvml_names)} GPU(s) but torch.cuda sees none",
        hint=hint,
        metrics=metrics,
        details=details,
    )


def check_driver(ctx: Context) -> Outcome:
    """gpu.driver: the host driver (NVML) against io.envkit.driver-floor and the CUDA compat floor."""
    skipped = not_applicable(ctx)
    if skipped:
        return skipped
    if no_nvidia_device_nodes():
        return no_gpu_outcome()
    torch = torch_or_skip()[0]
    info, why = nvml.query()
    if info is None or not info.gpus:
        return _driver_without_nvml(torch, why)
    cuda = ctx.label("cuda") or (torch.version.cuda if torch is not None else None)
    floor = ctx.label("driver-floor")
    details = {"driver": info.driver, "cuda_driver": info.cuda_driver, "floor": floor, "cuda": cuda}
    if not floor and not cuda:
        return Outcome(
            status=SKIP,
            summary=f"driver {info.driver}; no io.envkit.driver-floor label to compare",
            details=details,
        )
    finding = versions.driver_verdict(info.driver, floor or None, cuda or None)
    hint = None
    if finding.status != PASS:
        hint = "upgrade the host's NVIDIA driver, or use an image built for an older CUDA"
        if finding.status == WARN:
            hint = "runs with a reduced feature set (minor-version compatibility); upgrade the driver"
    return Outcome(status=finding.status, summary=finding.message, hint=hint, details=details)


def _driver_without_nvml(torch: Any, why: str) -> Outcome:
    if torch is None or not torch.cuda.is_available():
        return Outcome(status=SKIP, summary="no GPU visible", hint=NO_GPU_HINT, details={"nvml": why})
    driver_api = _torch_driver_api(torch)
    return Outcome(
        status=WARN,
        summary="NVML not available; driver version not checked",
        hint=NVML_HINT,
        details={"nvml": why, "cuda_driver_api": driver_api},
    )


def _torch_driver_api(torch: Any) -> str | None:
    getter = getattr(torch._C, "_cuda_getDriverVersion", None)
    try:
        version = int(getter()) if getter else 0
    except Exception:
        return None
    return f"{version // 1000}.{version % 1000 // 10}" if version else None


def check_arch(ctx: Context) -> Outcome:
    """gpu.arch: each device's compute capability is covered by torch.cuda.get_arch_list()."""
    torch: Any = None
    skipped = not_applicable(ctx)
    if not skipped:
        torch, skipped = gpu_or_skip()
    if skipped:
        return skipped
    arch_list = list(torch.cuda.get_arch_list())
    rows = []
    for index in range(torch.cuda.device_count()):
        capability = tuple(torch.cuda.get_device_capability(index))
        match = arch.classify(capability, arch_list)
        rows.append(
            {
                "device": index,
                "name": torch.cuda.get_device_name(index),
                "capability": f"{capability[0]}.{capability[1]}",
                "sm": arch.sm_name(capability),
                "match": match.kind,
                "via": match.via,
                "status": _arch_status(match.kind),
            }
        )
    details = {"arch_list": arch_list, "devices": rows}
    status = worst(row["status"] for row in rows)
    worst_row = next(row for row in rows if row["status"] == status)
    device = worst_row["device"] if len(rows) > 1 else 0
    return Outcome(
        status=status,
        summary=_arch_summary(worst_row, arch_list),
        hint=_arch_hint(worst_row),
        details=details,
        device=device,
    )


def _arch_status(kind: str) -> str:
    return {arch.EXACT: PASS, arch.COMPATIBLE: PASS, arch.PTX_ONLY: WARN}.get(kind, FAIL)


def _arch_summary(row: dict[str, Any], arch_list: list[str]) -> str:
    if row["match"] == arch.NONE:
        return f"no kernels for {row['sm']} in this wheel (has {' '.join(arch_list) or 'none'})"
    if row["match"] == arch.PTX_ONLY:
        return f"{row['name']} ({row['sm']}): PTX only via {row['via']}, JIT-compiled at load (slow start)"
    return f"{row['name']} ({row['sm']}): {row['match']} via {row['via']}"


def _arch_hint(row: dict[str, Any]) -> str | None:
    if row["match"] == arch.NONE:
        return (
            f"install a torch variant whose arch list includes {row['capability']} "
            "(see `envkit compat`), or build with TORCH_CUDA_ARCH_LIST"
        )
    if row["match"] == arch.PTX_ONLY:
        return f"first use JIT-compiles kernels; prefer a wheel with {row['sm']} cubins"
    return None


def check_kernels(ctx: Context) -> Outcome:
    """gpu.kernels: matmul fp32/fp16/bf16 and a cuDNN conv2d agree with a CPU reference, per device."""
    torch: Any = None
    skipped = not_applicable(ctx)
    if not skipped:
        torch, skipped = gpu_or_skip()
    if skipped:
        return skipped
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would blow the fp32 tolerance by design
    torch.backends.cudnn.allow_tf32 = False
    metrics: dict[str, float] = {}
    failures: list[tuple[str, str]] = []
    for index in range(torch.cuda.device_count()):
        for name, error in _device_kernels(torch, index).items():
            if isinstance(error, str):
                failures.append((f"{name} on cuda:{index}", error))
                continue
            metrics[f"{name}_rel_err"] = max(metrics.get(f"{name}_rel_err", 0.0), error)
            if error > TOLERANCES[name]:
                failures.append(
                    (f"{name} on cuda:{index}", f"relative error {error:.2e} > {TOLERANCES[name]:.0e}")
                )
    details = {
        "tolerances": TOLERANCES,
        "cudnn_enabled": bool(torch.backends.cudnn.enabled),
        "failures": [{"kernel": k, "error": e} for k, e in failures],
    }
    if failures:
        crashed = any(not e.startswith("relative error") for _, e in failures)
        return Outcome(
            status=ERROR if crashed else FAIL,
            summary="; ".join(f"{k}: {e}" for k, e in failures)[:300],
            hint="kernels computed wrong results or crashed: check gpu.arch, the driver and the "
            "torch/cuDNN build",
            metrics=metrics,
            details=details,
        )
    return Outcome(
        status=PASS,
        summary=f"{', '.join(sorted(metrics))} within tolerance".replace("_rel_err", ""),
        metrics=metrics,
        details=details,
        device=0 if torch.cuda.device_count() == 1 else None,
    )


def _device_kernels(torch: Any, index: int) -> dict[str, Any]:
    """Relative error per kernel on cuda:`index`, or the error text when the kernel raised."""
    device = torch.device("cuda", index)
    generator = torch.Generator().manual_seed(1234)
    results: dict[str, Any] = {}
    dtypes = [("matmul_fp32", torch.float32), ("matmul_fp16", torch.float16)]
    if torch.cuda.is_bf16_supported():
        dtypes.append(("matmul_bf16", torch.bfloat16))
    for name, dtype in dtypes:
        results[name] = _guarded(lambda dtype=dtype: _matmul_error(torch, device, dtype, generator))
    results["conv2d_fp32"] = _guarded(lambda: _conv_error(torch, device, generator))
    return results


def _guarded(function: Any) -> Any:
    try:
        return float(function())
    except Exception as error:
        text = str(error).strip()
        return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _matmul_error(torch: Any, device: Any, dtype: Any, generator: Any) -> float:
    a = torch.randn(512, 768, generator=generator).to(dtype)
    b = torch.randn(768, 384, generator=generator).to(dtype)
    reference = a.float() @ b.float()
    result = (a.to(device) @ b.to(device)).float().cpu()
    return _relative_error(torch, result, reference)


def _conv_error(torch: Any, device: Any, generator: Any) -> float:
    x = torch.randn(4, 16, 32, 32, generator=generator)
    weight = torch.randn(32, 16, 3, 3, generator=generator)
    reference = torch.nn.functional.conv2d(x, weight, padding=1)
    result = torch.nn.functional.conv2d(x.to(device), weight.to(device), padding=1).cpu()
    return _relative_error(torch, result, reference)


def _relative_error(torch: Any, result: Any, reference: Any) -> float:
    if not torch.isfinite(result).all():
        return float("inf")
    scale = reference.abs().max().clamp_min(1e-12)
    return float((result - reference).abs().max() / scale)
