"""A reference Llama-style decoder in pure torch, with deterministic random weights (no download).

RMSNorm, rotary embeddings (rotate-half), grouped-query attention through
torch.nn.functional.scaled_dot_product_attention, a SwiGLU MLP, tied or untied embeddings.
Generation is greedy, batch 1, either with a static pre-allocated KV cache (fixed shapes, so the
decode step can be captured in a CUDA graph) or without a cache (the whole prefix recomputed per token).

Importable by benchmark scripts: `build_model(preset, device, dtype)`, `generate(...)`,
`CachedGenerator`, `generate_nocache`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


PRESETS = {
    # CPU CI: ~4 M parameters.
    "tiny": ModelConfig(
        dim=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=2,
        ffn_dim=768,
        vocab_size=4096,
        rope_theta=10000.0,
        tie_embeddings=True,
    ),
    # Llama-3.2-1B shape (tied embeddings).
    "1b": ModelConfig(
        dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192, vocab_size=128256, tie_embeddings=True
    ),
    # Llama-3-8B shape (untied embeddings).
    "8b": ModelConfig(
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14336,
        vocab_size=128256,
        tie_embeddings=False,
    ),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _rms_norm is not None:  # one fused kernel where torch has it (2.4+), which matters at batch 1
            return _rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


_rms_norm = getattr(F, "rms_norm", None)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (last dim D) by its positions' angles; `cos`/`sin` must broadcast against `x`."""
    return x * cos + _rotate_half(x) * sin


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    # [B, Hkv, T, D] -> [B, Hkv*groups, T, D]; query head h reads kv head h // groups.
    if groups == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, groups, t, d).reshape(b, h * groups, t, d)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.groups = cfg.n_heads // cfg.n_kv_heads
        q_size, kv_size = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.split = (q_size, kv_size, kv_size)
        # Q, K and V in one matmul: at batch 1 every launch and every pass over x counts.
        self.wqkv = nn.Linear(cfg.dim, q_size + 2 * kv_size, bias=False)
        self.wo = nn.Linear(q_size, cfg.dim, bias=False)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q [B, H, T, D], k and v [B, Hkv, T, D] (views), with q and k rotated in one pass."""
        b, t, _ = x.shape
        qkv = self.wqkv(x)
        qk_size = self.split[0] + self.split[1]
        qk = qkv[..., :qk_size].view(b, t, self.n_heads + self.n_kv_heads, self.head_dim)
        qk = apply_rope(qk, cos.unsqueeze(1), sin.unsqueeze(1))
        q = qk[:, :, : self.n_heads].transpose(1, 2)
        k = qk[:, :, self.n_heads :].transpose(1, 2)
        v = qkv[..., qk_size:].view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def forward_full(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Causal attention over all of `x` [B, T, dim]; returns (output, k, v) so a cache can be filled."""
        b, t, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        out = F.scaled_dot_product_attention(
            q, _expand_kv(k, self.groups), _expand_kv(v, self.groups), is_causal=True
        )
        return self.wo(out.transpose(1, 2).reshape(b, t, -1)), k, v

    def forward_decode(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        pos: torch.Tensor,
        window: int,
        valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """One new token `x` [B, 1, dim] at device position `pos` [1]: writes its K/V into the static
        cache, then attends to the first `window` slots. `valid` [window] (bool) marks the slots at or
        before `pos`; None means all `window` slots are filled (window == pos + 1)."""
        b = x.shape[0]
        q, k, v = self._qkv(x, cos, sin)
        k_cache.index_copy_(2, pos, k)
        v_cache.index_copy_(2, pos, v)
        # Fold the query heads that share a kv head into the query-length axis: GQA without copying
        # the cache (a single decode position has no causal structure to break).
        q = q.reshape(b, self.n_kv_heads, self.groups, self.head_dim)
        out = decode_attention(q, k_cache[:, :, :window], v_cache[:, :, :window], valid)
        return self.wo(out.reshape(b, 1, -1))


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Attention of a few queries per kv head, q [B, Hkv, G, D], over k/v [B, Hkv, W, D].

    Without `valid` every slot counts and SDPA runs unmasked (its fused kernels). With `valid` [W]
    (fixed shapes for a CUDA graph: the window is a bucket, only partly filled) it is two batched
    matmuls around an fp32 softmax: matmuls spread the cache read over many thread blocks, where a
    masked SDPA kernel gets one block per head, and torch.compile fuses the mask into the softmax."""
    if valid is None:
        return F.scaled_dot_product_attention(q, k, v)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)
    scores = scores.masked_fill(~valid, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)  # gate and up projections, fused
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = FeedForward(cfg)


# Fixed-shape decode steps read the cache in windows of this many slots: a CUDA graph per window,
# and at most WINDOW_BUCKET - 1 slots read that hold nothing yet.
WINDOW_BUCKET = 256


class KVCache:
    """Static per-layer K/V buffers [B, Hkv, max_len, D], allocated once."""

    def __init__(
        self, cfg: ModelConfig, *, max_len: int, device: Any, dtype: torch.dtype, batch: int = 1
    ) -> None:
        # Rows padded to a multiple of 64 slots: aligned windows suit the fused attention kernels.
        max_len = -(-max_len // 64) * 64
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.max_len = max_len
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.positions = torch.arange(max_len, device=device)

    def window(self, filled: int) -> int:
        """The slots a fixed-shape decode step reads when `filled` slots hold tokens: `filled` rounded up
        to a multiple of WINDOW_BUCKET (at most the whole cache), so one captured graph serves a bucket."""
        return min(-(-filled // WINDOW_BUCKET) * WINDOW_BUCKET, self.max_len)

    def valid(self, pos: torch.Tensor, window: int) -> torch.Tensor:
        """[window] bool: True for the slots at or before device position `pos` (built once per step,
        shared by every layer)."""
        return self.positions[:window].le(pos)


class Decoder(nn.Module):
    """The decoder; see the module docstring."""

    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, cfg: ModelConfig, *, max_positions: int = 8192) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_positions = max_positions
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("rope_cos", torch.empty(max_positions, cfg.head_dim), persistent=False)
        self.register_buffer("rope_sin", torch.empty(max_positions, cfg.head_dim), persistent=False)

    def blocks(self) -> list[Block]:
        """The layers, typed."""
        return [cast(Block, layer) for layer in self.layers]

    def init_rope(self) -> None:
        """Fill the rotary tables (computed in fp32, stored in the model's dtype)."""
        cfg, device = self.cfg, self.rope_cos.device
        freqs = 1.0 / (
            cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim)
        )
        angles = torch.outer(torch.arange(self.max_positions, device=device).float(), freqs)
        angles = torch.cat((angles, angles), dim=-1)
        self.rope_cos.copy_(angles.cos())
        self.rope_sin.copy_(angles.sin())

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(self.norm(h), weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """No cache: logits [B, vocab] for the last position of `tokens` [B, T]."""
        return self._full(tokens, None)[:, -1]

    def prefill(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run the prompt, writing K/V into cache positions [0, T); logits of the last position."""
        return self._full(tokens, cache)[:, -1]

    @torch.no_grad()
    def greedy_margins(self, prompt: torch.Tensor, generated: Sequence[int]) -> list[float]:
        """How far each generated token is from the greedy choice of the no-cache forward pass.

        Teacher-forced: one causal pass over prompt + generated tokens; for each generated token,
        (max logit - its logit) / std of that row of logits. 0.0 means it was the argmax; bf16
        rounding gives small values where near-ties flip, a broken cache gives large ones.
        """
        if not generated:
            return []
        tail = torch.tensor([list(generated[:-1])], dtype=prompt.dtype, device=prompt.device)
        logits = self._full(torch.cat((prompt, tail), dim=1), None, last=len(generated))[0].float()
        chosen = logits.gather(-1, torch.tensor(list(generated), device=logits.device).view(-1, 1)).squeeze(
            -1
        )
        margins = (logits.max(dim=-1).values - chosen) / logits.std(dim=-1).clamp_min(1e-12)
        return [float(m) for m in margins.tolist()]

    def _full(self, tokens: torch.Tensor, cache: KVCache | None, last: int = 1) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.max_positions:
            raise ValueError(f"sequence of {t} tokens exceeds max_positions={self.max_positions}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        h = self.tok_emb(tokens)
        for index, layer in enumerate(self.blocks()):
            out, k, v = layer.attn.forward_full(layer.attn_norm(h), cos, sin)
            if cache is not None:
                cache.k[index][:, :, :t].copy_(k)
                cache.v[index][:, :, :t].copy_(v)
            h = h + out
            h = h + layer.mlp(layer.mlp_norm(h))
        return self._logits(h[:, -last:])

    def decode_step(
        self, token: torch.Tensor, pos: torch.Tensor, cache: KVCache, window: int, exact: bool = False
    ) -> torch.Tensor:
        """Logits [B, vocab] for `token` [B, 1] at device position `pos` [1]; updates the cache.

        Attention reads the first `window` cache slots. `exact`: the caller knows window == pos + 1,
        so no mask is needed (eager decoding); otherwise the slots after `pos` are masked out and the
        step has fixed shapes and no host synchronisation, so it can be captured in a CUDA graph.
        """
        cos, sin = self.rope_cos.index_select(0, pos), self.rope_sin.index_select(0, pos)
        valid = None if exact else cache.valid(pos, window)
        h = self.tok_emb(token)
        for index, layer in enumerate(self.blocks()):
            h = h + layer.attn.forward_decode(
                layer.attn_norm(h), cos, sin, cache.k[index], cache.v[index], pos, window, valid
            )
            h = h + layer.mlp(layer.mlp_norm(h))
        return self._logits(h[:, -1])

    def weight_bytes_per_token(self) -> int:
        """Bytes of parameters a decode step reads: all of them, except an untied input embedding
        table (a lookup reads one row of it)."""
        total = sum(p.numel() * p.element_size() for p in self.parameters())
        if self.lm_head is not None:
            total -= self.tok_emb.weight.numel() * self.tok_emb.weight.element_size()
            total += self.cfg.dim * self.tok_emb.weight.element_size()
        return total

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(
    preset: str | ModelConfig = "tiny",
    device: Any = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    seed: int = 0,
    max_positions: int = 8192,
) -> Decoder:
    """A Decoder in eval mode on `device`/`dtype` with deterministic random weights from `seed`.

    Parameters are allocated on the target device directly (no CPU copy of an 8B model) and drawn in
    fp32 from a per-parameter seeded generator, so the weights depend only on preset, seed and device
    type, not on dtype.
    """
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    device = torch.device(device)
    with torch.device("meta"):
        model = Decoder(cfg, max_positions=max_positions)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for index, (name, param) in enumerate(sorted(model.named_parameters())):
            _init_parameter(name, param, seed * 1_000_003 + index, device)
        model.init_rope()
    return model.to(dtype).eval()


def _init_parameter(name: str, param: torch.Tensor, seed: int, device: torch.device) -> None:
    if param.dim() == 1:  # norm weights
        param.fill_(1.0)
        return
    generator = torch.Generator(device=device).manual_seed(seed)
    std = param.shape[1] ** -0.5
    param.copy_(
        torch.empty(param.shape, device=device, dtype=torch.float32).normal_(0.0, std, generator=generator)
    )


def prompt_tokens(vocab_size: int, length: int, *, device: Any = "cpu", seed: int = 0) -> torch.Tensor:
    """A deterministic random prompt [1, length] (drawn on the CPU, so the same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (1, length), generator=generator).to(device)


def checksum(tokens: Sequence[int]) -> str:
    """sha256 hex of the comma-joined token ids."""
    return hashlib.sha256(",".join(str(int(t)) for t in tokens).encode("ascii")).hexdigest()


class Clock:
    """Timestamps that mean the same on CPU (perf_counter) and GPU (CUDA events, read after one sync)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks (call sync() first on GPU)."""
        if not self.cuda:
            return end - start
        return start.elapsed_time(end) / 1000.0


@dataclasses.dataclass(frozen=True)
class GenerationRun:
    """One timed greedy generation: the tokens, time to first token, and each later step's time."""

    tokens: tuple[int, ...]
    ttft_s: float
    step_s: tuple[float, ...]

    @property
    def decode_s(self) -> float:
        return sum(self.step_s)

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first."""
        return self.decode_s / len(self.step_s) if self.step_s else float("nan")


MODES = ("eager", "cuda_graph", "compiled_cuda_graph")


class CachedGenerator:
    """Greedy generation with a static KV cache.

    `mode`: "eager" runs the decode step op by op, attending to exactly the filled cache slots;
    "cuda_graph" captures the step once per cache window (KVCache.window) and replays it;
    "compiled_cuda_graph" first fuses the step with torch.compile (Inductor, static shapes: one
    compilation per window), then captures that. Graphs are captured at the start of the first run
    that needs them (a warm-up run, excluded from timings). All per-step state (current token,
    position, output buffer) lives in pre-allocated device tensors that the step updates in place, so
    a graph-mode decode loop never synchronises with the host.
    """

    def __init__(self, model: Decoder, *, max_len: int, mode: str = "eager") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown decode mode {mode!r} (known: {', '.join(MODES)})")
        param = next(model.parameters())
        if mode != "eager" and param.device.type != "cuda":
            raise ValueError(f"decode mode {mode} needs a CUDA device")
        self.model, self.device, self.max_len, self.mode = model, param.device, max_len, mode
        self.cache = KVCache(model.cfg, max_len=max_len, device=param.device, dtype=param.dtype)
        self.token = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self.index = torch.zeros(1, dtype=torch.long, device=self.device)
        self.out = torch.zeros(max_len, dtype=torch.long, device=self.device)
        self._decode: Any = model.decode_step
        if mode == "compiled_cuda_graph":
            self._decode = torch.compile(model.decode_step, dynamic=False)
        self.graphs: dict[int, Any] = {}

    def _step(self, window: int, exact: bool) -> None:
        logits = self._decode(self.token, self.pos, self.cache, window, exact)
        nxt = logits.argmax(dim=-1, keepdim=True)
        self.token.copy_(nxt)
        self.out.index_copy_(0, self.index, nxt.view(1))
        self.pos.add_(1)
        self.index.add_(1)

    def _capture(self, window: int) -> None:
        # Warm up on a side stream before capture (cuBLAS handles, allocator pools, compilation) at the
        # window's first slots: they are rewritten by the prompt or by the step that fills them before
        # any step reads them, and run() resets the position, index and token afterwards.
        start = max(0, window - WINDOW_BUCKET)
        with torch.no_grad():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.pos.fill_(start)
                    self.index.zero_()
                    self._step(window, exact=False)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            self.pos.fill_(start)
            with torch.cuda.graph(graph):
                self._step(window, exact=False)
        self.graphs[window] = graph

    def windows(self, prompt_len: int, new_tokens: int) -> list[int]:
        """The cache window of each decode step of a run (its position p fills p + 1 slots)."""
        return [self.cache.window(p + 1) for p in range(prompt_len, prompt_len + new_tokens - 1)]

    @torch.no_grad()
    def run(self, prompt: torch.Tensor, new_tokens: int, clock: Clock | None = None) -> GenerationRun:
        """Generate `new_tokens` greedily after `prompt` [1, T]; timed with `clock`."""
        clock = clock or Clock(self.device)
        length = prompt.shape[1]
        if length + new_tokens > self.max_len:
            raise ValueError(f"prompt {length} + {new_tokens} new tokens exceed the cache of {self.max_len}")
        windows = self.windows(length, new_tokens)
        if self.mode != "eager":
            for window in sorted(set(windows) - set(self.graphs)):
                self._capture(window)
        self.pos.fill_(length)
        self.index.fill_(1)
        start = clock.mark()
        first = self.model.prefill(prompt, self.cache).argmax(dim=-1, keepdim=True)
        self.token.copy_(first)
        self.out[:1].copy_(first.view(1))
        marks = [clock.mark()]
        for step, window in enumerate(windows):
            if self.mode == "eager":
                self._step(length + step + 1, exact=True)
            else:
                self.graphs[window].replay()
            marks.append(clock.mark())
        clock.sync()
        tokens = tuple(int(t) for t in self.out[:new_tokens].tolist())
        steps = tuple(clock.seconds(a, b) for a, b in zip(marks, marks[1:]))
        return GenerationRun(tokens=tokens, ttft_s=clock.seconds(start, marks[0]), step_s=steps)


@torch.no_grad()
def generate_nocache(
    model: Decoder, prompt: torch.Tensor, new_tokens: int, clock: Clock | None = None
) -> tuple[tuple[int, ...], float]:
    """Greedy generation recomputing the whole prefix for every token; (tokens, seconds)."""
    device = prompt.device
    clock = clock or Clock(device)
    sequence = prompt
    produced: list[torch.Tensor] = []
    start = clock.mark()
    for _ in range(new_tokens):
        nxt = model(sequence).argmax(dim=-1, keepdim=True)
        produced.append(nxt)
        sequence = torch.cat((sequence, nxt), dim=1)
    end = clock.mark()
    clock.sync()
    tokens = tuple(int(t) for t in torch.cat(produced, dim=1).view(-1).tolist())
    return tokens, clock.seconds(start, end)


def generate(model: Decoder, prompt: torch.Tensor, new_tokens: int, *, use_cache: bool = True) -> list[int]:
    """Greedy token ids generated after `prompt` [1, T], with the static cache or without any cache."""
    if not use_cache:
        return list(generate_nocache(model, prompt, new_tokens)[0])
    generator = CachedGenerator(model, max_len=prompt.shape[1] + new_tokens)
    return list(generator.run(prompt, new_tokens).tokens)
