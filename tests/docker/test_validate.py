"""`envkit validate` inside real images: the demo images, foreign images, and containers that go wrong."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support import DemoImages

from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.report import Report, load_report

GPU_CHECKS = ("gpu.visibility", "gpu.driver", "gpu.arch", "gpu.kernels", "oom.gpu")


def statuses(report: Report) -> dict[str, str]:
    return {check.id: check.status for check in report.checks}


@pytest.fixture(scope="module")
def demo_reports(demo: DemoImages, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[Report]]:
    folder = tmp_path_factory.mktemp("reports")
    code = main(["validate", *demo.images, "--out-dir", str(folder)])
    return code, [load_report(p) for p in sorted(folder.glob("*.json"))]


def test_demo_images_pass_on_a_cpu_host(demo_reports: tuple[int, list[Report]], demo: DemoImages) -> None:
    code, reports = demo_reports
    assert code == 0 and len(reports) == 2
    for report in reports:
        status = statuses(report)
        for check in (
            "env.python",
            "env.torch",
            "env.versions",
            "oom.cpu",
            "throughput.generate",
            "runner.container",
        ):
            assert status[check] == "PASS", (check, report.find(check))
        for check in GPU_CHECKS:
            assert status[check] == "N/A"  # a CPU image: GPU checks do not apply
        assert report.image is not None and report.image.ref in demo.images
        assert report.image.labels["io.envkit.torch"] == "2.13.0"
        [throughput] = report.find("throughput.generate")
        assert throughput.metrics["kv_speedup"] > 1
        assert throughput.metrics["decode_tokens_per_s"] > 0
        assert throughput.details["checksum"]
    # The same deterministic model computes the same tokens in both images.
    checksums = {r.find("throughput.generate")[0].details["checksum"] for r in reports}
    assert len(checksums) == 1


def test_require_gpu_turns_gpu_skips_into_failures(demo: DemoImages, tmp_path: Path) -> None:
    # A CUDA-labelled image on this GPU-less host: its GPU checks could have run, so they SKIP.
    tag = f"envkit-test/cuda-labelled:{uuid.uuid4().hex[:8]}"
    docker.from_env().images.build(
        fileobj=_dockerfile(
            f"FROM {demo.images[0]}\nLABEL io.envkit.cuda=12.4 io.envkit.torch-variant=cu124\n"
        ),
        tag=tag,
        rm=True,
    )
    demo.extra_images.append(tag)
    out = tmp_path / "r.json"
    assert main(["validate", tag, "--only", "gpu.visibility", "--out", str(out)]) == 0
    assert statuses(load_report(out))["gpu.visibility"] == "SKIP"
    code = main(["validate", tag, "--require-gpu", "--only", "gpu.visibility", "--out", str(out)])
    assert code == 1
    assert statuses(load_report(out))["gpu.visibility"] == "FAIL"
    # On a CPU image the GPU checks do not apply: N/A, which --require-gpu leaves alone.
    assert (
        main(["validate", demo.images[0], "--require-gpu", "--only", "gpu.visibility", "--out", str(out)])
        == 0
    )
    assert statuses(load_report(out))["gpu.visibility"] == "N/A"


@pytest.fixture(scope="module")
def foreign_images(demo: DemoImages, base_image: str) -> Iterator[dict[str, str]]:
    """Images envkit did not build: no labels, torch in a venv under /opt off PATH; no torch; no Python."""
    client = docker.from_env()
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, str] = {}
    container = client.containers.create(demo.images[0], command=["true"])
    try:
        made["unlabelled"] = f"envkit-test/foreign:{suffix}"
        exported = container.export()
        client.api.import_image_from_data(b"".join(exported), repository="envkit-test/foreign", tag=suffix)
    finally:
        container.remove(force=True)
    made["no-torch"] = base_image
    nopy_tag = f"envkit-test/nopython:{suffix}"
    client.images.build(
        fileobj=_dockerfile(f"FROM {base_image}\nRUN rm -rf /usr/bin/python3* /usr/lib/python3*\n"),
        tag=nopy_tag,
        rm=True,
    )
    made["no-python"] = nopy_tag
    yield made
    for name in ("unlabelled", "no-python"):
        client.images.remove(made[name], force=True)


def _dockerfile(text: str):
    import io

    return io.BytesIO(text.encode())


def test_image_not_built_by_envkit_finds_torch_in_a_venv_off_path(
    foreign_images: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    code = main(
        [
            "validate",
            foreign_images["unlabelled"],
            "--only",
            "env.python",
            "--only",
            "env.torch",
            "--only",
            "env.versions",
            "--out",
            str(out),
        ]
    )
    report = load_report(out)
    assert code == 0, report.checks
    status = statuses(report)
    assert status["env.torch"] == "PASS" and status["env.versions"] == "SKIP"
    assert report.image is not None and report.image.labels == {}


def test_image_without_torch_fails_with_a_hint(foreign_images: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["validate", foreign_images["no-torch"], "--only", "env.torch", "--out", str(out)]) == 1
    [torch] = load_report(out).find("env.torch")
    assert torch.status == "FAIL" and torch.hint


def test_image_without_python_fails_with_a_hint(foreign_images: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["validate", foreign_images["no-python"], "--out", str(out)]) == 1
    [runner] = load_report(out).find("runner.container")
    assert runner.status == "FAIL" and "no Python" in runner.summary and runner.hint


def test_probe_killed_by_a_tiny_memory_limit_is_an_error_not_a_crash(
    demo: DemoImages, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    code = main(
        ["validate", demo.images[0], "--memory", "48m", "--only", "throughput.generate", "--out", str(out)]
    )
    assert code == 1
    report = load_report(out)
    [runner] = report.find("runner.container")
    assert runner.status == "ERROR" and "OOM" in runner.summary and "--memory" in (runner.hint or "")
    assert report.runner is not None and report.runner.oom_killed


def test_probe_that_outlives_its_timeout_is_killed_and_reported(demo: DemoImages, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code = main(["validate", demo.images[0], "--timeout", "3", "--out", str(out)])
    assert code == 1
    report = load_report(out)
    [runner] = report.find("runner.container")
    assert runner.status == "ERROR" and "did not finish within 3 s" in runner.summary
    assert report.runner is not None and report.runner.timed_out


def test_unknown_image_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "envkit-test/does-not-exist:nope"]) == 2
    assert "no image 'envkit-test/does-not-exist:nope'" in capsys.readouterr().err


def test_local_mode_runs_the_same_probe_on_this_host(tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    code = main(["validate", "--local", "--only", "env.python", "--only", "oom.cpu", "--out", str(out)])
    report = load_report(out)
    assert code == 0, report.checks
    assert report.mode == "local" and report.image is None
    assert statuses(report)["oom.cpu"] == "PASS"


def test_report_is_versioned_json(demo_reports: tuple[int, list[Report]]) -> None:
    _, reports = demo_reports
    data = json.loads(Path(reports[0].source).read_text())
    assert data["schema"] == "envkit.report/2" and data["mode"] == "container"
    assert data["runner"]["oom_killed"] is False


def test_no_validation_container_is_left(
    engine: DockerSdkEngine, demo_reports: tuple[int, list[Report]]
) -> None:
    # Scoped to this test's runs (by the run id in each container's name): the engine is shared.
    run_ids = [r.find("runner.container")[0].details["run_id"] for r in demo_reports[1]]
    assert len(run_ids) == 2
    names = {info.name for info in engine.containers_named("envkit-probe-")}
    assert not names & {f"envkit-probe-{run_id}" for run_id in run_ids}
