"""Apply a release policy to validation reports: one verdict per image and one overall.

Every rule that was evaluated becomes a Finding (a JUnit test case): one per check record, one per
threshold rule per record, one per compared baseline metric, plus synthetic ones for missing required
checks and a container that died without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from envkit.errors import ConfigError, Where
from envkit.policy import BaselineRule, Policy, Requirement, Tolerance, gpu_matches
from envkit.report import Check, Report, check_path, load_report, metric_direction

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One evaluated rule; `outcome` is "pass", "fail" or "skip"."""

    name: str
    kind: str  # check | threshold | baseline | runner
    outcome: str
    message: str
    hint: str | None = None
    status: str | None = None
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ImageVerdict:
    """The gate's verdict on one report."""

    report: Report
    findings: tuple[Finding, ...]
    baseline_source: str | None = None

    @property
    def passed(self) -> bool:
        """True when no finding failed."""
        return not self.failures

    @property
    def failures(self) -> tuple[Finding, ...]:
        """The failed findings, in evaluation order."""
        return tuple(finding for finding in self.findings if finding.outcome == FAIL)

    def count(self, outcome: str) -> int:
        """How many findings had `outcome`."""
        return sum(1 for finding in self.findings if finding.outcome == outcome)


@dataclass(frozen=True, kw_only=True)
class GateResult:
    """Verdicts for every report given to the gate."""

    verdicts: tuple[ImageVerdict, ...]
    policy: Policy

    @property
    def passed(self) -> bool:
        """True when every image passed."""
        return all(verdict.passed for verdict in self.verdicts)


def run_gate(reports: list[Report], policy: Policy, *, baseline_path: Path | None = None) -> GateResult:
    """Evaluate every report; `baseline_path` overrides the policy's baseline path (keeping its tolerance)."""
    rule = policy.baseline
    if baseline_path is not None:
        rule = BaselineRule(path=baseline_path, tolerance=rule.tolerance if rule else Tolerance())
    baselines = load_baselines(rule.path) if rule else []
    verdicts = tuple(
        evaluate(report, policy, baselines=baselines, tolerance=rule.tolerance if rule else None)
        for report in reports
    )
    if policy.require_gpu_types:
        verdicts = _with_gpu_types(verdicts, policy.require_gpu_types)
    return GateResult(verdicts=verdicts, policy=policy)


def covers_gpu_type(report: Report, gpu_type: str) -> bool:
    """Whether `report` ran on `gpu_type`: the scheduler's GPU type it asked for (runner.scheduler's
    details.environment.gpu_type), else a match in the GPU model's name ("h100" in "NVIDIA H100 80GB")."""
    for check in report.find("runner.scheduler"):
        environment = check.details.get("environment")
        asked = environment.get("gpu_type") if isinstance(environment, dict) else None
        if isinstance(asked, str):
            return asked.lower() == gpu_type.lower() or gpu_matches(gpu_type, asked)
    return bool(report.host.gpus) and gpu_matches(f"*{gpu_type}*", report.gpu_model)


def _with_gpu_types(
    verdicts: tuple[ImageVerdict, ...], gpu_types: tuple[str, ...]
) -> tuple[ImageVerdict, ...]:
    """Each image's verdicts gain one finding per required GPU type: a report on it, or a failure."""
    result = []
    for verdict in verdicts:
        same_image = [other.report for other in verdicts if other.report.label == verdict.report.label]
        findings = []
        for gpu_type in gpu_types:
            found = [report for report in same_image if covers_gpu_type(report, gpu_type)]
            findings.append(
                Finding(
                    name=f"gpu-type:{gpu_type}",
                    kind="gpu-type",
                    outcome=PASS if found else FAIL,
                    message=f"{len(found)} report(s) on GPU type {gpu_type}"
                    if found
                    else f"no report of {verdict.report.label} on GPU type {gpu_type}",
                    hint=None
                    if found
                    else "required by the policy's require_gpu_types; validate with "
                    f"--runner slurm --gpu-type {gpu_type} (or --gpu-product on Kubernetes)",
                )
            )
        result.append(replace(verdict, findings=(*verdict.findings, *findings)))
    return tuple(result)


def evaluate(
    report: Report, policy: Policy, *, baselines: list[Report], tolerance: Tolerance | None
) -> ImageVerdict:
    """The verdict on one report under `policy`, compared against the matching baseline when there is one."""
    findings = [*check_findings(report, policy), *threshold_findings(report, policy)]
    baseline = None
    if tolerance is not None:
        baseline = match_baseline(report, baselines)
        findings.extend(baseline_findings(report, baseline, tolerance))
    return ImageVerdict(
        report=report, findings=tuple(findings), baseline_source=baseline.source if baseline else None
    )


def check_findings(report: Report, policy: Policy) -> list[Finding]:
    """A finding per check record, per missing required check, and for an unreported container death."""
    required = {req.check: req for req in policy.require}
    findings = [_check_finding(check, policy, required.get(check.id)) for check in report.checks]
    present = {check.id for check in report.checks}
    for req in policy.require:
        if req.check not in present:
            findings.append(
                Finding(
                    name=req.check,
                    kind="check",
                    outcome=FAIL,
                    message=f"required check {req.check} is missing from the report",
                    hint=f"required by {req.where}; did the probe run to the end?",
                )
            )
    runner = report.runner
    if runner and "runner.container" not in present and (runner.oom_killed or runner.timed_out):
        cause = "was killed by the OOM killer" if runner.oom_killed else "timed out"
        findings.append(
            Finding(
                name="runner.container",
                kind="runner",
                outcome=FAIL,
                message=f"the validation container {cause}",
                duration_s=runner.duration_s,
                hint="raise the memory limit or timeout of `envkit validate`, then re-run",
            )
        )
    return findings


def _check_finding(check: Check, policy: Policy, requirement: Requirement | None) -> Finding:
    outcome, why = _check_outcome(check, policy, requirement)
    message = f"{check.status}: {check.summary}" + (f" ({why})" if why else "")
    return Finding(
        name=check.name,
        kind="check",
        outcome=outcome,
        message=message,
        hint=check.hint,
        status=check.status,
        duration_s=check.duration_s,
    )


def _check_outcome(check: Check, policy: Policy, requirement: Requirement | None) -> tuple[str, str]:
    status = check.status
    if requirement is not None:
        if status in requirement.allowed:
            return (SKIP if status == "SKIP" else PASS), ""
        if status == "SKIP" and policy.skip_allowed(check.id):
            return SKIP, ""
        return FAIL, f"required: {'/'.join(requirement.allowed)}"
    if policy.ignored(check.id):
        return SKIP, "ignored by policy"
    if status == "PASS":
        return PASS, ""
    if status == "SKIP":
        if policy.strict and not policy.skip_allowed(check.id):
            return FAIL, "strict policy: SKIP needs allow_skip"
        return SKIP, ""
    if status == "WARN":
        return (FAIL, "strict policy: WARN fails") if policy.strict else (PASS, "")
    return FAIL, ""


def threshold_findings(report: Report, policy: Policy) -> list[Finding]:
    """One finding per threshold rule that applies to a record of the report."""
    findings = []
    for check_id, metric in policy.threshold_keys():
        records = report.find(check_id)
        if not records and _any_rule_applies(report, policy, check_id, metric):
            findings.append(
                Finding(
                    name=f"threshold:{check_id}:{metric}",
                    kind="threshold",
                    outcome=SKIP,
                    message=f"{check_id} is not in the report",
                )
            )
        for record in records:
            rule = policy.threshold_for(
                check_id, metric, gpu_name=report.gpu_name(record.device), profile=report.profile
            )
            if rule is not None:
                findings.append(
                    _threshold_finding(record, metric, rule.describe(), rule.min, rule.max, rule.where)
                )
    return findings


def _any_rule_applies(report: Report, policy: Policy, check_id: str, metric: str) -> bool:
    return (
        policy.threshold_for(check_id, metric, gpu_name=report.gpu_model, profile=report.profile) is not None
    )


def _threshold_finding(
    record: Check, metric: str, rule: str, low: float | None, high: float | None, where: Where
) -> Finding:
    name = f"threshold:{record.name}:{metric}"
    if record.status == "SKIP":
        return Finding(
            name=name, kind="threshold", outcome=SKIP, message=f"{record.id} was skipped; rule {rule}"
        )
    value = record.metrics.get(metric)
    if value is None:
        return Finding(
            name=name,
            kind="threshold",
            outcome=FAIL,
            message=f"{record.id} ({record.status}) reported no {metric}; rule {rule}",
            hint=f"rule at {where}",
        )
    ok = (low is None or value >= low) and (high is None or value <= high)
    return Finding(
        name=name,
        kind="threshold",
        outcome=PASS if ok else FAIL,
        message=f"{metric} = {value:g}; rule {rule}",
        hint=None if ok else f"rule at {where}",
    )


def load_baselines(path: Path) -> list[Report]:
    """Every report in a baseline file or folder (*.json, sorted); a missing path is a ConfigError."""
    check_path(path, "the baseline path")
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConfigError("baseline folder holds no *.json reports", where=Where(str(path)))
        return [load_report(file) for file in files]
    if not path.exists():
        raise ConfigError(
            "baseline path does not exist",
            where=Where(str(path)),
            hint="point baseline.path (or --baseline) at a report or a folder of reports",
        )
    return [load_report(path)]


def match_baseline(report: Report, baselines: list[Report]) -> Report | None:
    """The newest baseline of the same image (cell id, else ref), GPU model and profile, or None."""

    def same_image(other: Report) -> bool:
        if report.cell and other.cell:
            return report.cell == other.cell
        return report.label == other.label

    matches = [
        other
        for other in baselines
        if same_image(other)
        and other.gpu_model.lower() == report.gpu_model.lower()
        and other.profile == report.profile
    ]
    return max(matches, key=lambda other: other.created, default=None)


def baseline_findings(report: Report, baseline: Report | None, tolerance: Tolerance) -> list[Finding]:
    """One finding per metric with a known direction that both reports measured for the same check record."""
    if baseline is None:
        return [
            Finding(
                name="baseline",
                kind="baseline",
                outcome=SKIP,
                message=f"no baseline for {report.cell or report.label} on {report.gpu_model} "
                f"({report.profile})",
            )
        ]
    old_records = {(check.id, check.device): check for check in baseline.checks}
    findings = []
    for record in report.checks:
        old = old_records.get((record.id, record.device))
        if old is None or record.status == "SKIP" or old.status == "SKIP":
            continue
        for metric, value in record.metrics.items():
            direction = metric_direction(metric)
            base = old.metrics.get(metric)
            if direction is None or base is None or base == 0:
                continue
            findings.append(_baseline_finding(record, metric, value, base, direction, tolerance.of(metric)))
    return findings


def _baseline_finding(
    record: Check, metric: str, value: float, base: float, direction: str, tolerance: float
) -> Finding:
    change = (value - base) / abs(base)
    regressed = change < -tolerance if direction == "higher" else change > tolerance
    message = (
        f"{metric} = {value:g} vs baseline {base:g} ({change:+.1%}; {direction} is better, "
        f"tolerance {tolerance:.0%})"
    )
    return Finding(
        name=f"baseline:{record.name}:{metric}",
        kind="baseline",
        outcome=FAIL if regressed else PASS,
        message=message,
        hint="a regression against the baseline report" if regressed else None,
    )
