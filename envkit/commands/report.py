"""`envkit report REPORT... [--policy P]`: the verdict per image, then a terminal table by default;
`--html` and `--markdown` write files that open with the same verdict."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from envkit.gate import run_gate
from envkit.policy import load_policy
from envkit.report import load_reports
from envkit.ui import console
from envkit.views import print_reports, reports_html, reports_markdown, write_output
from envkit.views.github import commands_fenced


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="human views of validation reports (terminal, Markdown, HTML)",
        description="Show validation reports as a terminal table, or write a Markdown "
        "page or one self-contained HTML page with charts. Each view opens with one line per image: "
        "releasable or not under --policy (without it: no check FAILed or ERRORed), and why not.",
    )
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="report JSON files or folders of them"
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML page here")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write Markdown here")
    parser.add_argument(
        "--policy", type=Path, metavar="P", help="judge releasability under this policy (docs/policy.md)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reports = load_reports(args.reports)
    gate = run_gate(reports, load_policy(args.policy)) if args.policy else None
    out = console()
    if args.html:
        write_output(args.html, reports_html(reports, gate))
        out.print(f"wrote {escape(str(args.html))}")
    if args.markdown:
        write_output(args.markdown, reports_markdown(reports, gate))
        out.print(f"wrote {escape(str(args.markdown))}")
    if not args.html and not args.markdown:
        with commands_fenced():
            print_reports(out, reports, gate)
    return 0
