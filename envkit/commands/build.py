"""`envkit build MATRIX`: build every cell (or --only some), skipping unchanged ones."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from envkit import safety, scratch
from envkit.build import BuildInterrupted, BuildReport, BuildSettings, PushTarget, build_contexts, explain
from envkit.commands._common import (
    add_locked_argument,
    add_matrix_argument,
    add_only_argument,
    add_render_arguments,
    load_plan,
    parse_secrets,
    render_options,
    render_selected,
    selected_cells,
)
from envkit.commands._registry import add_registry_arguments, registry_settings, repository_under
from envkit.engine import get_engine
from envkit.errors import UsageError
from envkit.lock import check_local_bases, entries_for
from envkit.provenance import build_labels
from envkit.registry import get_registry
from envkit.render import CA_SECRET_ID
from envkit.resolve import Plan
from envkit.ui import console

STYLES = {
    "queued": "dim",
    "building": "cyan",
    "built": "green",
    "skipped": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "build",
        help="build every cell's image (skipping unchanged ones)",
        description="Build the images of MATRIX. A cell whose image already carries "
        "the same content hash is skipped. Exit 1 when a cell failed, 3 when the engine "
        "could not run the work.",
    )
    add_matrix_argument(parser)
    add_only_argument(parser)
    add_render_arguments(parser)
    add_locked_argument(parser)
    parser.add_argument(
        "-j", "--jobs", type=int, default=2, metavar="N", help="cells built at once (default 2)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write the JSON build report here (default .envkit/<matrix>/build-report.json)",
    )
    parser.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="per-cell logs (default .envkit/<matrix>/logs)"
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild cells even when their hash is unchanged"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="reuse no layers from earlier builds (implies --force)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be built or skipped; build nothing"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "docker", "buildkit"),
        default="auto",
        help="docker-py (default), or the BuildKit CLI (implied by --secret/--cache-mounts/--buildkit)",
    )
    parser.add_argument(
        "--push",
        nargs="?",
        const=MATRIX_REGISTRY,
        metavar="REGISTRY",
        help="host[:port][/prefix]: skip cells whose content-<hash16> tag the registry holds, push the "
        "others (content tag, then cell tag); without a value, the matrix's image.registry",
    )
    parser.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="REF",
        help="an image whose layers built cells may reuse (repeatable); with --push, each cell's "
        "image in the push registry is one already. BuildKit pulls only the layers it reuses "
        "(images built by envkit --push --buildkit carry the cache metadata it needs); the docker "
        "backend pulls the whole image first",
    )
    parser.add_argument(
        "--network",
        choices=("default", "host", "none"),
        help="the network of RUN steps during the build, as `docker build --network` (host: on a "
        "runner whose bridge has no NAT); a registry cache is reused only by builds with the same one",
    )
    add_registry_arguments(parser)
    parser.set_defaults(func=run)


MATRIX_REGISTRY = "(matrix)"


def push_target(args: argparse.Namespace, the_plan: Plan) -> PushTarget | None:
    """The registry `--push` names (the matrix's image.registry for a bare --push), or None."""
    if args.push is None:
        return None
    naming = the_plan.matrix.image
    root = naming.registry if args.push == MATRIX_REGISTRY else args.push
    if not root:
        raise UsageError(
            "--push without a value needs `image.registry` in the matrix",
            hint="name the registry: --push HOST[:PORT][/PREFIX]",
        )
    host, repository = repository_under(root, naming.repository, "--push")
    return PushTarget(registry=get_registry(host, registry_settings(args)), repository=repository)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    cache_from = tuple(safety.image_ref(ref) for ref in args.cache_from)
    out = console()
    # Resolving, rendering (hashing a wheelhouse) and reaching the engine take seconds: say so at once.
    with out.status("resolving the matrix…") as status:
        the_plan = load_plan(args)
        options = render_options(args)
        status.update(f"rendering {len(selected_cells(the_plan, args.only))} cells…")
        locks = entries_for(selected_cells(the_plan, args.only), args.matrix) if args.locked else None
        contexts = render_selected(the_plan, options, args.only, locks)
        backend = args.backend if args.backend != "auto" else ("buildkit" if options.buildkit else "docker")
        status.update("connecting to the engine…")
        engine = get_engine(backend)
        engine.info()
        if locks is not None:
            check_local_bases(locks, lambda ref: getattr(engine.image(ref), "id", None))
        push = push_target(args, the_plan)
        if args.dry_run:
            status.update("comparing with the images on the engine…")
            decisions = explain(
                contexts, engine, args.force or args.no_cache, push, cache_from, args.no_cache
            )
    if args.dry_run:
        for cell_id, (action, why) in decisions.items():
            out.print(f"{action:5}  {escape(cell_id)}  {escape(why)}")
        return 0
    secrets = parse_secrets(args.secret)
    if options.buildkit and options.ca_bundle is not None:
        secrets[CA_SECRET_ID] = options.ca_bundle
    settings = BuildSettings(
        jobs=args.jobs,
        log_dir=args.log_dir or scratch.build_logs_dir(the_plan.matrix.name),
        secrets=secrets,
        force=args.force or args.no_cache,
        no_cache=args.no_cache,
        push=push,
        state_root=scratch.STATE_ROOT,
        provenance=build_labels(the_plan.matrix.file),
        cache_from=cache_from,
        network=args.network,
    )
    report_path = args.report or scratch.build_report_path(the_plan.matrix.name)
    try:
        report = _build_with_progress(the_plan.matrix.file, contexts, engine, settings)
    except BuildInterrupted as interrupted:
        _write_report(interrupted.report, report_path)
        print_summary(interrupted.report, report_path)
        raise
    _write_report(report, report_path)
    print_summary(report, report_path)
    return report.exit_code


def _build_with_progress(
    matrix_file: str, contexts: list[Any], engine: Any, settings: BuildSettings
) -> BuildReport:
    states: dict[str, tuple[str, str]] = {}

    def table() -> Table:
        view = Table(show_header=True, header_style="bold", expand=False)
        view.add_column("cell")
        view.add_column("state")
        view.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=80)
        for cell_id, (state, detail) in states.items():
            view.add_row(cell_id, f"[{STYLES.get(state, '')}]{state}[/]", detail)
        return view

    out = console()
    with Live(table(), console=out, refresh_per_second=4, transient=not out.is_terminal) as live:

        def progress(cell_id: str, state: str, detail: str) -> None:
            states[cell_id] = (state, detail)
            live.update(table())

        return build_contexts(matrix_file, contexts, engine, settings, progress)


def _write_report(report: BuildReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json(), encoding="utf-8")


def print_summary(report: BuildReport, report_path: Path) -> None:
    out = console()
    summary = Table(title=f"build of {report.matrix} in {report.duration_s:.1f}s", title_justify="left")
    pushing = any(r.digest for r in report.results)
    columns = ("cell", "status", "image id", "size", "time", "log") + (("digest",) if pushing else ())
    for column in columns:
        summary.add_column(column, overflow="fold")
    for r in report.results:
        size = f"{r.size / 1e6:.0f} MB" if r.size else "-"
        row = [
            r.cell,
            f"[{STYLES.get(r.status, '')}]{r.label}[/]",
            r.image_id[7:19] if r.image_id else "-",
            size,
            f"{r.duration_s:.1f}s",
            r.log or "-",
        ]
        summary.add_row(*row, *((r.digest or "-",) if pushing else ()))
    out.print(summary)
    for r in report.failed:
        out.print(f"[red]✗ {escape(r.cell)}[/]: {escape(r.error or '')}")
        if r.log_tail:
            out.print(r.log_tail, markup=False, highlight=False)
        if r.log:
            out.print(f"  log: {escape(r.log)}")  # whole, on its own line: the table may fold it
    out.print(f"build report: {escape(str(report_path))}")
