"""Baseline comparisons that do not flap: hardware class, measured spread, noisy runs, default metrics;
N/A, require_gpu and per-cell expectations."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envkit.gate import FAIL, PASS, SKIP, ImageVerdict, Sample, compare, run_gate, sample_of
from envkit.policy import Policy, load_policy
from envkit.report import Check, Report, dump_report, load_report

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
H100 = FIXTURES / "h100-full-pass.json"
CPU = FIXTURES / "cpu-quick-pass.json"
DECODE = "baseline:throughput.generate:decode_tokens_per_s"
TPOT = "baseline:throughput.generate:tpot_ms"


def policy(tmp_path: Path, extra: str = "", baseline: str = "") -> Policy:
    text = "version: 1\nallow_skip: [gpu.*, oom.gpu]\n" + extra
    text += "baseline:\n  path: baselines\n  tolerance: 0.05\n" + baseline
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def cpu_report(
    *, cpu_model: str = "AMD EPYC 9654", cores: int = 16, load: float = 0.2, created: str | None = None
) -> Report:
    report = load_report(CPU)
    host = dataclasses.replace(
        report.host,
        cpu_model=cpu_model,
        cpus_available=cores,
        cpu_count=cores,
        loadavg_before=(load, load, load),
        loadavg_after=(load, load, load),
    )
    return dataclasses.replace(report, host=host, created=created or report.created)


def with_samples(report: Report, metric: str, samples: list[float], **details: Any) -> Report:
    """`report` whose throughput record measured `metric` as these repeated samples (contract stats)."""
    ordered = sorted(samples)
    median = _median(ordered)
    if len(ordered) >= 4:
        spread = (_quantile(ordered, 0.75) - _quantile(ordered, 0.25)) / median
    else:
        spread = (ordered[-1] - ordered[0]) / median
    stats = {"median": median, "min": ordered[0], "max": ordered[-1], "spread": spread, "n": len(samples)}

    def change(check: Check) -> Check:
        if check.id != "throughput.generate":
            return check
        old_stats = dict(check.details.get("stats") or {})
        return dataclasses.replace(
            check,
            metrics={**check.metrics, metric: median},
            details={**check.details, "stats": {**old_stats, metric: stats}, **details},
        )

    return dataclasses.replace(report, checks=tuple(change(c) for c in report.checks))


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def gate(tmp_path: Path, current: Report, *baselines: Report, **kw: str) -> ImageVerdict:
    folder = tmp_path / "baselines"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    for i, report in enumerate(baselines):
        (folder / f"b{i}.json").write_text(dump_report(report))
    return run_gate([current], policy(tmp_path, **kw)).verdicts[0]


def outcome(verdict: ImageVerdict, name: str) -> str:
    found = [finding for finding in verdict.findings if finding.name == name]
    assert len(found) == 1, (name, [(f.name, f.message) for f in verdict.findings if f.kind == "baseline"])
    return found[0].effect


def baseline_names(verdict: ImageVerdict) -> list[str]:
    return [finding.name for finding in verdict.findings if finding.kind == "baseline"]


# --- hardware class ----------------------------------------------------------------------------------


def test_same_cpu_model_and_cores_are_compared(tmp_path: Path) -> None:
    base = cpu_report()
    slow = with_samples(cpu_report(), "decode_tokens_per_s", [30.0])
    verdict = gate(tmp_path, slow, base)
    assert outcome(verdict, DECODE) == FAIL
    assert "regressed" in verdict.why_not()


@pytest.mark.parametrize(
    "other",
    [cpu_report(cores=8), cpu_report(cpu_model="Intel Xeon Platinum 8480+")],
    ids=["fewer-cores", "other-cpu-model"],
)
def test_other_hardware_is_not_compared_and_says_why(tmp_path: Path, other: Report) -> None:
    slow = with_samples(cpu_report(), "decode_tokens_per_s", [1.0])
    verdict = gate(tmp_path, slow, other)
    assert baseline_names(verdict) == ["baseline"]
    message = next(f.message for f in verdict.findings if f.name == "baseline")
    assert "same hardware" in message and str(other.host.hardware_class()) in message
    assert verdict.passed and verdict.baseline_source is None


def test_a_schema_1_cpu_report_is_not_compared_as_any_cpu(tmp_path: Path) -> None:
    verdict = gate(tmp_path, load_report(CPU), load_report(CPU))
    assert baseline_names(verdict) == ["baseline"]
    assert "does not record its CPU model" in verdict.findings[-1].message


def test_gpu_reports_compare_by_gpu_model(tmp_path: Path) -> None:
    base = load_report(H100)
    verdict = gate(tmp_path, base, base)
    assert outcome(verdict, "baseline:throughput.generate[gpu0]:decode_tokens_per_s") == PASS


# --- default metrics ---------------------------------------------------------------------------------


def test_by_default_only_decode_tpot_and_bandwidth_are_compared(tmp_path: Path) -> None:
    gpu = gate(tmp_path, load_report(H100), load_report(H100))
    assert {name.rsplit(":", 1)[1] for name in baseline_names(gpu)} == {
        "decode_tokens_per_s",
        "tpot_ms",
        "bandwidth_utilisation",
    }
    cpu = gate(tmp_path, cpu_report(), cpu_report())
    assert {name.rsplit(":", 1)[1] for name in baseline_names(cpu)} == {"decode_tokens_per_s", "tpot_ms"}


def test_a_policy_opts_into_more_metrics(tmp_path: Path) -> None:
    verdict = gate(
        tmp_path, cpu_report(), cpu_report(), baseline="  metrics: [decode_tokens_per_s, 'itl_*']\n"
    )
    assert {name.rsplit(":", 1)[1] for name in baseline_names(verdict)} == {
        "decode_tokens_per_s",
        "itl_p50_ms",
        "itl_p99_ms",
    }


# --- spread ------------------------------------------------------------------------------------------


def test_a_drop_inside_the_measured_spread_is_not_a_regression(tmp_path: Path) -> None:
    base = with_samples(cpu_report(), "decode_tokens_per_s", [90.0, 100.0, 110.0])  # spread 20 %
    new = with_samples(cpu_report(), "decode_tokens_per_s", [80.0, 88.0, 96.0])  # -12 %, spread 18 %
    assert outcome(gate(tmp_path, new, base), DECODE) == PASS
    clean_base = with_samples(cpu_report(), "decode_tokens_per_s", [100.0])
    clean_new = with_samples(cpu_report(), "decode_tokens_per_s", [88.0])  # -12 %, no spread known
    assert outcome(gate(tmp_path, clean_new, clean_base), DECODE) == FAIL


def test_a_drop_beyond_both_spreads_is_a_regression(tmp_path: Path) -> None:
    base = with_samples(cpu_report(), "decode_tokens_per_s", [98.0, 100.0, 102.0])
    new = with_samples(cpu_report(), "decode_tokens_per_s", [58.0, 60.0, 62.0])
    verdict = gate(tmp_path, new, base)
    assert outcome(verdict, DECODE) == FAIL
    message = next(f.message for f in verdict.failures if f.name == DECODE)
    assert "n=3" in message and "measured spread" in message


def test_malformed_stats_count_as_one_sample() -> None:
    check = Check(
        id="throughput.generate",
        status="PASS",
        summary="",
        metrics={"decode_tokens_per_s": 10.0},
        details={"stats": {"decode_tokens_per_s": {"spread": "wide", "n": 5}}},
    )
    assert sample_of(check, "decode_tokens_per_s") == Sample(median=10.0)


# --- noise -------------------------------------------------------------------------------------------


def test_noisy_measurements_are_not_compared_as_if_clean(tmp_path: Path) -> None:
    base = cpu_report()
    marked = with_samples(cpu_report(), "decode_tokens_per_s", [5.0], noisy=True, noise_reason="load 9.1")
    verdict = gate(tmp_path, marked, base)
    assert outcome(verdict, DECODE) == SKIP and verdict.passed
    assert "load 9.1" in next(f.message for f in verdict.findings if f.name == DECODE)
    busy_host = with_samples(cpu_report(load=40.0), "decode_tokens_per_s", [5.0])
    assert outcome(gate(tmp_path, busy_host, base), DECODE) == SKIP
    busy_baseline = cpu_report(load=40.0)
    assert (
        outcome(
            gate(tmp_path, with_samples(cpu_report(), "decode_tokens_per_s", [5.0]), busy_baseline), DECODE
        )
        == SKIP
    )


def test_a_policy_may_compare_noisy_measurements_anyway(tmp_path: Path) -> None:
    marked = with_samples(cpu_report(), "decode_tokens_per_s", [5.0], noisy=True)
    verdict = gate(tmp_path, marked, cpu_report(), baseline="  noisy: compare\n")
    assert outcome(verdict, DECODE) == FAIL


# --- properties --------------------------------------------------------------------------------------

samples = st.lists(st.floats(min_value=0.01, max_value=1e6, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(values=samples, seed=st.integers(0, 2**16), tolerance=st.floats(0, 0.5))
def test_identical_distributions_never_fail(values: list[float], seed: int, tolerance: float) -> None:
    shuffled = values[:]
    random.Random(seed).shuffle(shuffled)
    base, new = _sample(values), _sample(shuffled)
    for direction in ("higher", "lower"):
        assert not compare(direction, base, new, tolerance).regressed


@settings(max_examples=60, deadline=None)
@given(values=samples, where=st.floats(0, 1), other_spread=st.floats(0, 2))
def test_a_median_inside_the_baselines_spread_never_fails(
    values: list[float], where: float, other_spread: float
) -> None:
    base = _sample(values)
    ordered = sorted(values)
    low, high = (
        (_quantile(ordered, 0.25), _quantile(ordered, 0.75))
        if len(ordered) >= 4
        else (ordered[0], ordered[-1])
    )
    new = Sample(median=low + (high - low) * where, spread=other_spread, n=3)
    for direction in ("higher", "lower"):
        assert not compare(direction, base, new, 0.0).regressed


@settings(max_examples=60, deadline=None)
@given(values=samples, tolerance=st.floats(0, 0.5), margin=st.floats(0.01, 0.4))
def test_a_drop_beyond_tolerance_and_spread_always_fails(
    values: list[float], tolerance: float, margin: float
) -> None:
    base = _sample(values)
    band = tolerance + base.spread + margin
    new = Sample(median=base.median * (1 - band), spread=0.0, n=1)
    if new.median > 0:
        assert compare("higher", base, new, tolerance).regressed
    assert compare("lower", base, Sample(median=base.median * (1 + band)), tolerance).regressed


def _sample(values: list[float]) -> Sample:
    ordered = sorted(values)
    median = _median(ordered)
    if len(ordered) >= 4:
        spread = (_quantile(ordered, 0.75) - _quantile(ordered, 0.25)) / median
    else:
        spread = (ordered[-1] - ordered[0]) / median
    return Sample(median=median, spread=spread, n=len(values))


# --- statuses and per-cell expectations --------------------------------------------------------------


def with_status(report: Report, prefix: str, status: str) -> Report:
    checks = tuple(
        dataclasses.replace(c, status=status) if c.id.startswith(prefix) else c for c in report.checks
    )
    return dataclasses.replace(report, checks=checks)


def plain_policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "plain.yaml"
    path.write_text("version: 1\n" + text)
    return load_policy(path)


REQUIRE_GPU_CHECKS = "require:\n  env.torch: [PASS]\n  gpu.visibility: [PASS]\n"


def test_not_applicable_does_not_affect_the_verdict(tmp_path: Path) -> None:
    cpu = with_status(load_report(CPU), "gpu.", "N/A")
    verdict = run_gate([cpu], plain_policy(tmp_path, REQUIRE_GPU_CHECKS)).verdicts[0]
    assert verdict.passed
    assert cpu.worst_status() == "WARN"  # env.shm; the N/A records do not count


def test_not_applicable_claimed_by_a_cuda_image_fails(tmp_path: Path) -> None:
    cuda = with_status(load_report(H100), "gpu.", "N/A")
    verdict = run_gate([cuda], plain_policy(tmp_path, "")).verdicts[0]
    assert not verdict.passed
    assert "promise CUDA" in verdict.failures[0].message


def test_require_gpu_turns_a_gpu_skip_into_a_failure(tmp_path: Path) -> None:
    skipped = with_status(load_report(H100), "gpu.", "SKIP")
    lenient = plain_policy(tmp_path, "allow_skip: [gpu.*]\n")
    assert run_gate([skipped], lenient).verdicts[0].passed
    strict = plain_policy(tmp_path, "allow_skip: [gpu.*]\nrequire_gpu: true\n")
    verdict = run_gate([skipped], strict).verdicts[0]
    assert not verdict.passed and "require_gpu" in verdict.failures[0].message


CELLS = """\
require:
  env.torch: [PASS]
  gpu.visibility: [PASS]
  gpu.kernels: [PASS]
cells:
  - match: {flavor: cpu}
    not_applicable: [gpu.*, oom.gpu]
  - match: {cuda: "12.*"}
    require_gpu: true
"""


def test_cells_say_what_applies_per_cell_without_a_matrix_wide_allow_skip(tmp_path: Path) -> None:
    policy = plain_policy(tmp_path, CELLS)
    cpu = load_report(CPU)  # gpu.* SKIP in this old report, and no allow_skip anywhere
    cuda_skipped = with_status(load_report(H100), "gpu.", "SKIP")
    cpu_verdict, cuda_verdict = run_gate([cpu, cuda_skipped], policy).verdicts
    assert cpu_verdict.passed
    assert "not applicable to this cell" in next(
        f.message for f in cpu_verdict.findings if f.name == "gpu.kernels"
    )
    assert not cuda_verdict.passed
    assert {f.name.split("[")[0] for f in cuda_verdict.failures} >= {"gpu.visibility", "gpu.kernels"}


def test_expectations_are_what_promote_applies_per_cell(tmp_path: Path) -> None:
    policy = plain_policy(tmp_path, CELLS)
    cpu = policy.expectations({"io.envkit.flavor": "cpu", "io.envkit.cuda": ""})
    assert not cpu.applies("gpu.kernels") and cpu.applies("env.torch") and not cpu.require_gpu
    cuda = policy.expectations({"io.envkit.flavor": "runtime", "io.envkit.cuda": "12.4"})
    assert cuda.applies("gpu.kernels") and cuda.require_gpu and not cuda.skip_allowed("gpu.kernels")
    nothing = policy.expectations({})
    assert nothing.applies("gpu.kernels") and not nothing.rules


def test_why_not_names_the_failures_in_a_few_words(tmp_path: Path) -> None:
    broken = load_report(FIXTURES / "h100-cpu-torch-oom-fail.json")
    verdict = run_gate([broken], plain_policy(tmp_path, REQUIRE_GPU_CHECKS)).verdicts[0]
    assert verdict.why_not().startswith("env.torch FAIL")
    assert "more)" in verdict.why_not(limit=1)
    assert run_gate([load_report(H100)], plain_policy(tmp_path, "")).verdicts[0].why_not() == ""


def test_a_cell_can_be_judged_by_the_labels_its_matrix_gives(tmp_path: Path) -> None:
    from envkit.gate import evaluate

    policy = plain_policy(tmp_path, CELLS)
    local = dataclasses.replace(load_report(CPU), image=None)  # a host run: no image labels
    assert not evaluate(local, policy, baselines=[], rule=None).passed
    cpu_cell = {"io.envkit.flavor": "cpu", "io.envkit.cuda": ""}
    assert evaluate(local, policy, baselines=[], rule=None, cell_labels=cpu_cell).passed
