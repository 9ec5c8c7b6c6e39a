"""`envkit verify REF [--policy P]`: exit 0 only when a passing verdict for exactly REF's digest exists."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.text import Text

from envkit.commands._registry import add_registry_arguments, registry_settings
from envkit.policy import load_policy
from envkit.registry import get_registry, parse_reference
from envkit.release import policy_digest
from envkit.ui import console
from envkit.verify import verify


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "verify",
        help="check that an image digest carries a passing envkit verdict",
        description="Resolve REF (HOST/REPO:TAG or HOST/REPO@sha256:...) to a digest and look for the "
        "verdict `envkit promote --from/--to` attached to it (OCI referrers). Exit 0 when a passing "
        "verdict for exactly that digest exists, 1 when none does, 2 bad input, 3 the registry failed.",
    )
    parser.add_argument("ref", metavar="REF", help="HOST[:PORT]/REPOSITORY:TAG or ...@sha256:<digest>")
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="P",
        help="count only verdicts made under this policy file (same bytes)",
    )
    add_registry_arguments(parser, ca_alias=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = parse_reference(args.ref)
    wanted = policy_digest(load_policy(args.policy)) if args.policy else None
    registry = get_registry(ref.host, registry_settings(args))
    result = verify(registry, ref, wanted)
    out = console()
    for reason in result.refused:
        out.print(Text(f"not counted: {reason}", style="yellow"))
    target = f"{ref.name}@{result.digest}"
    if result.passed:
        document = result.passing[0]
        out.print(
            Text(
                f"verified: {target}: passed {document.get('policy')} "
                f"(cell {document.get('cell')}, {document.get('created')})",
                style="green",
            )
        )
        return 0
    out.print(Text(f"not verified: no passing envkit verdict for {target}", style="red"))
    return 1
