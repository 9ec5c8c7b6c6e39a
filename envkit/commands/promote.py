"""`envkit promote MATRIX --reports PATH --policy P` and either `--registry R` (push from the local
engine) or `--from STAGING --to RELEASE` (registry-side, no engine): publish all cells or none.

Exit 0 published (or a dry run that would), 1 a cell is not ready (nothing pushed), 2 bad input,
3 the engine or registry failed midway (the record says what was pushed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from envkit import scratch
from envkit.commands._common import (
    add_locked_argument,
    add_matrix_argument,
    add_only_argument,
    add_render_arguments,
    load_plan,
    render_options,
    render_selected,
    selected_cells,
)
from envkit.commands._registry import add_registry_arguments, registry_settings, repository_under
from envkit.engine import get_engine
from envkit.errors import UsageError
from envkit.lock import entries_for
from envkit.policy import load_policy
from envkit.promote import (
    READY,
    Candidate,
    Context,
    Promotion,
    PromotionIncomplete,
    Target,
    assess,
    publish,
    push_order,
    registry_root,
    targets,
    write_record,
)
from envkit.registry import RegistryRepository, get_registry, parse_root
from envkit.release import assess_staged, find_staged, policy_digest, release
from envkit.report import load_reports
from envkit.resolve import Plan
from envkit.ui import console

STATE_STYLE = {READY: "green"}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "promote",
        help="push every cell's image and verdict, only when every cell passed its gate",
        description="Publish the images of MATRIX to registry R, all or nothing: every cell's local image "
        "must be its envkit build and every report of that build must pass the policy. Images are pushed "
        "first, then a `<tag>.verdict` companion per cell (docs/promote.md). Exit 0 published, 1 a cell "
        "is not ready (nothing pushed), 2 bad input, 3 the engine or registry failed midway.",
    )
    add_matrix_argument(parser)
    parser.add_argument(
        "--registry",
        metavar="R",
        help="host[:port][/prefix] to push the local engine's images to; the matrix's own "
        "registry host is replaced",
    )
    parser.add_argument(
        "--from",
        dest="staging",
        metavar="STAGING",
        help="registry-side: host[:port][/prefix] that `envkit build --push` filled",
    )
    parser.add_argument(
        "--to",
        dest="release_to",
        metavar="RELEASE",
        help="registry-side: host[:port][/prefix] to copy to (no container engine needed)",
    )
    parser.add_argument(
        "--reports",
        required=True,
        type=Path,
        metavar="PATH",
        help="a validation report JSON file, or a folder of them",
    )
    parser.add_argument("--policy", required=True, type=Path, metavar="P", help="the release policy YAML")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show each cell's verdict and what would be pushed; push nothing",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="write the promotion record here (default .envkit/<matrix>/promotion.json)",
    )
    add_only_argument(parser)
    add_render_arguments(parser)
    add_locked_argument(parser)
    add_registry_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.staging) != bool(args.release_to) or bool(args.staging) == bool(args.registry):
        raise UsageError(
            "give either --registry R, or both --from STAGING and --to RELEASE",
            hint="--from/--to copy registry-side (no engine); --registry pushes local images",
        )
    if args.staging:
        return run_registry_side(args)
    registry = registry_root(args.registry)
    the_plan = load_plan(args)
    policy = load_policy(args.policy)
    reports = load_reports([args.reports])
    engine = get_engine("docker")
    engine.info()
    candidates = assess(the_plan, engine, reports, policy)
    out = console()
    out.print(candidates_table(candidates, registry))
    waiting = [c for c in candidates if not c.ready]
    if waiting:
        # Whole lines under the table: a reason is never cut by column wrapping in a CI log.
        for candidate in waiting:
            out.print(Text(f"{candidate.state}: {candidate.cell.id}: {candidate.reason}", style="red"))
        out.print(
            Text(
                f"promote: refused; {len(waiting)} of {len(candidates)} cell(s) not ready, "
                "nothing was pushed",
                style="red",
            )
        )
        return 1
    chosen = targets(candidates, registry, the_plan.matrix.image.repository)
    if args.dry_run:
        print_push_order(chosen)
        return 0
    record = args.record or scratch.promotion_record_path(the_plan.matrix.name)
    context = Context(registry=registry, matrix=the_plan.matrix.file, policy=policy.source)
    try:
        promotion = publish(chosen, engine, context, on_step=lambda line: out.print(Text(line)))
    except PromotionIncomplete as stopped:
        write_record(stopped.promotion, record)
        out.print(Text(f"promotion record (incomplete): {record}", style="red"))
        raise
    write_record(promotion, record)
    print_published(promotion, record)
    return 0


def run_registry_side(args: argparse.Namespace) -> int:
    """Promotion from STAGING to RELEASE, matched by digest; the render flags must be the build's
    (they are part of the content hash that names each cell's image in STAGING)."""
    release_root = registry_root(args.release_to)
    registry_root(args.staging)
    the_plan = load_plan(args)
    policy = load_policy(args.policy)
    reports = load_reports([args.reports])
    staging, target = _endpoints(args, the_plan)
    # A locked build's content hash covers its lock entry: promote must render the cells the same way.
    locks = entries_for(selected_cells(the_plan, args.only), args.matrix) if args.locked else None
    contexts = render_selected(the_plan, render_options(args), args.only, locks)
    candidates = assess_staged(find_staged(contexts, staging), staging, reports, policy)
    out = console()
    out.print(candidates_table(candidates, release_root))
    if _refused(candidates):
        return 1
    chosen = targets(candidates, release_root, the_plan.matrix.image.repository)
    if args.dry_run:
        print_release_plan(chosen)
        return 0
    record = args.record or Path(".envkit") / the_plan.matrix.name / "promotion.json"
    context = Context(
        registry=release_root,
        matrix=the_plan.matrix.file,
        policy=policy.source,
        policy_sha256=policy_digest(policy),
    )
    try:
        promotion = release(chosen, staging, target, context, on_step=lambda line: out.print(Text(line)))
    except PromotionIncomplete as stopped:
        write_record(stopped.promotion, record)
        out.print(Text(f"promotion record (incomplete): {record}", style="red"))
        raise
    write_record(promotion, record)
    print_published(promotion, record)
    return 0


def _endpoints(args: argparse.Namespace, the_plan: Plan) -> tuple[RegistryRepository, RegistryRepository]:
    settings = registry_settings(args)
    repository = the_plan.matrix.image.repository
    ends = []
    for root, flag in ((args.staging, "--from"), (args.release_to, "--to")):
        host, path = repository_under(root, repository, flag)
        ends.append(RegistryRepository(registry=get_registry(host, settings), repository=path))
    if parse_root(args.staging, "--from") == parse_root(args.release_to, "--to"):
        raise UsageError(
            "--from and --to name the same repository", hint="release to another registry or prefix"
        )
    return ends[0], ends[1]


def _refused(candidates: Sequence[Candidate]) -> bool:
    """Print why each waiting cell is not ready, under the table; True when any is not."""
    out = console()
    waiting = [c for c in candidates if not c.ready]
    for candidate in waiting:
        out.print(Text(f"{candidate.state}: {candidate.cell.id}: {candidate.reason}", style="red"))
    if waiting:
        out.print(
            Text(
                f"promote: refused; {len(waiting)} of {len(candidates)} cell(s) not ready, "
                "nothing was pushed",
                style="red",
            )
        )
    return bool(waiting)


def candidates_table(candidates: Sequence[Candidate], registry: str) -> Table:
    """One row per planned cell: its state, local image id, and why it is (not) ready."""
    table = Table(title=f"envkit promote to {registry}", title_justify="left")
    table.add_column("cell", overflow="fold")
    table.add_column("state")
    table.add_column("image")
    table.add_column("why", overflow="fold", ratio=3)
    for candidate in candidates:
        image_id = (candidate.digest or candidate.image_id or "-").removeprefix("sha256:")[:12]
        state = Text(candidate.state, style=STATE_STYLE.get(candidate.state, "red"))
        table.add_row(Text(candidate.cell.id), state, image_id, Text(candidate.reason))
    return table


def print_push_order(chosen: Sequence[Target]) -> None:
    """The dry run's plan: every ref in push order, verdict companions last."""
    out = console()
    out.print("dry run: would push, in this order (nothing was pushed):")
    for number, ref in enumerate(push_order(chosen), start=1):
        out.print(Text(f"  {number:>3}. {ref}"))
    out.print("verdict companions are built FROM scratch after every image is pushed; each names its digest")


def print_release_plan(chosen: Sequence[Target]) -> None:
    """The registry-side dry run: what would be copied by digest, then the tags, in order."""
    out = console()
    out.print("dry run: would copy by digest and attach a verdict to each (nothing was written):")
    for target in chosen:
        out.print(Text(f"  {target.candidate.cell.id}: {target.candidate.digest}"))
    out.print("then, after every manifest is in the release registry, tag in this order:")
    for number, ref in enumerate((ref for t in chosen for ref in (t.hash_ref, t.tag_ref)), start=1):
        out.print(Text(f"  {number:>3}. {ref}"))


def print_published(promotion: Promotion, record: Path) -> None:
    """Every cell with its digest and verdict companion, then where the record is."""
    out = console()
    table = Table(title=f"promoted to {promotion.registry}", title_justify="left")
    for column in ("cell", "digest", "verdict companion"):
        table.add_column(column, overflow="fold")
    for cell in promotion.cells:
        table.add_row(Text(cell.cell), cell.digest or "-", Text(cell.verdict_ref or "-"))
    out.print(table)
    out.print(f"promotion record: {record}")
