"""The full profile end to end on the CPU (a smoke run of what scripts/gpu-check.sh runs on a GPU), with
one --budget-s, and throughput.generate's measurement contract: medians, stats, noise, environment."""

from __future__ import annotations

import json

import pytest

from envkit.probe import cli

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow
STATS_KEYS = {"median", "min", "max", "spread", "n"}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("probe") / "full.json"
    assert cli.main(["--profile", "full", "--budget-s", "900", "--quiet", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_full_profile_completes_within_its_budget(full_report: dict) -> None:
    assert full_report["run"]["state"] == "complete"
    assert full_report["run"]["budget_s"] == 900.0
    assert full_report["run"]["duration_s"] < 900.0
    assert not [c["id"] for c in full_report["checks"] if c["status"] == "ERROR"]


def test_throughput_reports_medians_of_repeated_samples(full_report: dict) -> None:
    check = {c["id"]: c for c in full_report["checks"]}["throughput.generate"]
    metrics, details = check["metrics"], check["details"]
    assert check["status"] in ("PASS", "WARN"), check["summary"]
    stats = details["stats"]
    for name in (
        "decode_tokens_per_s",
        "tpot_ms",
        "ttft_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "tokens_per_s_nocache",
    ):
        assert set(stats[name]) == STATS_KEYS, name
        assert stats[name]["n"] >= 2
        assert stats[name]["min"] <= stats[name]["median"] <= stats[name]["max"]
        assert metrics[name] == pytest.approx(stats[name]["median"], rel=1e-4, abs=1e-3), name
    assert stats["decode_tokens_per_s"]["n"] == details["repetitions"]  # the warm-up run is not a sample
    assert isinstance(details["noisy"], bool)
    assert (details["noise_reason"] is None) == (not details["noisy"])
    environment = details["environment"]
    assert set(environment) == {
        "cpu_model",
        "cpus_available",
        "cgroup_cpu_quota",
        "loadavg_before",
        "loadavg_after",
    }
    assert environment["cpus_available"] >= 1
    assert details["mode"] == "eager"
