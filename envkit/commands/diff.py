"""`envkit diff A B`: two reports side by side (changed versions, metric ratios, status changes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from envkit.diff import DEFAULT_TOLERANCE, diff_json, diff_reports, print_diff
from envkit.errors import UsageError
from envkit.report import load_report
from envkit.ui import console


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "diff",
        help="compare two validation reports side by side",
        description="Compare report A (before) with report B (after): changed versions "
        "and labels, every metric with its ratio B/A, and status changes.",
    )
    parser.add_argument("a", type=Path, metavar="A", help="the earlier (baseline) report")
    parser.add_argument("b", type=Path, metavar="B", help="the later report")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="FRACTION",
        help="relative change that counts as a regression (default 0.05)",
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any metric regressed beyond the tolerance",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.tolerance <= 10:
        raise UsageError(f"--tolerance {args.tolerance}: expected a fraction such as 0.05")
    diff = diff_reports(load_report(args.a), load_report(args.b), tolerance=args.tolerance)
    if args.json:
        print(json.dumps(diff_json(diff), indent=2))
    else:
        print_diff(console(), diff)
    return 1 if args.fail_on_regression and diff.regressions() else 0
