"""The benchmark helpers on fake timings: roofline arithmetic, decode rates, ratios, table formatting,
the transformers config/weight mapping (without transformers), and one tiny CPU smoke run.
No timing is asserted anywhere: the numbers depend on the machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import generation  # noqa: E402
from benchmarks import gpu_generation as gpu  # noqa: E402

H100_SXM_GBPS = 3350.0


def fake_row(context: int, cached: float, nocache: float, match: bool = True) -> dict:
    return generation.kv_row(
        context=context,
        cached_tokens_per_s=[cached * 0.9, cached, cached * 1.1],
        nocache_tokens_per_s=[nocache, nocache * 1.2],
        ttft_s=[0.010, 0.012, 0.011],
        tokens_match=match,
    )


def test_summary_is_median_and_relative_spread() -> None:
    summary = generation.summarise([10.0, 12.0, 11.0])
    assert summary.median == 11.0
    assert summary.spread == pytest.approx(2.0 / 11.0)
    assert summary.values == (10.0, 12.0, 11.0)


def test_kv_row_speedup_is_the_ratio_of_medians() -> None:
    row = fake_row(512, cached=100.0, nocache=10.0)
    assert row["cached_tokens_per_s"] == pytest.approx(100.0)
    assert row["nocache_tokens_per_s"] == pytest.approx(11.0)  # median of 10 and 12
    assert row["kv_speedup"] == pytest.approx(100.0 / 11.0, rel=1e-3)
    assert row["cached_spread"] == pytest.approx(0.2)
    assert row["ttft_ms"] == pytest.approx(11.0)


def test_kv_table_lines_show_ratios_growth_and_mismatches() -> None:
    rows = [fake_row(128, 100.0, 50.0), fake_row(2048, 80.0, 2.0, match=False)]
    lines = generation.format_kv_table(rows)
    assert "KV speed-up" in lines[0]
    assert len(lines) == 4
    assert lines[1].split()[0] == "128" and lines[1].rstrip().endswith("yes")
    assert "36.4x" in lines[2] and lines[2].rstrip().endswith("NO")
    assert lines[3].startswith("  context x16:")
    assert "no-cache tokens/s x0.04" in lines[3]


def test_decode_rate_subtracts_the_one_token_run() -> None:
    # 11 tokens: 10 decode steps in (1.1 - 0.1) s of medians.
    assert gpu.decode_rate([1.0, 1.2, 1.1], [0.1, 0.2, 0.05], 11) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("full", "first", "tokens"), [([1.0], [0.5], 1), ([0.5], [0.5], 8), ([0.4], [0.5], 8)]
)
def test_decode_rate_refuses_meaningless_inputs(full: list, first: list, tokens: int) -> None:
    with pytest.raises(ValueError):
        gpu.decode_rate(full, first, tokens)


def test_timing_summary_drops_pairs_without_a_rate_of_their_own() -> None:
    summary = gpu.timing_summary([1.1, 0.1, 1.1], [0.1, 0.2, 0.1], 11)
    assert summary["per_repetition_tokens_per_s"] == [10.0, 10.0]
    assert summary["spread"] == 0.0
    assert summary["tpot_ms"] == pytest.approx(1000.0 / summary["decode_tokens_per_s"], rel=1e-4)


def one_b_weight_bytes() -> int:
    torch = pytest.importorskip("torch")
    from envkit.probe import model

    with torch.device("meta"):
        net = model.Decoder(model.PRESETS["1b"]).to(torch.bfloat16)
    return net.weight_bytes_per_token()


def test_roofline_of_the_1b_shape_matches_the_published_bound() -> None:
    # Llama-3.2-1B in bf16 reads ~2.47 GB per token (1.24e9 parameters x 2 bytes), <= 1,355 tok/s on an H100 SXM.
    weights = one_b_weight_bytes()
    assert weights == pytest.approx(2.47e9, rel=0.01)
    figures = gpu.bandwidth_figures(
        weight_bytes=weights, kv_bytes_per_pos=0, context_len=0, tpot_s=1e-3, peak_gbps=H100_SXM_GBPS
    )
    assert figures["roofline_tokens_per_s"] == pytest.approx(1355, rel=0.01)


def test_bandwidth_figures_count_the_kv_cache_at_the_mean_context() -> None:
    per_token = 1e9 + 32768 * 576
    figures = gpu.bandwidth_figures(
        weight_bytes=10**9,
        kv_bytes_per_pos=32768,
        context_len=576,
        tpot_s=per_token / 2000e9,
        peak_gbps=4000.0,
    )
    assert figures["bytes_per_token"] == per_token
    assert figures["achieved_bandwidth_gbps"] == pytest.approx(2000.0)
    assert figures["bandwidth_utilisation"] == pytest.approx(0.5)


def test_bandwidth_figures_without_a_known_peak() -> None:
    figures = gpu.bandwidth_figures(
        weight_bytes=10**9, kv_bytes_per_pos=0, context_len=0, tpot_s=0.01, peak_gbps=None
    )
    assert figures["achieved_bandwidth_gbps"] == pytest.approx(100.0)
    assert figures["bandwidth_utilisation"] is None and figures["roofline_tokens_per_s"] is None


def fake_mode(rate: float, utilisation: float | None) -> dict:
    return {
        "decode_tokens_per_s": rate,
        "tpot_ms": 1000.0 / rate,
        "spread": 0.02,
        "warmup_s": 1.5,
        "new_tokens": 128,
        "matching_prefix_with_envkit_eager": 128,
        "bandwidth_utilisation": utilisation,
    }


FAKE_MODES = {
    "envkit.nocache": fake_mode(5000.0, None),  # not a cached mode: never "best", however fast
    "envkit.eager": fake_mode(300.0, 0.2),
    "envkit.cuda_graph": fake_mode(900.0, 0.62),
    "transformers.dynamic": fake_mode(100.0, 0.07),
    "transformers.static_compiled": fake_mode(800.0, 0.55),
}


def test_comparison_takes_envkits_fastest_cached_mode_against_each_transformers_mode() -> None:
    summary = gpu.comparison(FAKE_MODES)
    assert summary["envkit_best_mode"] == "envkit.cuda_graph"
    assert summary["envkit_best_over_transformers"] == {
        "transformers.dynamic": 9.0,
        "transformers.static_compiled": 1.125,
    }
    assert summary["envkit_best_over_transformers_best"] == 1.125
    assert summary["meets_utilisation_target"] is True
    assert summary["meets_transformers_target"] is True


def test_comparison_without_transformers_or_a_peak() -> None:
    summary = gpu.comparison({"envkit.eager": fake_mode(50.0, None)})
    assert summary["envkit_best_mode"] == "envkit.eager"
    assert summary["envkit_best_over_transformers"] == {}
    assert summary["meets_transformers_target"] is None
    assert summary["meets_utilisation_target"] is None
    assert gpu.comparison({"envkit.nocache": fake_mode(5.0, None)}) == {"envkit_best_mode": None}


def test_mode_table_and_comparison_lines() -> None:
    failures = {"envkit.compiled_cuda_graph": "skipped: --skip-compile"}
    lines = gpu.format_modes(FAKE_MODES, failures)
    assert len(lines) == 1 + len(FAKE_MODES) + 1
    assert lines[3].split()[:2] == ["envkit.cuda_graph", "900.0"] and "62.0%" in lines[3]
    assert lines[-1].split()[0] == "envkit.compiled_cuda_graph" and "not measured" in lines[-1]
    env = {"peak_bandwidth_gbps": 3352.3, "peak_bandwidth_source": "nvml"}
    text = "\n".join(gpu.comparison_lines(gpu.comparison(FAKE_MODES), env))
    assert "62.0% of 3352.3 GB/s (nvml); target >= 60%: met" in text
    assert "envkit best / transformers.dynamic = 9.00x" in text
    assert "envkit best >= transformers' best: yes" in text


def test_matching_prefix() -> None:
    assert gpu.matching_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert gpu.matching_prefix([1, 2], [1, 2, 3]) == 2
    assert gpu.matching_prefix([], [1]) == 0


def test_llama_config_has_the_same_shape_as_the_1b_preset() -> None:
    pytest.importorskip("torch")
    from envkit.probe import model

    kwargs = gpu.llama_config_kwargs(model.PRESETS["1b"], max_positions=2176)
    assert kwargs | {"rope_theta": None} == {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 2176,
        "rms_norm_eps": 1e-5,
        "rope_theta": None,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": None,
        "eos_token_id": None,  # nothing can stop generation before max_new_tokens
        "pad_token_id": 0,
    }
    assert kwargs["rope_theta"] == 500000.0
    assert gpu.llama_config_kwargs(model.PRESETS["8b"], max_positions=64)["tie_word_embeddings"] is False


@pytest.mark.parametrize("tied", [True, False])
def test_hf_state_dict_splits_the_fused_projections(tied: bool) -> None:
    torch = pytest.importorskip("torch")
    from envkit.probe import model

    cfg = model.ModelConfig(
        dim=64, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=96, vocab_size=128, tie_embeddings=tied
    )
    net = model.build_model(cfg, "cpu", torch.float32, max_positions=32)
    state = gpu.hf_state_dict(net)
    per_layer = {
        "self_attn.q_proj.weight": (64, 64),
        "self_attn.k_proj.weight": (16, 64),
        "self_attn.v_proj.weight": (16, 64),
        "self_attn.o_proj.weight": (64, 64),
        "mlp.gate_proj.weight": (96, 64),
        "mlp.up_proj.weight": (96, 64),
        "mlp.down_proj.weight": (64, 96),
        "input_layernorm.weight": (64,),
        "post_attention_layernorm.weight": (64,),
    }
    expected = {f"model.layers.{i}.{name}": shape for i in range(2) for name, shape in per_layer.items()}
    expected |= {
        "model.embed_tokens.weight": (128, 64),
        "model.norm.weight": (64,),
        "lm_head.weight": (128, 64),
    }
    assert {key: tuple(value.shape) for key, value in state.items()} == expected
    layer = net.layers[1]
    fused = torch.cat([state[f"model.layers.1.self_attn.{p}_proj.weight"] for p in "qkv"])
    assert torch.equal(fused, layer.attn.wqkv.weight)
    assert torch.equal(state["model.layers.1.mlp.gate_proj.weight"], layer.mlp.w13.weight[:96])
    assert (state["lm_head.weight"] is net.tok_emb.weight) == tied


def test_plan_from_arguments() -> None:
    plan = gpu.make_plan(gpu.parse_args(["--out", "x.json"]))
    assert (plan.new_tokens, plan.nocache_tokens, plan.repetitions, plan.budget_s) == (128, 16, 3, 180.0)
    assert (plan.table.new_tokens, plan.table.nocache_tokens, plan.table.dtype) == (64, 8, "bfloat16")
    assert plan.contexts == (128, 512, 2048)
    assert plan.max_positions == 2048 + 128
    assert plan.mean_context == 512 + 64
    quick = gpu.make_plan(
        gpu.parse_args(["--out", "x.json", "--quick", "--device", "cpu", "--budget-s", "30"])
    )
    assert (quick.new_tokens, quick.repetitions, quick.budget_s, quick.table.dtype) == (
        64,
        2,
        30.0,
        "float32",
    )


def test_stages_are_skipped_for_a_reason() -> None:
    plan = gpu.make_plan(gpu.parse_args(["--out", "x.json", "--skip-transformers"]))
    now = time.monotonic()
    plenty, spent = gpu.Deadline(now, 1000.0), gpu.Deadline(now - 1000.0, 180.0)
    compiled = gpu.Stage(name="c", run=dict, needs_cuda=True, compiles=True)
    plain = gpu.Stage(name="p", run=dict)
    assert gpu.skip_reason(compiled, plan, plenty, on_gpu=False) == "skipped: needs a CUDA device"
    assert gpu.skip_reason(compiled, plan, plenty, on_gpu=True) is None
    assert gpu.skip_reason(gpu.Stage(name="t", run=dict, transformers=True), plan, plenty, True) == (
        "skipped: --skip-transformers"
    )
    assert "budget left" in (gpu.skip_reason(plain, plan, spent, on_gpu=True) or "")


def test_kv_cache_table_on_a_small_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from envkit.probe import model

    cfg = model.ModelConfig(dim=64, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=128, vocab_size=512)
    net = model.build_model(cfg, "cpu", torch.float32, max_positions=64)
    settings = generation.TableSettings(
        preset="small", dtype="float32", new_tokens=4, nocache_tokens=2, repetitions=2, nocache_repetitions=2
    )
    printed: list[str] = []
    rows = generation.kv_cache_table((8, 16), say=printed.append, settings=settings, model=net)
    assert [row["context_len"] for row in rows] == [8, 16]
    assert all(row["tokens_match"] for row in rows)  # fp32: cached and recomputed greedy tokens agree
    assert len(rows[0]["cached_per_repetition"]) == 2 and len(rows[0]["nocache_per_repetition"]) == 2
    assert rows[1]["mode"] == "eager" and rows[1]["device"] == "cpu" and rows[1]["warmup_runs"] == 1
    assert printed[0].startswith("  small preset, float32, cpu")
    assert len(printed) == 1 + 1 + 2 + 1


def test_gpu_benchmark_smoke_run_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "gpu-generation.json"
    small = [
        "--device",
        "cpu",
        "--preset",
        "tiny",
        "--prompt-len",
        "16",
        "--contexts",
        "8",
        "--new-tokens",
        "16",
    ]
    args = gpu.parse_args(["--out", str(out), *small, "--repetitions", "1", "--skip-transformers"])
    returned = gpu.run_benchmark(gpu.make_plan(args), out, say=lambda text: None)
    written = json.loads(out.read_text())
    assert written["schema"] == gpu.SCHEMA
    assert written["modes"].keys() == returned["modes"].keys()
    for name in ("envkit.nocache", "envkit.eager"):  # measured, unless noise beat a 15-token difference
        assert name in written["modes"] or "was not slower" in written["failures"][name]
    assert written["failures"]["envkit.cuda_graph"] == "skipped: needs a CUDA device"
    assert written["failures"]["transformers.dynamic"] == "skipped: --skip-transformers"
    assert written["failures"]["transformers.static_compiled"] == "skipped: needs a CUDA device"
    assert [row["context_len"] for row in written["kv_cache"]] == [8]
    assert written["model"]["kv_bytes_per_position"] == 4 * 2 * 2 * 32 * 4
    assert written["environment"]["torch"]
