"""throughput.generate's verdict rules on synthetic measurements (the GPU branches included)."""

from __future__ import annotations

import time
from typing import ClassVar

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
        margins=margins or {mode: [0.0] * len(runs[0].tokens) for mode, runs in modes.items()},
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
    assert verdict(nocache=(5, 6, 7, 99), on_gpu=True, margins={"eager": [0.05] * 8}) == ([], [])


def test_gpu_margins_warn_then_fail() -> None:
    _, warnings = verdict(on_gpu=True, margins={"eager": [0.0, 0.5]})
    assert any("0.50 std" in w for w in warnings)
    problems, _ = verdict(on_gpu=True, margins={"eager": [3.0]})
    assert any("3.00 std" in p for p in problems)


OTHER = (5, 6, 7, 8, 9, 10, 11, 13)  # parts from TOKENS at the last token


def test_graph_modes_may_part_from_eager_only_at_a_tie() -> None:
    modes = {"eager": [run()] * 3, "cuda_graph": [run(OTHER)] * 3, "compiled_cuda_graph": [run(OTHER)] * 3}
    tie = [0.0] * 7 + [0.1]  # their last token was within 0.1 std of the top logit
    margins = {"eager": [0.0] * 8, "cuda_graph": tie, "compiled_cuda_graph": tie}
    assert verdict(modes=modes, on_gpu=True, margins=margins) == ([], [])
    clear = {"eager": [0.0] * 7 + [0.3], "cuda_graph": [0.0] * 8, "compiled_cuda_graph": tie}
    _, warnings = verdict(modes=modes, on_gpu=True, margins=clear)
    # eager's own last choice was 0.3 std below the top: the graph mode's is no tie with it.
    assert "cuda_graph tokens leave eager's at token 7 where the logits do not tie" in warnings


def test_parted_at_tie() -> None:
    assert ct.parted_at_tie([1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 0]) == (None, True)
    assert ct.parted_at_tie([1, 2, 3], [0, 0, 0.2], [1, 2, 4], [0, 0, 0]) == (2, True)
    assert ct.parted_at_tie([1, 2, 3], [0, 0, 0.2], [1, 2, 4], [0, 0, 0.3]) == (2, False)
    assert ct.parted_at_tie([1, 2], [0, 0], [1, 2, 3], [0, 0, 0]) == (None, True)


def test_fastest_correct_mode_wins_not_the_fastest() -> None:
    fast = model.GenerationRun(tokens=OTHER, ttft_s=0.05, step_s=(0.001,) * 7)
    summaries = {
        "eager": ct._mode_summary([run()] * 3, model),
        "cuda_graph": ct._mode_summary([fast] * 3, model),
    }
    not_tie = {"eager": [0.0] * 8, "cuda_graph": [0.0] * 7 + [0.9]}
    assert ct.correct_modes(summaries, not_tie) == ["eager"]
    tie = {"eager": [0.0] * 8, "cuda_graph": [0.0] * 7 + [0.1]}
    assert ct.correct_modes(summaries, tie) == ["eager", "cuda_graph"]


def test_failed_graph_mode_warns_but_one_out_of_time_does_not() -> None:
    _, warnings = verdict(on_gpu=True, errors={"compiled_cuda_graph": "BackendCompilerFailed: no triton"})
    assert warnings == ["compiled_cuda_graph mode failed: BackendCompilerFailed: no triton"]
    late = {"compiled_cuda_graph": ct.NOT_STARTED + "30 s of the check's time limit left, needs 75 s"}
    assert verdict(on_gpu=True, errors=late) == ([], [])


def test_mode_summary_excludes_the_warm_up_run() -> None:
    slow_warmup = model.GenerationRun(tokens=TOKENS, ttft_s=9.0, step_s=(1.0,) * 7)
    summary = ct._mode_summary([slow_warmup, run(), run()], model)
    assert summary["decode_tokens_per_s"] == pytest.approx(250.0)
    assert summary["ttft_s"] == pytest.approx(0.05)
    assert len(summary["steps_s"]) == 14
    assert summary["samples"]["tpot_ms"] == pytest.approx([4.0, 4.0])


def test_metrics_are_medians_of_per_run_samples() -> None:
    runs = [
        model.GenerationRun(tokens=TOKENS, ttft_s=t, step_s=(s,) * 7)
        for t, s in ((9.0, 1.0), (0.01, 0.002), (0.03, 0.004), (0.02, 0.010))
    ]
    summary = ct._mode_summary(runs, model)
    assert summary["samples"]["decode_tokens_per_s"] == pytest.approx([500.0, 250.0, 100.0])
    assert summary["decode_tokens_per_s"] == pytest.approx(250.0)
    assert summary["ttft_s"] == pytest.approx(0.02)
    table = ct.sample_stats(summary["samples"])
    assert table["decode_tokens_per_s"] == {
        "median": 250.0,
        "min": 100.0,
        "max": 500.0,
        "spread": 1.6,
        "n": 3,
    }


def test_noise_reason_names_load_and_spread() -> None:
    quiet = {
        "cpus_available": 4,
        "cgroup_cpu_quota": None,
        "loadavg_before": [1.0, 1, 1],
        "loadavg_after": [2.0, 1, 1],
    }
    assert ct.noise_reason(quiet, 0.05) is None
    busy = dict(quiet, loadavg_after=[4.5, 1, 1])
    assert ct.noise_reason(busy, 0.05) == "load average 4.50 after the run, above 4"
    throttled = dict(quiet, cgroup_cpu_quota=1.5)
    assert "load average 2.00 after the run, above 1.5" in ct.noise_reason(throttled, 0.05)
    assert ct.noise_reason(quiet, 0.25) == "decode tokens/s spread 25%, above 20%"
    unknown = {"cpus_available": 2, "cgroup_cpu_quota": None, "loadavg_before": None, "loadavg_after": None}
    assert ct.noise_reason(unknown, 0.0) is None


class FakeReference:
    """The decoder module's surface _measure uses; a graph mode that is started records itself."""

    started: ClassVar[list[str]] = []

    class CachedGenerator:
        def __init__(self, net: object, *, max_len: int, mode: str = "eager") -> None:
            FakeReference.started.append(mode)

        def run(self, prompt: object, count: int) -> model.GenerationRun:
            return run()

    @staticmethod
    def generate_nocache(net: object, prompt: object, count: int) -> tuple:
        return TOKENS[:count], 1.0


class FakeNet:
    def greedy_margins(self, prompt: object, tokens: tuple) -> list:
        return [0.0] * len(tokens)


def test_graph_modes_are_not_started_without_the_time_they_need() -> None:
    plan = ct.GenerationPlan(
        preset="1b",
        prompt_len=512,
        new_tokens=8,
        nocache_tokens=4,
        repetitions=2,
        nocache_repetitions=2,
        graph_modes=ct.GRAPH_MODES,
    )
    FakeReference.started = []
    short = ct._Deadline(end=time.monotonic() + 30.0)  # room for cuda_graph (20 s), not compiled
    measured = ct._measure(FakeReference, FakeNet(), None, plan, short)
    assert FakeReference.started == ["eager", "cuda_graph"]
    assert set(measured.modes) == {"eager", "cuda_graph"}
    assert measured.mode_errors["compiled_cuda_graph"].startswith("not started: ")
    assert "needs 75 s" in measured.mode_errors["compiled_cuda_graph"]
    FakeReference.started = []
    ct._measure(FakeReference, FakeNet(), None, plan, ct._Deadline(end=None))
    assert FakeReference.started == ["eager", "cuda_graph", "compiled_cuda_graph"]


def test_gpu_plans_measure_graph_modes_by_profile() -> None:
    assert ct.plan_for("quick", None, on_gpu=True).graph_modes == ("cuda_graph",)
    assert ct.plan_for("full", None, on_gpu=True).graph_modes == ct.GRAPH_MODES
    assert ct.plan_for("full", None, on_gpu=False).graph_modes == ()
