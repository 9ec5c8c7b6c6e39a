"""Terminal output helpers: one place that decides how envkit talks to a terminal."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from envkit.errors import visible


def console(*, stderr: bool = False) -> Console:
    """A rich Console for envkit's output; plain (no colour) when NO_COLOR or CI is set.

    Lines of text are never hard-wrapped (`soft_wrap`): messages quote paths, image references and
    errors that people and scripts copy or grep, and a line break inside one breaks both. Only tables
    are laid out to a width: the terminal's, or 160 columns off a terminal (CI logs, pipes), where
    rich would otherwise assume 80.
    """
    force_plain = os.environ.get("NO_COLOR") is not None or os.environ.get("CI") == "true"
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, no_color=force_plain, highlight=False, soft_wrap=True, width=width)


def warn(message: str) -> None:
    """One `envkit: warning:` line on stderr (unwrapped, control characters shown escaped)."""
    print(f"envkit: warning: {visible(message)}", file=sys.stderr)
