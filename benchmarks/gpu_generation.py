"""Batch-1 generation on a GPU: envkit's reference decoder against the memory-bandwidth roofline and
against Hugging Face transformers, measured side by side in one run and reported as ratios.

    python benchmarks/gpu_generation.py --out gpu-generation.json [--quick] [--budget-s 180]

Needs torch with CUDA; transformers is optional (its modes are reported as failed when it is missing).
No network: both models are built from configs. What runs, in this order (the comparison first, the
extras last; JSON rewritten after every stage so a killed run still leaves its numbers):

- envkit.nocache       the reference decoder recomputing the whole prefix for every token (eager)
- envkit.eager         static KV cache, op by op (envkit/probe/model.py CachedGenerator, mode eager)
- envkit.cuda_graph    the static-cache decode step captured (once per cache window) and replayed
- envkit.compiled_cuda_graph  torch.compile (Inductor, static shapes) of the decode step, then captured
- transformers.static_compiled  LlamaForCausalLM of the same shape holding envkit's weights, run the way
                       transformers' own guide recommends for fast static-cache generation on the
                       installed version (RECIPES; the one that ran is recorded as "recipe"): one
                       StaticCache created once and reset before each call, one compilation
- transformers.dynamic the same model, generate() with its default dynamic cache (eager)
- kv_cache             cached vs no-cache tokens/s at 128, 512 and 2048 context (benchmarks/generation.py)

Every generation: the 1b preset (Llama-3.2-1B shape), bf16, batch 1, greedy, the same random prompt
and the same number of new tokens; min_new_tokens = max_new_tokens and no EOS id, so nothing stops
early. One warm-up run per mode (capture, compilation) is excluded and its time reported.
Decode tokens/s is measured the same way for every mode: (N - 1) / (median wall time of an N-token
generation - median wall time of a 1-token generation), so prefill and per-call setup cancel out.
Bandwidth utilisation = bytes read per token (all weights + the KV cache at the mean context) / TPOT /
peak bandwidth (NVML clocks, else the spec-sheet table in envkit/probe/roofline.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generation import TableSettings, kv_cache_table  # noqa: E402
from envkit.probe import nvml, roofline, stats  # noqa: E402

SCHEMA = "envkit.bench.gpu-generation/1"
TARGET_UTILISATION = 0.60
# Time a torch.compile'd mode needs on an H100 (compile, warm-up, timed runs): a stage that compiles
# is skipped when less than this is left of the budget, a plain one when less than PLAIN_RESERVE_S.
COMPILE_RESERVE_S = 60.0
PLAIN_RESERVE_S = 10.0
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """What to run: model, prompt and token counts, the KV table's settings, the time budget."""

    preset: str
    device: str
    prompt_len: int
    new_tokens: int
    repetitions: int
    nocache_tokens: int
    contexts: tuple[int, ...]
    table: TableSettings
    budget_s: float
    transformers: bool
    compile: bool

    @property
    def max_positions(self) -> int:
        return max(*self.contexts, self.prompt_len) + max(self.new_tokens, self.table.new_tokens)

    @property
    def mean_context(self) -> float:
        """The average number of cached positions a decode step reads."""
        return self.prompt_len + self.new_tokens / 2.0


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan from parsed command-line arguments.

    N new tokens (128; `--quick` 64) per timed generation, N/8 without a cache; the KV table uses N/2
    and N/16. Repetitions: 3 (`--quick` 2). Budget: 180 s (`--quick` 120 s)."""
    quick = bool(args.quick)
    new_tokens = args.new_tokens or (64 if quick else 128)
    repetitions = args.repetitions or (2 if quick else 3)
    return Plan(
        preset=args.preset,
        device=args.device,
        prompt_len=args.prompt_len,
        new_tokens=new_tokens,
        repetitions=repetitions,
        nocache_tokens=max(2, new_tokens // 8),
        contexts=tuple(int(c) for c in args.contexts.split(",")),
        table=TableSettings(
            preset=args.preset,
            dtype="bfloat16" if args.device != "cpu" else "float32",
            new_tokens=max(2, new_tokens // 2),
            nocache_tokens=max(1, new_tokens // 16),
            repetitions=repetitions,
            nocache_repetitions=2,
        ),
        budget_s=args.budget_s if args.budget_s is not None else (120.0 if quick else 180.0),
        transformers=not args.skip_transformers,
        compile=not args.skip_compile,
    )


# --- pure arithmetic and formatting (unit-tested on the CPU) -------------------------------------------


def decode_rate(full_s: Sequence[float], first_s: Sequence[float], new_tokens: int) -> float:
    """Decode tokens/s from wall times of N-token and 1-token generations: (N-1) / median difference."""
    if new_tokens < 2:
        raise ValueError("need at least 2 new tokens to time decoding")
    difference = stats.median(full_s) - stats.median(first_s)
    if difference <= 0:
        raise ValueError(f"an N-token run was not slower than a 1-token run ({difference:.6f} s)")
    return (new_tokens - 1) / difference


def timing_summary(full_s: Sequence[float], first_s: Sequence[float], new_tokens: int) -> dict[str, Any]:
    """Decode tokens/s, TPOT and the spread over repetitions (each N-token run paired with a 1-token run)."""
    rate = decode_rate(full_s, first_s, new_tokens)
    pairs = zip(full_s, first_s, strict=True)
    # A pair where noise made the N-token run no slower than the 1-token run has no rate of its own.
    per_repetition = [(new_tokens - 1) / (full - first) for full, first in pairs if full > first]
    return {
        "decode_tokens_per_s": round(rate, 3),
        "tpot_ms": round(1000.0 / rate, 4),
        "spread": round(stats.relative_spread(per_repetition), 4) if per_repetition else None,
        "per_repetition_tokens_per_s": [round(r, 3) for r in per_repetition],
        "full_run_s": [round(s, 5) for s in full_s],
        "first_token_run_s": [round(s, 5) for s in first_s],
    }


def bandwidth_figures(
    *, weight_bytes: int, kv_bytes_per_pos: int, context_len: float, tpot_s: float, peak_gbps: float | None
) -> dict[str, Any]:
    """Bytes read per token, achieved GB/s, and (with a peak) the utilisation and roofline tokens/s."""
    per_token = roofline.bytes_per_token(
        weight_bytes=weight_bytes, kv_bytes_per_pos=kv_bytes_per_pos, context_len=context_len
    )
    figures: dict[str, Any] = {
        "bytes_per_token": per_token,
        "achieved_bandwidth_gbps": round(per_token / tpot_s / 1e9, 2),
        "bandwidth_utilisation": None,
        "roofline_tokens_per_s": None,
    }
    if peak_gbps:
        figures["bandwidth_utilisation"] = round(
            roofline.utilisation(bytes_read_per_token=per_token, tpot_s=tpot_s, peak_gbps=peak_gbps), 4
        )
        figures["roofline_tokens_per_s"] = round(peak_gbps * 1e9 / per_token, 1)
    return figures


def comparison(modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """envkit's fastest cached mode, its ratio to each transformers mode and to transformers' best,
    and whether the targets hold (>= 60 % of the roofline; >= transformers' best)."""
    cached = {n: m for n, m in modes.items() if n.startswith("envkit.") and n != "envkit.nocache"}
    hf = {n: m for n, m in modes.items() if n.startswith("transformers.")}
    if not cached:
        return {"envkit_best_mode": None}
    best_name = max(cached, key=lambda n: cached[n]["decode_tokens_per_s"])
    best = cached[best_name]["decode_tokens_per_s"]
    ratios = {n: round(best / m["decode_tokens_per_s"], 3) for n, m in hf.items()}
    hf_best = max((m["decode_tokens_per_s"] for m in hf.values()), default=None)
    utilisation = cached[best_name]["bandwidth_utilisation"]
    return {
        "envkit_best_mode": best_name,
        "envkit_best_tokens_per_s": best,
        "envkit_best_bandwidth_utilisation": utilisation,
        "envkit_best_over_transformers": ratios,
        "envkit_best_over_transformers_best": round(best / hf_best, 3) if hf_best else None,
        "target_utilisation": TARGET_UTILISATION,
        "meets_utilisation_target": None if utilisation is None else utilisation >= TARGET_UTILISATION,
        "meets_transformers_target": best >= hf_best if hf_best else None,
    }


def format_modes(modes: dict[str, dict[str, Any]], failures: dict[str, str]) -> list[str]:
    """Aligned text lines: one per measured mode, then one per failed or skipped mode."""
    lines = [
        f"  {'mode':32} {'decode tok/s':>12} {'spread':>7} {'TPOT ms':>8} {'of peak BW':>10} "
        f"{'warm-up s':>9}  tokens = envkit.eager"
    ]
    for name, mode in modes.items():
        utilisation = mode.get("bandwidth_utilisation")
        share = f"{utilisation:.1%}" if utilisation is not None else "-"
        agree = mode.get("matching_prefix_with_envkit_eager")
        spread = "-" if mode.get("spread") is None else f"{mode['spread']:.1%}"
        lines.append(
            f"  {name:32} {mode['decode_tokens_per_s']:>12.1f} {spread:>7} "
            f"{mode['tpot_ms']:>8.3f} {share:>10} {mode.get('warmup_s', 0.0):>9.1f}  "
            + ("-" if agree is None else f"{agree}/{mode['new_tokens']}")
        )
    lines.extend(f"  {name:32} not measured: {why}" for name, why in failures.items())
    return lines


def matching_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two generations share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def llama_config_kwargs(cfg: Any, *, max_positions: int) -> dict[str, Any]:
    """LlamaConfig keyword arguments for the same shape as envkit's ModelConfig `cfg`.

    No EOS id: generation can then only stop at max_new_tokens, exactly like envkit's loop."""
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.dim // cfg.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_positions,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": 0,
    }


def hf_state_dict(net: Any) -> dict[str, Any]:
    """envkit Decoder weights under transformers' LlamaForCausalLM names (fused Q/K/V and gate/up split
    back into their projections); views, no copies."""
    state = {"model.embed_tokens.weight": net.tok_emb.weight, "model.norm.weight": net.norm.weight}
    head = net.tok_emb.weight if net.lm_head is None else net.lm_head.weight
    state["lm_head.weight"] = head
    for index, layer in enumerate(net.layers):
        prefix = f"model.layers.{index}."
        q, k, v = layer.attn.wqkv.weight.split(layer.attn.split, dim=0)
        gate, up = layer.mlp.w13.weight.chunk(2, dim=0)
        state.update(
            {
                prefix + "self_attn.q_proj.weight": q,
                prefix + "self_attn.k_proj.weight": k,
                prefix + "self_attn.v_proj.weight": v,
                prefix + "self_attn.o_proj.weight": layer.attn.wo.weight,
                prefix + "mlp.gate_proj.weight": gate,
                prefix + "mlp.up_proj.weight": up,
                prefix + "mlp.down_proj.weight": layer.mlp.w2.weight,
                prefix + "input_layernorm.weight": layer.attn_norm.weight,
                prefix + "post_attention_layernorm.weight": layer.mlp_norm.weight,
            }
        )
    return state


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The run's time budget, counted from `start` (time.monotonic())."""

    start: float
    budget_s: float

    def left(self, now: float | None = None) -> float:
        return self.budget_s - ((time.monotonic() if now is None else now) - self.start)


# --- measurement (torch; transformers only inside functions) ------------------------------------------


Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class Timer:
    """The one timing rule every framework goes through: `prepare()` (untimed: resetting a cache), then
    sync, `clock()`, the generation, sync, `clock()`."""

    sync: Callable[[], None]
    clock: Clock = time.perf_counter
    prepare: Callable[[], None] = lambda: None

    def wall(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        self.prepare()
        self.sync()
        start = self.clock()
        result = fn()
        self.sync()
        return self.clock() - start, result


def _timed_generations(
    generate: Callable[[int], tuple[int, ...]], plan: Plan, timer: Timer
) -> dict[str, Any]:
    """Warm-up (N tokens, then 1), then paired N-token and 1-token runs; tokens come from the warm-up."""
    warmup_s, tokens = timer.wall(lambda: generate(plan.new_tokens))
    warmup_s += timer.wall(lambda: generate(1))[0]
    if len(tokens) != plan.new_tokens:
        raise RuntimeError(f"generated {len(tokens)} tokens, asked for {plan.new_tokens}")
    full, first, last = [], [], tokens
    for _ in range(plan.repetitions):
        seconds, last = timer.wall(lambda: generate(plan.new_tokens))
        full.append(seconds)
        first.append(timer.wall(lambda: generate(1))[0])
    return {
        **timing_summary(full, first, plan.new_tokens),
        "warmup_s": round(warmup_s, 2),
        "new_tokens": plan.new_tokens,
        "tokens": list(tokens),
        "tokens_stable": list(last) == list(tokens),
    }


def envkit_cached(
    reference: Any, net: Any, prompt: Any, mode: str, plan: Plan, timer: Timer
) -> dict[str, Any]:
    """One envkit static-cache mode; also the CUDA-event TPOT the probe itself reports."""
    clock = timer.clock()
    generator = reference.CachedGenerator(net, max_len=plan.prompt_len + plan.new_tokens, mode=mode)
    setup_s = timer.clock() - clock
    event_tpots: list[float] = []

    def generate(count: int) -> tuple[int, ...]:
        run = generator.run(prompt, count)
        if count > 1:
            event_tpots.append(run.tpot_s)
        return run.tokens

    result = _timed_generations(generate, plan, timer)
    result["warmup_s"] = round(result["warmup_s"] + setup_s, 2)
    result["event_tpot_ms"] = round(stats.median(event_tpots[1:]) * 1000, 4)
    return result


def envkit_nocache(reference: Any, net: Any, prompt: Any, plan: Plan) -> dict[str, Any]:
    """The no-cache baseline: tokens / seconds of whole runs (every token is a full forward pass)."""
    reference.generate_nocache(net, prompt, 1)  # warm-up, excluded
    runs = [reference.generate_nocache(net, prompt, plan.nocache_tokens) for _ in range(plan.repetitions)]
    rates = [plan.nocache_tokens / seconds for _, seconds in runs]
    return {
        "decode_tokens_per_s": round(stats.median(rates), 3),
        "tpot_ms": round(1000.0 / stats.median(rates), 4),
        "spread": round(stats.relative_spread(rates), 4),
        "per_repetition_tokens_per_s": [round(r, 3) for r in rates],
        "new_tokens": plan.nocache_tokens,
        "tokens": list(runs[0][0]),
        "timing": "nocache_tokens / seconds of a whole run (no prefill/decode split without a cache)",
    }


# The fast static-cache recipes of transformers' own guide ("Optimizing inference", llm_optims.md,
# https://huggingface.co/docs/transformers/llm_optims): a StaticCache object created once, passed to
# every generate() call and reset() between prompts, and one compilation of the decode step.
RECIPE_AUTO_COMPILE = "static_cache+generate_auto_compile"
RECIPE_COMPILED_FORWARD = "static_cache+compiled_forward"
RECIPES = {
    RECIPE_AUTO_COMPILE: "StaticCache(max_cache_len=prompt+N) created once, passed as past_key_values and "
    "reset() before each call; generate() compiles the decode step itself (compile_config, CUDA graphs) "
    "and runs the prefill uncompiled",
    RECIPE_COMPILED_FORWARD: "StaticCache created once and reset() before each call; model.forward = "
    'torch.compile(model.forward, mode="reduce-overhead", fullgraph=True) (versions whose generate() '
    "does not compile by itself)",
}


def choose_recipe(generation_mixin: Any) -> str:
    """RECIPE_AUTO_COMPILE where generate() compiles the decode step for a compileable cache by itself
    (it then must not be compiled a second time), else RECIPE_COMPILED_FORWARD."""
    return (
        RECIPE_AUTO_COMPILE
        if hasattr(generation_mixin, "_valid_auto_compile_criteria")
        else RECIPE_COMPILED_FORWARD
    )


def static_cache_kwargs(
    parameters: Sequence[str], *, config: Any, max_cache_len: int, device: Any, dtype: Any
) -> dict[str, Any]:
    """Keyword arguments for StaticCache(...) on this version: 5.x takes (config, max_cache_len) and sizes
    the rest on first use; 4.x also wants the batch size, device and dtype (older: batch_size)."""
    offered = {
        "config": config,
        "max_cache_len": max_cache_len,
        "max_batch_size": 1,
        "batch_size": 1,
        "device": device,
        "dtype": dtype,
    }
    return {name: value for name, value in offered.items() if name in parameters}


class TransformersSide:
    """LlamaForCausalLM with envkit's shape and weights, built on first use and then reused; its static
    cache is created once (on first use) and reset before every timed call."""

    def __init__(self, net: Any, plan: Plan) -> None:
        self.net, self.plan = net, plan
        self._model: Any | None = None
        self._cache: Any | None = None
        self.recipe: str | None = None

    def model(self) -> Any:
        if self._model is None:
            self._model = self._build()
        return self._model

    def _build(self) -> Any:
        import torch
        import transformers

        param = next(self.net.parameters())
        config = transformers.LlamaConfig(
            **llama_config_kwargs(self.net.cfg, max_positions=self.plan.max_positions)
        )
        with torch.device(param.device):
            try:
                model = transformers.LlamaForCausalLM._from_config(config, dtype=param.dtype)
            except TypeError:  # transformers before `dtype` replaced `torch_dtype`
                model = transformers.LlamaForCausalLM._from_config(config, torch_dtype=param.dtype)
        theirs = model.state_dict()
        mine = {k: v for k, v in hf_state_dict(self.net).items() if k in theirs}
        missing = sorted(set(theirs) - set(mine))
        if missing:
            raise RuntimeError(f"transformers expects weights envkit does not map: {missing[:5]}")
        model.load_state_dict(mine, strict=False)
        return model.eval()

    def static_cache(self) -> Any:
        """The one StaticCache every static generate() call shares."""
        if self._cache is None:
            import inspect

            import transformers

            model = self.model()
            param = next(model.parameters())
            names = list(inspect.signature(transformers.StaticCache.__init__).parameters)
            kwargs = static_cache_kwargs(
                names,
                config=model.config,
                max_cache_len=self.plan.prompt_len + self.plan.new_tokens,
                device=param.device,
                dtype=param.dtype,
            )
            self._cache = transformers.StaticCache(**kwargs)
        return self._cache

    def reset_cache(self) -> None:
        if self._cache is not None:
            self._cache.reset()

    def prepare_static(self) -> str:
        """Set up the fast static-cache recipe for this version (once); returns its name."""
        if self.recipe is None:
            import torch
            import transformers

            self.recipe = choose_recipe(transformers.GenerationMixin)
            if self.recipe == RECIPE_COMPILED_FORWARD:
                model = self.model()
                model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            self.static_cache()
        return self.recipe

    def generate(self, prompt: Any, count: int, *, static: bool) -> tuple[int, ...]:
        import torch

        kwargs: dict[str, Any] = {"past_key_values": self.static_cache()} if static else {}
        with torch.no_grad():
            out = self.model().generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=count,
                min_new_tokens=count,
                do_sample=False,
                num_beams=1,
                **kwargs,
            )
        return tuple(int(t) for t in out[0, prompt.shape[1] :].tolist())

    def compile_config(self) -> str | None:
        """The compile settings generate() applies to the decode step (its default when none is set)."""
        config = getattr(self.model().generation_config, "compile_config", None)
        if config is not None or self.recipe != RECIPE_AUTO_COMPILE:
            return None if config is None else repr(config)
        import transformers

        default = getattr(transformers, "CompileConfig", None)
        return None if default is None else f"{default()!r} (the default)"


def transformers_measured(
    hf: TransformersSide, prompt: Any, plan: Plan, timer: Timer, *, static: bool
) -> dict[str, Any]:
    """transformers' generate() under the same timing rule as envkit's modes; with `static`, its fast
    static-cache recipe (the cache reset, untimed, before every call)."""
    clock = timer.clock()
    hf.model()
    recipe = hf.prepare_static() if static else "dynamic_cache"
    build_s = timer.clock() - clock
    if static:
        timer = dataclasses.replace(timer, prepare=hf.reset_cache)
    measured = _timed_generations(lambda n: hf.generate(prompt, n, static=static), plan, timer)
    measured["warmup_s"] = round(measured["warmup_s"] + build_s, 2)
    measured["attn_implementation"] = getattr(hf.model().config, "_attn_implementation", None)
    measured["recipe"] = recipe
    measured["recipe_description"] = RECIPES.get(recipe, "generate() with its default dynamic cache")
    if static:
        measured["compile_config"] = hf.compile_config()
    return measured


def environment(torch: Any, device: Any) -> dict[str, Any]:
    """Device name, driver, versions, and the peak bandwidth with its source."""
    info, why = nvml.query()
    on_gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_gpu else (platform.processor() or "cpu")
    gpu = _nvml_record(info, name) if on_gpu else None
    peak, source = roofline.peak_bandwidth(
        name, gpu.mem_clock_max_mhz if gpu else None, gpu.bus_width_bits if gpu else None
    )
    try:
        import transformers

        hf_version: str | None = transformers.__version__
    except Exception:
        hf_version = None
    return {
        "device": name,
        "driver": info.driver if info else None,
        "cuda_driver": info.cuda_driver if info else None,
        "nvml": "ok" if info else why,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": hf_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "peak_bandwidth_gbps": round(peak, 1) if peak else None,
        "peak_bandwidth_source": source,
        "peak_bandwidth_table_gbps": roofline.peak_from_name(name) if on_gpu else None,
    }


def _nvml_record(info: Any, name: str) -> Any:
    if info is None:
        return None
    return next((gpu for gpu in info.gpus if gpu.name == name), info.gpus[0] if info.gpus else None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage:
    """One measured mode: how to run it and what it needs."""

    name: str
    run: Callable[[], Any]
    needs_cuda: bool = False
    compiles: bool = False
    transformers: bool = False


def skip_reason(stage: Stage, plan: Plan, deadline: Deadline, on_gpu: bool) -> str | None:
    """Why `stage` is not run (no GPU, switched off, out of time), or None to run it."""
    if stage.needs_cuda and not on_gpu:
        return "skipped: needs a CUDA device"
    if stage.compiles and not plan.compile:
        return "skipped: --skip-compile"
    if stage.transformers and not plan.transformers:
        return "skipped: --skip-transformers"
    reserve = COMPILE_RESERVE_S if stage.compiles else PLAIN_RESERVE_S
    if deadline.left() < reserve:
        left = deadline.left()
        return f"skipped: {left:.0f} s of the {plan.budget_s:.0f} s budget left, needs {reserve:.0f} s"
    return None


def run_benchmark(plan: Plan, out: Path, say: Say = print) -> dict[str, Any]:
    """Run every stage the plan allows, rewriting `out` after each; returns the result written."""
    import torch

    from envkit.probe import model as reference

    deadline = Deadline(time.monotonic(), plan.budget_s)
    device = torch.device("cuda", 0) if plan.device == "cuda" else torch.device(plan.device)
    on_gpu = device.type == "cuda"
    timer = Timer(sync=torch.cuda.synchronize if on_gpu else (lambda: None))
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(torch, device),
        "plan": {**dataclasses.asdict(plan), "mean_context": plan.mean_context},
        "modes": {},
        "failures": {},
        "kv_cache": None,
    }
    env = result["environment"]
    say(f"== generation on {env['device']} (torch {env['torch']}, transformers {env['transformers']})")
    net = reference.build_model(
        plan.preset, device, getattr(torch, plan.table.dtype), max_positions=plan.max_positions
    )
    prompt = reference.prompt_tokens(net.cfg.vocab_size, plan.prompt_len, device=device)
    element = next(net.parameters()).element_size()
    kv_per_pos = roofline.kv_bytes_per_position(
        n_layers=net.cfg.n_layers,
        n_kv_heads=net.cfg.n_kv_heads,
        head_dim=net.cfg.head_dim,
        element_size=element,
    )
    result["model"] = {
        "preset": plan.preset,
        "dtype": plan.table.dtype,
        "parameters": net.parameter_count(),
        "weight_bytes_per_token": net.weight_bytes_per_token(),
        "kv_bytes_per_position": kv_per_pos,
    }
    hf = TransformersSide(net, plan)

    def with_bandwidth(measured: dict[str, Any]) -> dict[str, Any]:
        return measured | bandwidth_figures(
            weight_bytes=net.weight_bytes_per_token(),
            kv_bytes_per_pos=kv_per_pos,
            context_len=plan.mean_context,
            tpot_s=measured["tpot_ms"] / 1000.0,
            peak_gbps=env["peak_bandwidth_gbps"],
        )

    def cached(mode: str) -> Callable[[], dict[str, Any]]:
        return lambda: with_bandwidth(envkit_cached(reference, net, prompt, mode, plan, timer))

    def transformers_mode(static: bool) -> Callable[[], dict[str, Any]]:
        return lambda: with_bandwidth(transformers_measured(hf, prompt, plan, timer, static=static))

    def kv_table() -> list[dict[str, Any]]:
        mode = "cuda_graph" if "envkit.cuda_graph" in result["modes"] else "eager"
        settings = dataclasses.replace(plan.table, mode=mode)
        return kv_cache_table(plan.contexts, device=str(device), say=say, settings=settings, model=net)

    # The comparison first (envkit's modes, then transformers' fast recipe), the extras after it.
    stages = [
        Stage(name="envkit.nocache", run=lambda: envkit_nocache(reference, net, prompt, plan)),
        Stage(name="envkit.eager", run=cached("eager")),
        Stage(name="envkit.cuda_graph", run=cached("cuda_graph"), needs_cuda=True),
        Stage(
            name="envkit.compiled_cuda_graph",
            run=cached("compiled_cuda_graph"),
            needs_cuda=True,
            compiles=True,
        ),
        Stage(
            name="transformers.static_compiled",
            run=transformers_mode(True),
            needs_cuda=True,
            compiles=True,
            transformers=True,
        ),
        Stage(name="transformers.dynamic", run=transformers_mode(False), transformers=True),
        Stage(name="kv_cache", run=kv_table),
    ]
    for stage in stages:
        _run_stage(stage, plan, deadline, on_gpu, result, say)
        _finish(result, reference, torch, device, deadline, out)
    for line in format_modes(result["modes"], result["failures"]):
        say(line)
    for line in comparison_lines(result["comparison"], env):
        say(line)
    return result


def _run_stage(
    stage: Stage, plan: Plan, deadline: Deadline, on_gpu: bool, result: dict[str, Any], say: Say
) -> None:
    skip = skip_reason(stage, plan, deadline, on_gpu)
    if skip:
        result["failures"][stage.name] = skip
        say(f"  {stage.name}: {skip}")
        return
    clock = time.monotonic()
    try:
        measured = stage.run()
    except Exception as error:
        result["failures"][stage.name] = f"{type(error).__name__}: {str(error).strip()[:400]}"
        result.setdefault("tracebacks", {})[stage.name] = traceback.format_exc()[-4000:]
        say(f"  {stage.name}: FAILED {result['failures'][stage.name]}")
        return
    if stage.name == "kv_cache":
        result["kv_cache"] = measured
    else:
        result["modes"][stage.name] = measured
        say(
            f"  {stage.name}: {measured['decode_tokens_per_s']:.1f} tok/s "
            f"({time.monotonic() - clock:.0f} s with warm-up)"
        )


def _finish(
    result: dict[str, Any], reference: Any, torch: Any, device: Any, deadline: Deadline, out: Path
) -> None:
    eager = result["modes"].get("envkit.eager")
    for mode in result["modes"].values():
        mode["checksum"] = reference.checksum(mode["tokens"])
        if eager is not None:
            mode["matching_prefix_with_envkit_eager"] = matching_prefix(mode["tokens"], eager["tokens"])
    result["comparison"] = comparison(result["modes"])
    result["duration_s"] = round(deadline.budget_s - deadline.left(), 1)
    if device.type == "cuda":
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / (1 << 20), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    partial.replace(out)


def comparison_lines(summary: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """`comparison` as text lines: envkit's best against the roofline and each transformers mode."""
    best = summary.get("envkit_best_mode")
    if not best:
        return ["  no envkit cached mode was measured"]
    line = f"  envkit best: {best}, {summary['envkit_best_tokens_per_s']:.1f} tok/s"
    utilisation = summary["envkit_best_bandwidth_utilisation"]
    if utilisation is not None:
        verdict = "met" if summary["meets_utilisation_target"] else "NOT met"
        line += (
            f", {utilisation:.1%} of {env['peak_bandwidth_gbps']} GB/s ({env['peak_bandwidth_source']}); "
            f"target >= {TARGET_UTILISATION:.0%}: {verdict}"
        )
    lines = [line]
    for name, ratio in summary["envkit_best_over_transformers"].items():
        lines.append(f"  envkit best / {name} = {ratio:.2f}x")
    if summary["meets_transformers_target"] is not None:
        verdict = "yes" if summary["meets_transformers_target"] else "NO"
        lines.append(f"  envkit best >= transformers' best: {verdict}")
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON results file (rewritten after each stage)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repetitions, 120 s budget")
    parser.add_argument("--budget-s", type=float, help="skip stages that would start after this (180 s)")
    parser.add_argument("--preset", default="1b", help="reference model preset (tiny, 1b, 8b)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    parser.add_argument("--prompt-len", type=int, default=512, help="prompt tokens for the mode comparison")
    parser.add_argument("--new-tokens", type=int, help="tokens per timed generation (128; --quick 64)")
    parser.add_argument("--repetitions", type=int, help="timed repetitions per mode (3; --quick 2)")
    parser.add_argument("--contexts", default="128,512,2048", help="context lengths of the KV-cache table")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-compile", action="store_true", help="skip the torch.compile modes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        print("gpu_generation: torch sees no CUDA device (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    result = run_benchmark(plan, args.out, say=lambda text: print(text, flush=True))
    print(f"results: {args.out}", flush=True)
    return 0 if result["modes"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
