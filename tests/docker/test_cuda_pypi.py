"""A CUDA cell on a custom Debian base with torch from PyPI, built for real and validated on a CPU host.

The image is what a team without nvidia/cuda bases builds: PyPI's CUDA 13 torch on its own Debian. It
needs no GPU to build; on a CPU host every env.* check passes (the labelled arch list matches the wheel,
the NVIDIA toolkit variables are set) and the GPU checks skip, or fail under --require-gpu.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import canary_ca_bundle

from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.probe import registry
from envkit.report import Report, load_report

pytestmark = pytest.mark.slow

GPU_CHECKS = ("gpu.visibility", "gpu.driver", "gpu.arch", "gpu.kernels", "oom.gpu")
# Every env.* check the probe has, and the GPU ones; throughput and oom.cpu are the demo tests' business.
ENV_CHECKS = tuple(check for check in registry.public_ids() if check.startswith("env."))
ONLY = [flag for check in (*ENV_CHECKS, *GPU_CHECKS) for flag in ("--only", check)]
MATRIX = """\
version: 1
name: cuda-pypi
image:
  repository: {repository}
base: {base}
torch_source: pypi
axes:
  torch: ["2.13.0"]
  cuda: ["13.0"]
  python: ["3.11"]
  os: [debian12]
  flavor: [runtime]
"""


@dataclass(frozen=True)
class Built:
    code: int
    image: str
    tags: tuple[str, ...]


@pytest.fixture(scope="module")
def cuda_cell(
    engine: DockerSdkEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("cuda-pypi")
    matrix = folder / "cuda-pypi.yaml"
    matrix.write_text(
        MATRIX.format(repository=f"envkit-test/cuda-pypi-{uuid.uuid4().hex[:8]}", base=base_image)
    )
    # pip in the build reaches the package index through this machine's proxy when $PIP_CERT names its CA.
    flags = ["--ca-bundle", str(canary_ca_bundle(folder, "cuda-pypi"))] if os.environ.get("PIP_CERT") else []
    report = folder / "build.json"
    code = main(["build", str(matrix), *flags, "--report", str(report), "--log-dir", str(folder / "logs")])
    cells = json.loads(report.read_text())["cells"] if report.exists() else []
    tags = tuple(tag for cell in cells for tag in cell["tags"])
    yield Built(code=code, image=cells[0]["image"] if cells else "", tags=tags)
    for tag in tags:
        engine.remove_image(tag, force=True)
    assert all(engine.image(tag) is None for tag in tags)
    shutil.rmtree(folder, ignore_errors=True)


def _statuses(report: Report) -> dict[str, str]:
    return {check.id: check.status for check in report.checks}


def test_cuda_cell_from_pypi_passes_every_env_check_on_a_cpu_host(cuda_cell: Built, tmp_path: Path) -> None:
    assert cuda_cell.code == 0 and cuda_cell.image
    out = tmp_path / "report.json"
    code = main(["validate", cuda_cell.image, *ONLY, "--out", str(out)])
    report = load_report(out)
    status = _statuses(report)
    env = {check: result for check, result in status.items() if check.startswith("env.")}
    assert {"env.python", "env.torch", "env.versions", "env.nvidia-env"} <= set(env) == set(ENV_CHECKS)
    assert set(env.values()) == {"PASS"}, [report.find(c) for c, s in env.items() if s != "PASS"]
    assert all(status[check] == "SKIP" for check in GPU_CHECKS), status
    assert code == 0
    assert report.image is not None
    labels = report.image.labels
    assert labels["io.envkit.torch-variant"] == "cu130" and labels["io.envkit.arch-list"].endswith(";12.0")


def test_require_gpu_turns_the_gpu_skips_into_a_failure(cuda_cell: Built, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    gpu_only = [flag for check in GPU_CHECKS for flag in ("--only", check)]
    code = main(["validate", cuda_cell.image, "--require-gpu", *gpu_only, "--out", str(out)])
    status = _statuses(load_report(out))
    assert code == 1
    assert all(status[check] == "FAIL" for check in GPU_CHECKS), status
