"""The Slurm runner without a controller: golden batch scripts, state parsing, collecting reports.

A fake SlurmClient (envkit's own interface) stands in for sbatch/squeue; the slurm tier
(tests/slurm) submits the same scripts to a real slurmctld.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from envkit.report import dump_report, load_report
from envkit.runners import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    JobState,
    ProbeSettings,
    RunnerConfig,
    SubmitRefused,
    Target,
)
from envkit.runners.reports import CHECK_ID
from envkit.runners.slurm import (
    BatchJob,
    SlurmClient,
    SlurmRunner,
    enroot_uri,
    render_job,
    state_from_json,
    state_from_scontrol,
)
from envkit.validate import JobProbe, RunSettings

GOLDEN = Path(__file__).parent / "golden" / "runners"
FOLDER = Path("/shared/envkit-jobs/job-1")
IMAGE = "registry.example:5000/acme/pytorch:2.6-cu124"
PROBE_COMMAND = ("/bin/sh", "-c", "run the probe", "envkit-probe", "--out", "/tmp/envkit-out/result.json")


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with ENVKIT_UPDATE_GOLDEN=1 if intended"


def config(**changes: object) -> RunnerConfig:
    base: dict[str, object] = {
        "runner": "slurm",
        "envkit_command": ("envkit",),
        "partition": "gpu",
        "account": "ml-infra",
        "time_limit": "00:30:00",
        "constraint": "{gpu_type}",
    }
    return RunnerConfig(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", ["docker", "pyxis", "apptainer", "podman", "auto"])
def test_golden_batch_script(runtime: str) -> None:
    job = render_job(
        Target(image=IMAGE, gpu_type="h100"), config(container_runtime=runtime), FOLDER, PROBE_COMMAND
    )
    golden(f"slurm-{runtime}.sh", job.script)


def test_gpu_request_constraint_partition_and_account_reach_sbatch() -> None:
    job = render_job(Target(image=IMAGE, gpu_type="a100"), config(gpus_per_job=2), FOLDER, PROBE_COMMAND)
    assert job.options["gres"] == "gpu:a100:2"
    assert job.options["constraint"] == "a100"
    assert "#SBATCH --partition=gpu\n" in job.script
    assert "#SBATCH --account=ml-infra\n" in job.script
    assert "#SBATCH --time=00:30:00\n" in job.script


def test_without_a_gpu_type_any_gpu_and_no_constraint() -> None:
    job = render_job(Target(image=IMAGE), config(), FOLDER, PROBE_COMMAND)
    assert job.options["gres"] == "gpu:1"
    assert "constraint" not in job.options


def test_no_gpus_asks_for_no_gres() -> None:
    job = render_job(Target(image=IMAGE), config(gpus_per_job=0, constraint=None), FOLDER, PROBE_COMMAND)
    assert "gres" not in job.options
    assert "--nv" not in job.script


@pytest.mark.parametrize("runtime", ["docker", "pyxis", "apptainer", "podman", "auto"])
def test_scripts_with_the_real_probe_command_are_valid_bash(runtime: str) -> None:
    probe = JobProbe(RunSettings(profile="quick", only=("env.python",)))
    command = probe.command("/tmp/envkit-out/result.json")
    job = render_job(Target(image=IMAGE, gpu_type="h100"), config(container_runtime=runtime), FOLDER, command)
    done = subprocess.run(["bash", "-n"], input=job.script, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_image_reference_is_quoted_for_the_shell() -> None:
    # Refs are checked before rendering (safety.image_ref); the quoting is the second line of defence.
    job = render_job(Target(image="a/b:c;reboot"), config(container_runtime="docker"), FOLDER, ())
    assert "'a/b:c;reboot'" in job.script


@pytest.mark.parametrize(
    ("image", "uri"),
    [
        ("registry.example:5000/acme/pytorch:2.6", "registry.example:5000#acme/pytorch:2.6"),
        ("localhost/acme/x:1", "localhost#acme/x:1"),
        ("acme/pytorch:2.6", "acme/pytorch:2.6"),
        ("pytorch", "pytorch"),
    ],
)
def test_enroot_uri(image: str, uri: str) -> None:
    assert enroot_uri(image) == uri


# --- states --------------------------------------------------------------------------------------


def test_squeue_22_05_entry() -> None:
    state = state_from_json(
        {
            "job_id": 3,
            "job_state": "FAILED",
            "state_reason": "NonZeroExitCode",
            "batch_host": "gpu-7",
            "exit_code": 768,
        }
    )
    assert state == JobState(phase=DONE, state="FAILED", reason="NonZeroExitCode", node="gpu-7", exit_code=3)


def test_squeue_23_entry_with_state_list_and_exit_object() -> None:
    state = state_from_json(
        {
            "job_state": ["TIMEOUT"],
            "state_reason": "TimeLimit",
            "nodes": "gpu-1",
            "exit_code": {"status": ["SIGNALED"], "return_code": {"set": True, "number": 0}},
        }
    )
    assert (state.phase, state.state, state.reason, state.exit_code) == (FAILED, "TIMEOUT", "TimeLimit", 0)


def test_pending_reason_none_is_no_reason_and_signal_exit_is_128_plus() -> None:
    state = state_from_json({"job_state": "PENDING", "state_reason": "None", "exit_code": 9})
    assert (state.phase, state.reason, state.exit_code) == (PENDING, None, 137)


@pytest.mark.parametrize(
    ("word", "phase"),
    [
        ("RUNNING", RUNNING),
        ("COMPLETING", RUNNING),
        ("NODE_FAIL", FAILED),
        ("PREEMPTED", FAILED),
        ("BOOT_FAIL", FAILED),
    ],
)
def test_state_words_map_onto_phases(word: str, phase: str) -> None:
    assert state_from_json({"job_state": word}).phase == phase


def test_scontrol_one_line() -> None:
    text = (
        "JobId=12 JobName=envkit-validate UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) "
        "ExitCode=0:15 NodeList=localhost BatchHost=localhost"
    )
    assert state_from_scontrol(text) == JobState(
        phase=FAILED, state="TIMEOUT", reason="TimeLimit", node="localhost", exit_code=143
    )
    assert state_from_scontrol("slurm_load_jobs error: Invalid job id specified") is None


# --- the runner with a fake client ---------------------------------------------------------------


class FakeSlurm(SlurmClient):
    """Records submissions; each job's 'node' writes what `writes` says into its folder at submit."""

    def __init__(self, writes: dict[str, str | bytes] | None = None, refuse: str | None = None) -> None:
        self.writes = writes or {}
        self.refuse = refuse
        self.jobs: dict[str, tuple[BatchJob, Path]] = {}
        self.cancelled: list[str] = []

    def check(self) -> None:
        pass

    def submit(self, job: BatchJob, folder: Path) -> str:
        if self.refuse:
            raise SubmitRefused(self.refuse)
        job_id = str(100 + len(self.jobs))
        self.jobs[job_id] = (job, folder)
        for name, content in self.writes.items():
            path = folder / name
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return job_id

    def states(self, ids: Sequence[str]) -> dict[str, JobState]:
        return {job_id: JobState(phase=DONE, state="COMPLETED", node="gpu-3", exit_code=0) for job_id in ids}

    def cancel(self, ids: Sequence[str]) -> list[str]:
        self.cancelled.extend(ids)
        return list(ids)


class NoProbe:
    def stage(self, folder: Path) -> None:
        folder.mkdir()

    def command(self, result: str) -> tuple[str, ...]:
        return ("probe", result)

    def write_checks(self, path: Path) -> bool:
        return False

    def report(self, target: Target, raw: bytes | None, *, exit_code: int | None, logs: str):  # type: ignore[no-untyped-def]
        return JobProbe(RunSettings()).report(target, raw, exit_code=exit_code, logs=logs)


def a_report(tmp_path: Path) -> str:
    """A real report, as the node's `envkit validate` writes it."""
    probe = JobProbe(RunSettings())
    result = {
        "checks": [{"id": "env.python", "status": "PASS", "summary": "ok", "duration_s": 0.1}],
        "host": {},
    }
    report = probe.report(Target(image=IMAGE), json.dumps(result).encode(), exit_code=0, logs="")
    return dump_report(report)


def test_collect_annotates_the_nodes_report_with_job_node_and_gpu(tmp_path: Path) -> None:
    client = FakeSlurm(
        {"report.json": a_report(tmp_path), "job.env": "node=gpu-3\ngpu_model=NVIDIA H100 80GB HBM3\n"}
    )
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="docker"), NoProbe(), client)
    job = runner.submit(Target(image=IMAGE, gpu_type="h100"))
    report = runner.collect(job, runner.poll([job])[job.id])
    scheduler = report.find(CHECK_ID)[0]
    assert scheduler.status == "PASS"
    assert scheduler.details["environment"] == {
        "scheduler": "slurm",
        "job_id": job.id,
        "node": "gpu-3",
        "gpu_type": "h100",
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "state": "COMPLETED",
        "reason": None,
    }
    assert report.find("env.python")[0].status == "PASS"
    assert not job.folder.exists()  # type: ignore[union-attr]


def test_a_raw_probe_result_becomes_a_report_named_after_the_image(tmp_path: Path) -> None:
    result = {
        "checks": [{"id": "env.python", "status": "PASS", "summary": "ok", "duration_s": 0.1}],
        "host": {},
    }
    client = FakeSlurm({"result/result.json": json.dumps(result), "exit-code": "0\n"})
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="pyxis"), NoProbe(), client)
    job = runner.submit(Target(image=IMAGE, gpu_type="h100"))
    report = runner.collect(job, runner.poll([job])[job.id])
    assert report.image is not None and report.image.ref == IMAGE
    assert report.worst_status() == "PASS"
    assert report.host.hostname == "gpu-3", "the node the scheduler named, not the submitting host"


def test_a_job_without_a_report_is_an_error_with_the_nodes_message(tmp_path: Path) -> None:
    log = "envkit: error: no image 'x/y:1' on the engine\n  hint: build it\n"
    client = FakeSlurm({"job.log": log, "exit-code": "2\n"})
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="docker"), NoProbe(), client)
    job = runner.submit(Target(image="x/y:1", gpu_type="a100"))
    state = JobState(phase=DONE, state="FAILED", reason="NonZeroExitCode", node="gpu-3", exit_code=2)
    report = runner.collect(job, state)
    check = report.checks[0]
    assert (check.id, check.status) == (CHECK_ID, "ERROR")
    assert "no image 'x/y:1' on the engine" in check.summary
    assert report.runner is not None and report.runner.exit_code == 2


def test_time_limit_is_an_error_marked_timed_out_even_with_a_partial_report(tmp_path: Path) -> None:
    client = FakeSlurm({"report.json": a_report(tmp_path)})
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="docker"), NoProbe(), client)
    job = runner.submit(Target(image=IMAGE, gpu_type="h100"))
    report = runner.collect(job, JobState(phase=FAILED, state="TIMEOUT", reason="TimeLimit", node="gpu-3"))
    assert report.worst_status() == "ERROR"
    assert report.runner is not None and report.runner.timed_out
    assert "TIMEOUT (TimeLimit)" in report.checks[0].summary


def test_a_truncated_report_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    client = FakeSlurm({"report.json": a_report(tmp_path)[:50]})
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="docker"), NoProbe(), client)
    job = runner.submit(Target(image=IMAGE))
    report = runner.collect(job, JobState(phase=DONE, state="COMPLETED", exit_code=0))
    assert report.worst_status() == "ERROR"


def test_refused_submission_leaves_no_job_folder(tmp_path: Path) -> None:
    runner = SlurmRunner(
        config(job_dir=tmp_path), NoProbe(), FakeSlurm(refuse="Invalid generic resource (gres) specification")
    )
    with pytest.raises(SubmitRefused):
        runner.submit(Target(image=IMAGE, gpu_type="b300"))
    assert list(tmp_path.iterdir()) == []


def test_an_unsafe_image_reference_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    runner = SlurmRunner(config(job_dir=tmp_path), NoProbe(), FakeSlurm())
    with pytest.raises(Exception, match="not a valid image reference"):
        runner.submit(Target(image="a/b:c;reboot"))
    assert not any(tmp_path.iterdir())


def test_probe_is_staged_for_container_runtimes_only(tmp_path: Path) -> None:
    client = FakeSlurm()
    pyxis = SlurmRunner(
        config(job_dir=tmp_path / "p", container_runtime="pyxis"), JobProbe(RunSettings()), client
    )
    job = pyxis.submit(Target(image=IMAGE))
    assert (job.folder / "probe" / "envkit_probe" / "__main__.py").is_file()  # type: ignore[operator]
    assert (job.folder.stat().st_mode & 0o777, (job.folder / "result").stat().st_mode & 0o777) == (
        0o700,
        0o777,
    )  # type: ignore[union-attr]
    docker = SlurmRunner(
        config(job_dir=tmp_path / "d", container_runtime="docker"), JobProbe(RunSettings()), client
    )
    job = docker.submit(Target(image=IMAGE))
    assert not (job.folder / "probe").exists()  # type: ignore[operator]


def test_settings_reach_the_nodes_envkit() -> None:
    probe = ProbeSettings(profile="full", only=("gpu.kernels",), timeout_s=900, require_gpu=True)
    job = render_job(Target(image=IMAGE), config(container_runtime="docker", probe=probe), FOLDER, ())
    assert "--profile full --only gpu.kernels --timeout 900 --require-gpu" in job.script


def test_loaded_report_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(a_report(tmp_path))
    assert load_report(path).image.ref == IMAGE  # type: ignore[union-attr]


# --- slurmrestd ----------------------------------------------------------------------------------


def test_rest_job_properties_carry_the_same_options_as_the_batch_script() -> None:
    from envkit.runners.slurm_rest import job_properties

    job = render_job(Target(image=IMAGE, gpu_type="h100"), config(time_limit="1:30"), FOLDER, PROBE_COMMAND)
    properties = job_properties(job.options, FOLDER)
    assert {
        key: properties[key] for key in ("gres", "constraints", "partition", "account", "time_limit")
    } == {
        "gres": "gpu:h100:1",
        "constraints": "h100",
        "partition": "gpu",
        "account": "ml-infra",
        "time_limit": 2,  # 1 min 30 s, rounded up to whole minutes
    }
    assert properties["standard_output"] == str(FOLDER / "job.log")
    assert properties["current_working_directory"] == str(FOLDER)


def test_rest_over_http_sends_the_jwt_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from envkit.runners.slurm_rest import RestClient

    monkeypatch.setenv("SLURM_JWT", "token-123")
    monkeypatch.setenv("SLURM_USER", "ci")
    client = RestClient("https://slurm-rest.example:6820/")
    assert client.base == "https://slurm-rest.example:6820"
    assert client.session.headers["X-SLURM-USER-TOKEN"] == "token-123"
    assert client.session.headers["X-SLURM-USER-NAME"] == "ci"


def test_cancel_removes_the_job_folders_of_cancelled_jobs(tmp_path: Path) -> None:
    runner = SlurmRunner(config(job_dir=tmp_path, container_runtime="docker"), NoProbe(), FakeSlurm())
    job = runner.submit(Target(image=IMAGE, gpu_type="h100"))
    assert runner.cancel([job]) == [job.id]
    assert list(tmp_path.iterdir()) == []


def test_a_controller_that_does_not_answer_is_an_environment_fault_not_a_refusal(tmp_path: Path) -> None:
    from envkit.errors import EnvironmentFault

    class Down(FakeSlurm):
        def check(self) -> None:
            raise EnvironmentFault("slurmctld does not answer")

    runner = SlurmRunner(config(job_dir=tmp_path / "jobs"), NoProbe(), Down())
    with pytest.raises(EnvironmentFault):
        runner.submit(Target(image=IMAGE))
    assert not (tmp_path / "jobs").exists()
