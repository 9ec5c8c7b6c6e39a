"""Reports a runner returns: the probe's own, marked with where the scheduler ran it, or an ERROR report.

Every report of a scheduled job carries a `runner.scheduler` check whose `details.environment` says
which scheduler, job id, node, requested GPU type and GPU model it ran on; a job that never produced a
report (refused, timed out, preempted, node died, image missing) becomes an ERROR report for its target
with the scheduler's reason, so a gate sees a failure, never a gap.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from envkit import __version__
from envkit.report import SCHEMA, Check, Report, clean_text, report_from_dict
from envkit.runners import FAILED, Job, JobState, ProbeSettings, Target

CHECK_ID = "runner.scheduler"
TIMED_OUT_STATES = frozenset({"TIMEOUT", "DEADLINE", "DeadlineExceeded"})
LOG_TAIL_LINES = 20


def environment(
    scheduler: str, job: Job | None, state: JobState | None, gpu_model: str | None
) -> dict[str, Any]:
    """The `details.environment` block: scheduler, job id, node, GPU type asked for, GPU model found."""
    target = job.target if job else None
    return {
        "scheduler": scheduler,
        "job_id": job.id if job else None,
        "node": state.node if state else None,
        "gpu_type": target.gpu_type if target else None,
        "gpu_model": gpu_model,
        "state": state.state if state else None,
        "reason": state.reason if state else None,
    }


def annotate(report: Report, scheduler: str, job: Job, state: JobState, gpu_model: str | None) -> Report:
    """`report` (the probe's) with a PASS `runner.scheduler` check naming the job, node and GPU."""
    model = report.host.gpus[0].name if report.host.gpus else gpu_model
    check = Check(
        id=CHECK_ID,
        status="PASS",
        summary=clean_text(f"{scheduler} job {job.id} ran on {state.node or 'an unnamed node'}"),
        details={"environment": environment(scheduler, job, state, model)},
    )
    kept = tuple(c for c in report.checks if c.id != CHECK_ID)
    host = report.host
    if not host.hostname and state.node:
        # A result made in a container has no host block of its own: the scheduler names the node.
        host = replace(host, hostname=clean_text(state.node))
    return replace(report, checks=(*kept, check), host=host)


def error_report(
    target: Target,
    settings: ProbeSettings,
    *,
    scheduler: str,
    summary: str,
    hint: str | None,
    job: Job | None = None,
    state: JobState | None = None,
    logs: str = "",
    duration_s: float = 0.0,
) -> Report:
    """An ERROR report for `target`: the job did not produce a probe result, and `summary` says why."""
    tail = clean_text("\n".join(logs.splitlines()[-LOG_TAIL_LINES:]), multiline=True)
    state_word = state.state if state else None
    check = {
        "id": CHECK_ID,
        "status": "ERROR",
        "summary": clean_text(summary),
        "hint": clean_text(hint) if hint else None,
        "metrics": {},
        "duration_s": round(duration_s, 3),
        "device": None,
        "details": {"environment": environment(scheduler, job, state, None), "log_tail": tail},
    }
    data = {
        "schema": SCHEMA,
        "envkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "profile": settings.profile,
        "mode": "container",
        "image": {"ref": target.image, "id": None, "labels": {}},
        "host": {
            "hostname": clean_text(state.node or "") if state else "",
            "platform": "",
            "python": "",
            "driver": None,
            "cuda_driver": None,
            "gpus": [],
        },
        "checks": [check],
        "runner": {
            "exit_code": state.exit_code if state else None,
            "oom_killed": state_word == "OUT_OF_MEMORY",
            "timed_out": state_word in TIMED_OUT_STATES,
            "duration_s": round(duration_s, 3),
        },
    }
    return report_from_dict(data, source=f"{scheduler} job for {target.name}")


def failure_summary(scheduler: str, job: Job, state: JobState, logs: str = "") -> tuple[str, str]:
    """(summary, hint) for a job that ended without a report, in the scheduler's own words (and the
    last `envkit: error:` line of the job's log, when the node's envkit said why)."""
    reason = f" ({state.reason})" if state.reason and state.reason != "None" else ""
    where = f" on {state.node}" if state.node else ""
    summary = f"{scheduler} job {job.id} ended {state.state}{reason}{where} without a report"
    said = [line for line in logs.splitlines() if line.startswith("envkit: error:")]
    if said:
        summary += f": {said[-1].removeprefix('envkit: error:').strip()[:300]}"
    if state.state in TIMED_OUT_STATES:
        return summary, "the job hit its time limit: raise --time, or use --profile quick"
    if state.phase == FAILED:
        return summary, "the scheduler ended the job (preemption, node failure, cancellation); run again"
    return summary, "see details.log_tail: the job's own output"


__all__ = ["CHECK_ID", "annotate", "environment", "error_report", "failure_summary"]
