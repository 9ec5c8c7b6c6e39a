"""Helpers every view shares: names for reports, status counts, number formatting, writing files."""

from __future__ import annotations

from pathlib import Path

from envkit.errors import UsageError
from envkit.report import Check, Report

STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "ERROR": "bold red", "SKIP": "dim"}
HEADLINE_METRICS = (("decode_tokens_per_s", "tok/s"), ("itl_p99_ms", "p99 ms"), ("kv_speedup", "KV x"))


def display_name(report: Report) -> str:
    """`<image or local:host> @ <GPU> (<profile>)`: unique enough to tell reports apart in a view."""
    return f"{report.label} @ {report.gpu_model} ({report.profile})"


def short_name(report: Report) -> str:
    """A chart label: the image tag (or last path part) and the GPU without its vendor prefix."""
    last = report.label.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else last
    name = f"{tag} · {report.gpu_model.removeprefix('NVIDIA ')}"
    return name if len(name) <= 56 else name[:30] + "…" + name[-25:]


def throughput(report: Report) -> Check | None:
    """The first throughput.generate record that is not skipped, if any."""
    return next((check for check in report.find("throughput.generate") if check.status != "SKIP"), None)


def status_counts(report: Report) -> dict[str, int]:
    """How many check records have each status."""
    counts = dict.fromkeys(("PASS", "WARN", "FAIL", "SKIP", "ERROR"), 0)
    for check in report.checks:
        counts[check.status] += 1
    return counts


def fmt(value: float | None) -> str:
    """Numbers for people: 3 significant figures for small values, no exponent for large ones."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def headline_metric(report: Report, name: str) -> float | None:
    check = throughput(report)
    return check.metrics.get(name) if check else None


def write_output(path: Path, text: str) -> None:
    """Write a view to `path`; a path that cannot be written is a UsageError naming it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", hint="check the output path") from None
