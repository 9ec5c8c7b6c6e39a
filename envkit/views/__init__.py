"""Human and CI views of reports and gate results: terminal tables, Markdown, HTML, JUnit XML, GitHub.

One module per output format. Every string that came from a report is untrusted: each format escapes
it for where it lands (rich markup, Markdown, HTML, XML, GitHub workflow commands).
"""

from __future__ import annotations

from envkit.views.common import (
    VerdictLine,
    display_name,
    distinct_names,
    fmt,
    judge,
    short_name,
    status_counts,
    throughput,
    verdict_lines,
    write_output,
)
from envkit.views.github import append_github_summary, github_annotations
from envkit.views.html import bar_chart, reports_html
from envkit.views.junit import junit_xml
from envkit.views.markdown import gate_markdown, md, reports_markdown, truncate_markdown, verdict_markdown
from envkit.views.terminal import (
    checks_table,
    counts_text,
    print_gate,
    print_reports,
    print_verdicts,
    summary_table,
    verdict_text,
)

__all__ = [
    "VerdictLine",
    "append_github_summary",
    "bar_chart",
    "checks_table",
    "counts_text",
    "display_name",
    "distinct_names",
    "fmt",
    "gate_markdown",
    "github_annotations",
    "judge",
    "junit_xml",
    "md",
    "print_gate",
    "print_reports",
    "print_verdicts",
    "reports_html",
    "reports_markdown",
    "short_name",
    "status_counts",
    "summary_table",
    "throughput",
    "truncate_markdown",
    "verdict_lines",
    "verdict_markdown",
    "verdict_text",
    "write_output",
]
