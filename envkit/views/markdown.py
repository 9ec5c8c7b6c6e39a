"""Markdown views of reports and gate results (untrusted text escaped for one table cell or line)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from envkit.gate import GateResult
from envkit.probe.outcome import SEVERITY_ORDER
from envkit.report import Report
from envkit.views.common import (
    HEADLINE_METRICS,
    display_name,
    distinct_names,
    fmt,
    headline_metric,
    judge,
    shows_hint,
    status_counts,
    verdict_lines,
)


def md(text: str) -> str:
    """Escape untrusted text for one Markdown table cell or line (no HTML, no links, no emphasis)."""
    text = " ".join(text.split())
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", text)


def verdict_markdown(result: GateResult) -> list[str]:
    """One bullet per image: releasable or not under the policy, why not in a few words."""
    lines = []
    for line in verdict_lines(result):
        word = "✅ **releasable**" if line.releasable else "❌ **not releasable**"
        lines.append(f"- {word} — {md(line.name)}" + (f": {md(line.why)}" if line.why else ""))
    return [*lines, "", f"Policy: `{md(result.policy.source)}`"]


def reports_markdown(reports: Sequence[Report], gate: GateResult | None = None) -> str:
    """Markdown: the verdict per image (under `gate`'s policy, or none), a summary table, then a checks
    table per report."""
    counted = " | ".join(status.lower() for status in SEVERITY_ORDER)
    lines = [
        "# envkit validation reports",
        "",
        *verdict_markdown(gate or judge(reports)),
        "",
        f"| image | GPU | profile | status | {counted} | decode tok/s | ITL p99 ms | KV x |",
        "|---|---|---|---|" + "---:|" * len(SEVERITY_ORDER) + "---:|---:|---:|",
    ]
    for report in reports:
        counts = status_counts(report)
        metrics = [fmt(headline_metric(report, name)) for name, _ in HEADLINE_METRICS]
        lines.append(
            f"| {md(report.label)} | {md(report.gpu_model)} | {md(report.profile_label)} "
            f"| {report.worst_status()} | "
            + " | ".join(str(c) for c in counts.values())
            + " | "
            + " | ".join(metrics)
            + " |"
        )
    for report, name in zip(reports, distinct_names(reports), strict=True):
        lines += ["", f"## {md(name)}", "", "| check | status | summary |", "|---|---|---|"]
        for check in report.checks:
            hint = f" — hint: {md(check.hint)}" if check.hint and shows_hint(check.status) else ""
            lines.append(f"| {md(check.name)} | {check.status} | {md(check.summary)}{hint} |")
    return "\n".join(lines) + "\n"


def gate_markdown(result: GateResult) -> str:
    """Markdown summary of a gate run: overall verdict, a table per image, the failures with hints."""
    overall = "PASSED" if result.passed else "FAILED"
    lines = [
        f"## envkit gate: {overall}",
        "",
        *verdict_markdown(result),
        "",
        f"{len(result.verdicts)} report(s).",
        "",
        "| image | GPU | profile | verdict | pass | fail | skip |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for verdict in result.verdicts:
        report = verdict.report
        word = "✅ PASS" if verdict.passed else "❌ FAIL"
        lines.append(
            f"| {md(report.label)} | {md(report.gpu_model)} | {md(report.profile_label)} | {word} | "
            f"{verdict.count('pass')} | {verdict.count('fail')} | {verdict.count('skip')} |"
        )
    for verdict in result.verdicts:
        if verdict.failures:
            lines += ["", f"### Failures: {md(display_name(verdict.report))}", ""]
            lines += [_failure_line(f.name, f.message, f.hint) for f in verdict.failures]
    return "\n".join(lines) + "\n"


def _failure_line(name: str, message: str, hint: str | None) -> str:
    line = f"- **{md(name)}**: {md(message)}"
    return line + (f"  \n  hint: {md(hint)}" if hint else "")


def truncate_markdown(text: str, limit_bytes: int) -> str:
    """`text` cut at a line boundary to fit `limit_bytes` (UTF-8), with a note saying it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    note = (
        "\n\n> **Truncated**: the full summary was {total} bytes; see the gate's Markdown/JUnit artifacts.\n"
    )
    note = note.format(total=len(data))
    budget = max(0, limit_bytes - len(note.encode("utf-8")))
    cut = data[:budget].decode("utf-8", "ignore")
    cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else ""
    return cut + note
