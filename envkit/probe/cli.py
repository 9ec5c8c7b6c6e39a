"""Command line of the probe: `python -m envkit_probe [--profile quick|full] [--out FILE] ...`.

Exit status 0 whenever the suite ran, even with failing checks (the runner judges the report);
2 for a bad command line or unreadable labels file. `--run-check ID` is the internal child mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from . import PROBE_VERSION, registry
from .context import PRESETS, PROFILES, Context, ProbeUsageError, load_labels
from .host import collect_host
from .isolate import package_name, run_in_child, run_isolated


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
    parser.add_argument("--list", action="store_true", help="print the check ids and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--run-check", metavar="ID", help=argparse.SUPPRESS)
    parser.add_argument("--result", metavar="FILE", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe; returns the process exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            print("\n".join(registry.public_ids()))
            return 0
        ctx = Context(
            profile=args.profile, preset=args.preset, labels=load_labels(args.labels), only=tuple(args.only)
        )
        if args.run_check:
            return _child(args, ctx)
        specs = _select(args.only)
        if args.timeout_scale <= 0:
            raise ProbeUsageError("--timeout-scale must be positive")
        report = run_suite(specs, ctx, labels_path=args.labels, scale=args.timeout_scale, quiet=args.quiet)
        _write(report, args.out)
        return 0
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


def run_suite(
    specs: Sequence[registry.CheckSpec], ctx: Context, *, labels_path: str | None, scale: float, quiet: bool
) -> dict[str, Any]:
    """Run `specs` one at a time, each isolated; returns {"probe_version", "profile", "host", "checks"}."""
    checks = []
    for spec in specs:
        record = run_isolated(
            spec, ctx, labels_path=labels_path, timeout_s=spec.timeout_s(ctx.profile, scale)
        )
        checks.append(record)
        if not quiet:
            print(
                f"probe: {record['id']:<20} {record['status']:<5} {record['duration_s']:7.1f}s  "
                f"{record['summary']}",
                file=sys.stderr,
                flush=True,
            )
    return {
        "probe_version": PROBE_VERSION,
        "profile": ctx.profile,
        "host": collect_host(),
        "checks": checks,
    }


def _write(report: dict[str, Any], out: str | None) -> None:
    text = json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise ProbeUsageError(f"cannot write {out}: {error}") from error
