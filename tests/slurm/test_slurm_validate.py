"""`envkit validate --runner slurm` against a real slurmctld/slurmd on localhost.

The node has two fake GPU types (h100, a100: GRES backed by empty files), so every job lands on this
host and the node's envkit validates the image through the local Docker engine (`--container-runtime
docker`). Only cheap checks run (`--only`), except where a job must outlive its time limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from slurm_support import active_envkit_jobs, containers_of, eventually

from envkit import labels
from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.report import load_report, load_reports

CHEAP = ["--only", "env.python", "--only", "env.shm"]


def validate(image: str, tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "validate",
            image,
            "--runner",
            "slurm",
            "--container-runtime",
            "docker",
            "--job-dir",
            str(tmp_path / "jobs"),
            "--out-dir",
            str(tmp_path / "reports"),
            *extra,
        ]
    )


def environment(path: Path) -> dict[str, object]:
    report = load_report(path)
    (check,) = report.find("runner.scheduler")
    return dict(check.details["environment"])


def test_two_gpu_types_at_once_give_one_report_each_and_the_gate_takes_them(
    image: str, tmp_path: Path
) -> None:
    assert validate(image, tmp_path, "--gpu-type", "h100,a100", *CHEAP) == 0
    reports = sorted((tmp_path / "reports").glob("*.json"))
    assert [path.name.rsplit("_", 1)[1] for path in reports] == ["a100.json", "h100.json"]
    found = [environment(path) for path in reports]
    assert [env["gpu_type"] for env in found] == ["a100", "h100"]
    assert all(env["scheduler"] == "slurm" and env["node"] == "localhost" for env in found)
    assert found[0]["job_id"] != found[1]["job_id"]
    for report in load_reports(reports):
        assert report.image is not None and report.image.ref == image
        assert report.find("env.python")[0].status == "PASS"
    assert not list((tmp_path / "jobs").iterdir()), "job folders are removed once collected"

    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrequire: [env.python]\nrequire_gpu_types: [h100, a100]\n")
    assert main(["gate", str(tmp_path / "reports"), "--policy", str(policy)]) == 0
    policy.write_text("version: 1\nrequire: [env.python]\nrequire_gpu_types: [h100, a100, h200]\n")
    assert main(["gate", str(tmp_path / "reports"), "--policy", str(policy)]) == 1


def test_the_users_checks_reach_the_nodes_envkit_and_are_judged_there(image: str, tmp_path: Path) -> None:
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "version: 1\nchecks:\n"
        "  - id: venv-python\n"
        '    command: {argv: [/opt/venv/bin/python, -c, "import torch"], exit_code: 0, timeout_s: 60}\n'
        "  - id: mode\n"
        "    env: {name: APP_MODE, equals: batch}\n"
        "  - id: labelled\n"
        "    metadata: {labels: {io.envkit.flavor: cpu}}\n"
    )
    mine = ["--only", "user.venv-python", "--only", "user.mode", "--only", "user.labelled"]
    assert validate(image, tmp_path, "--gpu-type", "h100", "--checks", str(checks), *CHEAP, *mine) == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    report = load_report(path)
    statuses = {check.id: check.status for check in report.checks if check.id.startswith("user.")}
    # The node's own envkit (docker runtime) got the checks file: it ran the in-image checks in the
    # job's container and judged the labels from its engine.
    assert statuses == {"user.venv-python": "PASS", "user.mode": "FAIL", "user.labelled": "PASS"}


def test_an_image_the_node_does_not_have_is_an_error_report(slurm: str, tmp_path: Path) -> None:
    missing = f"envkit-slurm-test/missing:{uuid.uuid4().hex[:8]}"
    assert validate(missing, tmp_path, "--gpu-type", "h100", *CHEAP) == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    report = load_report(path)
    (check,) = report.checks
    assert (check.id, check.status) == ("runner.scheduler", "ERROR")
    assert f"no image '{missing}' on the engine" in check.summary
    assert report.runner is not None and report.runner.exit_code == 2


def test_a_gpu_type_the_cluster_lacks_is_refused_at_submission_as_an_error_report(
    image: str, tmp_path: Path
) -> None:
    assert validate(image, tmp_path, "--gpu-type", "b200", *CHEAP) == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    check = load_report(path).checks[0]
    assert check.status == "ERROR" and "slurm refused the job: sbatch:" in check.summary


def test_a_job_killed_by_its_time_limit_is_an_error_report_and_leaves_no_container(
    slow_image: str, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    # The probe of slow_image never finishes; Slurm ends the job at its 5-second limit (slurmctld
    # enforces limits on its own schedule, so this takes a minute or two).
    assert validate(slow_image, tmp_path, "--gpu-type", "a100", "--time", "0:05", "--only", "env.python") == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    report = load_report(path)
    check = report.checks[0]
    assert check.status == "ERROR"
    assert "TIMEOUT" in check.summary
    assert report.runner is not None and report.runner.timed_out
    assert eventually(lambda: not containers_of(engine, slow_image)), "the probe container outlived its job"


def test_ctrl_c_cancels_every_submitted_job_and_leaves_nothing(
    slow_image: str, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "envkit",
        "validate",
        slow_image,
        "--runner",
        "slurm",
        "--gpu-type",
        "h100,a100",
    ]
    command += [
        "--container-runtime",
        "docker",
        "--job-dir",
        str(tmp_path / "jobs"),
        "--only",
        "env.python",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if sum("RUNNING" in shown for shown in seen) == 2:
            break
    job_ids = {line.split("job ")[1].split()[0] for line in seen if "job " in line}
    assert len(job_ids) == 2, seen
    # Interrupt once both jobs' probes run (a container being created at that very moment is a race of
    # the local engine runner, not of the scheduler path under test).
    assert eventually(lambda: len(running_containers(engine, slow_image)) == 2), (
        "the jobs' probes did not start"
    )
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "cancelled 2 submitted job(s)" in stderr
    assert eventually(lambda: not (job_ids & active_envkit_jobs())), "a cancelled job is still in squeue"
    assert eventually(lambda: not containers_of(engine, slow_image)), (
        "a probe container outlived its cancelled job"
    )
    assert not (tmp_path / "reports").exists()
    assert not list((tmp_path / "jobs").iterdir()), "a cancelled job's folder is removed"
    assert json.dumps(sorted(job_ids))  # the ids were printed, so a user can check them in squeue


def test_a_job_whose_node_dies_is_an_error_report_with_the_schedulers_reason(
    slow_image: str, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    # Marking the node DOWN is what slurmctld does when a node stops answering: its jobs end NODE_FAIL.
    command = [
        sys.executable,
        "-m",
        "envkit",
        "validate",
        slow_image,
        "--runner",
        "slurm",
        "--gpu-type",
        "h100",
    ]
    command += ["--container-runtime", "docker", "--job-dir", str(tmp_path / "jobs")]
    command += ["--out-dir", str(tmp_path / "reports"), "--only", "env.python"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "RUNNING" in line:
                break
        assert eventually(lambda: bool(running_containers(engine, slow_image))), (
            "the job's probe did not start"
        )
        subprocess.run(
            ["scontrol", "update", "NodeName=localhost", "State=DOWN", "Reason=envkit-test-node-death"],
            check=True,
        )
        process.communicate(timeout=120)
    finally:
        subprocess.run(
            ["scontrol", "update", "NodeName=localhost", "State=RESUME"], capture_output=True, check=False
        )
        assert eventually(node_up), "the node did not come back"
    assert process.returncode == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    check = load_report(path).checks[0]
    assert check.status == "ERROR"
    assert "NODE_FAIL (NodeDown)" in check.summary
    assert eventually(lambda: not containers_of(engine, slow_image)), "the probe container outlived its node"


def running_containers(engine: DockerSdkEngine, ref: str) -> list[str]:
    return list(engine.containers(f"{labels.IMAGE}={ref}", all=False))


def node_up() -> bool:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, check=False)
    return done.stdout.strip() in ("idle", "mix", "alloc")


def test_max_wait_cancels_an_unfinished_job_into_an_error_report(
    slow_image: str, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    code = validate(slow_image, tmp_path, "--gpu-type", "h100", "--max-wait", "10", "--only", "env.python")
    assert code == 1
    (path,) = (tmp_path / "reports").glob("*.json")
    check = load_report(path).checks[0]
    assert check.status == "ERROR"
    assert "after --max-wait 10 s; cancelled" in check.summary
    assert not list((tmp_path / "jobs").iterdir()), "a cancelled job's folder is removed"
    assert eventually(lambda: not containers_of(engine, slow_image)), "the probe container outlived its job"


def test_gc_cancels_a_killed_runs_jobs_and_removes_its_folders(
    slow_image: str, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    from envkit.runners import RunnerConfig, Target
    from envkit.runners.slurm import SlurmClient, SlurmRunner
    from envkit.validate import JobProbe, RunSettings

    jobs = tmp_path / "jobs"
    config = RunnerConfig(runner="slurm", container_runtime="docker", job_dir=jobs)
    # What a SIGKILLed envkit leaves: a submitted job nobody follows, and an old folder of a finished one.
    job = SlurmRunner(config, JobProbe(RunSettings()), SlurmClient()).submit(
        Target(image=slow_image, gpu_type="h100")
    )
    old = jobs / "20200101T000000-000-acme_pytorch_2.6_h100"
    old.mkdir()
    os.utime(old, (0, 0))
    assert main(["gc", "--runner", "slurm", "--job-dir", str(jobs)]) == 0
    assert not old.exists(), "an old folder without a job goes"
    assert job.id in active_envkit_jobs(), "a job submitted minutes ago is kept without --all"
    assert main(["gc", "--runner", "slurm", "--job-dir", str(jobs), "--all"]) == 0
    assert eventually(lambda: job.id not in active_envkit_jobs())
    assert not list(jobs.iterdir())
    assert eventually(lambda: not containers_of(engine, slow_image))
