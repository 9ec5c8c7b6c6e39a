"""What a check returns, and how outcomes combine into report records."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

PASS = "PASS"
WARN = "WARN"
FAIL = "FAIL"
SKIP = "SKIP"
ERROR = "ERROR"
NA = "N/A"  # the check does not apply to this image (GPU checks on a CPU image): no effect on a verdict

# The one severity order of envkit, least to most severe; the probe, the report, the gate and every view
# use it. SKIP ("could have run but did not") ranks above PASS: a skipped check proved nothing.
SEVERITY_ORDER = (NA, PASS, SKIP, WARN, FAIL, ERROR)
STATUSES = SEVERITY_ORDER
_SEVERITY = {status: rank for rank, status in enumerate(SEVERITY_ORDER)}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one check, before the runner adds its id and duration."""

    status: str
    summary: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    hint: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON-ready dict (the child-to-parent wire format)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """Rebuild an outcome from `to_json` output; raises ValueError/TypeError/KeyError on bad input."""
        if not isinstance(data, dict):
            raise TypeError("outcome must be a JSON object")
        metrics = data.get("metrics") or {}
        details = data.get("details") or {}
        if not isinstance(metrics, dict) or not isinstance(details, dict):
            raise TypeError("metrics and details must be objects")
        device = data.get("device")
        return cls(
            status=str(data["status"]),
            summary=str(data["summary"]),
            metrics={str(k): v for k, v in metrics.items() if _is_number(v)},
            hint=None if data.get("hint") is None else str(data["hint"]),
            details=details,
            device=device if isinstance(device, int) else None,
        )


def _is_number(value: Any) -> bool:
    # Non-finite floats are dropped: strict JSON readers reject NaN and Infinity.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def severity(status: str) -> int:
    """The rank of `status` in SEVERITY_ORDER (0 for N/A, the least severe); KeyError when unknown."""
    return _SEVERITY[status]


def worst(statuses: Iterable[str]) -> str:
    """The most severe status among `statuses` (PASS for none)."""
    return max(statuses, key=severity, default=PASS)


def to_record(check_id: str, outcome: Outcome, duration_s: float) -> dict[str, Any]:
    """One entry of the report's "checks" list (envkit.report/1 shape)."""
    return {
        "id": check_id,
        "status": outcome.status,
        "summary": outcome.summary,
        "metrics": dict(outcome.metrics),
        "duration_s": round(duration_s, 3),
        "hint": outcome.hint,
        "device": outcome.device,
        "details": _finite(dict(outcome.details)),
    }


def _finite(value: Any) -> Any:
    # Strict JSON has no NaN/Infinity: they become null wherever they hide in details.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
