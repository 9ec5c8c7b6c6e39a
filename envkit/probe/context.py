"""What every check gets to know: profile, preset, and the labels the image promises."""

from __future__ import annotations

import dataclasses
import json

PROFILES = ("quick", "full")
PRESETS = ("tiny", "1b", "8b")


class ProbeUsageError(Exception):
    """Bad command line or unreadable input file; the probe exits 2 with this message."""


@dataclasses.dataclass(frozen=True)
class Context:
    """Inputs shared by all checks. `labels` is empty when the runner passed none."""

    profile: str = "quick"
    preset: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    # The running check's own time limit in seconds (None outside a child): long checks plan by it.
    limit_s: float | None = None

    def label(self, key: str) -> str | None:
        """The value of io.envkit.<key> with whitespace stripped, or None when absent."""
        value = self.labels.get("io.envkit." + key)
        return None if value is None else value.strip()

    def to_argv(self) -> list:
        """Command-line options that rebuild this context in a child (labels travel as a file)."""
        argv = ["--profile", self.profile]
        if self.preset:
            argv += ["--preset", self.preset]
        return argv


def load_labels(path: str | None) -> dict[str, str]:
    """The io.envkit.* (and other) labels from a JSON object file; {} when `path` is None."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise ProbeUsageError(f"cannot read labels file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ProbeUsageError(f"labels file {path} must hold a JSON object of label -> value")
    return {str(key): "" if value is None else str(value) for key, value in data.items()}
