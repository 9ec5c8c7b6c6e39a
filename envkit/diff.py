"""Compare two reports side by side: what changed on the host (first: "why did it get slower" starts
there), in the image and the run, every metric, every status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from envkit.report import Report, metric_direction

DEFAULT_TOLERANCE = 0.05


HOST, IMAGE = "host", "image"


@dataclass(frozen=True, kw_only=True)
class FieldChange:
    """A host fact, version or label that differs between A and B (None: absent on that side); `group`
    is "host" (what moves the numbers) or "image" (the image and the run)."""

    name: str
    a: str | None
    b: str | None
    group: str = IMAGE


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

    @property
    def host_changes(self) -> tuple[FieldChange, ...]:
        """Changed host facts: hardware, load, limits, clocks, driver."""
        return tuple(change for change in self.fields if change.group == HOST)

    @property
    def image_changes(self) -> tuple[FieldChange, ...]:
        """Changed image facts, versions, labels and run settings."""
        return tuple(change for change in self.fields if change.group == IMAGE)


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


def _host_facts(report: Report) -> dict[str, str]:
    host = report.host
    facts = {
        "host": host.hostname,
        "hardware class": host.hardware_class() or "not recorded",
        "cpu model": host.cpu_model or "",
        "cpus available": _text(host.cpus_available),
        "cpu count": _text(host.cpu_count),
        "cgroup cpu quota": _text(host.cgroup_cpu_quota) or ("none" if host.cpu_model else ""),
        "container cpu limit": _text(report.runner.cpus if report.runner else None) or "none",
        "load before (1/5/15 min)": _load(host.loadavg_before),
        "load after (1/5/15 min)": _load(host.loadavg_after),
        "gpus": ", ".join(gpu.name for gpu in host.gpus) or "none",
        "driver": host.driver or "",
        "cuda driver": host.cuda_driver or "",
    }
    for gpu in host.gpus:
        facts[f"gpu{gpu.index} clocks sm/mem MHz"] = (
            f"{_text(gpu.sm_clock_mhz)}/{_text(gpu.mem_clock_mhz)}".strip("/")
        )
        facts[f"gpu{gpu.index} power limit W"] = _text(gpu.power_limit_w)
    for check in report.find("throughput.generate"):
        if check.details.get("noisy") is True:
            reason = check.details.get("noise_reason")
            facts[f"{check.name} noisy"] = str(reason) if isinstance(reason, str) and reason else "yes"
        seen = check.details.get("environment")
        if isinstance(seen, dict):  # what the container itself observed: the image's claim, shown as such
            for key in ("cpus_available", "cgroup_cpu_quota"):
                value = seen.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    facts[f"{check.name} container saw {key}"] = f"{value:g}"
    return {name: value for name, value in facts.items() if value}


def _text(value: float | int | None) -> str:
    return "" if value is None else f"{value:g}"


def _load(values: tuple[float, ...] | None) -> str:
    return " ".join(f"{value:g}" for value in values) if values else ""


def _facts(report: Report) -> dict[str, str]:
    facts = {
        "image": report.label,
        "image id": (report.image.id or "") if report.image else "",
        "profile": report.profile,
        "mode": report.mode,
        "envkit": report.envkit_version,
    }
    for key, value in sorted((report.image.labels if report.image else {}).items()):
        facts[f"label {key}"] = value
    for check in report.find("throughput.generate"):
        checksum = check.details.get("checksum")
        if isinstance(checksum, str):
            facts[f"{check.name} checksum"] = checksum
    return facts


def _field_changes(a: Report, b: Report) -> list[FieldChange]:
    changes = []
    for group, facts in ((HOST, _host_facts), (IMAGE, _facts)):
        fa, fb = facts(a), facts(b)
        names = list(dict.fromkeys([*fa, *fb]))
        changes += [
            FieldChange(name=name, a=fa.get(name), b=fb.get(name), group=group)
            for name in names
            if fa.get(name) != fb.get(name)
        ]
    return changes


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
        "host": [{"name": f.name, "a": f.a, "b": f.b} for f in diff.host_changes],
        "changed": [{"name": f.name, "a": f.a, "b": f.b} for f in diff.image_changes],
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
    """Host changes first, then image changes, metrics with B/A ratio and markers, changed statuses."""
    console.print(Text(f"A: {diff.a.label} ({diff.a.source})\nB: {diff.b.label} ({diff.b.source})"))
    host = _changes_table("host (what moves the numbers)", diff.host_changes)
    console.print(host if diff.host_changes else Text("no host changes"))
    image = _changes_table("image and run", diff.image_changes)
    console.print(image if diff.image_changes else Text("no version, label or run changes"))
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


def _changes_table(title: str, changes: tuple[FieldChange, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("what", "A", "B"):
        table.add_column(column)
    for change in changes:
        table.add_row(
            Text(change.name),
            Text(change.a if change.a is not None else "-"),
            Text(change.b if change.b is not None else "-"),
        )
    return table


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
