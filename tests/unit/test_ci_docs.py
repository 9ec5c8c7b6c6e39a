"""The CI examples in docs/ci use envkit's real commands and flags (argparse accepts every line)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from envkit.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"
COMMAND = re.compile(
    r"envkit (plan|render|build|validate|gate|report|diff|promote|verify|lock|compat|doctor|gc)\b[^\n|&;)]*"
)


def commands(path: Path) -> list[str]:
    lines = [
        line.split(" #", 1)[0] for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\$\{\{[^}]*\}\}|\$[A-Za-z_]+", "X", "\n".join(lines))
    return [match.group(0).rstrip(" `") for match in COMMAND.finditer(text)]


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.yml")), ids=lambda p: p.name)
def test_every_envkit_command_in_the_ci_examples_parses(path: Path) -> None:
    found = commands(path)
    assert len(found) >= 5
    for line in found:
        argv = shlex.split(line)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:  # pragma: no cover - argparse exits only for --help/--version
            raise
        except Exception as error:
            pytest.fail(f"{path.name}: `{line}` does not parse: {error}")
