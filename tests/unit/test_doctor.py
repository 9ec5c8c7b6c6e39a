"""`envkit doctor` with a fake engine, a fake NVML library and a fake docker CLI."""

from __future__ import annotations

import json
import stat
import textwrap
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cells import CPU_CELL, CUDA_CELL
from fakes import FakeEngine

import envkit.probe.nvml
from envkit.cli import main
from envkit.compat import DriverFloor, KnowledgeBase, MinorCompatFloor
from envkit.doctor import cell_fit, diagnose, gpu_status

KB = KnowledgeBase(
    releases=(),
    driver_floors=(
        DriverFloor(cuda="12.4", driver_min="550.54.14", source="test"),
        DriverFloor(cuda="12.8", driver_min="570.26", source="test"),
        DriverFloor(cuda="13.0", driver_min="580.65.06", source="test"),
    ),
    minor_compat=(
        MinorCompatFloor(cuda_major="12", driver_min="525.60.13", source="test"),
        MinorCompatFloor(cuda_major="13", driver_min="580", source="test"),
    ),
    images=(),
    os_pythons=(),
)


class NvmlLibraryNotFound(Exception):
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"


def fake_pynvml(driver: str | None, gpus: int = 1) -> Any:
    """A stand-in for the pynvml module: `driver` None behaves as a host without the NVIDIA driver."""

    def init() -> None:
        if driver is None:
            raise NvmlLibraryNotFound()

    return SimpleNamespace(
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: (driver or "").encode(),
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCount=lambda: gpus,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUUID=lambda handle: f"GPU-{handle}",
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=80 * 2**30),
        nvmlDeviceGetCudaComputeCapability=lambda handle: (9, 0),
        nvmlDeviceGetMaxClockInfo=lambda handle, kind: 2619 if kind == 2 else 1980,
        nvmlDeviceGetMemoryBusWidth=lambda handle: 5120,
    )


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a fake pynvml; call the result with a driver version (or None) to pick the host."""

    def install(driver: str | None, gpus: int = 1) -> None:
        monkeypatch.setattr(envkit.probe.nvml, "load_pynvml", lambda: fake_pynvml(driver, gpus))

    return install


class RuntimeEngine(FakeEngine):
    def __init__(self, runtimes: tuple[str, ...]) -> None:
        super().__init__()
        self._runtimes = runtimes

    def runtimes(self) -> tuple[str, ...] | None:
        self._check_up()
        return self._runtimes


def cuda(version: str) -> Any:
    return replace(CUDA_CELL, id=f"cell-cu{version}", cuda=version)


@pytest.mark.parametrize(
    ("cuda_version", "driver", "verdict"),
    [
        ("12.4", "550.54.14", "runs"),  # exactly at the floor
        ("12.4", "560.35.03", "runs"),
        ("12.8", "550.54.14", "reduced"),  # below 12.8's floor, above the 12.x compat floor
        ("12.4", "525.60.13", "reduced"),
        ("12.4", "520.61.05", "driver-too-old"),  # below the compat floor too
        ("13.0", "575.51.03", "driver-too-old"),  # a 12.x driver cannot run 13.x at all
        ("12.4", None, "no-driver"),
        ("12.6", "560.28.03", "unknown"),  # no floor known for this CUDA in KB
    ],
)
def test_cell_fit_against_the_driver_floor_and_the_compat_floor(
    cuda_version: str, driver: str | None, verdict: str
) -> None:
    fit = cell_fit(cuda(cuda_version), driver, KB)
    assert fit.verdict == verdict
    assert fit.driver_floor == KB.driver_floor(cuda_version)
    if verdict == "reduced":
        assert "reduced features" in fit.detail and fit.compat_floor in fit.detail


def test_cpu_cells_run_anywhere() -> None:
    assert cell_fit(CPU_CELL, None, KB).verdict == "cpu"


def test_no_driver_is_an_answer_not_an_error(nvml: Any) -> None:
    nvml(None)
    status = gpu_status()
    assert status.driver is None and status.gpus == ()
    assert status.error == "no NVIDIA driver (nvmlInit failed: NVML Shared Library Not Found)"


def test_driver_and_gpus_from_nvml(nvml: Any) -> None:
    nvml("550.54.14", gpus=2)
    status = gpu_status()
    assert (status.driver, status.cuda_driver) == ("550.54.14", "12.4")
    assert [(g.index, g.name, g.compute_capability, g.memory_total_mib) for g in status.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "9.0", 81920),
        (1, "NVIDIA H100 80GB HBM3", "9.0", 81920),
    ]


def test_diagnosis_of_a_gpu_host_with_the_nvidia_runtime(nvml: Any) -> None:
    nvml("535.54.03")
    found = diagnose(
        RuntimeEngine(("nvidia", "runc")),
        host="fake://engine",
        find_buildkit=lambda: "/x/docker",
        cells=[cuda("12.4"), CPU_CELL],
        kb=KB,
    )
    assert found.ok and found.engine.version == "0.0-fake" and found.engine.nvidia_runtime is True
    assert found.buildkit.cli == "/x/docker"
    assert [fit.verdict for fit in found.cells or ()] == ["reduced", "cpu"]
    data = found.to_dict()
    assert data["schema"] == "envkit.doctor/1" and data["engine"]["nvidia_runtime"] is True
    assert json.loads(json.dumps(data)) == data


def test_unreachable_engine_is_recorded_with_its_host(nvml: Any) -> None:
    nvml(None)
    engine = FakeEngine(host="unix:///nowhere.sock")
    engine.go_down("no such file or directory")
    found = diagnose(engine, host=engine.host, find_buildkit=lambda: "/x/docker")
    assert not found.ok and found.engine.host == "unix:///nowhere.sock"
    assert "unix:///nowhere.sock" in (found.engine.error or "")
    assert found.engine.nvidia_runtime is None


# --- the command -------------------------------------------------------------------------------------


def fake_cli(folder: Path, can_build: bool) -> Path:
    """A `docker` script whose `build --help` does (or does not) offer --secret, as BuildKit CLIs do."""
    script = folder / "docker"
    option = "--secret" if can_build else "--tag"
    script.write_text(f"#!/bin/sh\necho 'Usage: docker build [OPTIONS] PATH  {option} stringArray'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nvml: Any) -> Any:
    """Point `envkit doctor` at a fake engine and a fake docker CLI; returns a setter for both."""

    def configure(engine: FakeEngine, *, driver: str | None = None, buildkit: bool = True) -> None:
        monkeypatch.setattr("envkit.commands.doctor.get_engine", lambda: engine)
        monkeypatch.setenv("ENVKIT_DOCKER_CLI", str(fake_cli(tmp_path, buildkit)))
        nvml(driver)

    return configure


def test_cli_reachable_engine_exit_0(host: Any, capsys: pytest.CaptureFixture[str]) -> None:
    host(FakeEngine())
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "fake://engine: Docker 0.0-fake (API 1.41)" in out
    assert "no NVIDIA driver" in out and "docker" in out


def test_cli_unreachable_engine_exit_3_and_names_the_host(
    host: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FakeEngine(host="unix:///nonexistent")
    engine.go_down()
    host(engine, buildkit=False)
    assert main(["doctor"]) == 3
    out = capsys.readouterr().out
    assert "unix:///nonexistent" in out
    assert "no --secret option" in out  # the finder's own reason for refusing the CLI


def test_cli_json_with_a_matrix_judges_every_cell(
    host: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        textwrap.dedent("""\
        version: 1
        image: {repository: acme/pytorch}
        axes: {torch: ["2.6"], cuda: ["12.4", "12.6"], python: ["3.11"], os: [ubuntu22.04], flavor: [runtime]}
    """)
    )
    host(RuntimeEngine(("runc",)), driver="550.54.14")
    assert main(["doctor", "--json", "--matrix", str(matrix)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpu"]["driver"] == "550.54.14" and len(data["gpu"]["gpus"]) == 1
    assert data["engine"]["nvidia_runtime"] is False
    assert data["buildkit"]["cli"].endswith("docker")
    verdicts = {c["cuda"]: c["verdict"] for c in data["cells"]}
    assert verdicts == {"12.4": "runs", "12.6": "reduced"}  # 12.6 needs 560.28.03


def test_cli_bad_matrix_is_a_config_error(
    host: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host(FakeEngine())
    matrix = tmp_path / "bad.yaml"
    matrix.write_text("version: 1\nimage: {repository: acme/x}\naxes: {torch: ['2.6']}\nbogus: 1\n")
    assert main(["doctor", "--matrix", str(matrix)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_cli_message_with_a_long_host_is_one_unbroken_line(
    host: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # A host address longer than any console width: messages are never wrapped, so it stays greppable.
    address = "unix:///" + "deep/" * 60 + "docker.sock"
    engine = FakeEngine(host=address)
    engine.go_down()
    host(engine, buildkit=False)
    assert main(["doctor"]) == 3
    assert address in capsys.readouterr().out
