"""throughput.generate: greedy generation with the reference decoder, with and without a KV cache.

Timing rules: one warm-up run per mode is excluded; every number is a median or percentile over
several repetitions; on a GPU, CUDA events time the steps (no host synchronisation per token).
kv_speedup = cached decode tokens/s ÷ no-cache tokens/s, both at the same (long) prompt.
"""

from __future__ import annotations

import dataclasses
import resource
from typing import Any

from . import nvml, roofline, stats
from .context import Context
from .outcome import FAIL, PASS, WARN, Outcome
from .torchfacts import torch_or_skip

MIB = 1 << 20
# Faster decode modes tried on a GPU in the full profile; the fastest of all modes gives the metrics.
GRAPH_MODES = ("cuda_graph", "compiled_cuda_graph")
# Teacher-forced greedy margins, in standard deviations of a row of logits (model.greedy_margins):
# bf16 near-ties stay well under WARN_MARGIN; a token that is not a near-argmax at all means the
# cached path computed something else.
WARN_MARGIN = 0.25
FAIL_MARGIN = 1.0


@dataclasses.dataclass(frozen=True)
class GenerationPlan:
    """How much to generate: prompt (the long context), tokens per run, repetitions, CUDA graph on/off."""

    preset: str
    prompt_len: int
    new_tokens: int
    nocache_tokens: int
    repetitions: int
    nocache_repetitions: int
    graph: bool


_PLANS = {
    # (preset, profile): (prompt_len, new_tokens, nocache_tokens, repetitions, nocache_repetitions)
    ("tiny", "quick"): (512, 24, 6, 3, 2),
    ("tiny", "full"): (512, 64, 16, 5, 3),
    ("1b", "quick"): (1024, 64, 16, 3, 2),
    ("1b", "full"): (2048, 256, 32, 5, 2),
    ("8b", "quick"): (1024, 32, 8, 3, 2),
    ("8b", "full"): (2048, 128, 16, 3, 2),
}


def plan_for(profile: str, preset: str | None, on_gpu: bool) -> GenerationPlan:
    """The generation plan: the 1b preset for the full profile on a GPU, tiny otherwise, unless given."""
    chosen = preset or ("1b" if on_gpu and profile == "full" else "tiny")
    prompt, new, nocache, reps, nocache_reps = _PLANS[(chosen, profile)]
    return GenerationPlan(
        preset=chosen,
        prompt_len=prompt,
        new_tokens=new,
        nocache_tokens=nocache,
        repetitions=reps,
        nocache_repetitions=nocache_reps,
        graph=on_gpu and profile == "full",
    )


def check_generate(ctx: Context) -> Outcome:
    """throughput.generate: see the module docstring."""
    torch, skipped = torch_or_skip()
    if skipped:
        return skipped
    from . import model as reference  # imports torch: only ever inside the check's child

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
    plan = plan_for(ctx.profile, ctx.preset, on_gpu)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    # fp32 on the CPU so cached and non-cached greedy tokens must agree exactly; bf16 on a GPU.
    dtype = torch.bfloat16 if on_gpu else torch.float32
    net = reference.build_model(plan.preset, device, dtype, max_positions=plan.prompt_len + plan.new_tokens)
    prompt = reference.prompt_tokens(net.cfg.vocab_size, plan.prompt_len, device=device)
    measured = _measure(reference, net, prompt, plan)
    return _judge(torch, reference, net, plan, device, measured)


@dataclasses.dataclass(frozen=True)
class Measured:
    """Raw results: cached runs per mode (warm-up first), no-cache runs, modes that failed."""

    modes: dict[str, list[Any]]
    nocache: list[tuple[tuple[int, ...], float]]
    mode_errors: dict[str, str]
    margins: dict[str, float]


def _measure(reference: Any, net: Any, prompt: Any, plan: GenerationPlan) -> Measured:
    max_len = plan.prompt_len + plan.new_tokens
    eager = _cached_runs(reference.CachedGenerator(net, max_len=max_len), prompt, plan)
    modes = {"eager": eager}
    margins = {"eager": max(net.greedy_margins(prompt, eager[0].tokens))}
    reference.generate_nocache(net, prompt, 2)  # warm-up, excluded
    nocache = [
        reference.generate_nocache(net, prompt, plan.nocache_tokens) for _ in range(plan.nocache_repetitions)
    ]
    errors: dict[str, str] = {}
    # Graph modes last, after everything else is measured: a failed capture can leave the CUDA
    # context unusable, and a failed mode only costs its own numbers.
    for mode in GRAPH_MODES if plan.graph else ():
        try:
            runs = _cached_runs(reference.CachedGenerator(net, max_len=max_len, mode=mode), prompt, plan)
            margins[mode] = max(net.greedy_margins(prompt, runs[0].tokens))
            modes[mode] = runs
        except Exception as error:
            errors[mode] = f"{type(error).__name__}: {str(error).strip()[:300]}"
    return Measured(modes=modes, nocache=nocache, mode_errors=errors, margins=margins)


def _cached_runs(generator: Any, prompt: Any, plan: GenerationPlan) -> list[Any]:
    return [generator.run(prompt, plan.new_tokens) for _ in range(plan.repetitions + 1)]


def _mode_summary(runs: list[Any], reference: Any) -> dict[str, Any]:
    timed = runs[1:]
    tpots = [run.tpot_s for run in timed]
    return {
        "decode_tokens_per_s": 1.0 / stats.median(tpots),
        "tpot_s": stats.median(tpots),
        "ttft_s": stats.median([run.ttft_s for run in timed]),
        "steps_s": [step for run in timed for step in run.step_s],
        "per_repetition_tokens_per_s": [1.0 / t for t in tpots],
        "checksums": sorted({reference.checksum(run.tokens) for run in runs}),
        "tokens": runs[0].tokens,
    }


def _judge(
    torch: Any, reference: Any, net: Any, plan: GenerationPlan, device: Any, measured: Measured
) -> Outcome:
    summaries = {mode: _mode_summary(runs, reference) for mode, runs in measured.modes.items()}
    best_mode = max(summaries, key=lambda mode: summaries[mode]["decode_tokens_per_s"])
    best = summaries[best_mode]
    nocache_rates = [plan.nocache_tokens / seconds for _, seconds in measured.nocache]
    nocache_tps = stats.median(nocache_rates)
    on_gpu = device.type == "cuda"
    metrics = {
        "decode_tokens_per_s": round(best["decode_tokens_per_s"], 3),
        "ttft_ms": round(best["ttft_s"] * 1000, 4),
        "tpot_ms": round(best["tpot_s"] * 1000, 4),
        "itl_p50_ms": round(stats.percentile(best["steps_s"], 50) * 1000, 4),
        "itl_p99_ms": round(stats.percentile(best["steps_s"], 99) * 1000, 4),
        "kv_speedup": round(best["decode_tokens_per_s"] / nocache_tps, 3),
        "tokens_per_s_nocache": round(nocache_tps, 3),
        "peak_memory_mib": round(_peak_memory_mib(torch, device), 1),
    }
    details = _details(reference, net, plan, device, measured, summaries, best_mode, nocache_rates)
    if on_gpu:
        metrics.update(_bandwidth(torch, net, plan, best["tpot_s"], details))
    problems, warnings = _verdicts(reference, plan, measured, summaries, metrics, on_gpu)
    details["problems"], details["warnings"] = problems, warnings
    summary = (
        f"{plan.preset} on {details['device']} ({best_mode}): {metrics['decode_tokens_per_s']:.1f} tok/s "
        f"decode, TPOT {metrics['tpot_ms']:.2f} ms, TTFT {metrics['ttft_ms']:.1f} ms, KV-cache speed-up "
        f"{metrics['kv_speedup']:.1f}x at {plan.prompt_len} tokens"
    )
    if "bandwidth_utilisation" in metrics:
        summary += f", {metrics['bandwidth_utilisation']:.0%} of peak bandwidth"
    if problems:
        return Outcome(
            status=FAIL,
            summary="; ".join(problems) + " — " + summary,
            metrics=metrics,
            details=details,
            hint=_failure_hint(problems),
            device=0 if on_gpu else None,
        )
    status = WARN if warnings else PASS
    text = summary + ("; " + "; ".join(warnings) if warnings else "; checksum stable")
    return Outcome(
        status=status, summary=text, metrics=metrics, details=details, device=0 if on_gpu else None
    )


def _verdicts(
    reference: Any,
    plan: GenerationPlan,
    measured: Measured,
    summaries: dict[str, dict[str, Any]],
    metrics: dict[str, float],
    on_gpu: bool,
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    for mode, summary in summaries.items():
        if len(summary["checksums"]) > 1:
            problems.append(f"{mode} checksum differs between repetitions")
    nocache_sums = {reference.checksum(tokens) for tokens, _ in measured.nocache}
    if len(nocache_sums) > 1:
        problems.append("no-cache checksum differs between repetitions")
    if metrics["kv_speedup"] <= 1.0:
        problems.append(f"KV-cache speed-up {metrics['kv_speedup']:.2f} <= 1 at {plan.prompt_len} tokens")
    eager_prefix = reference.checksum(summaries["eager"]["tokens"][: plan.nocache_tokens])
    if eager_prefix not in nocache_sums and not on_gpu:
        # fp32 on the CPU: the two paths must pick the very same tokens.
        problems.append("cached and non-cached greedy tokens differ")
    for mode, margin in measured.margins.items():
        text = f"{mode} tokens are up to {margin:.2f} std from the no-cache greedy choice"
        if margin > FAIL_MARGIN:
            problems.append(text)
        elif margin > WARN_MARGIN:
            warnings.append(text)
    # The plain graph replays the eager kernels, so its tokens must match; the compiled mode fuses
    # bf16 ops and may round differently, so its divergence is reported in details only.
    graph = summaries.get("cuda_graph")
    if graph and graph["checksums"] != summaries["eager"]["checksums"]:
        warnings.append("CUDA-graph tokens differ from eager tokens")
    for mode, error in measured.mode_errors.items():
        warnings.append(f"{mode} mode failed: {error}")
    return problems, warnings


def _failure_hint(problems: list[str]) -> str:
    if any("std from" in p for p in problems):
        return (
            "the cached decode path disagrees with the full forward pass: broken attention or KV-cache "
            "kernels in this torch/CUDA build"
        )
    if any("speed-up" in p for p in problems):
        return "the KV cache is not saving work (broken cache path or a pathological attention kernel)"
    return (
        "the same model and inputs gave different tokens: nondeterministic or wrong kernels in this "
        "torch/CUDA/cuDNN build"
    )


def _details(
    reference: Any,
    net: Any,
    plan: GenerationPlan,
    device: Any,
    measured: Measured,
    summaries: dict[str, dict[str, Any]],
    best_mode: str,
    nocache_rates: list[float],
) -> dict[str, Any]:
    best = summaries[best_mode]
    cfg = net.cfg
    return {
        "preset": plan.preset,
        "device": _device_name(device),
        "dtype": str(next(net.parameters()).dtype).replace("torch.", ""),
        "parameters": net.parameter_count(),
        "config": dataclasses.asdict(cfg),
        "context_len": plan.prompt_len,
        "kv_speedup_context_len": plan.prompt_len,
        "kv_speedup_definition": "cached decode tokens/s / no-cache tokens/s at the same prompt length",
        "new_tokens": plan.new_tokens,
        "nocache_tokens": plan.nocache_tokens,
        "repetitions": plan.repetitions,
        "nocache_repetitions": plan.nocache_repetitions,
        "warmup_runs": 1,
        "mode": best_mode,
        "modes": {
            mode: {
                "decode_tokens_per_s": round(s["decode_tokens_per_s"], 3),
                "tpot_ms": round(s["tpot_s"] * 1000, 4),
                "ttft_ms": round(s["ttft_s"] * 1000, 4),
                "checksum": s["checksums"][0],
                "matches_eager": s["checksums"] == summaries["eager"]["checksums"],
            }
            for mode, s in summaries.items()
        },
        "mode_errors": measured.mode_errors,
        "spread": round(stats.relative_spread(best["per_repetition_tokens_per_s"]), 4),
        "spread_definition": "(max - min) / median of per-repetition decode tokens/s",
        "per_repetition_tokens_per_s": [round(x, 3) for x in best["per_repetition_tokens_per_s"]],
        "nocache_per_repetition_tokens_per_s": [round(x, 3) for x in nocache_rates],
        "percentile_method": "nearest-rank",
        "checksum": summaries["eager"]["checksums"][0],
        "checksum_nocache": reference.checksum(measured.nocache[0][0]),
        "checksum_cached_prefix": reference.checksum(summaries["eager"]["tokens"][: plan.nocache_tokens]),
        "nocache_tokens_match": reference.checksum(summaries["eager"]["tokens"][: plan.nocache_tokens])
        == reference.checksum(measured.nocache[0][0]),
        "greedy_margin_max_std": {mode: round(m, 4) for mode, m in measured.margins.items()},
        "greedy_margin_definition": "teacher-forced no-cache pass: (max logit - chosen logit) / std of "
        f"logits; WARN above {WARN_MARGIN}, FAIL above {FAIL_MARGIN}",
    }


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _peak_memory_mib(torch: Any, device: Any) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _bandwidth(
    torch: Any, net: Any, plan: GenerationPlan, tpot_s: float, details: dict[str, Any]
) -> dict[str, float]:
    """bandwidth_utilisation against the roofline; also fills the byte counts and peak source in details."""
    cfg = net.cfg
    element = next(net.parameters()).element_size()
    kv_per_pos = roofline.kv_bytes_per_position(
        n_layers=cfg.n_layers, n_kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, element_size=element
    )
    mean_context = plan.prompt_len + plan.new_tokens / 2.0
    per_token = roofline.bytes_per_token(
        weight_bytes=net.weight_bytes_per_token(), kv_bytes_per_pos=kv_per_pos, context_len=mean_context
    )
    name = torch.cuda.get_device_name(0)
    gpu = _nvml_gpu_for_device(torch, name)
    peak, source = roofline.peak_bandwidth(
        name, gpu.mem_clock_max_mhz if gpu else None, gpu.bus_width_bits if gpu else None
    )
    details.update(
        {
            "weight_bytes_per_token": net.weight_bytes_per_token(),
            "kv_bytes_per_position": kv_per_pos,
            "mean_context_len": mean_context,
            "bytes_per_token": per_token,
            "peak_bandwidth_gbps": peak,
            "peak_bandwidth_source": source,
            "peak_bandwidth_table_gbps": roofline.peak_from_name(name),
            "achieved_bandwidth_gbps": round(per_token / tpot_s / 1e9, 2),
        }
    )
    if not peak:
        return {}
    return {
        "bandwidth_utilisation": round(
            roofline.utilisation(bytes_read_per_token=per_token, tpot_s=tpot_s, peak_gbps=peak), 4
        )
    }


def _nvml_gpu_for_device(torch: Any, name: str) -> nvml.NvmlGpu | None:
    """The NVML record of torch's cuda:0: by UUID when torch exposes it, else by name."""
    info, _why = nvml.query()
    if info is None:
        return None
    uuid = str(getattr(torch.cuda.get_device_properties(0), "uuid", "") or "")
    for gpu in info.gpus:
        if uuid and gpu.uuid and gpu.uuid.replace("GPU-", "") == uuid.replace("GPU-", ""):
            return gpu
    return next((gpu for gpu in info.gpus if gpu.name == name), None)
