"""`envkit compat torch|cuda|python|driver VERSION`: query the compatibility knowledge base."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from rich.table import Table

from envkit import compat
from envkit.compat import CudaImageLine, KnowledgeBase, TorchRelease, Variant, version_key
from envkit.errors import UsageError
from envkit.ui import console

IMAGE_FLAVORS = ("base", "runtime", "devel")


def register(sub: Any) -> None:
    parser = sub.add_parser("compat", help="query the compatibility knowledge base",
                            description="Which wheels a torch release ships, which driver a CUDA needs, "
                                        "which releases a Python or a driver can use.")
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
    record = QUERIES[args.query](kb, args.version.strip())
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        PRINTERS[args.query](record)
    return 0


# ---------------------------------------------------------------------------------------------
# Queries: each returns the JSON record; the printers render the same record as tables.


def _variant_record(kb: KnowledgeBase, release: TorchRelease, variant: Variant) -> dict[str, Any]:
    return {
        "torch": release.version, "variant": variant.name, "cuda": variant.cuda, "cudnn": variant.cudnn,
        "nccl": variant.nccl, "arch_list": list(variant.arch_list),
        "driver_floor": kb.driver_floor(variant.cuda) if variant.cuda else None,
        "pypi_default": variant.name == release.default_variant, "source": variant.source,
    }


def torch_query(kb: KnowledgeBase, spec: str) -> dict[str, Any]:
    """A torch release's Pythons and variants."""
    release = kb.torch(spec)
    if release is None:
        raise UsageError(f"torch {spec} is not in the knowledge base",
                         hint=f"known: {', '.join(kb.known_torch())}; "
                              "run scripts/update_compat.py if it is new")
    return {
        "query": spec, "torch": release.version, "pythons": list(release.pythons),
        "pypi_default": release.default_variant,
        "variants": [_variant_record(kb, release, v) for v in _variants_in_order(release)],
        "source": release.source,
    }


def _variants_in_order(release: TorchRelease) -> tuple[Variant, ...]:
    cpu = tuple(v for v in release.variants if v.cuda is None)
    return cpu + release.cuda_variants()


def image_tags(line: CudaImageLine) -> list[str]:
    """The nvidia/cuda tags of one line: base/runtime/devel and the cuDNN runtime/devel forms."""
    tags = []
    for ubuntu in line.ubuntu:
        tags += [f"{line.cuda}-{flavor}-ubuntu{ubuntu}" for flavor in IMAGE_FLAVORS]
        tags += [f"{line.cuda}-{line.cudnn_tag}-{flavor}-ubuntu{ubuntu}" for flavor in ("runtime", "devel")]
    return tags


def cuda_query(kb: KnowledgeBase, spec: str) -> dict[str, Any]:
    """A CUDA minor's driver floors, image lines and the torch variants built with it."""
    known = re.fullmatch(r"\d+\.\d+(\.\d+)?", spec) and (kb.driver_floor(spec) or kb.image_lines(spec))
    if not known:
        raise UsageError(f"CUDA {spec} is not in the knowledge base",
                         hint=f"known: {', '.join(kb.known_cuda())}")
    minor = compat.cuda_minor(spec)
    variants = [
        _variant_record(kb, release, variant)
        for release in kb.releases_with_cuda(minor)
        for variant in release.cuda_variants() if variant.cuda == minor
    ]
    return {
        "query": spec, "cuda": minor, "driver_floor": kb.driver_floor(minor),
        "compat_floor": kb.compat_floor(minor),
        "images": [{"cuda": line.cuda, "cudnn_tag": line.cudnn_tag, "ubuntu": list(line.ubuntu),
                    "tags": image_tags(line), "source": line.source} for line in kb.image_lines(minor)],
        "torch": variants,
    }


def python_query(kb: KnowledgeBase, spec: str) -> dict[str, Any]:
    """The torch releases with wheels for a Python minor."""
    known = sorted({p for r in kb.releases for p in r.pythons}, key=version_key)
    releases = kb.releases_for_python(spec)
    if not releases:
        raise UsageError(f"no known torch release has wheels for Python {spec}",
                         hint=f"known: {', '.join(known)}")
    return {"query": spec, "python": spec, "torch": [r.version for r in releases],
            "distributions": [o.os for o in kb.os_pythons if o.python == spec]}


def driver_query(kb: KnowledgeBase, spec: str) -> dict[str, Any]:
    """What a driver runs: CUDA minors at full support and the torch variants built for them."""
    try:
        version_key(spec)
    except ValueError:
        raise UsageError(f"driver {spec!r} is not a version like 550.54.14",
                         hint="nvidia-smi prints it as 'Driver Version'") from None
    minors = kb.cuda_runs_on_driver(spec)
    majors = [m.cuda_major for m in kb.minor_compat if version_key(m.driver_min) <= version_key(spec)]
    variants = [_variant_record(kb, r, v) for r in kb.releases for v in r.cuda_variants() if v.cuda in minors]
    return {"query": spec, "driver": spec, "cuda": list(minors), "minor_compat_majors": majors,
            "variants": variants}


QUERIES = {"torch": torch_query, "cuda": cuda_query, "python": python_query, "driver": driver_query}


# ---------------------------------------------------------------------------------------------
# Tables


def _print_torch(record: dict[str, Any]) -> None:
    out = console()
    out.print(f"torch {record['torch']}: Python {' '.join(record['pythons'])}; "
              f"PyPI wheel = {record['pypi_default']}")
    table = Table(title_justify="left")
    for column in ("variant", "CUDA", "cuDNN", "NCCL", "driver ≥", "arch list", "source"):
        table.add_column(column, overflow="fold")
    for v in record["variants"]:
        name = v["variant"] + (" (PyPI)" if v["pypi_default"] else "")
        table.add_row(name, v["cuda"] or "-", v["cudnn"] or "-", v["nccl"] or "-", v["driver_floor"] or "-",
                      ";".join(v["arch_list"]) or "-", v["source"])
    out.print(table)


def _print_cuda(record: dict[str, Any]) -> None:
    out = console()
    out.print(f"CUDA {record['cuda']}: driver ≥ {record['driver_floor'] or 'unknown'} "
              f"(minor-version compatibility ≥ {record['compat_floor'] or 'unknown'})")
    images = Table(title="nvidia/cuda tags", title_justify="left")
    for column in ("CUDA", "Ubuntu", "tags"):
        images.add_column(column, overflow="fold")
    for line in record["images"]:
        images.add_row(line["cuda"], " ".join(line["ubuntu"]), "\n".join(line["tags"]))
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


PRINTERS = {"torch": _print_torch, "cuda": _print_cuda, "python": _print_python, "driver": _print_driver}
