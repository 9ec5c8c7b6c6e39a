"""Command line of the probe: `python -m envkit_probe [--profile quick|full] [--out FILE] ...`.

Exit status 0 whenever the suite ran, even with failing checks (the runner judges the report);
128 + the signal number when SIGTERM/SIGINT stopped it (the report is written all the same);
2 for a bad command line or unreadable labels file. `--run-check ID` is the internal child mode.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from . import registry
from .context import PRESETS, PROFILES, Context, ProbeUsageError, load_labels
from .isolate import package_name, run_in_child
from .suite import Limits, ReportFile, run_suite


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ProbeUsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The probe's argument parser."""
    parser = _Parser(prog=f"python -m {package_name()}", description="envkit in-image validation suite")
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--out", metavar="FILE", help="write the JSON result here (default: stdout)")
    parser.add_argument("--labels", metavar="FILE.json", help="JSON object of the image's labels")
    parser.add_argument("--only", nargs="+", metavar="ID", default=[], help="run only these check ids")
    parser.add_argument("--preset", choices=PRESETS, help="throughput model preset (default by profile)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, metavar="F", help="multiply timeouts")
    parser.add_argument(
        "--budget-s",
        type=float,
        metavar="S",
        help="fit the whole run in S seconds: later checks keep a share, the report is always written "
        "(give S a little under any outer timeout)",
    )
    parser.add_argument("--list", action="store_true", help="print the check ids and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--run-check", metavar="ID", help=argparse.SUPPRESS)
    parser.add_argument("--result", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--check-limit-s", type=float, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, *, propagate_stop: bool = True) -> int:
    """Run the probe; returns the process exit status.

    After SIGTERM/SIGINT stopped the run (report written, children killed) the signal is raised again
    for the caller's own handler when `propagate_stop` (an embedding program, e.g. a test run, must not
    carry on as if nothing happened); `python -m` passes False and exits 128 + the signal instead."""
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            print("\n".join(registry.public_ids()))
            return 0
        ctx = Context(
            profile=args.profile,
            preset=args.preset,
            labels=load_labels(args.labels),
            limit_s=args.check_limit_s,
        )
        if args.run_check:
            return _child(args, ctx)
        specs = _select(args.only)
        if args.timeout_scale <= 0:
            raise ProbeUsageError("--timeout-scale must be positive")
        if args.budget_s is not None and args.budget_s <= 0:
            raise ProbeUsageError("--budget-s must be positive")
        limits = Limits(profile=args.profile, scale=args.timeout_scale, budget_s=args.budget_s)
        out, quiet = ReportFile(args.out), args.quiet
        report = run_suite(specs, ctx, labels_path=args.labels, limits=limits, report_file=out, quiet=quiet)
        stopped_by = report["run"]["signal"]
        if not stopped_by:
            return 0
        if propagate_stop:
            signal.raise_signal(signal.Signals[stopped_by])
        return 128 + int(signal.Signals[stopped_by])
    except ProbeUsageError as error:
        print(f"envkit-probe: error: {error}", file=sys.stderr)
        return 2


def _child(args: argparse.Namespace, ctx: Context) -> int:
    if not args.result:
        raise ProbeUsageError("--run-check needs --result FILE")
    return run_in_child(_select([args.run_check])[0], ctx, args.result)


def _select(only: Sequence[str]) -> list[registry.CheckSpec]:
    try:
        return registry.select(only)
    except KeyError as error:
        known = ", ".join(registry.public_ids())
        raise ProbeUsageError(f"unknown check id {error.args[0]!r} (known: {known})") from None
