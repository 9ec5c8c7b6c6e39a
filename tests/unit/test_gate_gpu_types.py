"""Policy `require_gpu_types`: every image must have a passing report on each listed GPU type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from envkit.errors import ConfigError
from envkit.gate import FAIL, PASS, covers_gpu_type, run_gate
from envkit.policy import load_policy
from envkit.report import Check, GpuInfo, Report
from envkit.runners import DONE, Job, JobState, ProbeSettings, Target
from envkit.runners.reports import annotate, error_report

IMAGE = "acme/pytorch:2.6"


def scheduled(gpu_type: str, *, ok: bool = True, image: str = IMAGE) -> Report:
    """A report as the Slurm runner returns it for `image` on `gpu_type`."""
    target = Target(image=image, gpu_type=gpu_type)
    job = Job(target=target, id="7")
    state = JobState(phase=DONE, state="COMPLETED", node="gpu-1")
    base = error_report(target, ProbeSettings(), scheduler="slurm", summary="x", hint=None)
    passing = dataclasses.replace(base, checks=(Check(id="env.python", status="PASS", summary="ok"),))
    report = annotate(passing, "slurm", job, state, None)
    if not ok:
        failing = Check(id="env.torch", status="FAIL", summary="no torch")
        report = dataclasses.replace(report, checks=(*report.checks, failing))
    return report


def policy(tmp_path: Path, text: str = "version: 1\nrequire_gpu_types: [h100, a100]\n"):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def outcomes(verdict) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f.name: f.effect for f in verdict.findings if f.kind == "gpu-type"}


def test_every_listed_type_present_and_passing_passes(tmp_path: Path) -> None:
    result = run_gate([scheduled("h100"), scheduled("a100")], policy(tmp_path))
    assert result.passed
    assert outcomes(result.verdicts[0]) == {"gpu-type:h100": PASS, "gpu-type:a100": PASS}


def test_a_missing_type_fails_the_image(tmp_path: Path) -> None:
    result = run_gate([scheduled("h100")], policy(tmp_path))
    assert not result.passed
    assert outcomes(result.verdicts[0]) == {"gpu-type:h100": PASS, "gpu-type:a100": FAIL}


def test_a_failing_report_on_one_type_fails_even_though_every_type_is_present(tmp_path: Path) -> None:
    result = run_gate([scheduled("h100"), scheduled("a100", ok=False)], policy(tmp_path))
    assert not result.passed
    assert result.verdicts[0].passed and not result.verdicts[1].passed


def test_types_are_counted_per_image(tmp_path: Path) -> None:
    reports = [scheduled("h100"), scheduled("a100", image="acme/other:1")]
    result = run_gate(reports, policy(tmp_path))
    assert [outcomes(v) for v in result.verdicts] == [
        {"gpu-type:h100": PASS, "gpu-type:a100": FAIL},
        {"gpu-type:h100": FAIL, "gpu-type:a100": PASS},
    ]


def test_a_report_without_a_scheduler_covers_the_type_its_gpu_model_names() -> None:
    report = scheduled("h100")
    local = dataclasses.replace(
        report,
        checks=report.checks[:1],
        host=dataclasses.replace(report.host, gpus=(GpuInfo(index=0, name="NVIDIA H100 80GB HBM3"),)),
    )
    assert covers_gpu_type(local, "h100")
    assert covers_gpu_type(local, "H100")
    assert not covers_gpu_type(local, "a100")
    cpu = dataclasses.replace(local, host=dataclasses.replace(local.host, gpus=()))
    assert not covers_gpu_type(cpu, "cpu*")


def test_without_the_key_nothing_is_added(tmp_path: Path) -> None:
    result = run_gate([scheduled("h100")], policy(tmp_path, "version: 1\n"))
    assert outcomes(result.verdicts[0]) == {}


def test_a_bad_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="require_gpu_types"):
        policy(tmp_path, "version: 1\nrequire_gpu_types: h100\n")
