"""Label comparisons (env.versions) and the driver verdict (gpu.driver) as pure functions."""

from __future__ import annotations

import pytest

from envkit.probe import versions
from envkit.probe.outcome import FAIL, PASS, WARN

CUDA_LABELS = {
    "io.envkit.torch": "2.6.0",
    "io.envkit.torch-variant": "cu124",
    "io.envkit.cuda": "12.4",
    "io.envkit.cudnn": "9.1.0.70",
    "io.envkit.python": "3.11",
}
CUDA_TORCH = versions.Shipped(
    python="3.11.9", torch="2.6.0+cu124", cuda="12.4", cudnn="9.1.0", arch_list=("sm_50", "sm_80", "sm_90")
)
CPU_TORCH = versions.Shipped(python="3.11.9", torch="2.6.0+cpu", cuda=None, cudnn=None)


def statuses(findings: list) -> list:
    return [f.status for f in findings]


def test_matching_cuda_image_passes_everything() -> None:
    findings = versions.compare_all(CUDA_LABELS, CUDA_TORCH)
    assert statuses(findings) == [PASS] * 4


def test_cpu_torch_in_a_cuda_image_fails_with_the_plain_message() -> None:
    findings = versions.compare_all(CUDA_LABELS, CPU_TORCH)
    messages = [f.message for f in findings if f.status == FAIL]
    assert "image labelled CUDA 12.4 ships CPU-only torch" in messages
    assert any("variant cpu but image labelled cu124" in m for m in messages)
    assert any("cuDNN" in m for m in messages)


def test_no_labels_means_nothing_to_compare() -> None:
    assert versions.compare_all({}, CPU_TORCH) == []
    assert versions.compare_all({"org.opencontainers.image.title": "x"}, CPU_TORCH) == []


def test_default_pypi_wheel_without_local_tag_derives_its_variant_from_cuda() -> None:
    shipped = versions.Shipped(python="3.11.1", torch="2.6.0", cuda="12.4", cudnn="9.1.0")
    assert statuses(versions.compare_torch("2.6.0", "cu124", shipped)) == [PASS]
    assert statuses(versions.compare_torch("2.6.0", "cu126", shipped)) == [FAIL]


def test_torch_version_mismatch_fails() -> None:
    findings = versions.compare_torch("2.5.1", "cu124", CUDA_TORCH)
    assert statuses(findings) == [FAIL]
    assert "2.6.0+cu124" in findings[0].message


def test_cuda_minor_mismatch_warns_and_major_mismatch_fails() -> None:
    assert statuses(versions.compare_cuda("12.6", CUDA_TORCH)) == [WARN]
    assert statuses(versions.compare_cuda("11.8", CUDA_TORCH)) == [FAIL]


def test_cpu_image_label_with_cuda_torch_warns() -> None:
    assert statuses(versions.compare_cuda("", CUDA_TORCH)) == [WARN]
    assert statuses(versions.compare_cuda("", CPU_TORCH)) == [PASS]


def test_cudnn_compares_three_components() -> None:
    assert statuses(versions.compare_cudnn("9.1.0.70", CUDA_TORCH)) == [PASS]
    assert statuses(versions.compare_cudnn("9.5.1.17", CUDA_TORCH)) == [WARN]
    assert statuses(versions.compare_cudnn("8.9.7.29", CUDA_TORCH)) == [FAIL]


def test_python_label() -> None:
    assert statuses(versions.compare_python("3.11", CUDA_TORCH)) == [PASS]
    assert statuses(versions.compare_python("3.12", CUDA_TORCH)) == [FAIL]


def test_arch_list_label_missing_entries_warn() -> None:
    assert statuses(versions.compare_arch_list("8.0;9.0", CUDA_TORCH)) == [PASS]
    assert statuses(versions.compare_arch_list("8.0;9.0;10.0", CUDA_TORCH)) == [WARN]
    assert versions.compare_arch_list("8.0", CPU_TORCH) == []


def test_torch_missing_under_labels_fails() -> None:
    missing = versions.Shipped(python="3.11.1", torch=None, cuda=None, cudnn=None)
    assert FAIL in statuses(versions.compare_all(CUDA_LABELS, missing))


@pytest.mark.parametrize(
    ("raw", "text"), [(90100, "9.1.0"), (91002, "9.10.2"), (8902, "8.9.2"), (None, None), (0, None)]
)
def test_format_cudnn(raw: int | None, text: str | None) -> None:
    assert versions.format_cudnn(raw) == text


@pytest.mark.parametrize(
    ("driver", "floor", "cuda", "status"),
    [
        ("550.54.14", "550.54.14", "12.4", PASS),
        ("570.86.15", "550.54.14", "12.4", PASS),
        ("535.104.05", "550.54.14", "12.4", WARN),  # below floor, above the 12.x compat floor
        ("525.60.13", "550.54.14", "12.4", WARN),
        ("520.61.05", "550.54.14", "12.4", FAIL),
        ("575.51.03", "580.65.06", "13.0", FAIL),  # 13.x compat floor is 580
        ("580.10", "590.44.01", "13.1", WARN),
        ("470.57.02", "520.61.05", "11.8", WARN),
        ("440.33", "520.61.05", "11.8", FAIL),
        ("535.54.03", None, "12.4", PASS),  # no floor label: compat floor only
        ("500.1", None, "12.4", FAIL),
        ("500.1", "550.54.14", None, FAIL),
    ],
)
def test_driver_verdict(driver: str, floor: str | None, cuda: str | None, status: str) -> None:
    assert versions.driver_verdict(driver, floor, cuda).status == status


def test_driver_too_old_message_names_cuda_and_floor() -> None:
    finding = versions.driver_verdict("520.61.05", "550.54.14", "12.4")
    assert finding.message == "driver 520.61.05 too old for CUDA 12.4, needs >= 550.54.14"


def test_version_tuple_compares_numerically() -> None:
    assert versions.version_tuple("550.54.14") > versions.version_tuple("550.9.99")
    assert versions.version_tuple("2.6.0+cu124") == (2, 6, 0)
