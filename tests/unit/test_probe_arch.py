"""gpu.arch classification: which kernels a torch wheel has for a device of a given capability."""

from __future__ import annotations

import pytest

from envkit.probe import arch

CU124 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize(
    ("capability", "arch_list", "kind", "via"),
    [
        ((9, 0), CU124, arch.EXACT, "sm_90"),
        ((8, 0), CU124, arch.EXACT, "sm_80"),
        ((8, 9), CU124, arch.COMPATIBLE, "sm_86"),  # Ada runs Ampere cubins
        ((8, 7), CU124, arch.COMPATIBLE, "sm_86"),  # highest lower minor wins
        ((6, 1), CU124, arch.COMPATIBLE, "sm_60"),
        ((10, 0), CU124, arch.NONE, None),  # Blackwell on a cu124 wheel: no kernels
        ((12, 0), CU124, arch.NONE, None),
        ((3, 7), CU124, arch.NONE, None),  # older than anything in the wheel
        ((12, 0), CU128, arch.EXACT, "sm_120"),
        ((12, 1), CU128, arch.COMPATIBLE, "sm_120"),
        ((10, 3), CU128, arch.COMPATIBLE, "sm_100"),
        ((13, 0), CU128, arch.PTX_ONLY, "compute_120"),  # PTX runs on any later major, JIT at load
        ((7, 0), CU128, arch.NONE, None),
    ],
)
def test_classify(capability: tuple, arch_list: list, kind: str, via: str | None) -> None:
    match = arch.classify(capability, arch_list)
    assert (match.kind, match.via) == (kind, via)


def test_ptx_below_the_device_is_chosen_highest_first() -> None:
    match = arch.classify((9, 0), ["sm_70", "compute_70", "compute_80"])
    assert (match.kind, match.via) == (arch.PTX_ONLY, "compute_80")


def test_ptx_above_the_device_does_not_run() -> None:
    assert arch.classify((8, 0), ["sm_90", "compute_90"]).kind == arch.NONE


def test_arch_specific_cubin_runs_only_on_exactly_that_device() -> None:
    assert arch.classify((9, 0), ["sm_90a"]).kind == arch.EXACT
    # sm_90a is not a family cubin: a hypothetical 9.1 device cannot use it.
    assert arch.classify((9, 1), ["sm_90a"]).kind == arch.NONE
    assert arch.classify((9, 1), ["sm_90"]).kind == arch.COMPATIBLE


def test_arch_specific_ptx_is_not_forward_compatible() -> None:
    assert arch.classify((10, 0), ["compute_90a"]).kind == arch.NONE
    assert arch.classify((9, 0), ["compute_90a"]).kind == arch.PTX_ONLY


def test_family_cubin_serves_later_minors_of_its_major() -> None:
    assert arch.classify((10, 3), ["sm_100f"]).kind == arch.COMPATIBLE
    assert arch.classify((12, 0), ["sm_100f"]).kind == arch.NONE


def test_exact_beats_ptx_and_cubin_beats_ptx() -> None:
    assert arch.classify((8, 6), ["compute_80", "sm_86"]).kind == arch.EXACT
    assert arch.classify((8, 6), ["compute_86", "sm_80"]).kind == arch.COMPATIBLE


def test_unknown_entries_are_ignored() -> None:
    assert arch.classify((9, 0), ["", "gfx90a", "sm_xx", "sm_90"]).kind == arch.EXACT
    assert arch.classify((9, 0), []).kind == arch.NONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sm_86", ("sm", 8, 6, "")),
        ("sm_90a", ("sm", 9, 0, "a")),
        ("sm_120", ("sm", 12, 0, "")),
        ("compute_100f", ("compute", 10, 0, "f")),
    ],
)
def test_parse_entry(text: str, expected: tuple) -> None:
    entry = arch.parse_entry(text)
    assert entry is not None
    assert (entry.kind, entry.major, entry.minor, entry.suffix) == expected


def test_label_arch_list_maps_to_torch_form() -> None:
    assert list(arch.label_to_arch_list("7.5;8.0;8.6;9.0;12.0+PTX")) == [
        "sm_75",
        "sm_80",
        "sm_86",
        "sm_90",
        "sm_120",
        "compute_120",
    ]
    assert list(arch.label_to_arch_list("9.0a")) == ["sm_90a"]


def test_sm_name() -> None:
    assert arch.sm_name((12, 0)) == "sm_120"
    assert arch.parse_capability("8.9") == (8, 9)
