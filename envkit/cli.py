"""The `envkit` command: wires the stages together; every EnvkitError is caught once, here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from envkit import __version__
from envkit.errors import EnvkitError, UsageError

# Each module exposes `register(subparsers)`, which adds its sub-command and sets `func=run`,
# where `run(args) -> int` returns the exit code.
COMMAND_MODULES = (
    "envkit.commands.plan",
    "envkit.commands.render",
    "envkit.commands.compat",
    "envkit.commands.gate",
    "envkit.commands.report",
    "envkit.commands.diff",
    "envkit.commands.build",
    "envkit.commands.lock",
    "envkit.commands.validate",
    "envkit.commands.promote",
    "envkit.commands.verify",
    "envkit.commands.gc",
    "envkit.commands.doctor",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"run '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = _Parser(prog="envkit", description="Provision and prove GPU software environments.")
    parser.add_argument("--version", action="version", version=f"envkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code (0 ok, 1 check failed, 2 usage/config, 3 environment)."""
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 2
        return int(args.func(args))
    except EnvkitError as error:
        print(f"envkit: error: {error.render()}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("envkit: interrupted", file=sys.stderr)
        return 130
