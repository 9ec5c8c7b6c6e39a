"""Apply a release policy to validation reports: one verdict per image and one overall.

Every rule that was evaluated becomes a Finding (a JUnit test case): one per check record, one per
threshold rule per record, one per compared baseline metric, plus synthetic ones for missing required
checks and a container that died without saying so.

Baseline comparisons are built not to flap: a report is compared only with a baseline of the same image,
profile and hardware class (GPU model; on CPU, CPU model and cores), only on the metrics the policy
compares (decode tok/s, TPOT and bandwidth utilisation by default), with a tolerance widened by the
measured spread of both sides, and never as if clean when either side was measured under contention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.errors import ConfigError, Where
from envkit.policy import BaselineRule, Expectations, Policy, Requirement, Tolerance, gpu_matches, needs_gpu
from envkit.probe.outcome import NA
from envkit.report import Check, Report, check_path, load_report, metric_direction

# What a finding did to the verdict (JUnit: passed, failure/error, skipped).
PASS, FAIL, SKIP = "pass", "fail", "skip"
# A host whose 1-minute load average before the run exceeded its usable CPUs times this was contended.
NOISY_LOAD_PER_CPU = 1.0


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One evaluated rule; `effect` on the verdict is "pass", "fail" or "skip"."""

    name: str
    kind: str  # check | threshold | baseline | runner
    effect: str
    message: str
    hint: str | None = None
    status: str | None = None
    duration_s: float = 0.0
    brief: str = ""  # the failure in a few words, for the verdict line; derived from name/status if empty

    def in_brief(self) -> str:
        """The finding in a few words: `env.torch FAIL`, `decode_tokens_per_s -31%`."""
        if self.brief:
            return self.brief
        return f"{self.name} {self.status}" if self.status else self.message


@dataclass(frozen=True, kw_only=True)
class ImageVerdict:
    """The gate's verdict on one report."""

    report: Report
    findings: tuple[Finding, ...]
    baseline_source: str | None = None

    @property
    def passed(self) -> bool:
        """True when no finding failed: the image is releasable under the policy."""
        return not self.failures

    def why_not(self, limit: int = 3) -> str:
        """In a few words, why the image is not releasable ("" when it is)."""
        failures = self.failures
        if not failures:
            return ""
        words = [finding.in_brief() for finding in failures[:limit]]
        more = f" (+{len(failures) - limit} more)" if len(failures) > limit else ""
        return "; ".join(words) + more

    @property
    def failures(self) -> tuple[Finding, ...]:
        """The failed findings, in evaluation order."""
        return tuple(finding for finding in self.findings if finding.effect == FAIL)

    def count(self, effect: str) -> int:
        """How many findings had `effect` ("pass", "fail" or "skip")."""
        return sum(1 for finding in self.findings if finding.effect == effect)


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
    """Evaluate every report; `baseline_path` overrides the policy's baseline path (keeping its other
    baseline settings)."""
    rule = policy.baseline
    if baseline_path is not None:
        rule = replace(rule or BaselineRule(path=baseline_path, tolerance=Tolerance()), path=baseline_path)
    baselines = load_baselines(rule.path) if rule else []
    verdicts = tuple(evaluate(report, policy, baselines=baselines, rule=rule) for report in reports)
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
                    effect=PASS if found else FAIL,
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


def image_labels(report: Report) -> Mapping[str, str]:
    """The labels of the report's image ({} for a host run): what per-cell policy rules match on."""
    return report.image.labels if report.image else {}


def evaluate(
    report: Report,
    policy: Policy,
    *,
    baselines: list[Report],
    rule: BaselineRule | None,
    cell_labels: Mapping[str, str] | None = None,
) -> ImageVerdict:
    """The verdict on one report under `policy` with the policy's expectations for its cell (matched on
    `cell_labels`, by default the labels of the report's image), compared against the matching baseline
    when `rule` is given. `envkit promote` gets per-cell verdicts from here through `run_gate`."""
    expect = policy.expectations(image_labels(report) if cell_labels is None else cell_labels)
    findings = [*check_findings(report, policy, expect), *threshold_findings(report, policy, expect)]
    baseline = None
    if rule is not None:
        baseline, why = match_baseline(report, baselines)
        findings.extend(baseline_findings(report, baseline, rule, why=why))
    return ImageVerdict(
        report=report, findings=tuple(findings), baseline_source=baseline.source if baseline else None
    )


def check_findings(report: Report, policy: Policy, expect: Expectations | None = None) -> list[Finding]:
    """A finding per check record, per missing required check, and for an unreported container death."""
    expect = expect or policy.expectations(image_labels(report))
    required = {req.check: req for req in policy.require}
    cuda = promised_cuda(report)
    findings = [
        _check_finding(check, policy, expect, required.get(check.id), cuda) for check in report.checks
    ]
    present = {check.id for check in report.checks}
    for req in policy.require:
        if req.check not in present and expect.applies(req.check):
            findings.append(
                Finding(
                    name=req.check,
                    kind="check",
                    effect=FAIL,
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
                effect=FAIL,
                message=f"the validation container {cause}",
                duration_s=runner.duration_s,
                hint="raise the memory limit or timeout of `envkit validate`, then re-run",
            )
        )
    return findings


def promised_cuda(report: Report) -> str | None:
    """The CUDA version (or CUDA wheel variant) the image's labels promise, or None for a CPU image."""
    labels = image_labels(report)
    for key in (L.CUDA, L.TORCH_VARIANT):
        value = labels.get(key, "").strip()
        if value and value.lower() not in ("none", "cpu"):
            return value
    return None


def _check_finding(
    check: Check, policy: Policy, expect: Expectations, requirement: Requirement | None, cuda: str | None
) -> Finding:
    effect, why = _check_effect(check, policy, expect, requirement, cuda)
    message = f"{check.status}: {check.summary}" + (f" ({why})" if why else "")
    return Finding(
        name=check.name,
        kind="check",
        effect=effect,
        message=message,
        hint=check.hint,
        status=check.status,
        duration_s=check.duration_s,
    )


def _check_effect(
    check: Check, policy: Policy, expect: Expectations, requirement: Requirement | None, cuda: str | None
) -> tuple[str, str]:
    status = check.status
    if not expect.applies(check.id):
        return SKIP, "not applicable to this cell under the policy"
    if status == NA:
        if cuda and needs_gpu(check.id):
            return FAIL, f"the image's labels promise CUDA ({cuda}), so GPU checks apply"
        return SKIP, "not applicable"
    if status == "SKIP" and expect.require_gpu and needs_gpu(check.id):
        return FAIL, "require_gpu: a GPU check may not skip; run on a GPU host with --gpus all"
    if requirement is not None:
        if status in requirement.allowed:
            return (SKIP if status == "SKIP" else PASS), ""
        if status == "SKIP" and expect.skip_allowed(check.id):
            return SKIP, ""
        return FAIL, f"required: {'/'.join(requirement.allowed)}"
    if policy.ignored(check.id):
        return SKIP, "ignored by policy"
    if status == "PASS":
        return PASS, ""
    if status == "SKIP":
        if policy.strict and not expect.skip_allowed(check.id):
            return FAIL, "strict policy: SKIP needs allow_skip"
        return SKIP, ""
    if status == "WARN":
        return (FAIL, "strict policy: WARN fails") if policy.strict else (PASS, "")
    return FAIL, ""


def threshold_findings(report: Report, policy: Policy, expect: Expectations | None = None) -> list[Finding]:
    """One finding per threshold rule that applies to a record of the report."""
    expect = expect or policy.expectations(image_labels(report))
    findings = []
    for check_id, metric in policy.threshold_keys():
        if not expect.applies(check_id):
            continue
        records = report.find(check_id)
        if not records and _any_rule_applies(report, policy, check_id, metric):
            findings.append(
                Finding(
                    name=f"threshold:{check_id}:{metric}",
                    kind="threshold",
                    effect=SKIP,
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
    if record.status in ("SKIP", NA):
        word = "was skipped" if record.status == "SKIP" else "is not applicable"
        return Finding(name=name, kind="threshold", effect=SKIP, message=f"{record.id} {word}; rule {rule}")
    value = record.metrics.get(metric)
    if value is None:
        return Finding(
            name=name,
            kind="threshold",
            effect=FAIL,
            message=f"{record.id} ({record.status}) reported no {metric}; rule {rule}",
            hint=f"rule at {where}",
        )
    ok = (low is None or value >= low) and (high is None or value <= high)
    return Finding(
        name=name,
        kind="threshold",
        effect=PASS if ok else FAIL,
        message=f"{metric} = {value:g}; rule {rule}",
        hint=None if ok else f"rule at {where}",
        brief=f"{metric} = {value:g}, rule {rule}",
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


def match_baseline(report: Report, baselines: list[Report]) -> tuple[Report | None, str]:
    """The newest baseline of the same image (cell id, else ref), profile and hardware class, or None and
    the reason none is comparable."""

    def same_image(other: Report) -> bool:
        if report.cell and other.cell:
            return report.cell == other.cell
        return report.label == other.label

    what = f"{report.cell or report.label} ({report.profile})"
    # The same profile as it really ran: a CPU host's `full` measures another model than a GPU's.
    candidates = [
        other for other in baselines if same_image(other) and other.profile_label == report.profile_label
    ]
    if not candidates:
        return None, f"no baseline for {what}"
    mine = _class_of(report)
    if mine is None:
        return None, (
            f"not compared: this report does not record its CPU model and cores (schema 1); "
            f"re-validate {what} with this envkit"
        )
    same = [other for other in candidates if _class_of(other) == mine]
    if not same:
        seen = sorted({other.host.hardware_class() or "unrecorded hardware" for other in candidates})
        return None, (
            f"not compared: no baseline of {what} on the same hardware ({report.host.hardware_class()}); "
            f"baselines were measured on {'; '.join(seen)}"
        )
    return max(same, key=lambda other: other.created), ""


def _class_of(report: Report) -> str | None:
    found = report.host.hardware_class()
    return None if found is None else found.lower()


@dataclass(frozen=True, kw_only=True)
class Sample:
    """A measured metric: the median of `n` samples and their relative spread (0 for one sample)."""

    median: float
    spread: float = 0.0
    n: int = 1

    def describe(self) -> str:
        """`42.1 (n=5, spread 8%)`, or just the number for a single sample."""
        if self.n <= 1:
            return f"{self.median:g}"
        return f"{self.median:g} (n={self.n}, spread {self.spread:.0%})"


def sample_of(check: Check, metric: str) -> Sample | None:
    """The metric of a check record with its spread from details["stats"] (absent: one sample)."""
    value = check.metrics.get(metric)
    if value is None:
        return None
    stats = check.details.get("stats")
    entry = stats.get(metric) if isinstance(stats, Mapping) else None
    if not isinstance(entry, Mapping):
        return Sample(median=value)
    spread, n = _number(entry.get("spread")), entry.get("n")
    if spread is None or spread < 0 or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return Sample(median=value)
    return Sample(median=value, spread=spread, n=n)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One metric against its baseline: the relative change, what was allowed, and the verdict."""

    change: float  # (new - base) / |base|; negative is a drop
    allowed: float  # relative worsening tolerated: the policy's tolerance plus the measured spread
    tolerance: float
    regressed: bool


def compare(direction: str, base: Sample, new: Sample, tolerance: float) -> Comparison:
    """Whether `new` regressed against `base` beyond `tolerance` plus the spread of both measurements.

    The spread of each side (relative to its own median) widens the allowed band, so two measurements
    of one distribution never fail against each other, and a change smaller than the noise the probe
    itself measured is not called a regression.
    """
    scale = abs(base.median)
    change = (new.median - base.median) / scale
    worse = -change if direction == "higher" else change
    allowed = tolerance + (base.spread * abs(base.median) + new.spread * abs(new.median)) / scale
    return Comparison(change=change, allowed=allowed, tolerance=tolerance, regressed=worse > allowed)


def noise_reason(report: Report, check: Check) -> str | None:
    """Why a measurement cannot be compared as if clean: the probe marked it noisy, or the host was
    already busy when the run started; None when neither is known."""
    if check.details.get("noisy") is True:
        reason = check.details.get("noise_reason")
        return (
            f"the probe marked it noisy ({reason})" if isinstance(reason, str) and reason else "marked noisy"
        )
    host = report.host
    if host.loadavg_before and host.cpus_available:
        load = host.loadavg_before[0]
        if load > NOISY_LOAD_PER_CPU * host.cpus_available:
            return f"host load {load:g} on {host.cpus_available} CPU(s) before the run"
    return None


def baseline_findings(
    report: Report, baseline: Report | None, rule: BaselineRule | Tolerance, *, why: str = ""
) -> list[Finding]:
    """One finding per compared metric that both reports measured for the same check record; a single
    skipped `baseline` finding when no baseline is comparable (`why` says why)."""
    if isinstance(rule, Tolerance):
        rule = BaselineRule(path=Path(), tolerance=rule)
    if baseline is None:
        message = why or f"no baseline for {report.cell or report.label} ({report.profile})"
        return [Finding(name="baseline", kind="baseline", effect=SKIP, message=message)]
    old_records = {(check.id, check.device): check for check in baseline.checks}
    findings = []
    for record in report.checks:
        old = old_records.get((record.id, record.device))
        if old is None or record.status in ("SKIP", NA) or old.status in ("SKIP", NA):
            continue
        noise = noise_reason(report, record) or _prefixed("baseline: ", noise_reason(baseline, old))
        for metric in record.metrics:
            new, base, direction = sample_of(record, metric), sample_of(old, metric), metric_direction(metric)
            if (
                not rule.compares(metric)
                or direction is None
                or new is None
                or base is None
                or base.median == 0
            ):
                continue
            if noise and rule.noisy == "skip":
                findings.append(
                    Finding(
                        name=f"baseline:{record.name}:{metric}",
                        kind="baseline",
                        effect=SKIP,
                        message=f"{metric} not compared: noisy measurement ({noise})",
                        hint="re-run the validation on a quiet host",
                    )
                )
                continue
            findings.append(
                _baseline_finding(record, metric, new, base, direction, rule.tolerance.of(metric))
            )
    return findings


def _prefixed(prefix: str, text: str | None) -> str | None:
    return None if text is None else prefix + text


def _baseline_finding(
    record: Check, metric: str, new: Sample, base: Sample, direction: str, tolerance: float
) -> Finding:
    result = compare(direction, base, new, tolerance)
    band = f"tolerance {tolerance:.0%}"
    if result.allowed > tolerance:
        band += f" + measured spread {result.allowed - tolerance:.0%}"
    message = (
        f"{metric} = {new.describe()} vs baseline {base.describe()} ({result.change:+.1%}; "
        f"{direction} is better, {band})"
    )
    return Finding(
        name=f"baseline:{record.name}:{metric}",
        kind="baseline",
        effect=FAIL if result.regressed else PASS,
        message=message,
        brief=f"{metric} regressed {result.change:+.0%}",
        hint="a regression against the baseline report beyond its measured spread; `envkit diff` shows "
        "what changed (host first)"
        if result.regressed
        else None,
    )
