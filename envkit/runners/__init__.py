"""The runner seam: a scheduler the fleet already runs takes the probe to its GPUs.

A runner submits one job per target (image × GPU type), says where each job stands, cancels what it
submitted, and collects one report per target. This module is the interface and the factory only:
backends (`slurm`, `kubernetes`) import it, never the reverse, and no runner imports a stage above it
(what a job needs of the probe comes in as a `ProbeKit` from the validate stage).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from envkit.errors import EnvironmentFault, UsageError
from envkit.report import Report

RUNNERS = ("slurm", "kubernetes")
CONTAINER_RUNTIMES = ("auto", "pyxis", "apptainer", "podman", "docker")
# Where a job stands, in envkit's words; each backend maps its scheduler's states onto these.
PENDING, RUNNING, DONE, FAILED = "PENDING", "RUNNING", "DONE", "FAILED"
PHASES = (PENDING, RUNNING, DONE, FAILED)
# Paths inside the image: the probe package is mounted read-only at PROBE_DIR, results go to OUT_DIR.
PROBE_DIR = "/tmp/envkit"
OUT_DIR = "/tmp/envkit-out"


@dataclass(frozen=True, kw_only=True)
class Target:
    """One unit of work: an image (tag or digest reference) on one GPU type (None: wherever it lands)."""

    image: str
    gpu_type: str | None = None

    @property
    def name(self) -> str:
        """`acme/pytorch:2.6 @ h100`, as progress lines and messages show it."""
        return f"{self.image} @ {self.gpu_type or 'any GPU'}"


@dataclass(frozen=True, kw_only=True)
class Job:
    """A submitted job: its target, the scheduler's id and the folder its files go to (if any)."""

    target: Target
    id: str
    folder: Path | None = None


@dataclass(frozen=True, kw_only=True)
class JobState:
    """Where a job stands: envkit's phase plus the scheduler's own state word and reason."""

    phase: str  # one of PHASES
    state: str  # the scheduler's word: PENDING, RUNNING, COMPLETED, TIMEOUT, NODE_FAIL, Failed, ...
    reason: str | None = None
    node: str | None = None
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.phase in (DONE, FAILED)


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    """What the job asks of the probe: profile, selected checks, timeout, GPU strictness."""

    profile: str = "quick"
    only: tuple[str, ...] = ()
    timeout_s: float | None = None
    require_gpu: bool = False


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """Everything a runner needs, resolved once from flags and the config file's `runner:` section."""

    runner: str
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    gpus_per_job: int = 1
    partition: str | None = None
    account: str | None = None
    time_limit: str = "01:00:00"  # Slurm's [days-]hours:minutes:seconds; Kubernetes' activeDeadlineSeconds
    constraint: str | None = None  # `{gpu_type}` is replaced by the target's GPU type
    container_runtime: str = "auto"
    slurm_rest: str | None = None
    job_dir: Path = Path(".envkit") / "jobs"
    envkit_command: tuple[str, ...] = ()  # how a node runs envkit (docker runtime); default: this Python
    namespace: str = "default"
    max_wait_s: float | None = None
    poll_s: float = 2.0


class ProbeKit(Protocol):
    """What a job needs of the probe, supplied by the validate stage."""

    def stage(self, folder: Path) -> None:
        """Lay out the probe package in `folder` (to be mounted read-only at PROBE_DIR)."""

    def command(self, result: str) -> tuple[str, ...]:
        """The command that runs the probe inside an image (probe at PROBE_DIR), writing `result`."""

    def write_checks(self, path: Path) -> bool:
        """Write the user's checks as a checks file at `path`, for a node that runs its own `envkit
        validate`; False (nothing written) when there are none."""

    def report(self, target: Target, raw: bytes | None, *, exit_code: int | None, logs: str) -> Report:
        """The report of a probe result made elsewhere (None: the probe wrote none)."""


class SubmitRefused(EnvironmentFault):
    """The scheduler refused one job (bad GRES, unknown partition): that target gets an ERROR report."""


class Runner(abc.ABC):
    """A scheduler backend: submit, poll, cancel, collect."""

    name: str = ""

    @abc.abstractmethod
    def submit(self, target: Target) -> Job:
        """Submit the job for `target`; raises SubmitRefused when the scheduler says no."""

    @abc.abstractmethod
    def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
        """The state of each job, by job id (a job the scheduler no longer knows is FAILED or DONE)."""

    @abc.abstractmethod
    def cancel(self, jobs: Sequence[Job]) -> list[str]:
        """Cancel `jobs`; returns the ids the scheduler accepted the cancellation of."""

    @abc.abstractmethod
    def collect(self, job: Job, state: JobState) -> Report:
        """The report of a finished job: the probe's, or an ERROR report carrying the scheduler's reason."""

    def close(self) -> None:  # noqa: B027 - optional hook: runners without shared objects need nothing
        """Remove what the runner made beside the jobs (a ConfigMap, a staged probe folder)."""


def get_runner(config: RunnerConfig, probe: ProbeKit) -> Runner:
    """The backend named by `config.runner`, imported only when used (its client may be an extra)."""
    if config.runner not in RUNNERS:
        raise UsageError(f"unknown runner {config.runner!r}; use one of {', '.join(RUNNERS)}")
    module = importlib.import_module(f"envkit.runners.{config.runner}")
    runner: Runner = module.make_runner(config, probe)
    return runner


__all__ = [
    "CONTAINER_RUNTIMES",
    "DONE",
    "FAILED",
    "OUT_DIR",
    "PENDING",
    "PHASES",
    "PROBE_DIR",
    "RUNNERS",
    "RUNNING",
    "Job",
    "JobState",
    "ProbeKit",
    "ProbeSettings",
    "Runner",
    "RunnerConfig",
    "SubmitRefused",
    "Target",
    "get_runner",
]
