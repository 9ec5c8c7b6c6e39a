"""`envkit compat torch|cuda|python|driver VERSION`: query the compatibility knowledge base."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from envkit import compat
from envkit.ui import console


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "compat",
        help="query the compatibility knowledge base",
        description="Which wheels a torch release ships, which driver a CUDA needs, "
        "which releases a Python or a driver can use.",
    )
    queries = parser.add_subparsers(dest="query", metavar="QUERY", required=True, parser_class=type(parser))
    for name, what, example in (
        ("torch", "a torch release: Pythons, variants with CUDA/cuDNN/arch list, PyPI default", "2.6"),
        ("cuda", "a CUDA minor: driver floors, nvidia/cuda tags, torch releases shipping it", "12.8"),
        ("python", "a Python minor: torch releases with wheels for it", "3.12"),
        ("driver", "an NVIDIA driver: CUDA minors and torch variants it can run", "550.54.14"),
    ):
        query = queries.add_parser(name, help=what, description=f"Show {what}.")
        query.add_argument("version", metavar="VERSION", help=f"e.g. {example}")
        query.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kb = compat.load_kb()
    record = compat.QUERIES[args.query](kb, args.version.strip())
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        PRINTERS[args.query](record)
    return 0


# ---------------------------------------------------------------------------------------------
# Tables


def _print_torch(record: dict[str, Any]) -> None:
    out = console()
    out.print(
        f"torch {record['torch']}: Python {' '.join(record['pythons'])}; "
        f"PyPI wheel = {record['pypi_default']}"
    )
    table = Table(title_justify="left")
    for column in ("variant", "CUDA", "cuDNN", "NCCL", "driver ≥", "arch list", "read from", "source"):
        table.add_column(column, overflow="fold")
    for v in record["variants"]:
        name = v["variant"] + (" (PyPI)" if v["pypi_default"] else "")
        table.add_row(
            name,
            v["cuda"] or "-",
            v["cudnn"] or "-",
            v["nccl"] or "-",
            v["driver_floor"] or "-",
            ";".join(v["arch_list"]) or "-",
            v["evidence"],
            v["source"],
        )
    out.print(table)
    out.print(
        "read from: wheel = pins and arch list read from the wheel itself; upstream = PyTorch's "
        "build files; secondary = copies, reports or inference (see source)"
    )


def _print_cuda(record: dict[str, Any]) -> None:
    out = console()
    out.print(
        f"CUDA {record['cuda']}: driver ≥ {record['driver_floor'] or 'unknown'} "
        f"(minor-version compatibility ≥ {record['compat_floor'] or 'unknown'})"
    )
    images = Table(title="nvidia/cuda tags", title_justify="left")
    for column in ("CUDA", "Ubuntu", "end of support", "read from", "tags"):
        images.add_column(column, overflow="fold")
    for line in record["images"]:
        images.add_row(
            line["cuda"],
            " ".join(line["ubuntu"]),
            line["end_of_support"] or "-",
            line["evidence"],
            "\n".join(line["tags"]),
        )
    out.print(images)
    _print_variants(out, record["torch"], f"torch variants with CUDA {record['cuda']}")


def _print_variants(out: Any, variants: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("torch", "variant", "CUDA", "cuDNN"):
        table.add_column(column)
    for v in variants:
        name = v["variant"] + (" (PyPI)" if v.get("pypi_default") else "")
        table.add_row(v["torch"], name, v["cuda"], v.get("cudnn") or "")
    out.print(table if variants else f"{title}: none")


def _print_python(record: dict[str, Any]) -> None:
    out = console()
    out.print(f"Python {record['python']}: torch {', '.join(record['torch'])}")
    if record["distributions"]:
        out.print(f"python3 of: {', '.join(record['distributions'])}")


def _print_driver(record: dict[str, Any]) -> None:
    out = console()
    full = ", ".join(record["cuda"]) or "none"
    majors = ", ".join(f"{m}.x" for m in record["minor_compat_majors"]) or "none"
    out.print(f"driver {record['driver']}: CUDA {full} (full support); minor-version compatibility: {majors}")
    _print_variants(out, record["variants"], f"torch variants driver {record['driver']} can run")
    _print_variants(
        out,
        record["minor_compat_variants"],
        "torch variants it runs under minor-version compatibility (reduced feature set)",
    )


PRINTERS = {"torch": _print_torch, "cuda": _print_cuda, "python": _print_python, "driver": _print_driver}
