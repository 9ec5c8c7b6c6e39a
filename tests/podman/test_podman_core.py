"""envkit's core against Podman: doctor names it, a CPU cell builds and skips when unchanged, the probe
runs in its sandbox, and gc removes what a killed envkit left."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import canary_ca_bundle, wheelhouse_or_skip

from envkit.cli import main
from envkit.doctor import engine_status
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.report import load_report
from envkit.validate import RunSettings, probe_container_spec

MATRIX = """
name: podman-core
image: {{repository: {repository}}}
base: {base}
torch_source: wheelhouse
axes: {{torch: ["2.13.0"], cuda: [none], python: ["3.11"], os: [debian12], flavor: [cpu]}}
"""


@pytest.fixture(scope="module")
def built(
    podman: DockerSdkEngine, podman_base: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("podman-build")
    matrix = folder / "m.yaml"
    matrix.write_text(
        MATRIX.format(repository=f"envkit-test/podman-{uuid.uuid4().hex[:8]}", base=podman_base)
    )
    flags = [
        "--wheelhouse",
        str(wheelhouse_or_skip()),
        "--ca-bundle",
        str(canary_ca_bundle(folder, "podman")),
    ]
    runs = []
    for name in ("first", "second"):
        report = folder / f"{name}.json"
        code = main(
            ["build", str(matrix), *flags, "--report", str(report), "--log-dir", str(folder / "logs")]
        )
        runs.append((code, json.loads(report.read_text())["cells"] if report.exists() else []))
    yield {"runs": runs, "logs": folder / "logs"}
    for tag in {tag for _, cells in runs for cell in cells for tag in cell["tags"]}:
        podman.remove_image(tag, force=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_doctor_says_podman_answered(podman: DockerSdkEngine) -> None:
    status = engine_status(podman, podman.host)
    assert status.reachable and status.product == "Podman", status


def test_a_cpu_cell_builds_tagged_under_its_docker_name_and_skips_when_unchanged(
    built: dict, podman: DockerSdkEngine
) -> None:
    (first, cells), (second, again) = built["runs"]
    assert first == 0 and len(cells) == 1, [p.read_text()[-2000:] for p in built["logs"].glob("*.log")]
    image = podman.image(cells[0]["image"])
    assert image is not None and cells[0]["image"] in image.tags
    assert image.labels["io.envkit.torch"] == "2.13.0"
    assert second == 0 and again[0]["status"] == "skipped", again


def test_the_probe_runs_in_podmans_sandbox(built: dict, tmp_path: Path) -> None:
    image = built["runs"][0][1][0]["image"]
    out = tmp_path / "r.json"
    only = ["--only", "env.python", "--only", "env.torch", "--only", "env.versions"]
    code = main(["validate", image, *only, "--out", str(out)])
    checks = {c.id: c.status for c in load_report(out).checks}
    assert code == 0, checks
    assert checks["env.torch"] == "PASS" and checks["env.versions"] == "PASS"


def test_gc_removes_a_probe_container_a_killed_envkit_left(built: dict, podman: DockerSdkEngine) -> None:
    image = podman.image(built["runs"][0][1][0]["image"])
    assert image is not None
    left = podman.create(probe_container_spec(image, RunSettings(), image.tags[0]))
    try:
        assert main(["gc"]) in (0, 1)
        assert left not in podman.containers("io.envkit.role=validate")
        assert podman.image(image.id) is not None, "gc must keep the images a build made"
    finally:
        podman.remove_container(left)
