"""`envkit report REPORT...`: terminal table by default; `--html` and `--markdown` write files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from envkit.report import load_reports
from envkit.ui import console
from envkit.views import print_reports, reports_html, reports_markdown, write_output


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="human views of validation reports (terminal, Markdown, HTML)",
        description="Show validation reports as a terminal table, or write a Markdown "
        "page or one self-contained HTML page with charts.",
    )
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="report JSON files or folders of them"
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML page here")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write Markdown here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reports = load_reports(args.reports)
    out = console()
    if args.html:
        write_output(args.html, reports_html(reports))
        out.print(f"wrote {escape(str(args.html))}")
    if args.markdown:
        write_output(args.markdown, reports_markdown(reports))
        out.print(f"wrote {escape(str(args.markdown))}")
    if not args.html and not args.markdown:
        print_reports(out, reports)
    return 0
