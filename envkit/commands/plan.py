"""`envkit plan MATRIX`: the resolved cells and the dropped ones, as a table, JSON or a CI fan-out."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from envkit import compat
from envkit.commands._common import add_matrix_argument, cell_record, load_plan
from envkit.resolve import Cell, Dropped, Plan
from envkit.ui import console, warn


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="expand and resolve a matrix; show kept and dropped cells",
        description="Expand and resolve MATRIX against the compatibility knowledge base.",
    )
    add_matrix_argument(parser)
    parser.add_argument(
        "--format",
        choices=("table", "json", "github-matrix"),
        default="table",
        help="table (default); json; github-matrix: a strategy.matrix for GitHub Actions",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument(
        "--wide", action="store_true", help="table: every resolved field in its own column, never wrapped"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    the_plan = load_plan(args)
    for warning in support_warnings(the_plan, datetime.date.today()):
        warn(warning)
    if args.format == "json":
        print(json.dumps(plan_json(the_plan), indent=2, sort_keys=True))
    elif args.format == "github-matrix":
        if not the_plan.cells:
            # Actions refuses a strategy.matrix with no entries, so the jobs using it must not start.
            warn(
                "no cells: GitHub Actions rejects an empty matrix; guard each job that uses it with "
                "`if: fromJSON(needs.<plan job>.outputs.<output>).include[0] != null`"
            )
        print(json.dumps(github_matrix(the_plan), separators=(",", ":"), sort_keys=True))
    else:
        print_plan(the_plan, wide=args.wide)
    return 0


def support_warnings(the_plan: Plan, today: datetime.date) -> list[str]:
    """One line per CUDA line that planned cells pin past NVIDIA's end of support."""
    kb = compat.load_kb()
    cells: dict[str, list[str]] = {}
    for cell in the_plan.cells:
        # Only an nvidia/cuda base loses its tags; on another base the line names the wheel's CUDA.
        if cell.cuda_full and "nvidia/cuda:" in cell.base:
            cells.setdefault(cell.cuda_full, []).append(cell.id)
    warnings = []
    for cuda_full, ids in cells.items():
        why = compat.end_of_support(kb, cuda_full, today)
        if why:
            warnings.append(f"{len(ids)} cell(s) ({', '.join(ids)}): {why}")
    return warnings


def plan_json(the_plan: Plan) -> dict[str, Any]:
    """The plan as JSON: matrix file, cells, and dropped requests with reasons."""
    return {
        "matrix": the_plan.matrix.file,
        "cells": [cell_record(cell) for cell in the_plan.cells],
        "dropped": [
            {"values": dict(d.request.values), "reason": d.reason, "origin": d.request.origin}
            for d in the_plan.dropped
        ],
    }


def github_matrix(the_plan: Plan) -> dict[str, Any]:
    """A GitHub Actions `strategy.matrix`: one include entry per cell; a runner builds `--only cell`."""
    return {
        "include": [
            {
                "cell": c.id,
                "image": c.image,
                "torch": c.torch,
                "variant": c.variant,
                "python": c.python,
                "os": c.os,
                "flavor": c.flavor,
                "gpu": c.cuda is not None,
            }
            for c in the_plan.cells
        ]
    }


def print_plan(the_plan: Plan, *, wide: bool = False) -> None:
    """The plan for a person: a title line, the cell table, then every dropped request with its reason."""
    out = console()
    print_plan_to(out, the_plan, wide=wide)


def print_plan_to(out: Console, the_plan: Plan, *, wide: bool = False) -> None:
    """`print_plan` on a given console (tests render to fixed widths)."""
    out.print(Text(f"{the_plan.matrix.file}: {len(the_plan.cells)} cells", style="bold"))
    if the_plan.cells:
        table = wide_table(the_plan.cells) if wide else fitting_table(out, the_plan.cells)
        if wide:
            # --wide never squeezes a column: the table takes the width it needs, past the terminal's edge.
            out.width = max(out.width, _natural_width(out, table))
        out.print(table)
        if any(cell.python_source == "standalone" for cell in the_plan.cells) and not wide:
            out.print(Text("* a pinned standalone Python build; others are the OS's python3", style="dim"))
    if the_plan.dropped:
        print_dropped(out, the_plan.dropped)


def print_dropped(out: Console, dropped: Sequence[Dropped]) -> None:
    """Each distinct reason once, wrapped at spaces (no value is split), then the requests it drops."""
    out.print(Text(f"dropped: {len(dropped)}", style="bold"))
    by_reason: dict[str, list[Dropped]] = {}
    for item in dropped:
        by_reason.setdefault(item.reason, []).append(item)
    for reason, items in by_reason.items():
        out.print(Padding(Text(reason, style="yellow"), (0, 0, 0, 2), expand=False), soft_wrap=False)
        for item in items:
            out.print(Text(f"    - {item.request.describe()}"))


def fitting_table(out: Console, cells: Sequence[Cell]) -> Table:
    """The richest compact table that fits the console: with the base image when there is room."""
    with_base = compact_table(cells, base=True)
    if _natural_width(out, with_base) <= out.width:
        return with_base
    return compact_table(cells, base=False)


def compact_table(cells: Sequence[Cell], *, base: bool) -> Table:
    """cell id (it names torch, variant, python, os, flavor), CUDA/cuDNN, python, driver floor."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("cell", no_wrap=True)
    table.add_column("cuda / cudnn", no_wrap=True)
    table.add_column("python", no_wrap=True)
    table.add_column("driver ≥", no_wrap=True)
    if base:
        table.add_column("base", no_wrap=True)
    for cell in cells:
        cuda = f"{cell.cuda_full} / {_major_minor(cell.cudnn)}" if cell.cuda_full else "-"
        python = f"{cell.python_full}*" if cell.python_source == "standalone" else cell.python
        row = [cell.id, cuda, python, cell.driver_floor or "-"]
        table.add_row(*row, *([cell.base] if base else []))
    return table


def wide_table(cells: Sequence[Cell]) -> Table:
    """Every resolved field, one column each, never wrapped (`--wide`)."""
    columns = (
        "cell",
        "torch",
        "cuda",
        "cudnn",
        "nccl",
        "python",
        "os",
        "flavor",
        "base",
        "driver ≥",
        "compat ≥",
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for cell in cells:
        python = cell.python if cell.python_source == "distro" else f"{cell.python_full} (standalone)"
        table.add_row(
            cell.id,
            f"{cell.torch} ({cell.torch_source})",
            cell.cuda_full or "-",
            cell.cudnn or "-",
            cell.nccl or "-",
            python,
            cell.os,
            cell.flavor,
            cell.base,
            cell.driver_floor or "-",
            cell.compat_floor or "-",
        )
    return table


def _natural_width(out: Console, table: Table) -> int:
    """The width `table` takes when nothing limits it."""
    return Measurement.get(out, out.options.update_width(10_000), table).maximum


def _major_minor(version: str | None) -> str:
    return ".".join((version or "-").split(".")[:2])
