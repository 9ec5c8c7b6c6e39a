"""Helpers of the slurm tier: which envkit jobs are active, whose containers exist, settling state."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from envkit import labels
from envkit.engine.docker_sdk import DockerSdkEngine

ACTIVE_STATES = "PD,R,CG,S,CF"


def active_envkit_jobs() -> set[str]:
    """Ids of queued or running jobs named envkit-validate."""
    done = subprocess.run(
        ["squeue", "-h", "-t", ACTIVE_STATES, "-n", "envkit-validate", "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return set(done.stdout.split())


def containers_of(engine: DockerSdkEngine, ref: str) -> list[str]:
    """envkit's probe containers for image `ref` (running or not)."""
    return list(engine.containers(f"{labels.IMAGE}={ref}"))


def eventually(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False); for state that settles."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()
