"""benchmarks/gpu_generation.py measures envkit and transformers by one timing rule, and runs
transformers' documented static-cache recipe for the installed version (fakes: no GPU, no transformers)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import gpu_generation as gpu  # noqa: E402

PREFILL_S, STEP_S, SETUP_S = 0.050, 0.002, 0.010


class FakeClock:
    """Time that only moves when a fake generation says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def generation(self, count: int, *, setup_s: float = 0.0) -> None:
        self.now += setup_s + PREFILL_S + (count - 1) * STEP_S


def plan() -> gpu.Plan:
    return gpu.make_plan(gpu.parse_args(["--out", "x.json", "--device", "cpu", "--new-tokens", "9"]))


def fake_envkit(clock: FakeClock) -> SimpleNamespace:
    class CachedGenerator:
        def __init__(self, net: object, *, max_len: int, mode: str) -> None:
            pass

        def run(self, prompt: object, count: int) -> SimpleNamespace:
            clock.generation(count)
            return SimpleNamespace(tokens=tuple(range(count)), tpot_s=STEP_S)

    return SimpleNamespace(CachedGenerator=CachedGenerator)


class FakeTransformers(gpu.TransformersSide):
    """generate() costs a per-call setup on top (cache reset, input preparation): it must cancel out."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(net=None, plan=plan())
        self.clock, self.resets = clock, 0

    def model(self) -> object:
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"), generation_config=None)

    def prepare_static(self) -> str:
        self.recipe = gpu.RECIPE_AUTO_COMPILE
        return self.recipe

    def compile_config(self) -> str | None:
        return None

    def reset_cache(self) -> None:
        self.resets += 1
        self.clock.now += 5.0  # untimed: must not show in any figure

    def generate(self, prompt: object, count: int, *, static: bool) -> tuple[int, ...]:
        self.clock.generation(count, setup_s=SETUP_S)
        return tuple(range(count))


def test_the_timing_rule_gives_the_same_answer_for_both_frameworks() -> None:
    clock = FakeClock()
    timer = gpu.Timer(sync=lambda: None, clock=clock)
    mine = gpu.envkit_cached(fake_envkit(clock), None, None, "eager", plan(), timer)
    hf = FakeTransformers(clock)
    theirs = gpu.transformers_measured(hf, None, plan(), timer, static=True)
    assert mine["decode_tokens_per_s"] == pytest.approx(1 / STEP_S)
    assert theirs["decode_tokens_per_s"] == pytest.approx(mine["decode_tokens_per_s"])
    assert theirs["tpot_ms"] == pytest.approx(mine["tpot_ms"]) == pytest.approx(STEP_S * 1000)
    assert theirs["recipe"] == gpu.RECIPE_AUTO_COMPILE
    assert hf.resets == 2 + 2 * plan().repetitions  # before every call, warm-ups included


def test_recipe_follows_the_installed_generate() -> None:
    class Recent:
        def _valid_auto_compile_criteria(self) -> bool:
            return True

    assert gpu.choose_recipe(Recent) == gpu.RECIPE_AUTO_COMPILE
    assert gpu.choose_recipe(object) == gpu.RECIPE_COMPILED_FORWARD
    assert set(gpu.RECIPES) == {gpu.RECIPE_AUTO_COMPILE, gpu.RECIPE_COMPILED_FORWARD}


def test_static_cache_arguments_match_the_constructor() -> None:
    common = {"config": "cfg", "max_cache_len": 640, "device": "cuda", "dtype": "bf16"}
    v5 = gpu.static_cache_kwargs(["self", "config", "max_cache_len", "offloading"], **common)
    assert v5 == {"config": "cfg", "max_cache_len": 640}
    v4 = gpu.static_cache_kwargs(
        ["self", "config", "max_batch_size", "max_cache_len", "device", "dtype"], **common
    )
    assert v4 == {
        "config": "cfg",
        "max_batch_size": 1,
        "max_cache_len": 640,
        "device": "cuda",
        "dtype": "bf16",
    }


def test_timer_runs_prepare_outside_the_timed_region() -> None:
    clock = FakeClock()
    timer = gpu.Timer(sync=lambda: None, clock=clock, prepare=lambda: setattr(clock, "now", clock.now + 7))
    seconds, value = timer.wall(lambda: clock.generation(1) or "done")
    assert (seconds, value) == (pytest.approx(PREFILL_S), "done")
    assert dataclasses.replace(timer, prepare=lambda: None).wall(lambda: 1)[0] == 0.0
