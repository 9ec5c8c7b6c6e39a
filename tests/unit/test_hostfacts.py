"""Host facts that move the numbers: CPU model, cgroup quota, load, GPU clocks and power limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envkit import hostfacts


def test_cpu_model_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) 8480+\n")
    assert hostfacts.cpu_model(cpuinfo) == "Intel(R) Xeon(R) 8480+"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\n")
    assert hostfacts.cpu_model(cpuinfo) == "BCM2835"


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota_v2_and_v1(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert hostfacts.cgroup_cpu_quota(tmp_path) == cores


def test_cpu_facts_have_the_schema_2_keys(tmp_path: Path) -> None:
    facts = hostfacts.cpu_facts(cpuinfo=tmp_path / "none", cgroup=tmp_path)
    assert set(facts) == {"cpu_model", "cpu_count", "cpus_available", "cgroup_cpu_quota"}
    assert facts["cpus_available"] is None or facts["cpus_available"] >= 1
    load = hostfacts.load_average()
    assert load is None or (len(load) == 3 and all(value >= 0 for value in load))


class _FakeNvml:
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    class NotSupported(Exception):
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        return 1980 if clock == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerManagementLimit(self, handle: int) -> int:
        if handle == 1:
            raise self.NotSupported()
        return 700_000

    def nvmlDeviceGetUUID(self, handle: int) -> Any:
        return b"GPU-aaa" if handle == 0 else "GPU-bbb"


def test_gpu_facts_by_uuid_with_absent_values_as_none() -> None:
    facts = hostfacts.gpu_facts(_FakeNvml())
    assert facts["GPU-aaa"] == {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "power_limit_w": 700.0}
    assert facts["GPU-bbb"]["power_limit_w"] is None
    gpus = [{"index": 0, "name": "H100", "uuid": "GPU-bbb"}, {"index": 5, "name": "H100", "uuid": None}]
    enriched = hostfacts.with_gpu_facts(gpus, facts)
    assert enriched[0]["sm_clock_mhz"] == 1980 and enriched[0]["power_limit_w"] is None
    assert "sm_clock_mhz" not in enriched[1]  # no UUID and no host GPU #5: nothing guessed


def test_validate_writes_the_host_facts_it_collected_on_the_host() -> None:
    from envkit.engine import ExitStatus
    from envkit.validate import RunSettings, _assemble, _fate

    settings = RunSettings(cpus=0.5)
    status = ExitStatus(code=0, oom_killed=False, timed_out=False, error=None)
    report = _assemble(
        {"checks": [], "host": {"gpus": [], "cpu_model": "claimed by the image"}},
        settings,
        mode="local",
        image=None,
        ref=None,
        runner=_fate(status, 1.0, "", settings),
        load_before=(1.0, 2.0, 3.0),
    )
    assert report.host.loadavg_before == (1.0, 2.0, 3.0)
    assert report.host.cpu_model != "claimed by the image"
    assert report.host.cpus_available == hostfacts.cpus_available()
    assert report.runner is not None and report.runner.cpus == 0.5


def test_validate_cpus_becomes_the_containers_cpu_quota() -> None:
    from envkit.engine import ImageInfo
    from envkit.engine.docker_sdk import _host_config_args
    from envkit.validate import RunSettings, probe_container_spec

    image = ImageInfo(id="sha256:" + "a" * 64, tags=(), labels={}, size=0, created="")
    spec = probe_container_spec(image, RunSettings(cpus=0.25))
    assert spec.nano_cpus == 250_000_000 and _host_config_args(spec)["nano_cpus"] == 250_000_000
    assert "nano_cpus" not in _host_config_args(probe_container_spec(image, RunSettings()))


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_validate_refuses_a_cpu_quota_that_is_not_a_core_count(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from envkit import cli

    assert cli.main(["validate", "some/image:tag", "--cpus", value]) == 2
    assert "--cpus" in capsys.readouterr().err
