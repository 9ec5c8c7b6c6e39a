"""The gate: required checks, allow_skip, strict, thresholds per GPU model, baselines with tolerance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from envkit.errors import ConfigError
from envkit.gate import FAIL, PASS, SKIP, ImageVerdict, run_gate
from envkit.policy import Policy, load_policy
from envkit.report import Check, Report, dump_report, load_report

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
H100 = FIXTURES / "h100-full-pass.json"
A100 = FIXTURES / "a100-full-pass.json"
CPU = FIXTURES / "cpu-quick-pass.json"
BROKEN = FIXTURES / "h100-cpu-torch-oom-fail.json"

POLICY = """\
version: 1
require:
  env.torch: [PASS]
  gpu.visibility: [PASS]
  throughput.generate: [PASS, WARN]
allow_skip: [gpu.*]
thresholds:
  - {check: throughput.generate, metric: decode_tokens_per_s, min: 800, gpu: "H100*", profile: full}
  - {check: throughput.generate, metric: decode_tokens_per_s, min: 50}
  - {check: throughput.generate, metric: bandwidth_utilisation, min: 0.6, gpu: "*H100*"}
  - {check: throughput.generate, metric: itl_p99_ms, max: 20}
"""


def policy_from(tmp_path: Path, text: str = POLICY) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def with_metric(report: Report, check_id: str, metric: str, value: float) -> Report:
    checks = tuple(
        dataclasses.replace(c, metrics={**c.metrics, metric: value}) if c.id == check_id else c
        for c in report.checks
    )
    return dataclasses.replace(report, checks=checks)


def with_status(report: Report, check_id: str, status: str) -> Report:
    checks = tuple(dataclasses.replace(c, status=status) if c.id == check_id else c for c in report.checks)
    return dataclasses.replace(report, checks=checks)


def outcome(verdict: ImageVerdict, name: str) -> str:
    found = [finding.effect for finding in verdict.findings if finding.name == name]
    assert len(found) == 1, (name, [f.name for f in verdict.findings])
    return found[0]


def gate_one(report: Report, policy: Policy, baseline: Path | None = None) -> ImageVerdict:
    return run_gate([report], policy, baseline_path=baseline).verdicts[0]


def test_fixtures_under_the_example_policy(tmp_path: Path) -> None:
    reports = [load_report(path) for path in (H100, A100, CPU, BROKEN)]
    result = run_gate(reports, policy_from(tmp_path))
    assert [verdict.passed for verdict in result.verdicts] == [True, True, True, False]
    assert not result.passed
    broken = result.verdicts[3]
    assert [f.name for f in broken.failures] == [
        "env.torch",
        "env.versions",
        "gpu.visibility",
        "runner.container",
        "throughput.generate",
    ]
    assert "missing from the report" in broken.failures[-1].message
    assert broken.failures[0].hint and "cu124" in broken.failures[0].hint


def test_every_check_record_becomes_a_finding_with_device_names(tmp_path: Path) -> None:
    verdict = gate_one(load_report(H100), policy_from(tmp_path))
    names = [finding.name for finding in verdict.findings if finding.kind == "check"]
    assert "gpu.kernels[gpu0]" in names and "gpu.kernels[gpu1]" in names
    assert outcome(verdict, "threshold:throughput.generate[gpu0]:decode_tokens_per_s") == PASS


def test_allow_skip_lets_a_cpu_runner_skip_required_gpu_checks(tmp_path: Path) -> None:
    cpu = load_report(CPU)
    assert outcome(gate_one(cpu, policy_from(tmp_path)), "gpu.visibility") == SKIP
    strictless = policy_from(tmp_path, POLICY.replace("allow_skip: [gpu.*]\n", ""))
    verdict = gate_one(cpu, strictless)
    assert outcome(verdict, "gpu.visibility") == FAIL
    assert not verdict.passed


def test_strict_fails_warnings_and_unallowed_skips(tmp_path: Path) -> None:
    cpu = load_report(CPU)  # env.shm is WARN, env.nvidia-env and gpu.* are SKIP
    assert gate_one(cpu, policy_from(tmp_path)).passed
    strict = gate_one(
        cpu, policy_from(tmp_path, POLICY.replace("version: 1\n", "version: 1\nstrict: true\n"))
    )
    assert outcome(strict, "env.shm") == FAIL
    assert outcome(strict, "env.nvidia-env") == FAIL
    assert outcome(strict, "gpu.kernels") == SKIP


def test_a_required_status_list_can_refuse_warn(tmp_path: Path) -> None:
    report = with_status(load_report(H100), "env.torch", "WARN")
    assert outcome(gate_one(report, policy_from(tmp_path)), "env.torch") == FAIL


def test_ignore_shows_but_does_not_count(tmp_path: Path) -> None:
    report = with_status(load_report(H100), "env.shm", "FAIL")
    assert not gate_one(report, policy_from(tmp_path)).passed
    verdict = gate_one(report, policy_from(tmp_path, POLICY + "ignore: [env.shm]\n"))
    assert verdict.passed and outcome(verdict, "env.shm") == SKIP


def test_missing_required_check_fails(tmp_path: Path) -> None:
    report = load_report(H100)
    report = dataclasses.replace(report, checks=tuple(c for c in report.checks if c.id != "gpu.visibility"))
    verdict = gate_one(report, policy_from(tmp_path))
    assert outcome(verdict, "gpu.visibility") == FAIL
    assert "policy.yaml:4" in (verdict.failures[0].hint or "")


def test_gpu_specific_threshold_beats_the_general_one(tmp_path: Path) -> None:
    policy = policy_from(tmp_path)
    name = "threshold:throughput.generate[gpu0]:decode_tokens_per_s"
    slow_h100 = with_metric(load_report(H100), "throughput.generate", "decode_tokens_per_s", 700)
    assert outcome(gate_one(slow_h100, policy), name) == FAIL  # H100* min 800 applies, not min 50
    slow_a100 = with_metric(load_report(A100), "throughput.generate", "decode_tokens_per_s", 700)
    assert outcome(gate_one(slow_a100, policy), name) == PASS  # only the general min 50 applies
    a100 = gate_one(load_report(A100), policy)
    assert not [f for f in a100.findings if f.name.endswith("bandwidth_utilisation")]


def test_profile_filter(tmp_path: Path) -> None:
    quick_h100 = dataclasses.replace(
        with_metric(load_report(H100), "throughput.generate", "decode_tokens_per_s", 700), profile="quick"
    )
    verdict = gate_one(quick_h100, policy_from(tmp_path))
    assert outcome(verdict, "threshold:throughput.generate[gpu0]:decode_tokens_per_s") == PASS


def test_max_threshold_and_missing_metric(tmp_path: Path) -> None:
    policy = policy_from(tmp_path)
    laggy = with_metric(load_report(CPU), "throughput.generate", "itl_p99_ms", 25.0)
    failed = gate_one(laggy, policy)
    assert outcome(failed, "threshold:throughput.generate:itl_p99_ms") == FAIL
    assert "itl_p99_ms = 25; rule itl_p99_ms <= 20" in failed.failures[0].message
    h100 = load_report(H100)
    stripped = dataclasses.replace(
        h100,
        checks=tuple(
            dataclasses.replace(
                c, metrics={k: v for k, v in c.metrics.items() if k != "bandwidth_utilisation"}
            )
            for c in h100.checks
        ),
    )
    verdict = gate_one(stripped, policy)
    assert outcome(verdict, "threshold:throughput.generate[gpu0]:bandwidth_utilisation") == FAIL


def test_threshold_on_a_skipped_check_is_skipped(tmp_path: Path) -> None:
    skipped = with_status(load_report(CPU), "throughput.generate", "SKIP")
    verdict = gate_one(
        skipped, policy_from(tmp_path, POLICY.replace("  throughput.generate: [PASS, WARN]\n", ""))
    )
    assert outcome(verdict, "threshold:throughput.generate:decode_tokens_per_s") == SKIP
    assert verdict.passed


def test_runner_death_without_its_own_check_still_fails(tmp_path: Path) -> None:
    report = load_report(H100)
    assert report.runner is not None
    report = dataclasses.replace(
        report,
        checks=tuple(c for c in report.checks if c.id != "runner.container"),
        runner=dataclasses.replace(report.runner, timed_out=True),
    )
    verdict = gate_one(report, policy_from(tmp_path))
    assert outcome(verdict, "runner.container") == FAIL
    assert "timed out" in verdict.failures[0].message


def _baseline_dir(tmp_path: Path, *reports: Report) -> Path:
    folder = tmp_path / "baselines"
    folder.mkdir(exist_ok=True)
    for i, report in enumerate(reports):
        (folder / f"b{i}.json").write_text(dump_report(report))
    return folder


BASELINE = (
    POLICY
    + "baseline:\n  path: baselines\n  tolerance: {default: 0.05, decode_tokens_per_s: 0.10}\n"
    + "  metrics: [decode_tokens_per_s, tpot_ms, itl_p99_ms]\n"
)
DECODE = "baseline:throughput.generate[gpu0]:decode_tokens_per_s"
ITL = "baseline:throughput.generate[gpu0]:itl_p99_ms"


@pytest.mark.parametrize(
    ("metric", "value", "name", "expected"),
    [
        ("decode_tokens_per_s", 1462.8 * 0.91, DECODE, PASS),  # -9 %, tolerance 10 %
        ("decode_tokens_per_s", 1462.8 * 0.89, DECODE, FAIL),  # -11 %
        ("decode_tokens_per_s", 1462.8 * 1.50, DECODE, PASS),  # faster is never a regression
        ("itl_p99_ms", 0.91 * 1.04, ITL, PASS),  # +4 %, default tolerance 5 %
        ("itl_p99_ms", 0.91 * 1.06, ITL, FAIL),  # +6 % latency is worse
        ("itl_p99_ms", 0.91 * 0.50, ITL, PASS),  # lower latency is better
    ],
)
def test_baseline_tolerance_in_both_directions(
    tmp_path: Path, metric: str, value: float, name: str, expected: str
) -> None:
    base = load_report(H100)
    _baseline_dir(tmp_path, base, load_report(A100))
    current = with_metric(base, "throughput.generate", metric, value)
    verdict = gate_one(current, policy_from(tmp_path, BASELINE))
    assert outcome(verdict, name) == expected
    assert verdict.baseline_source is not None and verdict.baseline_source.endswith("b0.json")


def test_baseline_matches_image_gpu_and_profile_and_else_skips(tmp_path: Path) -> None:
    _baseline_dir(tmp_path, load_report(A100))
    verdict = gate_one(load_report(H100), policy_from(tmp_path, BASELINE))
    assert outcome(verdict, "baseline") == SKIP
    assert verdict.passed and verdict.baseline_source is None


def test_baseline_flag_overrides_the_policy_path(tmp_path: Path) -> None:
    slow = with_metric(load_report(H100), "throughput.generate", "decode_tokens_per_s", 1000)
    verdict = gate_one(slow, policy_from(tmp_path), baseline=H100)
    assert outcome(verdict, DECODE) == FAIL  # default tolerance 5 %


def test_missing_baseline_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="baseline path does not exist"):
        run_gate([load_report(H100)], policy_from(tmp_path, BASELINE))


def test_newest_matching_baseline_wins(tmp_path: Path) -> None:
    old = with_metric(load_report(H100), "throughput.generate", "decode_tokens_per_s", 5000)
    new = dataclasses.replace(load_report(H100), created="2025-04-01T00:00:00Z")
    _baseline_dir(tmp_path, old, new)
    verdict = gate_one(load_report(H100), policy_from(tmp_path, BASELINE))
    assert outcome(verdict, DECODE) == PASS


def test_check_dataclass_name() -> None:
    assert Check(id="gpu.kernels", status="PASS", summary="", device=1).name == "gpu.kernels[gpu1]"
