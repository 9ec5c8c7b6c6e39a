"""throughput.generate: greedy generation with the reference decoder, with and without a KV cache.

Timing rules: one warm-up run per mode is excluded; every metric is the median of its repeated
samples (one per timed run), and details["stats"][metric] gives {median, min, max, spread, n}; on a
GPU, CUDA events time the steps (no host synchronisation per token).
kv_speedup = cached decode tokens/s ÷ no-cache tokens/s (medians), both at the same (long) prompt.

Modes: eager everywhere; on a GPU also the CUDA-graph mode, and in the full profile the compiled one.
The metrics come from the fastest mode whose tokens are correct (stable, near-greedy, and leaving
eager's tokens only at a near-tie); its name is details["mode"].

Noise: details["noisy"] is true when the 1-minute load average before or after the measurement is
above the CPUs the process may use (NOISY_LOAD_PER_CPU per CPU, lowered by a cgroup quota), or the
decode tokens/s spread is above NOISY_SPREAD; details["noise_reason"] says which.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import Any, Sequence

from . import environment, nvml, roofline, stats
from .context import Context
from .outcome import FAIL, PASS, WARN, Outcome
from .torchfacts import torch_or_skip

MIB = 1 << 20
# Faster decode modes tried on a GPU (the compiled one in the full profile only).
GRAPH_MODES = ("cuda_graph", "compiled_cuda_graph")
# Seconds a graph mode needs (capture or compilation, warm-up, timed runs of the 1b preset on an
# H100-class GPU): a mode is not started when less than this is left of the check's own limit.
MODE_RESERVE_S = {"cuda_graph": 20.0, "compiled_cuda_graph": 75.0}
NOT_STARTED = "not started: "
# Teacher-forced greedy margins, in standard deviations of a row of logits (model.greedy_margins):
# bf16 near-ties stay well under WARN_MARGIN; a token that is not a near-argmax at all means the
# cached path computed something else.
WARN_MARGIN = 0.25
FAIL_MARGIN = 1.0
# bf16 tolerance between modes: two modes' greedy tokens may part only where the logits tie, i.e. at
# the first differing token both choices are within TIE_MARGIN std of the top logit of the
# teacher-forced no-cache pass over their common prefix. After that the sequences are different
# texts, each checked on its own by the margins above.
TIE_MARGIN = 0.25
# Measurement noise bounds (see the module docstring).
NOISY_LOAD_PER_CPU = 1.0
NOISY_SPREAD = 0.20


@dataclasses.dataclass(frozen=True)
class GenerationPlan:
    """How much to generate: prompt (the long context), tokens per run, repetitions, CUDA graph on/off."""

    preset: str
    prompt_len: int
    new_tokens: int
    nocache_tokens: int
    repetitions: int
    nocache_repetitions: int
    graph_modes: tuple[str, ...] = ()

    @property
    def graph(self) -> bool:
        """True when a CUDA-graph mode is measured besides eager."""
        return bool(self.graph_modes)


_PLANS = {
    # (preset, profile): (prompt_len, new_tokens, nocache_tokens, repetitions, nocache_repetitions)
    ("tiny", "quick"): (512, 24, 6, 5, 2),
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
        graph_modes=(GRAPH_MODES if profile == "full" else GRAPH_MODES[:1]) if on_gpu else (),
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
    observed = environment.observe()
    measured = _measure(reference, net, prompt, plan, _Deadline.of(ctx))
    return _judge(torch, reference, net, plan, device, measured, environment.finish(observed))


@dataclasses.dataclass(frozen=True)
class _Deadline:
    """When the check's own time limit runs out (time.monotonic()), None when it has none."""

    end: float | None

    @classmethod
    def of(cls, ctx: Context) -> _Deadline:
        return cls(None if ctx.limit_s is None else time.monotonic() + ctx.limit_s)

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()


@dataclasses.dataclass(frozen=True)
class Measured:
    """Raw results: cached runs per mode (warm-up first), no-cache runs, modes that failed or were
    not started, and each mode's per-token greedy margins (model.greedy_margins of its first run)."""

    modes: dict[str, list[Any]]
    nocache: list[tuple[tuple[int, ...], float]]
    mode_errors: dict[str, str]
    margins: dict[str, list[float]]


def _measure(reference: Any, net: Any, prompt: Any, plan: GenerationPlan, deadline: _Deadline) -> Measured:
    max_len = plan.prompt_len + plan.new_tokens
    eager = _cached_runs(reference.CachedGenerator(net, max_len=max_len), prompt, plan)
    modes = {"eager": eager}
    margins = {"eager": net.greedy_margins(prompt, eager[0].tokens)}
    reference.generate_nocache(net, prompt, 2)  # warm-up, excluded
    nocache = [
        reference.generate_nocache(net, prompt, plan.nocache_tokens) for _ in range(plan.nocache_repetitions)
    ]
    errors: dict[str, str] = {}
    # Graph modes last, after everything else is measured: a failed capture can leave the CUDA
    # context unusable, and a failed mode only costs its own numbers.
    for mode in plan.graph_modes:
        if deadline.left() < MODE_RESERVE_S[mode]:
            errors[mode] = (
                f"{NOT_STARTED}{deadline.left():.0f} s of the check's time limit left, needs "
                f"{MODE_RESERVE_S[mode]:.0f} s"
            )
            continue
        try:
            runs = _cached_runs(reference.CachedGenerator(net, max_len=max_len, mode=mode), prompt, plan)
            margins[mode] = net.greedy_margins(prompt, runs[0].tokens)
            modes[mode] = runs
        except Exception as error:
            errors[mode] = f"{type(error).__name__}: {str(error).strip()[:300]}"
    return Measured(modes=modes, nocache=nocache, mode_errors=errors, margins=margins)


def _cached_runs(generator: Any, prompt: Any, plan: GenerationPlan) -> list[Any]:
    return [generator.run(prompt, plan.new_tokens) for _ in range(plan.repetitions + 1)]


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The index of the first token where two generations differ, None when one is a prefix of the other."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None


def parted_at_tie(
    reference_tokens: Sequence[int],
    reference_margins: Sequence[float],
    tokens: Sequence[int],
    margins: Sequence[float],
    bound: float = TIE_MARGIN,
) -> tuple[int | None, bool]:
    """(first differing index, whether that is allowed): the sequences may part only where both
    choices are within `bound` std of the top logit (their margins at that index); identical
    sequences are allowed."""
    index = first_difference(reference_tokens, tokens)
    if index is None:
        return None, True
    return index, reference_margins[index] <= bound and margins[index] <= bound


def _mode_summary(runs: list[Any], reference: Any) -> dict[str, Any]:
    """Per-run samples of the timed runs (the warm-up run excluded) and their medians."""
    timed = runs[1:]
    samples = {
        "decode_tokens_per_s": [1.0 / run.tpot_s for run in timed],
        "tpot_ms": [run.tpot_s * 1000 for run in timed],
        "ttft_ms": [run.ttft_s * 1000 for run in timed],
        "itl_p50_ms": [stats.percentile(run.step_s, 50) * 1000 for run in timed],
        "itl_p99_ms": [stats.percentile(run.step_s, 99) * 1000 for run in timed],
    }
    return {
        "samples": samples,
        "decode_tokens_per_s": stats.median(samples["decode_tokens_per_s"]),
        "tpot_s": stats.median(samples["tpot_ms"]) / 1000,
        "ttft_s": stats.median(samples["ttft_ms"]) / 1000,
        "steps_s": [step for run in timed for step in run.step_s],
        "per_repetition_tokens_per_s": samples["decode_tokens_per_s"],
        "checksums": sorted({reference.checksum(run.tokens) for run in runs}),
        "tokens": runs[0].tokens,
    }


def correct_modes(summaries: dict[str, dict[str, Any]], margins: dict[str, list[float]]) -> list[str]:
    """The modes whose tokens can be trusted: stable checksum, every token within WARN_MARGIN of the
    greedy choice, and parting from eager's tokens only at a tie."""
    eager = summaries["eager"]
    good = []
    for mode, summary in summaries.items():
        if len(summary["checksums"]) > 1 or max(margins.get(mode) or [0.0]) > WARN_MARGIN:
            continue
        if mode != "eager":
            _, allowed = parted_at_tie(eager["tokens"], margins["eager"], summary["tokens"], margins[mode])
            if not allowed:
                continue
        good.append(mode)
    return good


def noise_reason(observed: dict[str, Any], spread: float) -> str | None:
    """Why a measurement is too noisy to compare (see the module docstring), or None."""
    reasons = []
    cpus = environment.effective_cpus(observed)
    for when in ("before", "after"):
        load = observed.get(f"loadavg_{when}")
        if load and load[0] > NOISY_LOAD_PER_CPU * cpus:
            reasons.append(f"load average {load[0]:.2f} {when} the run, above {NOISY_LOAD_PER_CPU * cpus:g}")
    if spread > NOISY_SPREAD:
        reasons.append(f"decode tokens/s spread {spread:.0%}, above {NOISY_SPREAD:.0%}")
    return "; ".join(reasons) or None


def _rounded(value: float) -> float:
    return float(f"{value:.6g}")


def sample_stats(samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """details["stats"]: {metric: {median, min, max, spread, n}} with floats to 6 significant digits."""
    return {
        name: {key: _rounded(v) if isinstance(v, float) else v for key, v in stats.sample_stats(vs).items()}
        for name, vs in samples.items()
        if vs
    }


def _judge(
    torch: Any,
    reference: Any,
    net: Any,
    plan: GenerationPlan,
    device: Any,
    measured: Measured,
    observed: dict[str, Any],
) -> Outcome:
    summaries = {mode: _mode_summary(runs, reference) for mode, runs in measured.modes.items()}
    on_gpu = device.type == "cuda"
    nocache_rates = [plan.nocache_tokens / seconds for _, seconds in measured.nocache]
    good = correct_modes(summaries, measured.margins) or list(summaries)
    best_mode = max(good, key=lambda mode: summaries[mode]["decode_tokens_per_s"])
    best = summaries[best_mode]
    samples = dict(best["samples"], tokens_per_s_nocache=nocache_rates)
    nocache_tps = stats.median(nocache_rates)
    metrics = {
        "decode_tokens_per_s": round(best["decode_tokens_per_s"], 3),
        "ttft_ms": round(best["ttft_s"] * 1000, 4),
        "tpot_ms": round(best["tpot_s"] * 1000, 4),
        "itl_p50_ms": round(stats.median(samples["itl_p50_ms"]), 4),
        "itl_p99_ms": round(stats.median(samples["itl_p99_ms"]), 4),
        "kv_speedup": round(best["decode_tokens_per_s"] / nocache_tps, 3),
        "tokens_per_s_nocache": round(nocache_tps, 3),
        "peak_memory_mib": round(_peak_memory_mib(torch, device), 1),
    }
    details = _details(reference, net, plan, device, measured, summaries, best_mode, nocache_rates)
    if on_gpu:
        metrics.update(_bandwidth(torch, net, plan, best, details, samples))
    details["stats"] = sample_stats(samples)
    spread = details["stats"]["decode_tokens_per_s"]["spread"]
    details["spread"] = spread
    details["environment"] = observed
    details["noise_reason"] = noise_reason(observed, spread)
    details["noisy"] = details["noise_reason"] is not None
    problems, warnings = _verdicts(reference, plan, measured, summaries, metrics, on_gpu)
    details["problems"], details["warnings"] = problems, warnings
    summary = (
        f"{plan.preset} on {details['device']} ({best_mode}): {metrics['decode_tokens_per_s']:.1f} tok/s "
        f"decode, TPOT {metrics['tpot_ms']:.2f} ms, TTFT {metrics['ttft_ms']:.1f} ms, KV-cache speed-up "
        f"{metrics['kv_speedup']:.1f}x at {plan.prompt_len} tokens"
    )
    if "bandwidth_utilisation" in metrics:
        summary += f", {metrics['bandwidth_utilisation']:.0%} of peak bandwidth"
    if details["noisy"]:
        summary += " (noisy)"
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
    for mode, mode_margins in measured.margins.items():
        margin = max(mode_margins or [0.0])
        text = f"{mode} tokens are up to {margin:.2f} std from the no-cache greedy choice"
        if margin > FAIL_MARGIN:
            problems.append(text)
        elif margin > WARN_MARGIN:
            warnings.append(text)
    eager = summaries["eager"]
    for mode, summary in summaries.items():
        if mode == "eager" or mode not in measured.margins:
            continue
        index, allowed = parted_at_tie(
            eager["tokens"], measured.margins["eager"], summary["tokens"], measured.margins[mode]
        )
        if not allowed:
            warnings.append(f"{mode} tokens leave eager's at token {index} where the logits do not tie")
    for mode, error in measured.mode_errors.items():
        if not error.startswith(NOT_STARTED):  # out of time is no fault of the image: details only
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
        "spread_definition": "of decode tokens/s per repetition: (p75 - p25) / median, (max - min) / "
        "median below 4 repetitions (details.stats has it for every metric)",
        "noise_definition": f"noisy when the 1-minute load average is above {NOISY_LOAD_PER_CPU:g} per "
        f"CPU available, or the decode spread above {NOISY_SPREAD:.0%}",
        "per_repetition_tokens_per_s": [round(x, 3) for x in best["per_repetition_tokens_per_s"]],
        "nocache_per_repetition_tokens_per_s": [round(x, 3) for x in nocache_rates],
        "percentile_method": "nearest-rank",
        "checksum": summaries["eager"]["checksums"][0],
        "checksum_nocache": reference.checksum(measured.nocache[0][0]),
        "checksum_cached_prefix": reference.checksum(summaries["eager"]["tokens"][: plan.nocache_tokens]),
        "nocache_tokens_match": reference.checksum(summaries["eager"]["tokens"][: plan.nocache_tokens])
        == reference.checksum(measured.nocache[0][0]),
        "greedy_margin_max_std": {mode: round(max(m or [0.0]), 4) for mode, m in measured.margins.items()},
        "greedy_margin_definition": "teacher-forced no-cache pass: (max logit - chosen logit) / std of "
        f"logits; WARN above {WARN_MARGIN}, FAIL above {FAIL_MARGIN}",
        "modes_parted_from_eager_at": {
            mode: first_difference(summaries["eager"]["tokens"], s["tokens"])
            for mode, s in summaries.items()
            if mode != "eager"
        },
        "tie_definition": f"modes may part from eager's tokens only where both choices are within "
        f"{TIE_MARGIN} std of the top logit",
    }


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _peak_memory_mib(torch: Any, device: Any) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _bandwidth(
    torch: Any,
    net: Any,
    plan: GenerationPlan,
    best: dict[str, Any],
    details: dict[str, Any],
    samples: dict[str, list[float]],
) -> dict[str, float]:
    """bandwidth_utilisation against the roofline (median of the per-run figures, whose samples go to
    `samples`); also fills the byte counts and peak source in details."""
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
            "achieved_bandwidth_gbps": round(per_token / best["tpot_s"] / 1e9, 2),
        }
    )
    if not peak:
        return {}
    samples["bandwidth_utilisation"] = [
        roofline.utilisation(bytes_read_per_token=per_token, tpot_s=tpot_ms / 1000, peak_gbps=peak)
        for tpot_ms in samples["tpot_ms"]
    ]
    return {"bandwidth_utilisation": round(stats.median(samples["bandwidth_utilisation"]), 4)}


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
