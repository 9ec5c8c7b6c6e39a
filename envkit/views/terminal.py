"""Terminal views: rich tables of reports and gate results (untrusted text is never markup)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from envkit.gate import GateResult
from envkit.report import Report
from envkit.views.common import (
    HEADLINE_METRICS,
    STATUS_STYLE,
    display_name,
    fmt,
    headline_metric,
    judge,
    shows_hint,
    status_counts,
    verdict_lines,
)


def print_reports(console: Console, reports: Sequence[Report], gate: GateResult | None = None) -> None:
    """The verdict per image (under `gate`'s policy, or none), the summary table, each report's checks."""
    print_verdicts(console, gate or judge(reports))
    console.print(summary_table(reports))
    for report in reports:
        console.print(checks_table(report))


def verdict_text(result: GateResult) -> Text:
    """One line per image: releasable or not under the policy, and why not in a few words."""
    text = Text()
    for line in verdict_lines(result):
        if line.releasable:
            text.append("releasable      ", style="bold green")
        else:
            text.append("NOT releasable  ", style="bold red")
        text.append(line.name)
        if line.why:
            text.append(f" — {line.why}", style="red")
        text.append("\n")
    text.append(f"policy: {result.policy.source}", style="dim")
    return text


def print_verdicts(console: Console, result: GateResult) -> None:
    """The verdict lines, first thing on the screen: one line per image whatever the console width."""
    console.print(verdict_text(result), soft_wrap=True)


def summary_table(reports: Sequence[Report]) -> Table:
    """One row per report: worst status, status counts and headline throughput metrics."""
    table = Table(title="envkit reports", title_justify="left")
    table.add_column("image", overflow="fold", ratio=3)
    for column in ("gpu", "profile", "status", "checks"):
        table.add_column(column)
    for _, label in HEADLINE_METRICS:
        table.add_column(label, justify="right")
    for report in reports:
        worst = report.worst_status()
        table.add_row(
            Text(report.label),
            Text(report.gpu_model.removeprefix("NVIDIA ")),
            report.profile_label,
            Text(worst, style=STATUS_STYLE[worst]),
            counts_text(report),
            *(fmt(headline_metric(report, name)) for name, _ in HEADLINE_METRICS),
        )
    return table


def counts_text(report: Report) -> str:
    """ "13 pass, 1 warn": the non-zero status counts of a report."""
    counts = status_counts(report)
    return ", ".join(f"{count} {status.lower()}" for status, count in counts.items() if count) or "no checks"


def checks_table(report: Report) -> Table:
    """Every check record of one report with its status, summary and hint."""
    # "checks of": a title never begins with a report's (untrusted) text; never wrapped either.
    title = Text(f"checks of {display_name(report)}", no_wrap=True, overflow="ellipsis")
    table = Table(title=title, title_justify="left")
    for column in ("check", "status", "summary", "seconds"):
        table.add_column(column)
    for check in report.checks:
        summary = Text(check.summary)
        if check.hint and shows_hint(check.status):
            summary.append(f"\nhint: {check.hint}", style="italic")
        table.add_row(
            Text(check.name),
            Text(check.status, style=STATUS_STYLE[check.status]),
            summary,
            f"{check.duration_s:.1f}",
        )
    return table


def print_gate(console: Console, result: GateResult) -> None:
    """Verdict lines, a verdict table per image, every failure with its hint, then the overall verdict."""
    print_verdicts(console, result)
    table = Table(title="envkit gate", title_justify="left")
    table.add_column("image", overflow="fold", ratio=3)
    for column in ("gpu", "profile", "verdict", "findings", "baseline"):
        table.add_column(column)
    for verdict in result.verdicts:
        report = verdict.report
        word = "PASS" if verdict.passed else "FAIL"
        counts = ", ".join(f"{verdict.count(o)} {o}" for o in ("pass", "fail", "skip") if verdict.count(o))
        table.add_row(
            Text(report.label),
            Text(report.gpu_model.removeprefix("NVIDIA ")),
            report.profile_label,
            Text(word, style=STATUS_STYLE[word]),
            counts,
            Text(Path(verdict.baseline_source).name if verdict.baseline_source else "-"),
        )
    console.print(table)
    for verdict in result.verdicts:
        for finding in verdict.failures:
            # One line each, never wrapped: report text must not begin a line (a CI log would read
            # a line beginning with "::" as a workflow command).
            line = Text(f"FAIL {_one_line(verdict.report.label)} {finding.name}: ", style="red")
            line.append(_one_line(finding.message))
            if finding.hint:
                line.append(f" (hint: {_one_line(finding.hint)})", style="italic")
            console.print(line, soft_wrap=True)
    overall = "PASS" if result.passed else "FAIL"
    console.print(
        Text(
            f"gate: {overall} ({len(result.verdicts)} report(s), policy {result.policy.source})",
            style=STATUS_STYLE[overall],
        )
    )


def _one_line(text: str) -> str:
    """`text` on one line: line breaks shown as " / "."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())
