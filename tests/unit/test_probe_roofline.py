"""Roofline arithmetic: peak bandwidth from NVML clocks or the spec table, bytes per token, utilisation."""

from __future__ import annotations

import pytest

from envkit.probe import roofline


@pytest.mark.parametrize(
    ("name", "gbps"),
    [
        ("NVIDIA H100 80GB HBM3", 3350.0),
        ("NVIDIA H100 PCIe", 2000.0),
        ("NVIDIA H100 NVL", 3900.0),
        ("NVIDIA H200", 4800.0),
        ("NVIDIA A100-SXM4-40GB", 1555.0),
        ("NVIDIA A100-SXM4-80GB", 2039.0),
        ("NVIDIA A100 80GB PCIe", 2039.0),
        ("NVIDIA L4", 300.0),
        ("NVIDIA GeForce RTX 4090", 1008.0),
        ("NVIDIA L40S", None),  # "L4" must not match "L40S"
        ("Tesla T4", None),
    ],
)
def test_peak_from_name(name: str, gbps: float | None) -> None:
    assert roofline.peak_from_name(name) == gbps


def test_peak_from_nvml_clocks_matches_spec_sheets() -> None:
    # H100 SXM: 2619 MHz HBM3 on a 5120-bit bus; RTX 4090: 10501 MHz GDDR6X on 384 bits.
    assert roofline.peak_from_clocks(2619, 5120) == pytest.approx(3352.3, rel=1e-3)
    assert roofline.peak_from_clocks(10501, 384) == pytest.approx(1008.1, rel=1e-3)
    assert roofline.peak_from_clocks(None, 5120) is None
    assert roofline.peak_from_clocks(2619, 0) is None


def test_peak_bandwidth_prefers_nvml_then_table() -> None:
    assert roofline.peak_bandwidth("NVIDIA H100 80GB HBM3", 2619, 5120)[1] == roofline.SOURCE_NVML
    assert roofline.peak_bandwidth("NVIDIA H100 80GB HBM3", None, None) == (3350.0, roofline.SOURCE_TABLE)
    assert roofline.peak_bandwidth("Mystery GPU", None, None) == (None, None)


def test_llama_1b_bf16_roofline_on_h100() -> None:
    # ~1.24e9 parameters x 2 bytes = ~2.47 GB of bf16 weights per token -> <= ~1,355 tok/s on an H100 SXM.
    weights = 1_235_814_400 * 2
    kv = roofline.kv_bytes_per_position(n_layers=16, n_kv_heads=8, head_dim=64, element_size=2)
    assert kv == 32768
    per_token = roofline.bytes_per_token(weight_bytes=weights, kv_bytes_per_pos=kv, context_len=0)
    ceiling = 3350e9 / per_token
    assert 1300 < ceiling < 1400
    # Running exactly at the ceiling is 100 % utilisation; twice as slow is 50 %.
    assert roofline.utilisation(bytes_read_per_token=per_token, tpot_s=1 / ceiling, peak_gbps=3350) == (
        pytest.approx(1.0)
    )
    assert roofline.utilisation(bytes_read_per_token=per_token, tpot_s=2 / ceiling, peak_gbps=3350) == (
        pytest.approx(0.5)
    )


def test_kv_cache_bytes_count_toward_each_token() -> None:
    assert roofline.bytes_per_token(weight_bytes=1000, kv_bytes_per_pos=10, context_len=50.5) == 1505.0


def test_utilisation_rejects_nonpositive_inputs() -> None:
    with pytest.raises(ValueError):
        roofline.utilisation(bytes_read_per_token=1.0, tpot_s=0.0, peak_gbps=1.0)
