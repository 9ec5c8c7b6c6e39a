"""`envkit render MATRIX -o DIR`: each cell's Dockerfile and build context, for review."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape

from envkit import labels as L
from envkit.commands._common import (
    add_locked_argument,
    add_matrix_argument,
    add_only_argument,
    add_render_arguments,
    cell_record,
    load_plan,
    render_options,
    render_selected,
    selected_cells,
)
from envkit.errors import UsageError
from envkit.lock import entries_for
from envkit.render import BuildContext
from envkit.ui import console

CELL_RECORD = "envkit-cell.json"  # beside each rendered Dockerfile: what `render` made the folder from


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "render",
        help="write each cell's Dockerfile and build context",
        description="Render MATRIX into DIR/<cell>/ (Dockerfile, context files, "
        "envkit-cell.json). Renders are byte-for-byte reproducible.",
    )
    add_matrix_argument(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="output folder")
    add_only_argument(parser)
    add_render_arguments(parser)
    add_locked_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    the_plan = load_plan(args)
    options = render_options(args)
    locks = entries_for(selected_cells(the_plan, args.only), args.matrix) if args.locked else None
    contexts = render_selected(the_plan, options, args.only, locks)
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"-o {args.output}: exists and is not a folder")
    stale = stale_cells(args.output, the_plan.matrix.name, {cell.id for cell in the_plan.cells})
    args.output.mkdir(parents=True, exist_ok=True)
    for context in contexts:
        write_context(context, args.output / context.cell.id)
    for folder in stale:
        shutil.rmtree(folder)
    out = console()
    out.print(f"rendered {len(contexts)} cells into {escape(str(args.output))}")
    if stale:
        names = ", ".join(folder.name for folder in stale)
        out.print(f"removed {len(stale)} cell(s) the matrix no longer has: {escape(names)}")
    return 0


def stale_cells(output: Path, matrix_name: str, planned: set[str]) -> list[Path]:
    """Cell folders in `output` rendered earlier from this matrix that its plan no longer has.

    A folder rendered from another matrix is refused (UsageError): removing it would lose another
    matrix's render, keeping it would mix two matrices in one folder.
    """
    stale = []
    for record in sorted(output.glob(f"*/{CELL_RECORD}")):
        folder = record.parent
        if folder.name in planned:
            continue
        if _matrix_of(record) != matrix_name:
            raise UsageError(
                f"-o {output}: {folder.name} was rendered from another matrix ({_matrix_of(record) or '?'})",
                hint="render each matrix into its own folder, or remove that folder first",
            )
        stale.append(folder)
    return stale


def _matrix_of(record: Path) -> str | None:
    try:
        labels = json.loads(record.read_text(encoding="utf-8")).get("labels", {})
    except (OSError, ValueError, AttributeError):
        return None
    return labels.get(L.MATRIX) if isinstance(labels, dict) else None


def write_context(context: BuildContext, target: Path) -> None:
    """Replace `target` with the rendered context (written aside first, so a failure leaves the old one)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        context.write(staging)
        (staging / CELL_RECORD).write_text(
            json.dumps(context_record(context), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def context_record(context: BuildContext) -> dict[str, Any]:
    """What `render` records beside each Dockerfile: the cell, tags, labels and content hash."""
    return {
        "cell": cell_record(context.cell),
        "tags": list(context.tags),
        "labels": dict(sorted(context.labels.items())),
        "content_hash": context.content_hash,
        "secrets": list(context.secrets),
        "files": sorted(context.files),
    }
