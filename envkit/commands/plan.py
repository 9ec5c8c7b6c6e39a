"""`envkit plan MATRIX`: the resolved cells and the dropped ones, as a table, JSON or a CI fan-out."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from rich.table import Table

from envkit import compat
from envkit.commands._common import add_matrix_argument, cell_record, load_plan
from envkit.resolve import Plan
from envkit.ui import console


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    the_plan = load_plan(args)
    for warning in support_warnings(the_plan, datetime.date.today()):
        print(f"warning: {warning}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(plan_json(the_plan), indent=2, sort_keys=True))
    elif args.format == "github-matrix":
        print(json.dumps(github_matrix(the_plan), separators=(",", ":"), sort_keys=True))
    else:
        print_plan(the_plan)
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


def print_plan(the_plan: Plan) -> None:
    out = console()
    table = Table(title=f"{the_plan.matrix.file}: {len(the_plan.cells)} cells", title_justify="left")
    for column in ("cell", "torch", "cuda", "cudnn", "python", "os", "flavor", "base", "driver ≥"):
        table.add_column(column, overflow="fold", no_wrap=column in ("cell", "base"))
    for cell in the_plan.cells:
        python = cell.python if cell.python_source == "distro" else f"{cell.python_full} (standalone)"
        table.add_row(
            cell.id,
            f"{cell.torch} ({cell.torch_source})",
            cell.cuda_full or "-",
            cell.cudnn or "-",
            python,
            cell.os,
            cell.flavor,
            cell.base,
            cell.driver_floor or "-",
        )
    out.print(table)
    if the_plan.dropped:
        dropped = Table(title=f"dropped: {len(the_plan.dropped)}", title_justify="left")
        dropped.add_column("request", overflow="fold")
        dropped.add_column("reason", overflow="fold")
        for item in the_plan.dropped:
            dropped.add_row(item.request.describe(), item.reason)
        out.print(dropped)
