"""`envkit lock MATRIX`: pin each cell's base digest and hash-locked packages; `--check` and `--update`."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from envkit import compat
from envkit import lock as L
from envkit.commands._common import add_matrix_argument, add_only_argument, load_plan, selected_cells
from envkit.engine import get_engine
from envkit.errors import UsageError
from envkit.registry import RegistrySettings, get_registry
from envkit.resolve import Cell, Plan
from envkit.ui import console


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "lock",
        help="pin every cell's base digest and hash-locked Python packages",
        description="Write MATRIX's lock file beside it (<stem>.lock.yaml): per cell the base image's "
        "digest and every Python package with its hashes, resolved for the image's Python and platform. "
        "--check: exit 1 with a table when anything drifted; --update: rewrite what drifted.",
    )
    add_matrix_argument(parser)
    add_only_argument(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report drift (exit 1); change nothing")
    mode.add_argument("--update", action="store_true", help="rewrite the entries that drifted, only those")
    parser.add_argument(
        "--wheelhouse", type=Path, metavar="DIR", help="resolve from this folder of wheels too (find-links)"
    )
    parser.add_argument(
        "--offline", action="store_true", help="resolve from the wheelhouse only; no index, no network"
    )
    parser.add_argument(
        "--ca-bundle", type=Path, metavar="FILE", help="CA bundle for the package index and registries"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    the_plan = load_plan(args)
    cells = selected_cells(the_plan, args.only)
    path = L.lock_path(args.matrix)
    resolver = L.UvResolver(
        L.ResolverSettings(wheelhouse=args.wheelhouse, offline=args.offline, ca_bundle=args.ca_bundle)
    )
    base_lookup = _base_lookup(cells, args.ca_bundle)
    if not (args.check or args.update):
        return _lock(the_plan, cells, path, base_lookup, resolver)
    if not path.is_file():
        raise UsageError(f"{path}: no lock file yet", hint=f"create it with `envkit lock {args.matrix}`")
    lock = L.read_lock(path)
    checkers = L.Checkers(
        resolve_base=base_lookup,
        resolve_packages=resolver,
        newest_torch=_newest_torch(resolver),
        cuda_end_of_support=_end_of_support(),
    )
    drifts, fresh = _check(the_plan, cells, lock, checkers, whole=not args.only)
    _print_drifts(drifts, path)
    if args.check:
        return 1 if drifts else 0
    return _update(lock, fresh, drifts, path, removed=_stale(the_plan, lock) if not args.only else ())


def _lock(plan: Plan, cells: Sequence[Cell], path: Path, base: L.BaseResolver, resolver: L.UvResolver) -> int:
    now = L.utc_now()
    entries = [L.lock_cell(cell, base, resolver, now) for cell in cells]
    old = L.read_lock(path) if path.is_file() and len(cells) < len(plan.cells) else None
    lock = (old or L.Lock(file=str(path), matrix=plan.matrix.name, cells={})).with_cells(entries)
    L.write_lock(lock, path)
    table = Table(title=f"lock {path}", title_justify="left")
    for column in ("cell", "base", "packages"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(entry.cell, f"{entry.base.kind} {entry.base.digest[:19]}", str(len(entry.packages)))
    console().print(table)
    return 0


def _check(
    plan: Plan, cells: Sequence[Cell], lock: L.Lock, checkers: L.Checkers, whole: bool
) -> tuple[list[L.Drift], list[L.CellLock]]:
    drifts: list[L.Drift] = []
    fresh: list[L.CellLock] = []
    for cell in cells:
        found, entry = L.check_cell(cell, lock, checkers)
        drifts += found
        if entry is not None:
            fresh.append(entry)
    if whole:
        drifts += [
            L.Drift(cell=cell_id, what="lock entry", locked="present", now="no such cell", update=True)
            for cell_id in _stale(plan, lock)
        ]
    return drifts, fresh


def _stale(plan: Plan, lock: L.Lock) -> tuple[str, ...]:
    ids = {cell.id for cell in plan.cells}
    return tuple(sorted(cell_id for cell_id in lock.cells if cell_id not in ids))


def _update(
    lock: L.Lock, fresh: list[L.CellLock], drifts: list[L.Drift], path: Path, removed: Sequence[str]
) -> int:
    out = console()
    if fresh or removed:
        kept = {cell_id: entry for cell_id, entry in lock.cells.items() if cell_id not in removed}
        L.write_lock(L.Lock(file=lock.file, matrix=lock.matrix, cells=kept).with_cells(fresh), path)
        changed = sorted([entry.cell for entry in fresh] + list(removed))
        out.print(f"updated {path}: {', '.join(changed)}")
    else:
        out.print(f"{path}: nothing to update")
    if any(not d.update for d in drifts):
        out.print("drift that only a matrix edit fixes is left as it is (see the table)")
    return 0


def _print_drifts(drifts: Sequence[L.Drift], path: Path) -> None:
    out = console()
    if not drifts:
        out.print(f"{path}: no drift")
        return
    table = Table(title=f"drift from {path}", title_justify="left")
    for column in ("cell", "what", "locked", "now", "fix"):
        table.add_column(column, overflow="fold")
    for drift in drifts:
        fix = "envkit lock --update" if drift.update else "edit the matrix"
        table.add_row(drift.cell, drift.what, drift.locked, drift.now, fix)
    out.print(table)


def _base_lookup(cells: Sequence[Cell], ca_bundle: Path | None) -> L.BaseLookup:
    local = any(not L.names_registry(cell.base) for cell in cells)
    engine = get_engine("docker") if local else None
    settings = RegistrySettings(ca_bundle=ca_bundle)
    return L.BaseLookup(engine, lambda host: get_registry(host, settings))


def _newest_torch(resolver: L.UvResolver) -> Callable[[Cell], str | None]:
    """The newest torch of the cell's minor: in the knowledge base, or in the cell's sources now."""
    kb = compat.load_kb()

    def newest(cell: Cell) -> str | None:
        found = (L.newest_torch_known(kb, cell), resolver.newest_torch(cell))
        return max((v for v in found if v), key=compat.version_key, default=None)

    return newest


def _end_of_support() -> Callable[[Cell], str | None]:
    kb = compat.load_kb()
    today = datetime.datetime.now(datetime.timezone.utc).date()
    return lambda cell: L.cuda_end_of_support(kb, cell, today)
