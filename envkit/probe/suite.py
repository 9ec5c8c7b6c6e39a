"""Run the checks one after another within one time budget, keeping a complete report on disk.

The report file is rewritten (temp file + rename) before and after every check, so at every moment it
is a complete JSON document: checks not yet finished appear as ERROR records saying so. A SIGTERM or
SIGINT to the probe kills the running check's process group, marks it and every check after it
ERROR "interrupted", writes the report and ends the run.

Time limits: each check has its own limit per profile (registry.py, times --timeout-scale). With
`--budget-s B` the whole run fits in B seconds: a check gets at most what is left of B after keeping
`RESERVE_PER_CHECK_S` (or its own limit, when smaller) for each later check and `FINISH_RESERVE_S` for
writing the report; a check that would get less than `MIN_CHECK_S` is not started. Give B a little
under any outer timeout so the probe's own limits fire first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any, Sequence

from . import PROBE_VERSION
from .context import Context, ProbeUsageError
from .host import collect_host
from .isolate import run_isolated
from .outcome import ERROR, Outcome, to_record
from .registry import CheckSpec
from .supervise import Supervisor

RESERVE_PER_CHECK_S = 15.0
FINISH_RESERVE_S = 3.0
MIN_CHECK_S = 2.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-check limits (`scale` times the spec's) and the optional budget for the whole run."""

    profile: str
    scale: float = 1.0
    budget_s: float | None = None

    def nominal(self, spec: CheckSpec) -> float:
        return spec.timeout_s(self.profile, self.scale)

    def for_check(self, index: int, specs: Sequence[CheckSpec], elapsed_s: float) -> float:
        """The limit for specs[index] when `elapsed_s` of the budget is spent (may be <= 0)."""
        nominal = self.nominal(specs[index])
        if self.budget_s is None:
            return nominal
        later = sum(min(self.nominal(spec), RESERVE_PER_CHECK_S) for spec in specs[index + 1 :])
        return min(nominal, self.budget_s - elapsed_s - later - FINISH_RESERVE_S)


class ReportFile:
    """Where the report goes: rewritten atomically at `path`, or printed once to stdout (no path)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def update(self, report: dict[str, Any]) -> None:
        """Replace the file's content with `report` (no-op for stdout: that is written once, at the end)."""
        if self.path is not None:
            self._replace(report)

    def final(self, report: dict[str, Any]) -> None:
        """Write the finished report."""
        if self.path is None:
            sys.stdout.write(_dumps(report))
            sys.stdout.flush()
        else:
            self._replace(report)

    def _replace(self, report: dict[str, Any]) -> None:
        assert self.path is not None
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, temp = tempfile.mkstemp(prefix=".probe-", suffix=".json.tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(_dumps(report))
                os.replace(temp, self.path)
            except BaseException:
                os.unlink(temp)
                raise
        except OSError as error:
            raise ProbeUsageError(f"cannot write {self.path}: {error}") from error


def _dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"


def pending_record(spec: CheckSpec, *, running_since: float | None = None) -> dict[str, Any]:
    """The placeholder a check has in the report until it finishes: an ERROR that says why, should the
    probe be killed outright (SIGKILL) before it can write anything else."""
    if running_since is None:
        summary = "not run: the probe stopped before reaching this check"
    else:
        summary = "not finished: the probe stopped while this check was running"
    outcome = Outcome(
        status=ERROR,
        summary=summary,
        hint="the probe was killed without warning (SIGKILL, OOM killer, lost machine); rerun with a "
        "smaller --budget-s than the outer time limit",
    )
    return to_record(spec.id, outcome, 0.0)


def not_started_record(spec: CheckSpec, reason: str) -> dict[str, Any]:
    """ERROR for a check the suite did not start (budget spent, or the probe was interrupted)."""
    hint = "give the probe a larger --budget-s, or run this check alone with --only"
    return to_record(spec.id, Outcome(status=ERROR, summary=f"not run: {reason}", hint=hint), 0.0)


def run_suite(
    specs: Sequence[CheckSpec],
    ctx: Context,
    *,
    labels_path: str | None,
    limits: Limits,
    report_file: ReportFile,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run `specs` in order, each in its own child; returns the final report (also written).

    The report: {"probe_version", "profile", "host", "run", "checks"}; "run" says whether the run
    completed or was interrupted (and by which signal), and the budget it had."""
    supervisor = Supervisor()
    supervisor.install()
    try:
        return _run(specs, ctx, labels_path, limits, report_file, supervisor, quiet)
    finally:
        supervisor.kill_all()
        supervisor.restore()


def _run(
    specs: Sequence[CheckSpec],
    ctx: Context,
    labels_path: str | None,
    limits: Limits,
    report_file: ReportFile,
    supervisor: Supervisor,
    quiet: bool,
) -> dict[str, Any]:
    started = time.monotonic()
    records = [pending_record(spec) for spec in specs]
    run: dict[str, Any] = {"state": "running", "budget_s": limits.budget_s, "signal": None, "duration_s": 0.0}
    report: dict[str, Any] = {
        "probe_version": PROBE_VERSION,
        "profile": ctx.profile,
        "host": collect_host(),
        "run": run,
        "checks": records,
    }
    report_file.update(report)
    for index, spec in enumerate(specs):
        elapsed = time.monotonic() - started
        if supervisor.stopping:
            records[index] = not_started_record(
                spec, f"the probe was interrupted ({supervisor.stop_name()}) after {elapsed:.0f} s"
            )
            continue
        limit = limits.for_check(index, specs, elapsed)
        if limit < MIN_CHECK_S:
            records[index] = not_started_record(
                spec, f"{elapsed:.0f} s of the {limits.budget_s:.0f} s --budget-s spent, too little left"
            )
        else:
            records[index] = pending_record(spec, running_since=elapsed)
            report_file.update(report)
            records[index] = run_isolated(
                spec, ctx, labels_path=labels_path, timeout_s=limit, supervisor=supervisor
            )
        _progress(records[index], quiet)
        run["duration_s"] = round(time.monotonic() - started, 3)
        report_file.update(report)
    run.update(
        state="interrupted" if supervisor.stopping else "complete",
        signal=supervisor.stop_name() or None,
        duration_s=round(time.monotonic() - started, 3),
    )
    report_file.final(report)
    return report


def _progress(record: dict[str, Any], quiet: bool) -> None:
    if not quiet:
        line = f"probe: {record['id']:<20} {record['status']:<5} {record['duration_s']:7.1f}s"
        print(f"{line}  {record['summary']}", file=sys.stderr, flush=True)


__all__ = ["Limits", "ReportFile", "run_suite"]
