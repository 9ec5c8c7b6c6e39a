"""A self-contained HTML page of reports with charts (untrusted text HTML-escaped, CSP-hashed script)."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence

from envkit.gate import GateResult, ImageVerdict
from envkit.report import Report
from envkit.views.common import (
    HEADLINE_METRICS,
    css_class,
    distinct_names,
    fmt,
    headline_metric,
    judge,
    short_name,
    status_counts,
    verdict_lines,
)

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}
th{background:#f6f8fa;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{color:#1a7f37;font-weight:600}.WARN{color:#9a6700;font-weight:600}.FAIL,.ERROR{color:#cf222e;font-weight:700}
.SKIP{color:#8250df;font-weight:600}tr.selected td{background:#fff8c5}
.NA{color:#0550ae;font-style:italic;background:#ddf4ff;border-radius:3px;padding:0 .25rem}
#verdict ul{list-style:none;padding:0}
li.verdict{margin:.35rem 0;padding:.4rem .6rem;border-left:6px solid;font-size:1rem}
li.releasable{border-color:#1a7f37;background:#dafbe1}li.blocked{border-color:#cf222e;background:#ffebe9}
li.verdict strong{display:inline-block;min-width:9.5rem}li.verdict .why{color:#cf222e}
li.verdict .made{display:block;color:#57606a;font-size:.85rem}
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
    judged = gate or judge(reports)
    verdicts = {id(v.report): v for v in judged.verdicts}
    names = distinct_names(reports)
    body = [
        "<h1>envkit validation report</h1>",
        _verdict_section(judged),
        f"<p>{len(reports)} report(s)"
        + (f"; gate {'PASSED' if gate.passed else 'FAILED'}" if gate else "")
        + "</p>",
        "<h2>Status</h2>",
        _status_table(reports, names, verdicts),
        "<h2>Where and when</h2>",
        _runs_table(reports, names),
        "<h2>Versions</h2>",
        _versions_table(reports, names),
        "<h2>Decode throughput (tokens/s, higher is better)</h2>",
        bar_chart("decode", reports, [("decode_tokens_per_s", "decode tok/s")], unit="tok/s", names=names),
        "<h2>Inter-token latency (ms, lower is better)</h2>",
        bar_chart("itl", reports, [("itl_p50_ms", "p50"), ("itl_p99_ms", "p99")], unit="ms", names=names),
        "<h2>KV-cache speed-up (x, higher is better)</h2>",
        bar_chart("kv", reports, [("kv_speedup", "speed-up")], unit="x", names=names),
        "<h2>Checks</h2>",
        *(_checks_section(report, name) for report, name in zip(reports, names, strict=True)),
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


def _verdict_section(result: GateResult) -> str:
    """The verdict at a glance: one line per image, releasable or not under the policy, why not, and
    when, where and from which image each report was made."""
    items = []
    for line in verdict_lines(result):
        report = line.report
        kind = "releasable" if line.releasable else "blocked"
        word = "RELEASABLE" if line.releasable else "NOT RELEASABLE"
        why = f' <span class="why">— {_e(line.why)}</span>' if line.why else ""
        image_id = _image_identity(report) or "no image id"
        made = (
            f'<span class="made">made <time datetime="{_e(report.created)}">{_e(report.created)}</time> on '
            f"{_e(report.host.hostname or 'unknown host')} ({_e(report.mode)}); image {_e(image_id)}</span>"
        )
        items.append(
            f'<li class="verdict {kind}" data-image="{_e(line.name)}" '
            f'data-releasable="{str(line.releasable).lower()}"'
            f' data-created="{_e(report.created)}"><strong>{word}</strong> {_e(line.name)}{why}{made}</li>'
        )
    return (
        f'<section id="verdict" data-policy="{_e(result.policy.source)}"><h2>Verdict</h2>'
        f'<p class="policy">Policy: <code>{_e(result.policy.source)}</code></p>'
        f"<ul>{''.join(items)}</ul></section>"
    )


def _image_identity(report: Report) -> str | None:
    """The image's registry digest when the report has one, else its local id."""
    if report.image is None:
        return None
    return report.image.digest or report.image.id


def _runs_table(reports: Sequence[Report], names: Sequence[str]) -> str:
    head = "".join(
        f"<th>{name}</th>" for name in ("report", "made (UTC)", "host", "mode", "image digest or id", "file")
    )
    rows = []
    for report, name in zip(reports, names, strict=True):
        image_id = _image_identity(report) or "-"
        cells = (
            f'<td>{_e(name)}</td><td><time datetime="{_e(report.created)}">{_e(report.created)}</time></td>'
            f"<td>{_e(report.host.hostname or '-')}</td><td>{_e(report.mode)}</td>"
            f"<td><code>{_e(image_id)}</code></td><td>{_e(report.source or '-')}</td>"
        )
        rows.append(f'<tr data-image="{_e(name)}">{cells}</tr>')
    return f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _status_table(reports: Sequence[Report], names: Sequence[str], verdicts: dict[int, ImageVerdict]) -> str:
    counted = [status.lower() for status in status_counts(reports[0])] if reports else []
    head = "".join(
        f"<th>{_e(name)}</th>"
        for name in (
            "image",
            "GPU",
            "profile",
            "status",
            "verdict",
            *counted,
            "decode tok/s",
            "ITL p99 ms",
            "KV x",
        )
    )
    rows = []
    for report, name in zip(reports, names, strict=True):
        worst = report.worst_status()
        cells = [
            f"<td>{_e(name)}</td>",
            f"<td>{_e(report.gpu_model)}</td>",
            f"<td>{_e(report.profile_label)}</td>",
            f'<td class="{css_class(worst)}">{_e(worst)}</td>',
        ]
        verdict = verdicts.get(id(report))
        word = "PASS" if verdict is None or verdict.passed else "FAIL"
        cells.append(f'<td class="{word}">{"releasable" if word == "PASS" else "not releasable"}</td>')
        cells += [f'<td class="num">{count}</td>' for count in status_counts(report).values()]
        for metric, _ in HEADLINE_METRICS:
            value = headline_metric(report, metric)
            data = "" if value is None else f' data-value="{value!r}"'
            cells.append(f'<td class="num"{data}>{fmt(value)}</td>')
        rows.append(f'<tr data-image="{_e(name)}">{"".join(cells)}</tr>')
    return (
        f'<table class="sortable" id="status"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _versions_table(reports: Sequence[Report], names: Sequence[str]) -> str:
    keys = list(dict.fromkeys(key for report in reports for key in report.versions()))
    head = "<th>image</th>" + "".join(f"<th>{_e(key)}</th>" for key in keys)
    rows = []
    for report, name in zip(reports, names, strict=True):
        versions = report.versions()
        cells = "".join(f"<td>{_e(versions.get(key, '-'))}</td>" for key in keys)
        rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    return f'<table id="versions"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _checks_section(report: Report, name: str) -> str:
    rows = []
    for check in report.checks:
        metrics = ", ".join(f"{_e(k)}={fmt(v)}" for k, v in sorted(check.metrics.items()))
        hint = f"<br><em>hint: {_e(check.hint)}</em>" if check.hint else ""
        rows.append(
            f'<tr><td><code>{_e(check.name)}</code></td><td class="{css_class(check.status)}">'
            f"{_e(check.status)}</td><td>{_e(check.summary)}{hint}</td><td>{metrics}</td></tr>"
        )
    open_attr = " open" if report.worst_status() in ("FAIL", "ERROR") else ""
    return (
        f"<details{open_attr}><summary>{_e(name)} — {_e(report.worst_status())}</summary>"
        "<table><thead><tr><th>check</th><th>status</th><th>summary</th><th>metrics</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def bar_chart(
    chart: str,
    reports: Sequence[Report],
    series: Sequence[tuple[str, str]],
    *,
    unit: str,
    names: Sequence[str] | None = None,
) -> str:
    """A horizontal bar chart as inline SVG: one group per report, one bar per series metric.

    Each bar is `<rect class="bar sN" data-chart data-image data-series data-value>` (data-image: the
    report's name in `names`, by default `distinct_names`); a report without the metric gets an "n/a"
    text instead of a bar.
    """
    names = list(names) if names is not None else distinct_names(reports)
    label_w, bar_w, bar_h, gap = 380, 380, 16, 10
    values = [[headline_metric(report, name) for name, _ in series] for report in reports]
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
    for row, (report, row_values, name) in enumerate(zip(reports, values, names, strict=True)):
        y0 = legend_h + row * group_h + gap // 2
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
