"""`envkit gc`: remove what a killed or interrupted envkit left behind."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape

from envkit import labels as L
from envkit.engine import get_engine
from envkit.gc import Leftover, collect, find_leftovers
from envkit.ui import console


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "gc",
        help="remove leftover validation containers, untagged envkit images and scratch folders",
        description="Remove what a killed or interrupted envkit left: validation containers, untagged "
        f"images labelled {L.MANAGED}=true, and envkit-* scratch folders in the temp folder. Tagged "
        "images (the base image included) are never touched. Without --all, anything a running envkit may "
        "still use is kept: running containers, images and folders younger than an hour. Exit 0 when "
        "everything planned was removed, 1 when something could not be, 3 when the engine is unreachable.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    parser.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help="also remove running validation containers and recent images and folders "
        "(only when no envkit is running)",
    )
    parser.add_argument(
        "--runner",
        choices=("local", "slurm", "kubernetes"),
        default="local",
        help="slurm: this user's envkit jobs and job folders; kubernetes: envkit's Jobs and ConfigMaps in "
        "--namespace (older than an hour unless --all)",
    )
    parser.add_argument("--namespace", default="default", metavar="NAME", help="with --runner kubernetes")
    parser.add_argument(
        "--job-dir", default=".envkit/jobs", metavar="DIR", help="with --runner slurm (default .envkit/jobs)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.runner == "kubernetes":
        return _run_kubernetes(args)
    if args.runner == "slurm":
        return _run_slurm(args)
    engine = get_engine()
    engine.info()
    leftovers = find_leftovers(engine, everything=args.everything)
    out = console()
    for item in leftovers:
        if not item.removable:
            out.print(f"[dim]keep    {_line(item)} — {escape(item.keep_reason or '')}[/]", soft_wrap=True)
    removable = [item for item in leftovers if item.removable]
    if args.dry_run:
        for item in removable:
            out.print(f"would remove  {_line(item)}", soft_wrap=True)
        out.print(f"{len(removable)} to remove, {len(leftovers) - len(removable)} kept (dry run)")
        return 0
    failures = 0
    for outcome in collect(engine, removable):
        if outcome.error is None:
            out.print(f"[green]removed[/] {_line(outcome.leftover)}", soft_wrap=True)
            continue
        failures += 1
        why = escape(outcome.error)
        out.print(f"[red]could not remove[/] {_line(outcome.leftover)}: {why}", soft_wrap=True)
    kept = len(leftovers) - len(removable)
    out.print(f"{len(removable) - failures} removed, {failures} failed, {kept} kept")
    return 1 if failures else 0


def _line(item: Leftover) -> str:
    ref = item.ref if item.kind == "scratch" else item.ref.removeprefix("sha256:")[:12]
    return escape(f"{item.kind:9} {ref}  {item.detail}")


def _run_kubernetes(args: argparse.Namespace) -> int:
    from envkit.runners.kubernetes import list_leftovers, remove_leftover

    core, batch, leftovers = list_leftovers(args.namespace, everything=args.everything)
    out = console()
    removable = [item for item in leftovers if item.keep_reason is None]
    for item in leftovers:
        line = escape(f"{item.kind:9} {args.namespace}/{item.name}  {item.detail}")
        if item.keep_reason is not None:
            out.print(f"[dim]keep    {line} — {escape(item.keep_reason)}[/]", soft_wrap=True)
        elif args.dry_run:
            out.print(f"would remove  {line}", soft_wrap=True)
    if args.dry_run:
        out.print(f"{len(removable)} to remove, {len(leftovers) - len(removable)} kept (dry run)")
        return 0
    failures = 0
    for item in removable:
        line = escape(f"{item.kind:9} {args.namespace}/{item.name}")
        error = remove_leftover(core, batch, args.namespace, item)
        failures += error is not None
        out.print(
            f"[red]could not remove[/] {line}: {escape(error)}" if error else f"[green]removed[/] {line}"
        )
    out.print(
        f"{len(removable) - failures} removed, {failures} failed, {len(leftovers) - len(removable)} kept"
    )
    return 1 if failures else 0


def _run_slurm(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from envkit.runners.slurm import find_leftovers, remove_leftover

    leftovers = find_leftovers(Path(args.job_dir), now=time.time(), everything=args.everything)
    out = console()
    removable = [item for item in leftovers if item.keep_reason is None]
    failures = 0
    for item in leftovers:
        line = escape(f"{item.kind:9} {item.ref}  {item.detail}")
        if item.keep_reason is not None:
            out.print(f"[dim]keep    {line} — {escape(item.keep_reason)}[/]", soft_wrap=True)
        elif args.dry_run:
            out.print(f"would remove  {line}", soft_wrap=True)
        else:
            error = remove_leftover(item)
            failures += error is not None
            out.print(
                f"[red]could not remove[/] {line}: {escape(error)}" if error else f"[green]removed[/] {line}"
            )
    kept = len(leftovers) - len(removable)
    if args.dry_run:
        out.print(f"{len(removable)} to remove, {kept} kept (dry run)")
        return 0
    out.print(f"{len(removable) - failures} removed, {failures} failed, {kept} kept")
    return 1 if failures else 0
