"""The reference decoder: deterministic weights, cached == non-cached greedy tokens, byte counts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from envkit.probe import model  # noqa: E402
from envkit.probe.checks_throughput import plan_for  # noqa: E402

UNTIED = model.ModelConfig(
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=1,
    ffn_dim=128,
    vocab_size=512,
    rope_theta=10000.0,
    tie_embeddings=False,
)
NO_GQA = model.ModelConfig(
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=4,
    ffn_dim=128,
    vocab_size=512,
    rope_theta=10000.0,
    tie_embeddings=True,
)


SMALL = model.ModelConfig(
    dim=64, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=128, vocab_size=512, rope_theta=10000.0
)


@pytest.fixture(scope="module")
def tiny() -> model.Decoder:
    # A smaller shape than the "tiny" preset keeps these tests fast; GQA (4 groups) is kept.
    return model.build_model(SMALL, "cpu", torch.float32, max_positions=512)


@pytest.mark.parametrize("preset", ["tiny", UNTIED, NO_GQA])
def test_cached_and_uncached_greedy_tokens_agree(preset: object) -> None:
    net = tiny_or(preset)
    prompt = model.prompt_tokens(net.cfg.vocab_size, 64, seed=3)
    cached = model.generate(net, prompt, 10, use_cache=True)
    uncached = model.generate(net, prompt, 10, use_cache=False)
    assert cached == uncached
    assert len(cached) == 10
    assert max(net.greedy_margins(prompt, cached)) == pytest.approx(0.0, abs=1e-4)
    assert len(set(cached)) > 1  # random weights still produce varied tokens


def tiny_or(preset: object) -> model.Decoder:
    return model.build_model(preset, "cpu", torch.float32, max_positions=256)  # type: ignore[arg-type]


def test_weights_depend_only_on_seed(tiny: model.Decoder) -> None:
    again = model.build_model(SMALL, "cpu", torch.float32, max_positions=512)
    other = model.build_model(SMALL, "cpu", torch.float32, seed=1, max_positions=512)
    for (name, a), (_, b), (_, c) in zip(
        tiny.named_parameters(), again.named_parameters(), other.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
        if a.dim() == 2:
            assert not torch.equal(a, c), name


def test_static_cache_is_reusable_across_runs_and_prompt_lengths(tiny: model.Decoder) -> None:
    generator = model.CachedGenerator(tiny, max_len=200)
    long_prompt = model.prompt_tokens(tiny.cfg.vocab_size, 150)
    short_prompt = long_prompt[:, :40]
    first = generator.run(long_prompt, 16)
    generator.run(short_prompt, 30)  # leaves stale K/V beyond position 70 in the cache
    again = generator.run(long_prompt, 16)
    assert first.tokens == again.tokens
    assert generator.run(short_prompt, 8).tokens == tuple(
        model.generate(tiny, short_prompt, 8, use_cache=False)
    )


def test_generation_run_timings(tiny: model.Decoder) -> None:
    run = model.CachedGenerator(tiny, max_len=80).run(model.prompt_tokens(tiny.cfg.vocab_size, 64), 10)
    assert len(run.tokens) == 10
    assert len(run.step_s) == 9
    assert run.ttft_s > 0 and all(step > 0 for step in run.step_s)


def test_greedy_prefix_property(tiny: model.Decoder) -> None:
    prompt = model.prompt_tokens(tiny.cfg.vocab_size, 32)
    assert model.generate(tiny, prompt, 6) == model.generate(tiny, prompt, 12)[:6]


def test_cache_too_small_is_refused(tiny: model.Decoder) -> None:
    generator = model.CachedGenerator(tiny, max_len=40)
    with pytest.raises(ValueError, match="exceed"):
        generator.run(model.prompt_tokens(tiny.cfg.vocab_size, 32), 10)


@pytest.mark.parametrize("mode", ["cuda_graph", "compiled_cuda_graph"])
def test_graph_modes_need_cuda(tiny: model.Decoder, mode: str) -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        model.CachedGenerator(tiny, max_len=16, mode=mode)


def test_unknown_mode_is_refused(tiny: model.Decoder) -> None:
    with pytest.raises(ValueError, match="unknown decode mode"):
        model.CachedGenerator(tiny, max_len=16, mode="turbo")


def test_decode_step_traces_as_one_graph(tiny: model.Decoder) -> None:
    # torch.compile must see the fixed-shape decode step without graph breaks (checked with the eager
    # backend, which needs no compiler): a break would split the compiled CUDA-graph mode into pieces.
    import torch._dynamo

    cache = model.KVCache(tiny.cfg, max_len=40, device="cpu", dtype=torch.float32)
    token, pos = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    compiled = torch.compile(tiny.decode_step, backend="eager", fullgraph=True, dynamic=False)
    torch._dynamo.reset()
    with torch.no_grad():
        expected = tiny.decode_step(
            token, pos, model.KVCache(tiny.cfg, max_len=40, device="cpu", dtype=torch.float32), 1, True
        )
        assert torch.allclose(compiled(token, pos, cache, cache.window(1), False), expected, atol=1e-5)


def test_cache_rows_are_padded_and_windows_bucketed(tiny: model.Decoder) -> None:
    cache = model.KVCache(tiny.cfg, max_len=70, device="cpu", dtype=torch.float32)
    assert cache.max_len == 128
    assert cache.window(1) == cache.window(70) == 128  # never past the cache
    big = model.KVCache(tiny.cfg, max_len=600, device="cpu", dtype=torch.float32)
    assert [big.window(n) for n in (1, 256, 257, 512, 513, 640)] == [256, 256, 512, 512, 640, 640]
    valid = big.valid(torch.tensor([5]), 256)
    assert valid.shape == (256,)
    assert valid[:6].all() and not valid[6:].any()


def masked_window_tokens(net: model.Decoder, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    """Greedy decoding through the fixed-shape step a CUDA graph captures (window + mask), on the CPU."""
    cache = model.KVCache(net.cfg, max_len=prompt.shape[1] + new_tokens, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        token = net.prefill(prompt, cache).argmax(dim=-1, keepdim=True)
        tokens = [int(token)]
        for p in range(prompt.shape[1], prompt.shape[1] + new_tokens - 1):
            logits = net.decode_step(token, torch.tensor([p]), cache, cache.window(p + 1), False)
            token = logits.argmax(dim=-1, keepdim=True)
            tokens.append(int(token))
    return tokens


def test_masked_window_decoding_matches_exact_decoding_across_a_window_edge() -> None:
    net = model.build_model(SMALL, "cpu", torch.float32, max_positions=600)
    prompt = model.prompt_tokens(net.cfg.vocab_size, 250, seed=5)
    # Positions 250..269 fill 251..270 slots: windows of 256 and then 512 slots.
    generator = model.CachedGenerator(net, max_len=270)
    assert sorted(set(generator.windows(250, 20))) == [256, 270 // 64 * 64 + 64]
    exact = list(generator.run(prompt, 20).tokens)
    assert masked_window_tokens(net, prompt, 20) == exact
    assert exact == model.generate(net, prompt, 20, use_cache=False)


def test_decode_attention_masked_matches_sdpa_on_the_valid_slots() -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 4, 16, generator=generator)
    k = torch.randn(1, 2, 32, 16, generator=generator)
    v = torch.randn(1, 2, 32, 16, generator=generator)
    valid = torch.arange(32).le(20)
    masked = model.decode_attention(q, k, v, valid)
    exact = model.decode_attention(q, k[:, :, :21], v[:, :, :21], None)
    assert torch.allclose(masked, exact, atol=1e-5)


def test_preset_shapes_match_llama() -> None:
    with torch.device("meta"):
        one_b = model.Decoder(model.PRESETS["1b"], max_positions=16)
        eight_b = model.Decoder(model.PRESETS["8b"], max_positions=16)
    assert one_b.parameter_count() == 1_235_814_400  # Llama-3.2-1B, tied embeddings
    assert eight_b.parameter_count() == 8_030_261_248  # Llama-3-8B, untied
    # bf16, tied: every weight is read once per token, ~2.47 GB (1.24e9 parameters x 2 bytes).
    assert one_b.to(torch.bfloat16).weight_bytes_per_token() == 2 * 1_235_814_400


def test_untied_input_table_is_not_counted_as_read() -> None:
    net = model.build_model(UNTIED, "cpu", torch.float32, max_positions=16)
    all_bytes = net.parameter_count() * 4
    table = UNTIED.vocab_size * UNTIED.dim * 4
    assert net.weight_bytes_per_token() == all_bytes - table + UNTIED.dim * 4


def test_greedy_margins_flag_a_token_that_is_not_the_argmax(tiny: model.Decoder) -> None:
    prompt = model.prompt_tokens(tiny.cfg.vocab_size, 32)
    tokens = model.generate(tiny, prompt, 6)
    wrong = list(tokens)
    wrong[3] = (wrong[3] + 1) % tiny.cfg.vocab_size
    margins = tiny.greedy_margins(prompt, wrong)
    assert margins[:3] == pytest.approx([0.0] * 3, abs=1e-4)
    assert margins[3] > 1.0
    assert tiny.greedy_margins(prompt, []) == []


def test_checksum_is_sha256_of_token_ids() -> None:
    assert model.checksum([1, 2, 3]) == model.checksum((1, 2, 3))
    assert model.checksum([1, 2, 3]) != model.checksum([1, 2, 4])
    assert len(model.checksum([])) == 64


def test_plans() -> None:
    assert plan_for("quick", None, on_gpu=False).preset == "tiny"
    assert plan_for("full", None, on_gpu=True).preset == "1b"
    assert plan_for("full", None, on_gpu=True).graph
    assert not plan_for("full", None, on_gpu=False).graph
    assert plan_for("quick", "8b", on_gpu=True).preset == "8b"
    for profile in ("quick", "full"):
        plan = plan_for(profile, None, on_gpu=False)
        assert plan.repetitions >= 2 and plan.nocache_repetitions >= 2
        assert plan.nocache_tokens <= plan.new_tokens


@pytest.mark.slow
def test_inductor_compiles_the_fixed_shape_decode_step() -> None:
    # What the compiled CUDA-graph mode compiles, lowered by Inductor for the CPU (needs a C++
    # compiler): the masked-window attention must compile whole and pick the same greedy tokens.
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("Inductor on the CPU needs a C++ compiler")
    net = model.build_model(SMALL, "cpu", torch.float32, max_positions=128)
    prompt = model.prompt_tokens(net.cfg.vocab_size, 40, seed=2)
    cache = model.KVCache(net.cfg, max_len=48, device="cpu", dtype=torch.float32)
    step = torch.compile(net.decode_step, dynamic=False, fullgraph=True)
    with torch.no_grad():
        token = net.prefill(prompt, cache).argmax(dim=-1, keepdim=True)
        tokens = [int(token)]
        for p in range(40, 47):
            token = step(token, torch.tensor([p]), cache, cache.window(p + 1), False).argmax(
                dim=-1, keepdim=True
            )
            tokens.append(int(token))
    assert tokens == model.generate(net, prompt, 8, use_cache=False)
