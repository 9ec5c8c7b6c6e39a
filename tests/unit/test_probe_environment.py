"""What the measurement records about its surroundings: CPU model, CPUs, cgroup quota, load."""

from __future__ import annotations

from pathlib import Path

from envkit.probe import environment


def test_cpu_model_is_the_first_model_name(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU @ 3.00GHz\n\nmodel name\t: Other\n")
    assert environment.cpu_model(str(cpuinfo)) == "Some CPU @ 3.00GHz"
    assert environment.cpu_model(str(tmp_path / "missing"))  # falls back, never empty


def test_cgroup_v2_quota_in_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert environment.cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert environment.cgroup_cpu_quota(str(tmp_path)) is None


def test_cgroup_v1_quota_in_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert environment.cgroup_cpu_quota(str(tmp_path)) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert environment.cgroup_cpu_quota(str(tmp_path)) is None
    assert environment.cgroup_cpu_quota(str(tmp_path / "nothing")) is None


def test_observe_then_finish_has_the_contract_keys() -> None:
    observed = environment.finish(environment.observe())
    assert set(observed) == {
        "cpu_model",
        "cpus_available",
        "cgroup_cpu_quota",
        "loadavg_before",
        "loadavg_after",
    }
    assert observed["cpus_available"] >= 1
    assert len(observed["loadavg_after"]) == 3


def test_effective_cpus_take_the_quota_into_account() -> None:
    assert environment.effective_cpus({"cpus_available": 8, "cgroup_cpu_quota": 2.5}) == 2.5
    assert environment.effective_cpus({"cpus_available": 2, "cgroup_cpu_quota": None}) == 2.0
