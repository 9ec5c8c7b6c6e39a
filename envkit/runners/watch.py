"""Drive any runner: submit every target, follow the jobs until each is done, collect one report each.

Never a hang and never a gap: a job the scheduler refuses, one still unfinished at `max_wait_s`, and
one the scheduler ended all become ERROR reports for their target. Ctrl-C cancels every job this run
submitted and says which, before the interrupt goes on to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envkit.errors import EnvkitError
from envkit.report import Report
from envkit.runners import PENDING, Job, JobState, Runner, RunnerConfig, SubmitRefused, Target
from envkit.runners.reports import error_report

# (target, job or None, what to show): called on submission and on every change of a job's state.
Progress = Callable[[Target, Job | None, JobState], None]


class Interrupted(EnvkitError):
    """Ctrl-C: the submitted jobs were cancelled (exit 130, like any interrupted command)."""

    exit_code = 130


@dataclass(frozen=True, kw_only=True)
class Clock:
    """Time and sleep, replaceable in tests so no test waits for real."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def run_jobs(
    runner: Runner,
    targets: Sequence[Target],
    config: RunnerConfig,
    progress: Progress,
    clock: Clock | None = None,
) -> list[Report]:
    """One report per target, in the order of `targets`."""
    clock = clock or Clock()
    reports: dict[Target, Report] = {}
    jobs: list[Job] = []
    try:
        started = clock.now()
        for target in targets:
            job = _submit(runner, target, config, progress, reports)
            if job is not None:
                jobs.append(job)
        _follow(runner, jobs, config, progress, reports, clock, started)
    except KeyboardInterrupt:
        cancelled = _cancel_open(runner, jobs, reports)
        ids = ", ".join(cancelled) or "none"
        raise Interrupted(f"interrupted: cancelled {len(cancelled)} submitted job(s): {ids}") from None
    except EnvkitError:
        # The scheduler stopped answering mid-run: still try not to leave jobs behind.
        _cancel_open(runner, jobs, reports, quietly=True)
        raise
    finally:
        runner.close()
    return [reports[target] for target in targets]


def _cancel_open(
    runner: Runner, jobs: list[Job], reports: dict[Target, Report], *, quietly: bool = False
) -> list[str]:
    open_jobs = [job for job in jobs if job.target not in reports]
    if not open_jobs:
        return []
    try:
        return runner.cancel(open_jobs)
    except EnvkitError:
        if not quietly:
            raise
        return []


def _submit(
    runner: Runner, target: Target, config: RunnerConfig, progress: Progress, reports: dict[Target, Report]
) -> Job | None:
    try:
        job = runner.submit(target)
    except SubmitRefused as refused:
        state = JobState(phase="FAILED", state="REFUSED", reason=refused.message)
        progress(target, None, state)
        reports[target] = error_report(
            target,
            config.probe,
            scheduler=runner.name,
            summary=f"{runner.name} refused the job: {refused.message}",
            hint=refused.hint or "check --gpu-type, --partition, --account and --constraint",
            state=state,
        )
        return None
    progress(target, job, JobState(phase=PENDING, state="SUBMITTED"))
    return job


def _follow(
    runner: Runner,
    jobs: list[Job],
    config: RunnerConfig,
    progress: Progress,
    reports: dict[Target, Report],
    clock: Clock,
    started: float,
) -> None:
    last: dict[str, JobState] = {}
    while open_jobs := [job for job in jobs if job.target not in reports]:
        states = runner.poll(open_jobs)
        for job in open_jobs:
            state = states.get(job.id)
            if state is None:
                continue
            if state != last.get(job.id):
                last[job.id] = state
                progress(job.target, job, state)
            if state.finished:
                reports[job.target] = runner.collect(job, state)
        waited = clock.now() - started
        if config.max_wait_s is not None and waited >= config.max_wait_s:
            _give_up(runner, [job for job in open_jobs if job.target not in reports], config, last, reports)
            return
        clock.sleep(config.poll_s)


def _give_up(
    runner: Runner,
    jobs: list[Job],
    config: RunnerConfig,
    last: dict[str, JobState],
    reports: dict[Target, Report],
) -> None:
    """--max-wait passed: cancel what is still queued or running; each gets an ERROR report."""
    if not jobs:
        return
    runner.cancel(jobs)
    for job in jobs:
        state = last.get(job.id) or JobState(phase=PENDING, state="SUBMITTED")
        why = f" ({state.reason})" if state.reason and state.reason != "None" else ""
        reports[job.target] = error_report(
            job.target,
            config.probe,
            scheduler=runner.name,
            summary=f"{runner.name} job {job.id} was still {state.state}{why} after --max-wait "
            f"{config.max_wait_s:g} s; cancelled",
            hint="raise --max-wait, or pick a partition or GPU type with free nodes",
            job=job,
            state=state,
        )


__all__ = ["Clock", "Interrupted", "Progress", "run_jobs"]
