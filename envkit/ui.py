"""Terminal output helpers: one place that decides how envkit talks to a terminal."""

from __future__ import annotations

import os

from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    """A rich Console; plain (no colour, wide) when not on a terminal so logs and tests read cleanly."""
    force_plain = os.environ.get("NO_COLOR") is not None or os.environ.get("CI") == "true"
    probe = Console(stderr=stderr)
    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; logs read better wide.
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, no_color=force_plain, highlight=False, soft_wrap=False, width=width)
