"""`envkit gate REPORT... --policy P`: apply a release policy; exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from envkit.gate import GateResult, run_gate
from envkit.policy import load_policy
from envkit.report import load_reports
from envkit.ui import console
from envkit.views import (
    append_github_summary,
    gate_markdown,
    github_annotations,
    junit_xml,
    print_gate,
    write_output,
)
from envkit.views.github import commands_fenced


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "gate",
        help="apply a release policy to validation reports",
        description="Apply a release policy (docs/policy.md) to validation reports. "
        "Exit 0 when every image passes, 1 when any fails, 2 on bad input.",
    )
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="report JSON files or folders of them"
    )
    parser.add_argument("--policy", required=True, type=Path, metavar="P", help="the policy YAML file")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help="baseline report or folder (overrides the policy's baseline.path)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown summary here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    result = run_gate(load_reports(args.reports), policy, baseline_path=args.baseline)
    with commands_fenced():  # report text is untrusted; the annotations below are envkit's own
        print_gate(console(), result)
    if args.junit:
        write_output(args.junit, junit_xml(result))
    markdown = gate_markdown(result)
    if args.markdown:
        write_output(args.markdown, markdown)
    publish_to_github(result, markdown)
    return 0 if result.passed else 1


def publish_to_github(result: GateResult, markdown: str) -> None:
    """Inside GitHub Actions: append the summary to the step summary and annotate every failure."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        append_github_summary(Path(summary), markdown)
    if summary or os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(result):
            print(line)
