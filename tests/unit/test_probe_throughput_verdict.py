"""throughput.generate's verdict rules on synthetic measurements (the GPU branches included)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from envkit.probe import checks_throughput as ct
from envkit.probe import model

PLAN = ct.GenerationPlan(
    preset="tiny",
    prompt_len=512,
    new_tokens=8,
    nocache_tokens=4,
    repetitions=2,
    nocache_repetitions=2,
    graph=False,
)
TOKENS = (5, 6, 7, 8, 9, 10, 11, 12)


def run(tokens: tuple = TOKENS) -> model.GenerationRun:
    return model.GenerationRun(tokens=tokens, ttft_s=0.05, step_s=(0.004,) * (len(tokens) - 1))


def verdict(
    *,
    modes: dict | None = None,
    nocache: tuple = TOKENS[:4],
    speedup: float = 10.0,
    margins: dict | None = None,
    on_gpu: bool = False,
    errors: dict | None = None,
) -> tuple:
    modes = modes or {"eager": [run(), run(), run()]}
    measured = ct.Measured(
        modes=modes,
        nocache=[(nocache, 1.0), (nocache, 1.0)],
        mode_errors=errors or {},
        margins=margins or {mode: 0.0 for mode in modes},
    )
    summaries = {mode: ct._mode_summary(runs, model) for mode, runs in measured.modes.items()}
    return ct._verdicts(model, PLAN, measured, summaries, {"kv_speedup": speedup}, on_gpu)


def test_healthy_measurement_has_no_findings() -> None:
    assert verdict() == ([], [])


def test_kv_cache_that_saves_nothing_fails() -> None:
    problems, _ = verdict(speedup=1.0)
    assert any("speed-up 1.00 <= 1" in p for p in problems)


def test_checksum_unstable_between_repetitions_fails() -> None:
    flipped = (*TOKENS[:-1], 99)
    problems, _ = verdict(modes={"eager": [run(), run(), run(flipped)]})
    assert "eager checksum differs between repetitions" in problems


def test_cpu_cached_vs_nocache_mismatch_fails() -> None:
    problems, _ = verdict(nocache=(5, 6, 7, 99))
    assert "cached and non-cached greedy tokens differ" in problems


def test_gpu_bf16_divergence_with_small_margins_is_accepted() -> None:
    assert verdict(nocache=(5, 6, 7, 99), on_gpu=True, margins={"eager": 0.05}) == ([], [])


def test_gpu_margins_warn_then_fail() -> None:
    _, warnings = verdict(on_gpu=True, margins={"eager": 0.5})
    assert any("0.50 std" in w for w in warnings)
    problems, _ = verdict(on_gpu=True, margins={"eager": 3.0})
    assert any("3.00 std" in p for p in problems)


def test_cuda_graph_must_match_eager_but_compiled_may_round_differently() -> None:
    other = (5, 6, 7, 8, 9, 10, 11, 13)
    modes = {"eager": [run()] * 3, "cuda_graph": [run(other)] * 3, "compiled_cuda_graph": [run(other)] * 3}
    problems, warnings = verdict(modes=modes, on_gpu=True)
    assert problems == []
    assert warnings == ["CUDA-graph tokens differ from eager tokens"]


def test_failed_graph_mode_warns() -> None:
    _, warnings = verdict(on_gpu=True, errors={"compiled_cuda_graph": "BackendCompilerFailed: no triton"})
    assert warnings == ["compiled_cuda_graph mode failed: BackendCompilerFailed: no triton"]


def test_mode_summary_excludes_the_warm_up_run() -> None:
    slow_warmup = model.GenerationRun(tokens=TOKENS, ttft_s=9.0, step_s=(1.0,) * 7)
    summary = ct._mode_summary([slow_warmup, run(), run()], model)
    assert summary["decode_tokens_per_s"] == pytest.approx(250.0)
    assert summary["ttft_s"] == pytest.approx(0.05)
    assert len(summary["steps_s"]) == 14
