"""The quick profile end to end on this CPU-only machine, and label comparisons through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envkit.probe import cli

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("probe") / "quick.json"
    assert cli.main(["--profile", "quick", "--quiet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    return {check["id"]: check for check in report["checks"]}


def test_quick_profile_runs_every_public_check(quick_report: dict) -> None:
    assert list(quick_report) == [
        "env.python",
        "env.torch",
        "env.versions",
        "env.shm",
        "env.nvidia-env",
        "gpu.visibility",
        "gpu.driver",
        "gpu.arch",
        "gpu.kernels",
        "oom.gpu",
        "oom.cpu",
        "service.jupyter",
        "service.ssh",
        "throughput.generate",
    ]
    assert not [c for c in quick_report.values() if c["status"] == "ERROR"]


def test_env_checks(quick_report: dict) -> None:
    assert quick_report["env.python"]["status"] == "PASS"
    assert quick_report["env.torch"]["status"] == "PASS"
    assert quick_report["env.torch"]["details"]["torch"] == torch.__version__
    assert quick_report["env.versions"]["status"] == "SKIP"  # no labels: nothing promised
    shm = quick_report["env.shm"]
    assert shm["status"] == "PASS" or "--shm-size" in shm["hint"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the CPU-only behaviour")
def test_gpu_checks_do_not_apply_to_cpu_torch_without_cuda_labels(quick_report: dict) -> None:
    for check_id in ("gpu.visibility", "gpu.driver", "gpu.arch", "gpu.kernels", "oom.gpu"):
        check = quick_report[check_id]
        assert check["status"] == "N/A", check_id
        assert check["summary"].startswith("not applicable: a CPU image")


def test_oom_cpu_contract_holds(quick_report: dict) -> None:
    oom = quick_report["oom.cpu"]
    assert oom["status"] == "PASS", oom["summary"]
    assert oom["details"]["raised"] == "RuntimeError"
    assert "alloc" in oom["details"]["message"].lower()


def test_throughput_with_working_kv_cache(quick_report: dict) -> None:
    check = quick_report["throughput.generate"]
    metrics, details = check["metrics"], check["details"]
    assert check["status"] == "PASS", check["summary"]
    assert metrics["kv_speedup"] > 1
    assert details["checksum_nocache"] == details["checksum_cached_prefix"]
    assert len(details["checksum"]) == 64
    assert details["preset"] == "tiny"
    assert details["repetitions"] >= 2
    assert details["kv_speedup_context_len"] == 512
    assert isinstance(details["spread"], float)
    for key in (
        "decode_tokens_per_s",
        "ttft_ms",
        "tpot_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "kv_speedup",
        "peak_memory_mib",
        "tokens_per_s_nocache",
    ):
        assert metrics[key] > 0, key
    assert metrics["itl_p50_ms"] <= metrics["itl_p99_ms"]
    assert "bandwidth_utilisation" not in metrics  # GPU only


def test_cpu_torch_under_cuda_labels_fails(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "io.envkit.torch": torch.__version__.split("+")[0],
                "io.envkit.torch-variant": "cu124",
                "io.envkit.cuda": "12.4",
                "io.envkit.cudnn": "9.1.0.70",
                "io.envkit.python": "3.11",
            }
        )
    )
    out = tmp_path / "r.json"
    assert (
        cli.main(
            [
                "--only",
                "env.versions",
                "env.nvidia-env",
                "--labels",
                str(labels),
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    checks = {c["id"]: c for c in json.loads(out.read_text())["checks"]}
    versions = checks["env.versions"]
    if torch.version.cuda is None:
        assert versions["status"] == "FAIL"
        assert "image labelled CUDA 12.4 ships CPU-only torch" in versions["summary"]
        assert versions["hint"]
    assert checks["env.nvidia-env"]["details"]["cuda_image"] is True


def test_matching_cpu_labels_pass(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    variant = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
    import platform

    labels.write_text(
        json.dumps(
            {
                "io.envkit.torch": torch.__version__.split("+")[0],
                "io.envkit.torch-variant": variant,
                "io.envkit.cuda": torch.version.cuda or "",
                "io.envkit.python": ".".join(platform.python_version_tuple()[:2]),
            }
        )
    )
    out = tmp_path / "r.json"
    assert cli.main(["--only", "env.versions", "--labels", str(labels), "--quiet", "--out", str(out)]) == 0
    check = json.loads(out.read_text())["checks"][0]
    assert check["status"] == "PASS", check["summary"]
