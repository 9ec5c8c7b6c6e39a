"""`envkit doctor [--matrix M] [--json]`: host preflight."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from envkit.commands._common import checked_plan
from envkit.compat import load_kb
from envkit.doctor import Diagnosis, diagnose
from envkit.engine import get_engine
from envkit.ui import console

VERDICT_STYLES = {
    "runs": "green",
    "cpu": "green",
    "reduced": "yellow",
    "driver-too-old": "red",
    "no-driver": "yellow",
    "unknown": "yellow",
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "doctor",
        help="host preflight: engine, BuildKit CLI, GPUs and driver, NVIDIA runtime",
        description="Check this host: the Docker engine (and its version), a docker CLI that builds with "
        "BuildKit, the NVIDIA driver and GPUs (NVML), the NVIDIA container runtime; with --matrix, which "
        "planned cells this host's driver can run. Exit 0 when the engine is reachable, 3 when not.",
    )
    parser.add_argument("--matrix", type=Path, metavar="MATRIX", help="judge every planned cell of MATRIX")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cells = checked_plan(args.matrix).cells if args.matrix else None
    engine = get_engine()
    kb = load_kb() if cells is not None else None
    found = diagnose(engine, host=engine_host(engine), cells=cells, kb=kb)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2, sort_keys=True))
    else:
        show(found)
    return 0 if found.ok else 3


def engine_host(engine: Any) -> str:
    """The address the engine talks to, for messages (backends without one say so)."""
    return str(getattr(engine, "host", "the configured engine"))


def show(found: Diagnosis) -> None:
    """Print the findings for a person: one line per subject, then the cell table."""
    out = console()
    engine = found.engine
    if engine.reachable:
        out.print(
            f"[green]✓[/] engine    {escape(engine.host)}: Docker {escape(engine.version or '?')} "
            f"(API {escape(engine.api_version or '?')})"
        )
    else:
        out.print(f"[red]✗[/] engine    {escape(engine.error or engine.host)}")
    if found.buildkit.cli:
        out.print(f"[green]✓[/] buildkit  {escape(found.buildkit.cli)}")
    else:
        out.print(
            f"[yellow]![/] buildkit  {escape(found.buildkit.error or 'none')} "
            "(the default docker backend still builds; no build secrets or cache mounts)"
        )
    _show_gpu(found)
    if found.cells is not None:
        out.print(_cell_table(found))


def _show_gpu(found: Diagnosis) -> None:
    out = console()
    gpu = found.gpu
    if gpu.driver is None:
        out.print(f"[yellow]–[/] gpu       {escape(gpu.error or 'no NVIDIA driver')}")
    else:
        out.print(
            f"[green]✓[/] driver    {escape(gpu.driver)} (CUDA {escape(gpu.cuda_driver or '?')}), "
            f"{len(gpu.gpus)} GPU(s)"
        )
        for device in gpu.gpus:
            memory = f"{device.memory_total_mib} MiB" if device.memory_total_mib else "? MiB"
            out.print(
                f"            {device.index}: {escape(device.name)}, {memory}, "
                f"compute capability {escape(device.compute_capability or '?')}"
            )
    runtime = found.engine.nvidia_runtime
    if runtime:
        out.print("[green]✓[/] runtime   the engine offers the nvidia runtime")
    elif runtime is False:
        mark = "[red]✗[/]" if gpu.gpus else "[yellow]–[/]"
        out.print(
            f"{mark} runtime   no nvidia runtime registered with the engine "
            "(GPU containers need the NVIDIA Container Toolkit)"
        )


def _cell_table(found: Diagnosis) -> Table:
    table = Table(title="planned cells on this host's driver", title_justify="left")
    for column in ("cell", "cuda", "driver floor", "compat floor", "verdict", "detail"):
        table.add_column(column, overflow="fold")
    for fit in found.cells or ():
        style = VERDICT_STYLES.get(fit.verdict, "")
        table.add_row(
            escape(fit.cell),
            fit.cuda or "-",
            fit.driver_floor or "-",
            fit.compat_floor or "-",
            f"[{style}]{fit.verdict}[/]",
            escape(fit.detail),
        )
    return table
