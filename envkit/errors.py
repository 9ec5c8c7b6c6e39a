"""One error hierarchy; each class carries the process exit code (DESIGN.md "Exit codes").

`main()` catches `EnvkitError` once and prints `str(error)`; nothing below the CLI prints tracebacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Line breaks (incl. NEL and U+2028/9), other controls and lone surrogates: shown escaped in messages, so
# text quoted from a document can neither forge a second `envkit: error:` line nor fail to encode.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def visible(text: str) -> str:
    """`text` on one line: control characters, line separators and lone surrogates as escapes."""
    return _INVISIBLE.sub(lambda match: ascii(match.group())[1:-1], text)


@dataclass(frozen=True)
class Where:
    """Where a bad value came from: file, line (1-based) and dotted key path."""

    file: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        text = visible(self.file)
        if self.line is not None:
            text += f":{self.line}"
        if self.key:
            text += f": {visible(self.key)}"
        return text


class EnvkitError(Exception):
    """Base of every error envkit reports to the user."""

    exit_code = 1

    def __init__(self, message: str, *, where: Where | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(EnvkitError):
    """Bad matrix, policy or report file (exit 2); message and hint are kept to one line each."""

    exit_code = 2

    def __init__(self, message: str, *, where: Where | None = None, hint: str | None = None) -> None:
        super().__init__(visible(message), where=where, hint=None if hint is None else visible(hint))


class UsageError(EnvkitError):
    """Bad command-line usage (exit 2)."""

    exit_code = 2


class UnsafeValueError(ConfigError):
    """A value that would reach a Dockerfile, tag, label or path carries unsafe characters (exit 2)."""


class EnvironmentFault(EnvkitError):
    """The environment could not run the work: no engine, engine died, registry refused (exit 3)."""

    exit_code = 3


class EngineUnavailable(EnvironmentFault):
    """The container engine cannot be reached or is too old (exit 3)."""


class RegistryError(EnvironmentFault):
    """A registry refused a push or pull (exit 3)."""
