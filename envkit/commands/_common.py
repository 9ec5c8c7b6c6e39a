"""Arguments and steps shared by the commands that read a matrix."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit import safety
from envkit.errors import ConfigError, UnsafeValueError, UsageError
from envkit.matrix import load_matrix, unmatched_entries
from envkit.render import BuildContext, FileHasher, RenderOptions, render_cell
from envkit.resolve import Cell, Plan, plan
from envkit.ui import warn

if TYPE_CHECKING:
    from envkit.lock import CellLock


def add_matrix_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("matrix", type=Path, metavar="MATRIX", help="the matrix YAML file")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="a matrix that resolves to no cells is not an error (exit 0 with nothing to do)",
    )


def add_only_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        metavar="CELL",
        default=[],
        help="work on this cell id only (repeatable); ids are shown by `envkit plan`",
    )


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="install torch (and anything else found there) from this folder of wheels",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="FILE",
        help="CA bundle pip trusts during the build (a proxy's CA); never kept in the image",
    )
    parser.add_argument(
        "--buildkit",
        action="store_true",
        help="build with BuildKit (`docker build`): CA bundle as a build secret",
    )
    parser.add_argument(
        "--cache-mounts",
        action="store_true",
        help="keep pip's download cache between builds (BuildKit cache mount)",
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="ID=FILE",
        help="a BuildKit build secret mounted at /run/secrets/ID while pip runs",
    )


def load_plan(args: argparse.Namespace) -> Plan:
    """Load and resolve the matrix named on the command line (see `checked_plan`)."""
    return checked_plan(args.matrix, allow_empty=getattr(args, "allow_empty", False))


def checked_plan(path: Path, *, allow_empty: bool = False) -> Plan:
    """Load and resolve a matrix; warn about entries that match nothing; no cells is an error.

    Zero cells is a ConfigError (exit 2) unless `allow_empty`: a typo that drops every cell must not
    pass as a build of nothing.
    """
    matrix = load_matrix(path)
    notes = unmatched_entries(matrix)
    the_plan = plan(matrix)
    if not the_plan.cells and not allow_empty:
        raise ConfigError(
            f"the matrix resolves to no cells ({len(the_plan.dropped)} dropped)",
            where=matrix.where,
            hint=_empty_hint(the_plan, notes),
        )
    for note in notes:
        warn(note)
    return the_plan


def _empty_hint(the_plan: Plan, notes: list[str]) -> str:
    if notes:
        reason = notes[0]
    elif the_plan.dropped:
        first = the_plan.dropped[0]
        reason = f"{first.request.describe()}: {first.reason}"
    else:
        reason = "no combination is left"
    return f"{reason}; `envkit plan --allow-empty` lists every dropped cell with its reason"


def selected_cells(the_plan: Plan, only: list[str]) -> tuple[Cell, ...]:
    """The cells named by --only (all cells when none is named), in plan order."""
    if not only:
        return the_plan.cells
    wanted = [the_plan.cell(cell_id) for cell_id in only]
    return tuple(cell for cell in the_plan.cells if cell in wanted)


def parse_secrets(items: list[str]) -> dict[str, Path]:
    """`ID=FILE` pairs from --secret."""
    secrets: dict[str, Path] = {}
    for item in items:
        secret_id, sep, file = item.partition("=")
        if not sep or not secret_id or not file:
            raise UsageError(f"--secret {item!r}: expected ID=FILE")
        try:
            safety.path_part(secret_id)
        except UnsafeValueError:
            # The id lands in a RUN --mount option and names a file under /run/secrets.
            raise UsageError(
                f"--secret {secret_id!r}: not a valid secret id",
                hint="letters, digits and . _ + -, starting with a letter or digit (e.g. pip-token)",
            ) from None
        if not Path(file).is_file():
            raise UsageError(f"--secret {secret_id}: {file} is not a readable file")
        secrets[secret_id] = Path(file)
    return secrets


def render_options(args: argparse.Namespace) -> RenderOptions:
    """RenderOptions from the shared flags; BuildKit-only flags imply --buildkit."""
    secrets = parse_secrets(getattr(args, "secret", []))
    buildkit = bool(args.buildkit or args.cache_mounts or secrets)
    return RenderOptions(
        wheelhouse=args.wheelhouse,
        ca_bundle=args.ca_bundle,
        buildkit=buildkit,
        cache_mounts=args.cache_mounts,
        secrets=tuple(sorted(secrets)),
    )


def cell_record(cell: Cell) -> dict[str, Any]:
    """A JSON-ready view of a resolved cell."""
    return {
        "id": cell.id,
        "image": cell.image,
        "tag": cell.tag,
        "torch": cell.torch,
        "variant": cell.variant,
        "cuda": cell.cuda,
        "cuda_full": cell.cuda_full,
        "cudnn": cell.cudnn,
        "nccl": cell.nccl,
        "python": cell.python,
        "python_full": cell.python_full,
        "python_source": cell.python_source,
        "os": cell.os,
        "flavor": cell.flavor,
        "base": cell.base,
        "torch_source": cell.torch_source,
        "torch_index": cell.torch_index,
        "driver_floor": cell.driver_floor,
        "compat_floor": cell.compat_floor,
        "arch_list": list(cell.arch_list),
        "packages": list(cell.packages),
        **custom_json(cell),
        "user_layer": list(cell.user_layer),
        "origin": cell.origin,
    }


def custom_json(cell: Cell) -> dict[str, Any]:
    """The keys that make an image yours, as the matrix wrote them (the copy sources relative to it)."""
    return {
        "apt": list(cell.apt),
        "env": dict(cell.env),
        "user": None
        if cell.user is None
        else {
            "name": cell.user.name,
            "uid": cell.user.uid,
            "gid": cell.user.gid,
            "home": cell.user.home,
            "shell": cell.user.shell,
        },
        "copy": [{"src": spec.src, "dest": spec.dest} for spec in cell.copy],
        "steps": [{"at": step.at, "run": step.run} for step in cell.steps],
    }


def add_locked_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--locked",
        action="store_true",
        help="use the matrix's lock file (envkit lock): base by digest, packages with --require-hashes; "
        "refuse (exit 2) a cell the lock does not match",
    )


def render_selected(
    the_plan: Plan,
    options: RenderOptions,
    only: list[str],
    locks: Mapping[str, CellLock] | None = None,
) -> list[BuildContext]:
    """Render the cells named by --only (all cells when none is named), sharing one file hasher; with
    `locks` (cell id -> lock entry) each cell is rendered locked."""
    hasher = FileHasher()
    return [
        render_cell(
            cell,
            the_plan.matrix.name,
            the_plan.matrix.labels,
            options,
            hasher,
            locked=None if locks is None else locks[cell.id],
        )
        for cell in selected_cells(the_plan, only)
    ]
