"""GitHub Actions output: workflow-command annotations and the step summary."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envkit.gate import GateResult
from envkit.views.markdown import truncate_markdown

GITHUB_SUMMARY_LIMIT = 1024 * 1024 - 4096  # GitHub refuses step summaries over 1 MiB


def github_annotations(result: GateResult) -> list[str]:
    """`::error title=...::message` lines for every failed finding (workflow-command escaped)."""
    lines = []
    for verdict in result.verdicts:
        for finding in verdict.failures:
            title = f"envkit gate: {verdict.report.label} {finding.name}"
            message = finding.message + (f"\nhint: {finding.hint}" if finding.hint else "")
            lines.append(f"::error title={_gh_property(title)}::{_gh_data(message)}")
    return lines


@contextmanager
def commands_fenced() -> Iterator[None]:
    """Inside GitHub Actions, switch workflow commands off for what the block prints.

    Whatever a report says reaches the log inside `::stop-commands::<token>` ... `::<token>::`, the
    token random per block, so no `::add-mask::`, `::error::` or other command in untrusted text is
    obeyed, even should it begin a line. Outside GitHub Actions it prints nothing extra.
    """
    if os.environ.get("GITHUB_ACTIONS") != "true":
        yield
        return
    token = secrets.token_hex(16)
    sys.stdout.write(f"::stop-commands::{token}\n")
    sys.stdout.flush()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout.write(f"::{token}::\n")
        sys.stdout.flush()


def append_github_summary(path: Path, markdown: str) -> None:
    """Append the Markdown to $GITHUB_STEP_SUMMARY, cut to stay under GitHub's 1 MiB limit."""
    existing = path.stat().st_size if path.exists() else 0
    room = max(4096, GITHUB_SUMMARY_LIMIT - existing)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(truncate_markdown(markdown, room))


def _gh_data(text: str) -> str:
    # GitHub's own escaping for workflow-command data (actions/toolkit, command.ts escapeData).
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    # ... and for property values (escapeProperty): also ":" and ",".
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")
