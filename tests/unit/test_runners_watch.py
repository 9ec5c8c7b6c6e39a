"""The runner-independent loop and settings: submit, follow, cancel, give up, and flag/file precedence.

A fake Runner (envkit's own interface) plays the scheduler; a fake clock means no test waits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from envkit.errors import ConfigError, EnvironmentFault, UsageError
from envkit.report import Report
from envkit.runners import (
    DONE,
    PENDING,
    RUNNING,
    Job,
    JobState,
    ProbeSettings,
    Runner,
    RunnerConfig,
    SubmitRefused,
    Target,
    get_runner,
)
from envkit.runners.config import resolve
from envkit.runners.reports import CHECK_ID, error_report
from envkit.runners.watch import Clock, Interrupted, run_jobs


class FakeRunner(Runner):
    """Each job walks through `script` (one state per poll), then stays at its last state."""

    name = "fake"

    def __init__(
        self, script: Sequence[JobState], refuse: set[str] | None = None, interrupt_at: int = -1
    ) -> None:
        self.script = list(script)
        self.refuse = refuse or set()
        self.interrupt_at = interrupt_at
        self.polls = 0
        self.submitted: list[Job] = []
        self.cancelled: list[str] = []
        self.closed = False

    def submit(self, target: Target) -> Job:
        if target.gpu_type in self.refuse:
            raise SubmitRefused("Invalid generic resource (gres) specification")
        job = Job(target=target, id=str(len(self.submitted) + 1))
        self.submitted.append(job)
        return job

    def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
        if self.polls == self.interrupt_at:
            raise KeyboardInterrupt
        state = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return {job.id: state for job in jobs}

    def cancel(self, jobs: Sequence[Job]) -> list[str]:
        self.cancelled += [job.id for job in jobs]
        return [job.id for job in jobs]

    def collect(self, job: Job, state: JobState) -> Report:
        return error_report(
            job.target,
            ProbeSettings(),
            scheduler="fake",
            summary=f"collected {state.state}",
            hint=None,
            job=job,
            state=state,
        )

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


QUEUED = JobState(phase=PENDING, state="PENDING", reason="Resources")
RUN = JobState(phase=RUNNING, state="RUNNING", node="gpu-1")
DONE_OK = JobState(phase=DONE, state="COMPLETED", node="gpu-1", exit_code=0)
TARGETS = [Target(image="a/b:1", gpu_type="h100"), Target(image="a/b:1", gpu_type="a100")]


@pytest.fixture
def shown() -> Iterator[list[str]]:
    yield []


def progress(lines: list[str]):  # type: ignore[no-untyped-def]
    return lambda target, job, state: lines.append(f"{state.phase} {target.gpu_type} {state.state}")


def test_one_report_per_target_in_order_and_each_change_shown_once(shown: list[str]) -> None:
    runner = FakeRunner([QUEUED, QUEUED, RUN, DONE_OK])
    reports = run_jobs(runner, TARGETS, RunnerConfig(runner="slurm"), progress(shown), FakeClock().clock())
    assert [r.find(CHECK_ID)[0].details["environment"]["gpu_type"] for r in reports] == ["h100", "a100"]
    assert shown == [
        "PENDING h100 SUBMITTED",
        "PENDING a100 SUBMITTED",
        "PENDING h100 PENDING",
        "PENDING a100 PENDING",
        "RUNNING h100 RUNNING",
        "RUNNING a100 RUNNING",
        "DONE h100 COMPLETED",
        "DONE a100 COMPLETED",
    ]
    assert runner.closed and not runner.cancelled


def test_a_refused_job_is_an_error_report_and_the_others_still_run(shown: list[str]) -> None:
    runner = FakeRunner([DONE_OK], refuse={"a100"})
    reports = run_jobs(runner, TARGETS, RunnerConfig(runner="slurm"), progress(shown), FakeClock().clock())
    assert reports[0].checks[0].summary == "collected COMPLETED"
    assert reports[1].worst_status() == "ERROR"
    assert "refused the job: Invalid generic resource" in reports[1].checks[0].summary
    assert "FAILED a100 REFUSED" in shown


def test_max_wait_cancels_what_is_still_queued_and_reports_it(shown: list[str]) -> None:
    runner = FakeRunner([QUEUED])
    config = RunnerConfig(runner="slurm", max_wait_s=10, poll_s=2)
    reports = run_jobs(runner, TARGETS, config, progress(shown), FakeClock().clock())
    assert runner.cancelled == ["1", "2"]
    summary = reports[0].checks[0].summary
    assert "still PENDING (Resources) after --max-wait 10 s; cancelled" in summary
    assert reports[0].worst_status() == "ERROR"


def test_ctrl_c_cancels_every_submitted_job_and_says_so(shown: list[str]) -> None:
    runner = FakeRunner([QUEUED], interrupt_at=1)
    with pytest.raises(Interrupted, match=r"cancelled 2 submitted job\(s\): 1, 2") as caught:
        run_jobs(runner, TARGETS, RunnerConfig(runner="slurm"), progress(shown), FakeClock().clock())
    assert caught.value.exit_code == 130
    assert runner.cancelled == ["1", "2"] and runner.closed


def test_ctrl_c_does_not_cancel_jobs_already_collected(shown: list[str]) -> None:
    class HalfDone(FakeRunner):
        def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
            if self.polls == 1:
                raise KeyboardInterrupt
            self.polls += 1
            return {job.id: DONE_OK if job.id == "1" else QUEUED for job in jobs}

    runner = HalfDone([QUEUED])
    with pytest.raises(Interrupted, match=r"cancelled 1 submitted job\(s\): 2"):
        run_jobs(runner, TARGETS, RunnerConfig(runner="slurm"), progress(shown), FakeClock().clock())


def test_a_scheduler_that_stops_answering_still_gets_a_cancel(shown: list[str]) -> None:
    class Dies(FakeRunner):
        def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
            raise EnvironmentFault("squeue: Unable to contact slurm controller")

    runner = Dies([QUEUED])
    with pytest.raises(EnvironmentFault):
        run_jobs(runner, TARGETS, RunnerConfig(runner="slurm"), progress(shown), FakeClock().clock())
    assert runner.cancelled == ["1", "2"]


# --- settings ------------------------------------------------------------------------------------


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "runner.yaml"
    file.write_text(
        "runner:\n  partition: batch\n  account: ml\n  gpu_types: [h100, a100]\n  max_wait: 600\n"
    )
    resolved = resolve("slurm", {"partition": "gpu", "gpu_types": None}, file, ProbeSettings())
    assert resolved.config.partition == "gpu"
    assert resolved.config.account == "ml"
    assert resolved.config.max_wait_s == 600
    assert resolved.config.time_limit == "01:00:00"
    assert resolved.gpu_types == ("h100", "a100")


def test_gpu_types_from_a_flag_are_split_and_deduplicated() -> None:
    resolved = resolve("slurm", {"gpu_types": "h100,a100,h100"}, None, ProbeSettings())
    assert resolved.gpu_types == ("h100", "a100")
    assert resolve("slurm", {}, None, ProbeSettings()).gpu_types == (None,)


def test_a_bad_value_in_the_file_names_file_line_and_key(tmp_path: Path) -> None:
    file = tmp_path / "runner.yaml"
    file.write_text("runner:\n  partition: gpu\n  time: 'one hour'\n")
    with pytest.raises(ConfigError) as caught:
        resolve("slurm", {}, file, ProbeSettings())
    assert f"{file}:3: runner.time" in caught.value.render()


def test_an_unknown_key_in_the_file_gets_a_did_you_mean(tmp_path: Path) -> None:
    file = tmp_path / "runner.yaml"
    file.write_text("runner:\n  partiton: gpu\n")
    with pytest.raises(ConfigError, match="did you mean 'partition'"):
        resolve("slurm", {}, file, ProbeSettings())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"partition": "gpu;rm -rf /"}, "--partition"),
        ({"gpu_types": "h100,a 100"}, "--gpu-type"),
        ({"constraint": "h100\n#SBATCH --uid=0"}, "--constraint"),
        ({"slurm_rest": "ftp://x"}, "--slurm-rest"),
        ({"max_wait": 0}, "--max-wait"),
        ({"container_runtime": "singularity"}, "--container-runtime"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve("slurm", flags, None, ProbeSettings())


def test_kubernetes_gpu_products_are_label_values() -> None:
    resolved = resolve("kubernetes", {"gpu_types": "NVIDIA-H100-80GB-HBM3"}, None, ProbeSettings())
    assert resolved.gpu_types == ("NVIDIA-H100-80GB-HBM3",)
    with pytest.raises(UsageError):
        resolve("kubernetes", {"gpu_types": "-bad-"}, None, ProbeSettings())


def test_factory_refuses_an_unknown_runner() -> None:
    with pytest.raises(UsageError, match="unknown runner"):
        get_runner(RunnerConfig(runner="lsf"), probe=None)  # type: ignore[arg-type]


def test_the_interface_module_imports_no_backend() -> None:
    source = (Path(__file__).parents[2] / "envkit" / "runners" / "__init__.py").read_text()
    assert "runners.slurm" not in source.replace('f"envkit.runners.{config.runner}"', "")
    assert "import kubernetes" not in source


# --- the command line ----------------------------------------------------------------------------


def test_validate_on_a_runner_writes_one_report_per_image_and_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import envkit.commands.validate as command
    from envkit.cli import main
    from envkit.report import load_report

    runner = FakeRunner([DONE_OK], refuse={"a100"})
    monkeypatch.setattr(command, "get_runner", lambda config, probe: runner)
    monkeypatch.setattr(command, "run_jobs", lambda r, t, c, p: run_jobs(r, t, c, p, FakeClock().clock()))
    code = main(
        [
            "validate",
            "a/b:1",
            "c/d:2",
            "--runner",
            "slurm",
            "--gpu-type",
            "h100,a100",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert code == 1  # every report here is an ERROR report (the fake collects no probe result)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["a_b_1_a100.json", "a_b_1_h100.json", "c_d_2_a100.json", "c_d_2_h100.json"]
    assert [job.target for job in runner.submitted] == [
        Target(image="a/b:1", gpu_type="h100"),
        Target(image="c/d:2", gpu_type="h100"),
    ]
    assert "refused" in load_report(tmp_path / "a_b_1_a100.json").checks[0].summary


@pytest.mark.parametrize("flag", [["--gpu-type", "h100"], ["--partition", "gpu"], ["--emit-manifests", "x"]])
def test_cluster_flags_without_a_runner_are_usage_errors(flag: list[str]) -> None:
    from envkit.cli import main

    assert main(["validate", "a/b:1", *flag]) == 2


def test_gpu_product_is_for_kubernetes_only() -> None:
    from envkit.cli import main

    assert main(["validate", "a/b:1", "--runner", "slurm", "--gpu-product", "NVIDIA-H100-80GB-HBM3"]) == 2


def test_the_nodes_envkit_command_is_split_and_checked() -> None:
    resolved = resolve(
        "slurm", {"envkit_command": "/shared/venv/bin/python -m envkit"}, None, ProbeSettings()
    )
    assert resolved.config.envkit_command == ("/shared/venv/bin/python", "-m", "envkit")
    with pytest.raises(UsageError, match="--node-envkit"):
        resolve("slurm", {"envkit_command": "envkit; reboot"}, None, ProbeSettings())
