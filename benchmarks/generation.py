"""How the reference decoder's cost grows with context: decode tokens/s with the static KV cache vs
without any cache (the whole prefix recomputed per token), at several context lengths.

Reuses envkit/probe/model.py (`CachedGenerator`, `generate_nocache`); no second model. Per context:
one warm-up run of each path is excluded, then medians over repetitions with their spread
((max - min) / median). Cached tokens/s = 1 / median time per output token after the first (decode
only); no-cache tokens/s = tokens / seconds of a whole run (every token is a full forward pass over
the prefix, which is what the cache saves). kv_speedup = cached / no-cache, both medians.

CPU default (`CPU_SETTINGS`, about a minute on 2 busy cores): tiny preset, fp32, one CPU thread, 64 new
tokens cached (63 timed decode steps) x 5 repetitions, 8 tokens without a cache x 3 repetitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from envkit.probe import stats

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableSettings:
    """What one KV-cache table measures: model, dtype, token counts, repetitions and the cached mode."""

    preset: str
    dtype: str
    new_tokens: int
    nocache_tokens: int
    repetitions: int
    nocache_repetitions: int
    mode: str = "eager"
    threads: int | None = None  # torch CPU threads while measuring; None leaves torch's default


# One CPU thread: at batch 1 the 4 M-parameter tiny model gains nothing from a second one, and on a
# shared machine an OpenMP thread waiting for a descheduled sibling made each decode step ~7x slower
# (4-5 ms vs ~33 ms per token on 2 cores at load 2.5) and the spread several hundred percent.
CPU_SETTINGS = TableSettings(
    preset="tiny",
    dtype="float32",
    new_tokens=64,
    nocache_tokens=8,
    repetitions=5,
    nocache_repetitions=3,
    threads=1,
)
GPU_SETTINGS = TableSettings(
    preset="1b", dtype="bfloat16", new_tokens=64, nocache_tokens=8, repetitions=3, nocache_repetitions=2
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """Median and relative spread of repeated measurements, with the values themselves."""

    median: float
    spread: float
    values: tuple[float, ...]


def summarise(values: Sequence[float]) -> Summary:
    """Median and (max - min) / median of `values`; raises ValueError when there are none."""
    return Summary(median=stats.median(values), spread=stats.relative_spread(values), values=tuple(values))


def kv_row(
    *,
    context: int,
    cached_tokens_per_s: Sequence[float],
    nocache_tokens_per_s: Sequence[float],
    ttft_s: Sequence[float],
    tokens_match: bool,
) -> dict[str, Any]:
    """One table row from per-repetition rates (tokens/s) and times to first token (seconds)."""
    cached, nocache = summarise(cached_tokens_per_s), summarise(nocache_tokens_per_s)
    return {
        "context_len": context,
        "cached_tokens_per_s": round(cached.median, 3),
        "cached_spread": round(cached.spread, 4),
        "cached_per_repetition": [round(v, 3) for v in cached.values],
        "nocache_tokens_per_s": round(nocache.median, 3),
        "nocache_spread": round(nocache.spread, 4),
        "nocache_per_repetition": [round(v, 3) for v in nocache.values],
        "kv_speedup": round(cached.median / nocache.median, 3),
        "ttft_ms": round(stats.median(ttft_s) * 1000, 3),
        "tokens_match": tokens_match,
    }


def format_kv_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The rows as aligned text lines (header first), spreads in percent, speed-ups as ratios."""
    lines = [
        f"  {'context':>7}  {'cached tok/s':>12} {'spread':>7}  {'no-cache tok/s':>14} {'spread':>7}"
        f"  {'KV speed-up':>11}  {'TTFT ms':>9}  tokens match"
    ]
    for row in rows:
        lines.append(
            f"  {row['context_len']:>7}  {row['cached_tokens_per_s']:>12.1f} {row['cached_spread']:>7.1%}"
            f"  {row['nocache_tokens_per_s']:>14.2f} {row['nocache_spread']:>7.1%}"
            f"  {row['kv_speedup']:>10.1f}x  {row['ttft_ms']:>9.1f}  {'yes' if row['tokens_match'] else 'NO'}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        lines.append(
            f"  context x{last['context_len'] / first['context_len']:.0f}: no-cache tokens/s "
            f"x{last['nocache_tokens_per_s'] / first['nocache_tokens_per_s']:.2f}, cached tokens/s "
            f"x{last['cached_tokens_per_s'] / first['cached_tokens_per_s']:.2f}, KV speed-up "
            f"x{last['kv_speedup'] / first['kv_speedup']:.1f}"
        )
    return lines


def measure_context(reference: Any, net: Any, context: int, settings: TableSettings) -> dict[str, Any]:
    """One row: cached and no-cache generation after a `context`-token prompt (warm-ups excluded)."""
    device = next(net.parameters()).device
    prompt = reference.prompt_tokens(net.cfg.vocab_size, context, device=device)
    generator = reference.CachedGenerator(net, max_len=context + settings.new_tokens, mode=settings.mode)
    runs = [generator.run(prompt, settings.new_tokens) for _ in range(settings.repetitions + 1)][1:]
    reference.generate_nocache(net, prompt, 1)  # warm-up, excluded
    nocache = [
        reference.generate_nocache(net, prompt, settings.nocache_tokens)
        for _ in range(settings.nocache_repetitions)
    ]
    return kv_row(
        context=context,
        cached_tokens_per_s=[1.0 / run.tpot_s for run in runs],
        nocache_tokens_per_s=[settings.nocache_tokens / seconds for _, seconds in nocache],
        ttft_s=[run.ttft_s for run in runs],
        tokens_match=runs[0].tokens[: settings.nocache_tokens] == nocache[0][0],
    )


def kv_cache_table(
    contexts: Sequence[int] = (128, 512, 2048),
    device: str = "cpu",
    say: Say = print,
    *,
    settings: TableSettings | None = None,
    model: Any | None = None,
) -> list[dict[str, Any]]:
    """Measure and print the KV-cache table; returns one dict per context (see `kv_row`), each also
    naming the preset, dtype, device, mode, token counts and repetitions it was measured with.

    `settings` default to `CPU_SETTINGS` on a CPU and `GPU_SETTINGS` otherwise; `model` reuses an
    already built reference Decoder (its shape then wins over `settings.preset`).
    """
    import torch

    from envkit.probe import model as reference

    settings = settings or (CPU_SETTINGS if str(device) == "cpu" else GPU_SETTINGS)
    net = model or reference.build_model(
        settings.preset,
        device,
        getattr(torch, settings.dtype),
        max_positions=max(contexts) + settings.new_tokens,
    )
    threads = settings.threads or torch.get_num_threads()
    say(
        f"  {settings.preset} preset, {settings.dtype}, {device} ({threads} CPU thread(s)), "
        f"{settings.mode} cached decode: {settings.new_tokens} new tokens x {settings.repetitions}; "
        f"no cache: {settings.nocache_tokens} tokens x {settings.nocache_repetitions}; 1 warm-up each"
    )
    meta = {**dataclasses.asdict(settings), "threads": threads, "device": str(device), "warmup_runs": 1}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = [{**measure_context(reference, net, context, settings), **meta} for context in contexts]
    finally:
        torch.set_num_threads(previous)
    for line in format_kv_table(rows):
        say(line)
    return rows
