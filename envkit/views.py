"""Human and CI views of reports and gate results: terminal tables, Markdown, HTML, JUnit XML, GitHub.

Every string that came from a report is untrusted: it is escaped for the format it lands in (rich
markup, Markdown, HTML, XML, GitHub workflow commands).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from envkit.errors import UsageError
from envkit.gate import FAIL, SKIP, GateResult, ImageVerdict
from envkit.report import Check, Report

GITHUB_SUMMARY_LIMIT = 1024 * 1024 - 4096  # GitHub refuses step summaries over 1 MiB
STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "ERROR": "bold red", "SKIP": "dim"}
HEADLINE_METRICS = (("decode_tokens_per_s", "tok/s"), ("itl_p99_ms", "p99 ms"), ("kv_speedup", "KV x"))


# ---------------------------------------------------------------- shared helpers


def display_name(report: Report) -> str:
    """`<image or local:host> @ <GPU> (<profile>)`: unique enough to tell reports apart in a view."""
    return f"{report.label} @ {report.gpu_model} ({report.profile})"


def short_name(report: Report) -> str:
    """A chart label: the image tag (or last path part) and the GPU without its vendor prefix."""
    last = report.label.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else last
    name = f"{tag} · {report.gpu_model.removeprefix('NVIDIA ')}"
    return name if len(name) <= 56 else name[:30] + "…" + name[-25:]


def throughput(report: Report) -> Check | None:
    """The first throughput.generate record that is not skipped, if any."""
    return next((check for check in report.find("throughput.generate") if check.status != "SKIP"), None)


def status_counts(report: Report) -> dict[str, int]:
    """How many check records have each status."""
    counts = dict.fromkeys(("PASS", "WARN", "FAIL", "SKIP", "ERROR"), 0)
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


def _metric(report: Report, name: str) -> float | None:
    check = throughput(report)
    return check.metrics.get(name) if check else None


# ---------------------------------------------------------------- terminal


def print_reports(console: Console, reports: Sequence[Report]) -> None:
    """Summary table of all reports, then each report's checks."""
    console.print(summary_table(reports))
    for report in reports:
        console.print(checks_table(report))


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
            report.profile,
            Text(worst, style=STATUS_STYLE[worst]),
            counts_text(report),
            *(fmt(_metric(report, name)) for name, _ in HEADLINE_METRICS),
        )
    return table


def counts_text(report: Report) -> str:
    """ "13 pass, 1 warn": the non-zero status counts of a report."""
    counts = status_counts(report)
    return ", ".join(f"{count} {status.lower()}" for status, count in counts.items() if count) or "no checks"


def checks_table(report: Report) -> Table:
    """Every check record of one report with its status, summary and hint."""
    table = Table(title=Text(display_name(report)), title_justify="left")
    for column in ("check", "status", "summary", "seconds"):
        table.add_column(column)
    for check in report.checks:
        summary = Text(check.summary)
        if check.hint and check.status not in ("PASS", "SKIP"):
            summary.append(f"\nhint: {check.hint}", style="italic")
        table.add_row(
            Text(check.name),
            Text(check.status, style=STATUS_STYLE[check.status]),
            summary,
            f"{check.duration_s:.1f}",
        )
    return table


def print_gate(console: Console, result: GateResult) -> None:
    """Verdict table per image, then every failure with its hint, then the overall verdict."""
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
            report.profile,
            Text(word, style=STATUS_STYLE[word]),
            counts,
            Text(Path(verdict.baseline_source).name if verdict.baseline_source else "-"),
        )
    console.print(table)
    for verdict in result.verdicts:
        for finding in verdict.failures:
            line = Text(f"FAIL {verdict.report.label} {finding.name}: ", style="red")
            line.append(finding.message)
            if finding.hint:
                line.append(f"\n     hint: {finding.hint}", style="italic")
            console.print(line)
    overall = "PASS" if result.passed else "FAIL"
    console.print(
        Text(
            f"gate: {overall} ({len(result.verdicts)} report(s), policy {result.policy.source})",
            style=STATUS_STYLE[overall],
        )
    )


# ---------------------------------------------------------------- Markdown


def md(text: str) -> str:
    """Escape untrusted text for one Markdown table cell or line (no HTML, no links, no emphasis)."""
    text = " ".join(text.split())
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", text)


def reports_markdown(reports: Sequence[Report]) -> str:
    """Markdown: one summary table, then a checks table per report."""
    lines = [
        "# envkit validation reports",
        "",
        "| image | GPU | profile | status | pass | warn | fail | skip | error "
        "| decode tok/s | ITL p99 ms | KV x |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        counts = status_counts(report)
        metrics = [fmt(_metric(report, name)) for name, _ in HEADLINE_METRICS]
        lines.append(
            f"| {md(report.label)} | {md(report.gpu_model)} | {report.profile} | {report.worst_status()} | "
            + " | ".join(str(c) for c in counts.values())
            + " | "
            + " | ".join(metrics)
            + " |"
        )
    for report in reports:
        lines += ["", f"## {md(display_name(report))}", "", "| check | status | summary |", "|---|---|---|"]
        for check in report.checks:
            hint = f" — hint: {md(check.hint)}" if check.hint and check.status not in ("PASS", "SKIP") else ""
            lines.append(f"| {md(check.name)} | {check.status} | {md(check.summary)}{hint} |")
    return "\n".join(lines) + "\n"


def gate_markdown(result: GateResult) -> str:
    """Markdown summary of a gate run: overall verdict, a table per image, the failures with hints."""
    overall = "PASSED" if result.passed else "FAILED"
    lines = [
        f"## envkit gate: {overall}",
        "",
        f"Policy `{md(result.policy.source)}`, {len(result.verdicts)} report(s).",
        "",
        "| image | GPU | profile | verdict | pass | fail | skip |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for verdict in result.verdicts:
        report = verdict.report
        word = "✅ PASS" if verdict.passed else "❌ FAIL"
        lines.append(
            f"| {md(report.label)} | {md(report.gpu_model)} | {report.profile} | {word} | "
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


# ---------------------------------------------------------------- GitHub Actions


def github_annotations(result: GateResult) -> list[str]:
    """`::error title=...::message` lines for every failed finding (workflow-command escaped)."""
    lines = []
    for verdict in result.verdicts:
        for finding in verdict.failures:
            title = f"envkit gate: {verdict.report.label} {finding.name}"
            message = finding.message + (f"\nhint: {finding.hint}" if finding.hint else "")
            lines.append(f"::error title={_gh_property(title)}::{_gh_data(message)}")
    return lines


def append_github_summary(path: Path, markdown: str) -> None:
    """Append the Markdown to $GITHUB_STEP_SUMMARY, cut to stay under GitHub's 1 MiB limit."""
    existing = path.stat().st_size if path.exists() else 0
    room = max(4096, GITHUB_SUMMARY_LIMIT - existing)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(truncate_markdown(markdown, room))


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


# ---------------------------------------------------------------- JUnit XML


def junit_xml(result: GateResult) -> str:
    """JUnit XML: a testsuite per report, a testcase per finding (failures carry message and hint)."""
    root = ET.Element("testsuites", name="envkit gate")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for verdict in result.verdicts:
        suite, counts, seconds = _junit_suite(verdict)
        root.append(suite)
        totals = {key: totals[key] + counts[key] for key in totals}
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_suite(verdict: ImageVerdict) -> tuple[ET.Element, dict[str, int], float]:
    report = verdict.report
    suite = ET.Element(
        "testsuite",
        name=display_name(report),
        hostname=report.host.hostname or "unknown",
        timestamp=report.created,
    )
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds = 0.0
    for finding in verdict.findings:
        case = ET.SubElement(
            suite, "testcase", classname=report.label, name=finding.name, time=f"{finding.duration_s:.3f}"
        )
        counts["tests"] += 1
        seconds += finding.duration_s
        text = finding.message + (f"\nhint: {finding.hint}" if finding.hint else "")
        if finding.outcome == FAIL and finding.status == "ERROR":
            ET.SubElement(case, "error", message=finding.message, type="ERROR").text = text
            counts["errors"] += 1
        elif finding.outcome == FAIL:
            ET.SubElement(
                case, "failure", message=finding.message, type=finding.status or finding.kind
            ).text = text
            counts["failures"] += 1
        elif finding.outcome == SKIP:
            ET.SubElement(case, "skipped", message=finding.message)
            counts["skipped"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    return suite, counts, seconds


# ---------------------------------------------------------------- HTML


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}
th{background:#f6f8fa;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{color:#1a7f37;font-weight:600}.WARN{color:#9a6700;font-weight:600}.FAIL,.ERROR{color:#cf222e;font-weight:700}
.SKIP{color:#6e7781}tr.selected td{background:#fff8c5}
svg.chart{display:block;margin:.5rem 0}svg text{font:12px system-ui,sans-serif;fill:#1b1f24}
rect.bar.s0{fill:#0969da}rect.bar.s1{fill:#bf3989}rect.bar.highlight{stroke:#1b1f24;stroke-width:2}
text.na{fill:#6e7781}.legend rect.s0{fill:#0969da}.legend rect.s1{fill:#bf3989}
details{margin:.5rem 0}code{font-size:90%}
""".strip()

_JS = """
(function(){
  var root=document.documentElement;
  function select(image){
    document.querySelectorAll('rect.bar').forEach(function(bar){
      bar.classList.toggle('highlight', bar.getAttribute('data-image')===image);});
    document.querySelectorAll('tr[data-image]').forEach(function(row){
      row.classList.toggle('selected', row.getAttribute('data-image')===image);});
  }
  document.querySelectorAll('tr[data-image]').forEach(function(row){
    row.addEventListener('click', function(){select(row.getAttribute('data-image'));});});
  document.querySelectorAll('table.sortable th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body=th.closest('table').tBodies[0], rows=Array.prototype.slice.call(body.rows);
      var asc=th.getAttribute('data-sort')!=='asc'; th.setAttribute('data-sort', asc?'asc':'desc');
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-value')||a.cells[col].textContent;
        var y=b.cells[col].getAttribute('data-value')||b.cells[col].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y); return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});
  root.setAttribute('data-bars', String(document.querySelectorAll('rect.bar').length));
  root.setAttribute('data-js', 'ready');
})();
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def reports_html(reports: Sequence[Report], gate: GateResult | None = None) -> str:
    """One self-contained HTML page (inline CSS, inline SVG charts, a small inline script, no network).

    A Content-Security-Policy allows only this page's own style and script (by hash), so even text that
    slipped through escaping could not load or run anything.
    """
    csp = f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; img-src data:"
    verdicts = {id(v.report): v for v in gate.verdicts} if gate else {}
    body = [
        "<h1>envkit validation report</h1>",
        f"<p>{len(reports)} report(s)"
        + (f"; gate {'PASSED' if gate.passed else 'FAILED'}" if gate else "")
        + "</p>",
        "<h2>Status</h2>",
        _status_table(reports, verdicts),
        "<h2>Versions</h2>",
        _versions_table(reports),
        "<h2>Decode throughput (tokens/s, higher is better)</h2>",
        bar_chart("decode", reports, [("decode_tokens_per_s", "decode tok/s")], unit="tok/s"),
        "<h2>Inter-token latency (ms, lower is better)</h2>",
        bar_chart("itl", reports, [("itl_p50_ms", "p50"), ("itl_p99_ms", "p99")], unit="ms"),
        "<h2>KV-cache speed-up (x, higher is better)</h2>",
        bar_chart("kv", reports, [("kv_speedup", "speed-up")], unit="x"),
        "<h2>Checks</h2>",
        *(_checks_section(report) for report in reports),
    ]
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8">',
                f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                "<title>envkit validation report</title>",
                f"<style>{_CSS}</style>",
                "</head>",
                "<body>",
                *body,
                f"<script>{_JS}</script>",
                "</body>",
                "</html>",
            ]
        )
        + "\n"
    )


def _status_table(reports: Sequence[Report], verdicts: dict[int, ImageVerdict]) -> str:
    head = "".join(
        f"<th>{name}</th>"
        for name in (
            "image",
            "GPU",
            "profile",
            "status",
            *(["gate"] if verdicts else []),
            "pass",
            "warn",
            "fail",
            "skip",
            "error",
            "decode tok/s",
            "ITL p99 ms",
            "KV x",
        )
    )
    rows = []
    for report in reports:
        worst = report.worst_status()
        cells = [
            f"<td>{_e(report.label)}</td>",
            f"<td>{_e(report.gpu_model)}</td>",
            f"<td>{_e(report.profile)}</td>",
            f'<td class="{worst}">{worst}</td>',
        ]
        verdict = verdicts.get(id(report))
        if verdicts:
            word = "PASS" if verdict is None or verdict.passed else "FAIL"
            cells.append(f'<td class="{word}">{word}</td>')
        cells += [f'<td class="num">{count}</td>' for count in status_counts(report).values()]
        for name, _ in HEADLINE_METRICS:
            value = _metric(report, name)
            data = "" if value is None else f' data-value="{value!r}"'
            cells.append(f'<td class="num"{data}>{fmt(value)}</td>')
        rows.append(f'<tr data-image="{_e(display_name(report))}">{"".join(cells)}</tr>')
    return (
        f'<table class="sortable" id="status"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _versions_table(reports: Sequence[Report]) -> str:
    keys = list(dict.fromkeys(key for report in reports for key in report.versions()))
    head = "<th>image</th>" + "".join(f"<th>{_e(key)}</th>" for key in keys)
    rows = []
    for report in reports:
        versions = report.versions()
        cells = "".join(f"<td>{_e(versions.get(key, '-'))}</td>" for key in keys)
        rows.append(f"<tr><td>{_e(report.label)}</td>{cells}</tr>")
    return f'<table id="versions"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _checks_section(report: Report) -> str:
    rows = []
    for check in report.checks:
        metrics = ", ".join(f"{_e(k)}={fmt(v)}" for k, v in sorted(check.metrics.items()))
        hint = f"<br><em>hint: {_e(check.hint)}</em>" if check.hint else ""
        rows.append(
            f'<tr><td><code>{_e(check.name)}</code></td><td class="{check.status}">{check.status}</td>'
            f"<td>{_e(check.summary)}{hint}</td><td>{metrics}</td></tr>"
        )
    open_attr = " open" if report.worst_status() in ("FAIL", "ERROR") else ""
    return (
        f"<details{open_attr}><summary>{_e(display_name(report))} — {report.worst_status()}</summary>"
        "<table><thead><tr><th>check</th><th>status</th><th>summary</th><th>metrics</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def bar_chart(chart: str, reports: Sequence[Report], series: Sequence[tuple[str, str]], *, unit: str) -> str:
    """A horizontal bar chart as inline SVG: one group per report, one bar per series metric.

    Each bar is `<rect class="bar sN" data-chart data-image data-series data-value>`; a report without the
    metric gets an "n/a" text instead of a bar.
    """
    label_w, bar_w, bar_h, gap = 380, 380, 16, 10
    values = [[_metric(report, name) for name, _ in series] for report in reports]
    top = max((v for row in values for v in row if v is not None), default=0.0) or 1.0
    group_h = bar_h * len(series) + gap
    legend_h = 20 if len(series) > 1 else 0
    height = legend_h + group_h * max(1, len(reports)) + gap
    width = label_w + bar_w + 90
    parts = [
        f'<svg class="chart" id="chart-{chart}" data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    parts += _legend(series, label_w) if legend_h else []
    for row, (report, row_values) in enumerate(zip(reports, values, strict=True)):
        y0 = legend_h + row * group_h + gap // 2
        name = display_name(report)
        shown = short_name(report)
        parts.append(
            f'<text x="{label_w - 8}" y="{y0 + group_h // 2}" text-anchor="end">'
            f"<title>{_e(name)}</title>{_e(shown)}</text>"
        )
        for index, ((metric, series_label), value) in enumerate(zip(series, row_values, strict=True)):
            parts.append(
                _bar(
                    chart,
                    name,
                    metric,
                    series_label,
                    index,
                    value,
                    top,
                    x=label_w,
                    y=y0 + index * bar_h,
                    width=bar_w,
                    height=bar_h - 2,
                    unit=unit,
                )
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: Sequence[tuple[str, str]], x: int) -> list[str]:
    parts = ['<g class="legend">']
    for index, (_, label) in enumerate(series):
        parts.append(
            f'<rect class="s{index}" x="{x + index * 90}" y="4" width="12" height="12"></rect>'
            f'<text x="{x + index * 90 + 16}" y="14">{_e(label)}</text>'
        )
    return [*parts, "</g>"]


def _bar(
    chart: str,
    image: str,
    metric: str,
    label: str,
    index: int,
    value: float | None,
    top: float,
    *,
    x: int,
    y: int,
    width: int,
    height: int,
    unit: str,
) -> str:
    if value is None:
        return (
            f'<text class="na" x="{x + 4}" y="{y + height - 3}" data-chart="{chart}" '
            f'data-image="{_e(image)}" data-series="{_e(metric)}" data-missing="true">n/a</text>'
        )
    length = max(1.0, width * max(value, 0.0) / top)
    return (
        f'<rect class="bar s{index}" x="{x}" y="{y}" width="{length:.1f}" height="{height}" '
        f'data-chart="{chart}" data-image="{_e(image)}" data-series="{_e(metric)}" data-value="{value!r}">'
        f"<title>{_e(image)}: {_e(label)} {fmt(value)} {unit}</title></rect>"
        f'<text x="{x + length + 4:.1f}" y="{y + height - 3}">{fmt(value)}</text>'
    )


def write_output(path: Path, text: str) -> None:
    """Write a view to `path`; a path that cannot be written is a UsageError naming it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", hint="check the output path") from None
