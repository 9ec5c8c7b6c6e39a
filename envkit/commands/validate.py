"""`envkit validate IMAGE...` (or `--matrix M`, or `--local`): run the probe and write reports."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from envkit.engine import get_engine, parse_gpus
from envkit.errors import UsageError
from envkit.matrix import load_matrix
from envkit.report import Report, dump_report
from envkit.resolve import plan
from envkit.ui import console
from envkit.validate import RunSettings, failed, host_has_gpu, validate_image, validate_local
from envkit.views import print_reports

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="run the validation suite inside images (or on this host)",
        description="Run envkit's probe inside each IMAGE (GPUs requested when the host "
        "has them) and write a versioned JSON report per image. Exit 0 when nothing "
        "failed, 1 when a check failed or errored, 3 when the engine could not run it.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image references (tags or ids)")
    parser.add_argument("--matrix", type=Path, metavar="MATRIX", help="validate every cell image of MATRIX")
    parser.add_argument("--local", action="store_true", help="run the probe on this host, without Docker")
    parser.add_argument(
        "--python", metavar="PATH", help="with --local: the interpreter to probe (default: envkit's)"
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick: CPU-sized, under a minute; full: GPU-sized (1B model)",
    )
    parser.add_argument(
        "--gpus",
        default="auto",
        metavar="SPEC",
        help="auto (all when this host has GPUs), none, all, N or device=0,1",
    )
    parser.add_argument(
        "--require-gpu", action="store_true", help="a GPU check skipped for lack of a GPU fails"
    )
    parser.add_argument("--memory", default="8g", metavar="SIZE", help="container memory limit (default 8g)")
    parser.add_argument(
        "--shm-size", default="1g", metavar="SIZE", help="container /dev/shm size (default 1g)"
    )
    parser.add_argument("--pids", type=int, default=4096, metavar="N", help="container pids limit")
    parser.add_argument(
        "--cpus", type=float, metavar="N", help="container CPU quota in cores, as docker run --cpus"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="whole-probe timeout (default by profile)"
    )
    parser.add_argument("--user", metavar="USER", help="run as this user (default: the image's own user)")
    parser.add_argument("--only", action="append", default=[], metavar="CHECK", help="run only this check id")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE", help="report file (one image, or --local)")
    parser.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="one report per image (default .envkit/reports)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    targets = list(args.images)
    if args.matrix:
        targets += [cell.image for cell in plan(load_matrix(args.matrix)).cells]
    if args.local == bool(targets):
        raise UsageError(
            "name IMAGEs (or --matrix), or use --local", hint="e.g. envkit validate acme/pytorch:2.6"
        )
    if args.out and len(targets) > 1:
        raise UsageError("--out takes one image; use --out-dir for several")
    settings = _settings(args)
    reports: list[tuple[Report, Path]] = []
    if args.local:
        reports.append((validate_local(settings, args.python), args.out or _default_out(args, "local")))
    else:
        engine = get_engine()
        engine.info()
        for ref in targets:
            report = validate_image(engine, ref, settings)
            reports.append((report, args.out or _default_out(args, ref)))
    out = console()
    for report, path in reports:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_report(report), encoding="utf-8")
        print_reports(out, [report])
        out.print(f"report: {path}")
    return 1 if any(failed(report) for report, _ in reports) else 0


def _settings(args: argparse.Namespace) -> RunSettings:
    gpus = args.gpus
    if gpus == "auto":
        gpus = "all" if host_has_gpu() else None
    elif gpus == "none":
        gpus = None
    else:
        parse_gpus(gpus)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.cpus is not None and not 0.01 <= args.cpus <= 4096:
        raise UsageError(f"--cpus {args.cpus}: expected a number of cores such as 2 or 0.5")
    return RunSettings(
        profile=args.profile,
        gpus=gpus,
        memory=parse_size(args.memory, "--memory"),
        pids=args.pids,
        shm=parse_size(args.shm_size, "--shm-size"),
        cpus=args.cpus,
        timeout_s=args.timeout,
        user=args.user,
        only=tuple(args.only),
        require_gpu=args.require_gpu,
    )


def parse_size(text: str, flag: str) -> int:
    """'8g', '512m', '1.5GiB', '1048576' → bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"{flag} {text!r}: expected a size like 8g or 512m")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 6 * 1024**2:
        raise UsageError(f"{flag} {text!r}: at least 6m is needed to start a container")
    return size


def _default_out(args: argparse.Namespace, ref: str) -> Path:
    folder = args.out_dir or Path(".envkit") / "reports"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref).strip("._") or "report"
    return folder / f"{name}.json"
