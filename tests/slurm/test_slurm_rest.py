"""The slurmrestd client against a real slurmrestd (v0.0.38, rest_auth/local on a unix socket).

slurmrestd refuses to run as root, so it runs as `nobody` here and so do the jobs it submits: these
tests check the REST path itself (submission with GRES, polling, cancellation, refusal) with small
shell jobs; the validation inside a job is the same batch script the sbatch tests run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_support import eventually

from envkit.runners import RunnerConfig, SubmitRefused, Target
from envkit.runners.slurm import BatchJob, batch_options
from envkit.runners.slurm_rest import RestClient


@pytest.fixture(scope="module")
def rest(slurm: str) -> Iterator[str]:
    """unix://<socket> of a slurmrestd started for this module, stopped by its pid afterwards."""
    binary = shutil.which("slurmrestd")
    if binary is None or os.geteuid() != 0:
        reason = "slurmrestd needs to be installed (scripts/ensure-slurm.sh) and started by root as nobody"
        if os.environ.get("ENVKIT_REQUIRE_SLURM") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="envkit-slurmrestd-"))
    folder.chmod(0o777)
    socket = folder / "rest.sock"
    command = [binary, "-s", "openapi/v0.0.38", "-a", "rest_auth/local", f"unix:{socket}"]
    process = subprocess.Popen(
        command,
        user="nobody",
        group="nogroup",
        extra_groups=[],
        env={"SLURM_CONF": slurm},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if not eventually(socket.exists, 20):
            process.kill()
            pytest.fail(f"slurmrestd did not start: {process.communicate()[1].decode()[-2000:]}")
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A job folder the jobs' user (nobody) can write."""
    path = Path(tempfile.mkdtemp(prefix="envkit-restjob-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def job(folder: Path, script: str, gpu_type: str = "h100") -> BatchJob:
    options = batch_options(
        Target(image="x/y:1", gpu_type=gpu_type),
        RunnerConfig(runner="slurm", time_limit="5", constraint="{gpu_type}"),
        folder,
    )
    return BatchJob(options=options, script=script)


def scontrol(job_id: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout


def test_submit_with_gres_then_poll_to_completion(rest: str, folder: Path) -> None:
    client = RestClient(rest)
    job_id = client.submit(
        job(folder, f"#!/bin/bash\nprintf '%s\\n' \"$SLURM_JOB_ID\" > {folder}/ran\n"), folder
    )
    assert "TresPerNode=gres:gpu:h100:1" in scontrol(job_id)
    assert "Features=h100" in scontrol(job_id)
    assert eventually(lambda: client.states([job_id])[job_id].finished)
    state = client.states([job_id])[job_id]
    assert (state.state, state.node, state.exit_code) == ("COMPLETED", "localhost", 0)
    assert (folder / "ran").read_text().strip() == job_id
    assert (folder / "job.log").exists(), "standard_output reached the job"


def test_cancel_through_rest(rest: str, folder: Path) -> None:
    client = RestClient(rest)
    job_id = client.submit(job(folder, "#!/bin/bash\nsleep 300\n"), folder)
    assert client.cancel([job_id]) == [job_id]
    assert eventually(lambda: client.states([job_id])[job_id].state == "CANCELLED")


def test_a_gres_the_cluster_lacks_is_refused(rest: str, folder: Path) -> None:
    with pytest.raises(SubmitRefused, match="slurmrestd:"):
        RestClient(rest).submit(job(folder, "#!/bin/bash\ntrue\n", gpu_type="b200"), folder)


def test_an_unknown_job_is_gone(rest: str) -> None:
    state = RestClient(rest).states(["999999"])["999999"]
    assert state.state == "GONE"


def test_ping_answers_up(rest: str) -> None:
    RestClient(rest).check()  # raises EnvironmentFault unless slurmctld is UP behind slurmrestd
