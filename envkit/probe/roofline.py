"""Memory-bandwidth roofline for batch-1 decode: every generated token reads all weights once plus
the KV cache up to the current position, so tokens/s <= peak bandwidth / bytes read per token."""

from __future__ import annotations

# Vendor spec-sheet peaks in GB/s (NVIDIA's A100, H100 and H200 data sheets on nvidia.com; the L4 and
# RTX 4090 product pages). Checked in order: first match wins,
# so the more specific names come first ("H100 NVL" before "H100").
_PEAK_TABLE = (
    (("H200",), 4800.0),
    (("H100", "NVL"), 3900.0),
    (("H100", "PCIE"), 2000.0),
    (("H100",), 3350.0),
    (("A100", "80GB"), 2039.0),
    (("A100",), 1555.0),
    (("RTX 4090",), 1008.0),
    ((" L4",), 300.0),
)

SOURCE_NVML = "nvml"
SOURCE_TABLE = "table"


def peak_from_clocks(mem_clock_max_mhz: int | None, bus_width_bits: int | None) -> float | None:
    """Peak GB/s from NVML's max memory clock and bus width (double data rate); None when unknown."""
    if not mem_clock_max_mhz or not bus_width_bits:
        return None
    return mem_clock_max_mhz * 1e6 * bus_width_bits * 2 / 8 / 1e9


def peak_from_name(name: str) -> float | None:
    """Peak GB/s from the spec-sheet table by device name; None for a device not in the table."""
    padded = " " + name.upper().replace("-", " ") + " "
    for needles, gbps in _PEAK_TABLE:
        if all(_has_word(padded, needle) for needle in needles):
            return gbps
    return None


def _has_word(padded: str, needle: str) -> bool:
    # " L4" must not match "L40": require the needle to end at a word boundary.
    start = padded.find(needle.upper())
    while start >= 0:
        end = start + len(needle)
        if end >= len(padded) or not padded[end].isalnum():
            return True
        start = padded.find(needle.upper(), start + 1)
    return False


def peak_bandwidth(
    name: str, mem_clock_max_mhz: int | None, bus_width_bits: int | None
) -> tuple[float | None, str | None]:
    """(peak GB/s, source) preferring NVML clocks, else the name table; (None, None) when unknown."""
    from_clocks = peak_from_clocks(mem_clock_max_mhz, bus_width_bits)
    if from_clocks:
        return from_clocks, SOURCE_NVML
    from_name = peak_from_name(name)
    if from_name:
        return from_name, SOURCE_TABLE
    return None, None


def kv_bytes_per_position(*, n_layers: int, n_kv_heads: int, head_dim: int, element_size: int) -> int:
    """Bytes of K and V stored (and read back at every decode step) for one sequence position."""
    return n_layers * 2 * n_kv_heads * head_dim * element_size


def bytes_per_token(*, weight_bytes: int, kv_bytes_per_pos: int, context_len: float) -> float:
    """Bytes one decode step reads: all weights once plus the KV cache up to `context_len`."""
    return weight_bytes + kv_bytes_per_pos * context_len


def utilisation(*, bytes_read_per_token: float, tpot_s: float, peak_gbps: float) -> float:
    """Achieved bandwidth (bytes per token / time per token) as a fraction of the peak."""
    if tpot_s <= 0 or peak_gbps <= 0:
        raise ValueError("tpot and peak bandwidth must be positive")
    return bytes_read_per_token / tpot_s / (peak_gbps * 1e9)
