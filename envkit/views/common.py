"""Helpers every view shares: names for reports, the verdict per image, status counts, number
formatting, writing files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envkit.errors import UsageError
from envkit.gate import GateResult, run_gate
from envkit.policy import Policy
from envkit.probe.outcome import SEVERITY_ORDER, SKIP, severity
from envkit.report import Check, Report

# Terminal styles, in the one severity order; N/A ("does not apply") is blue, apart from a dim SKIP.
STATUS_STYLE = {
    "N/A": "blue",
    "PASS": "green",
    "SKIP": "magenta",
    "WARN": "yellow",
    "FAIL": "red",
    "ERROR": "bold red",
}
HEADLINE_METRICS = (("decode_tokens_per_s", "tok/s"), ("itl_p99_ms", "p99 ms"), ("kv_speedup", "KV x"))
# Without --policy, a report is releasable when no check failed or errored.
NO_POLICY = "no policy (releasable = no check FAIL or ERROR)"


@dataclass(frozen=True, kw_only=True)
class VerdictLine:
    """The verdict at a glance for one report: releasable or not, and why not in a few words."""

    name: str
    releasable: bool
    why: str
    report: Report


def verdict_lines(result: GateResult) -> list[VerdictLine]:
    """One line per report of a gate run, in its order, named so two reports of one image differ."""
    names = distinct_names([verdict.report for verdict in result.verdicts])
    return [
        VerdictLine(name=name, releasable=verdict.passed, why=verdict.why_not(), report=verdict.report)
        for name, verdict in zip(names, result.verdicts, strict=True)
    ]


def judge(reports: Sequence[Report], policy: Policy | None = None) -> GateResult:
    """The gate result the report views open with: under `policy`, or under no policy at all."""
    return run_gate(list(reports), policy or Policy(source=NO_POLICY))


def shows_hint(status: str) -> bool:
    """Whether a check's hint is worth showing: WARN and worse."""
    return severity(status) > severity(SKIP)


def css_class(status: str) -> str:
    """A status as a CSS class name ("N/A" -> "NA")."""
    return status.replace("/", "")


def display_name(report: Report) -> str:
    """`<image or local:host> @ <GPU> (<profile>)`: unique enough to tell reports apart in a view."""
    return f"{report.label} @ {report.gpu_model} ({report.profile_label})"


def distinct_names(reports: Sequence[Report]) -> list[str]:
    """`display_name` of each report, with the time it was made added where two reports share a name
    (and the report file's name where even that is the same)."""
    names = [display_name(report) for report in reports]
    for level in (lambda r: r.created, lambda r: Path(r.source).name or "?"):
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        names = [
            f"{name} · {level(report)}" if seen[name] > 1 else name
            for name, report in zip(names, reports, strict=True)
        ]
    return names


def short_name(report: Report) -> str:
    """A chart label: the image tag (or last path part) and the GPU without its vendor prefix."""
    last = report.label.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else last
    name = f"{tag} · {report.gpu_model.removeprefix('NVIDIA ')}"
    return name if len(name) <= 56 else name[:30] + "…" + name[-25:]


def throughput(report: Report) -> Check | None:
    """The first throughput.generate record that ran (not skipped, not N/A), if any."""
    records = report.find("throughput.generate")
    return next((check for check in records if check.status not in ("SKIP", "N/A")), None)


def status_counts(report: Report) -> dict[str, int]:
    """How many check records have each status, in the one severity order."""
    counts = dict.fromkeys(SEVERITY_ORDER, 0)
    for check in report.checks:
        counts[check.status] += 1
    return counts


def fmt(value: float | None) -> str:
    """Numbers for people: 3 significant figures for small values, no exponent for large ones."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def headline_metric(report: Report, name: str) -> float | None:
    check = throughput(report)
    return check.metrics.get(name) if check else None


def write_output(path: Path, text: str) -> None:
    """Write a view to `path`; a path that cannot be written is a UsageError naming it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", hint="check the output path") from None
