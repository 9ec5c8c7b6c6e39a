"""Compare two reports side by side: what changed in the image and host, every metric, every status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from envkit.report import Report, metric_direction

DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True, kw_only=True)
class FieldChange:
    """A version, label or host fact that differs between A and B (None: absent on that side)."""

    name: str
    a: str | None
    b: str | None


@dataclass(frozen=True, kw_only=True)
class MetricDelta:
    """One metric of one check record on both sides; `ratio` is B/A."""

    check: str
    metric: str
    a: float | None
    b: float | None
    direction: str | None

    @property
    def ratio(self) -> float | None:
        """B/A, or None when a side is missing or A is zero."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a

    def change(self, tolerance: float) -> str:
        """ "regression", "improvement" or "" (within tolerance, unknown direction or missing)."""
        ratio = self.ratio
        if ratio is None or self.direction is None:
            return ""
        better = ratio - 1 if self.direction == "higher" else 1 - ratio
        if better < -tolerance:
            return "regression"
        return "improvement" if better > tolerance else ""


@dataclass(frozen=True, kw_only=True)
class StatusChange:
    """A check record whose status differs (None: the record is absent on that side)."""

    check: str
    a: str | None
    b: str | None


@dataclass(frozen=True, kw_only=True)
class ReportDiff:
    """Everything that differs between report A and report B."""

    a: Report
    b: Report
    fields: tuple[FieldChange, ...]
    metrics: tuple[MetricDelta, ...]
    statuses: tuple[StatusChange, ...]
    tolerance: float

    def regressions(self) -> tuple[MetricDelta, ...]:
        """Metrics that got worse by more than the tolerance."""
        return tuple(delta for delta in self.metrics if delta.change(self.tolerance) == "regression")


def diff_reports(a: Report, b: Report, *, tolerance: float = DEFAULT_TOLERANCE) -> ReportDiff:
    """The differences between two reports; metrics worse by more than `tolerance` count as regressions."""
    return ReportDiff(
        a=a,
        b=b,
        fields=tuple(_field_changes(a, b)),
        metrics=tuple(_metric_deltas(a, b)),
        statuses=tuple(_status_changes(a, b)),
        tolerance=tolerance,
    )


def _facts(report: Report) -> dict[str, str]:
    facts = {
        "image": report.label,
        "image id": (report.image.id or "") if report.image else "",
        "profile": report.profile,
        "mode": report.mode,
        "envkit": report.envkit_version,
        "host": report.host.hostname,
        "driver": report.host.driver or "",
        "cuda driver": report.host.cuda_driver or "",
        "gpus": ", ".join(gpu.name for gpu in report.host.gpus) or "none",
    }
    for key, value in sorted((report.image.labels if report.image else {}).items()):
        facts[f"label {key}"] = value
    for check in report.find("throughput.generate"):
        checksum = check.details.get("checksum")
        if isinstance(checksum, str):
            facts[f"{check.name} checksum"] = checksum
    return facts


def _field_changes(a: Report, b: Report) -> list[FieldChange]:
    fa, fb = _facts(a), _facts(b)
    names = list(dict.fromkeys([*fa, *fb]))
    return [
        FieldChange(name=name, a=fa.get(name), b=fb.get(name))
        for name in names
        if fa.get(name) != fb.get(name)
    ]


def _metric_deltas(a: Report, b: Report) -> list[MetricDelta]:
    ma = {(check.name, metric): value for check in a.checks for metric, value in check.metrics.items()}
    mb = {(check.name, metric): value for check in b.checks for metric, value in check.metrics.items()}
    keys = list(dict.fromkeys([*ma, *mb]))
    return [
        MetricDelta(
            check=check,
            metric=metric,
            a=ma.get((check, metric)),
            b=mb.get((check, metric)),
            direction=metric_direction(metric),
        )
        for check, metric in keys
    ]


def _status_changes(a: Report, b: Report) -> list[StatusChange]:
    sa = {check.name: check.status for check in a.checks}
    sb = {check.name: check.status for check in b.checks}
    names = list(dict.fromkeys([*sa, *sb]))
    return [
        StatusChange(check=name, a=sa.get(name), b=sb.get(name))
        for name in names
        if sa.get(name) != sb.get(name)
    ]


def diff_json(diff: ReportDiff) -> dict[str, Any]:
    """The diff as JSON values (for `envkit diff --json`)."""
    return {
        "a": {"source": diff.a.source, "label": diff.a.label},
        "b": {"source": diff.b.source, "label": diff.b.label},
        "tolerance": diff.tolerance,
        "changed": [{"name": f.name, "a": f.a, "b": f.b} for f in diff.fields],
        "metrics": [
            {
                "check": m.check,
                "metric": m.metric,
                "a": m.a,
                "b": m.b,
                "ratio": m.ratio,
                "direction": m.direction,
                "change": m.change(diff.tolerance) or None,
            }
            for m in diff.metrics
        ],
        "status_changes": [{"check": s.check, "a": s.a, "b": s.b} for s in diff.statuses],
        "regressions": len(diff.regressions()),
    }


def print_diff(console: Console, diff: ReportDiff) -> None:
    """Three tables: changed facts, metrics with B/A ratio and markers, changed statuses."""
    console.print(Text(f"A: {diff.a.label} ({diff.a.source})\nB: {diff.b.label} ({diff.b.source})"))
    facts = Table(title="changed", title_justify="left")
    for column in ("what", "A", "B"):
        facts.add_column(column)
    for change in diff.fields:
        facts.add_row(
            Text(change.name),
            Text(change.a if change.a is not None else "-"),
            Text(change.b if change.b is not None else "-"),
        )
    console.print(facts if diff.fields else Text("no version, label or host changes"))
    console.print(_metrics_table(diff))
    statuses = Table(title="status changes", title_justify="left")
    for column in ("check", "A", "B"):
        statuses.add_column(column)
    for status in diff.statuses:
        statuses.add_row(Text(status.check), status.a or "absent", status.b or "absent")
    console.print(statuses if diff.statuses else Text("no status changes"))
    count = len(diff.regressions())
    console.print(
        Text(f"{count} regression(s) beyond {diff.tolerance:.0%}", style="red" if count else "green")
    )


def _metrics_table(diff: ReportDiff) -> Table:
    table = Table(title="metrics (ratio = B/A)", title_justify="left")
    for column, justify in (
        ("check", "left"),
        ("metric", "left"),
        ("A", "right"),
        ("B", "right"),
        ("B/A", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    markers = {
        "regression": Text("▼ regression", style="red"),
        "improvement": Text("▲ better", style="green"),
    }
    for delta in diff.metrics:
        ratio = delta.ratio
        table.add_row(
            Text(delta.check),
            Text(delta.metric),
            _num(delta.a),
            _num(delta.b),
            "-" if ratio is None else f"{ratio:.3f}",
            markers.get(delta.change(diff.tolerance), ""),
        )
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
