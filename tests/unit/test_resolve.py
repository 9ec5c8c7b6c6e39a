"""Resolution rules against the shipped knowledge base: every drop reason, errors and derived fields."""

from __future__ import annotations

import textwrap

import pytest

from envkit.errors import ConfigError
from envkit.matrix import parse_matrix
from envkit.resolve import Plan, plan
from envkit.yamlsrc import load_text


def resolve(body: str) -> Plan:
    text = textwrap.dedent(body)
    if not text.startswith("image:"):
        text = "image: {repository: acme/pytorch}\n" + text
    return plan(parse_matrix(load_text(text, "m.yaml")))


def only_drop(body: str) -> str:
    result = resolve(body)
    assert not result.cells, [c.id for c in result.cells]
    [dropped] = result.dropped
    return dropped.reason


def test_cuda_cell_gets_cudnn_patch_base_driver_floor_and_arch_list() -> None:
    [cell] = resolve("axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.10'], os: [ubuntu22.04]}\n").cells
    assert (cell.torch, cell.variant, cell.cuda, cell.cuda_full) == ("2.6.0", "cu124", "12.4", "12.4.1")
    assert cell.cudnn == "9.1.0.70" and cell.driver_floor == "550.54.14" and cell.compat_floor == "525.60.13"
    assert cell.base == "nvidia/cuda:12.4.1-base-ubuntu22.04"
    assert cell.python_source == "distro" and cell.flavor == "runtime"
    assert cell.torch_index and cell.torch_index.endswith("/cu124")
    assert "9.0" in cell.arch_list
    assert cell.id == cell.tag == "2.6.0-cu124-py3.10-ubuntu22.04-runtime"


def test_devel_flavor_uses_the_devel_base_without_system_cudnn() -> None:
    [cell] = resolve(
        "axes: {torch: ['2.6'], cuda: ['12.6'], python: ['3.10'], os: [ubuntu22.04], flavor: [devel]}\n"
    ).cells
    assert cell.base == "nvidia/cuda:12.6.3-devel-ubuntu22.04" and cell.cudnn == "9.5.1.17"


def test_minor_version_resolves_to_newest_patch_and_local_suffix_picks_the_variant() -> None:
    [cell] = resolve("axes: {torch: ['2.6.0+cu126'], python: ['3.12'], os: [ubuntu24.04]}\n").cells
    assert (cell.torch, cell.variant, cell.cuda) == ("2.6.0", "cu126", "12.6")
    [newest] = resolve("axes: {torch: ['2.7'], cuda: ['12.8'], python: ['3.12'], os: [ubuntu24.04]}\n").cells
    assert newest.torch == "2.7.1"


def test_missing_variant_is_dropped_with_the_known_variants() -> None:
    reason = only_drop("axes: {torch: ['2.6'], cuda: ['12.8'], python: ['3.10'], os: [ubuntu22.04]}\n")
    assert reason.startswith(
        "torch 2.6.0 has no cu128 wheels; its variants are cpu, cu118, cu124, cu126; "
        "cu128 wheels: torch 2.7.0 … "
    )


def test_a_release_the_knowledge_base_lacks_is_not_said_not_to_exist() -> None:
    reason = only_drop("axes: {torch: ['1.13'], cuda: ['11.8']}\n")
    assert reason.startswith("the knowledge base has no row for torch 1.13: it knows 2.4.0 … ")
    assert "(source: PyPI" in reason and reason.endswith("add it with scripts/update_compat.py")


def test_a_cuda_minor_the_knowledge_base_lacks_is_named_as_such() -> None:
    reason = only_drop("axes: {torch: ['2.8'], cuda: ['12.99'], python: ['3.12'], os: [ubuntu24.04]}\n")
    assert reason.startswith("the knowledge base has no row for CUDA 12.99: it knows CUDA 11.8 … ")
    assert "scripts/update_compat.py" in reason and "has no cu1299 wheels" not in reason


def test_an_os_without_the_cuda_image_outranks_the_python_default_chosen_for_it() -> None:
    # No Python is given and the knowledge base has no python3 row for ubuntu18.04: the missing image is
    # the fact to report, not the Python default that could not be chosen.
    reason = only_drop("axes: {torch: ['2.8'], cuda: ['12.8'], os: [ubuntu18.04]}\n")
    assert reason == "nvidia/cuda 12.8.1 images exist for Ubuntu 20.04, 22.04, 24.04, not 18.04"


def test_an_ubuntu_no_image_line_lists_is_a_gap_in_the_knowledge_base() -> None:
    reason = only_drop("axes: {torch: ['2.8'], cuda: ['12.8'], os: [ubuntu28.04]}\n")
    assert reason.startswith("the knowledge base has no nvidia/cuda image for Ubuntu 28.04: 12.8")
    assert "(source: " in reason and "envkit/data/cuda_images.csv" in reason


def test_an_os_the_knowledge_base_lacks_without_a_python_says_so() -> None:
    reason = only_drop("axes: {torch: ['2.8'], cuda: [none], os: [debian14], flavor: [cpu]}\n")
    assert reason.startswith("no python given, and the knowledge base has no row for debian14's python3")


def test_python_outside_the_release_is_dropped() -> None:
    reason = only_drop("axes: {torch: ['2.4'], cuda: ['12.4'], python: ['3.13'], os: [ubuntu22.04]}\n")
    assert reason == "torch 2.4.1 supports Python 3.8–3.12, not 3.13"


def test_ubuntu_version_without_that_cuda_image_is_dropped() -> None:
    reason = only_drop("axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.12'], os: [ubuntu24.04]}\n")
    assert reason == "nvidia/cuda 12.4.1 images exist for Ubuntu 20.04, 22.04, not 24.04"


def test_cuda_on_debian_needs_a_base_override() -> None:
    reason = only_drop("axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.11'], os: [debian12]}\n")
    assert "Ubuntu-based" in reason and "base" in reason
    kept = resolve(
        "base: 'registry.example/cuda:{cuda_full}-debian'\n"
        "axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.11'], os: [debian12]}\n"
    )
    assert kept.cells[0].base == "registry.example/cuda:12.4.1-debian"


def test_flavor_and_cuda_must_agree() -> None:
    assert "flavor cpu takes cuda: none" in only_drop(
        "axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.10'], os: [ubuntu22.04], flavor: [cpu]}\n"
    )
    assert "flavor runtime needs a CUDA variant" in only_drop(
        "axes: {torch: ['2.6'], cuda: [none], python: ['3.11'], os: [debian12], flavor: [runtime]}\n"
    )


def test_cpu_cells_get_a_plain_distribution_base() -> None:
    cells = resolve(
        "axes: {torch: ['2.6'], cuda: [none], python: ['3.11'], os: [debian12], flavor: [cpu, devel]}\n"
    ).cells
    assert [(c.flavor, c.base, c.cudnn, c.driver_floor) for c in cells] == [
        ("cpu", "debian:bookworm-slim", None, None),
        ("devel", "debian:bookworm-slim", None, None),
    ]


def test_python_source_auto_picks_standalone_when_the_os_ships_another_python() -> None:
    [cell] = resolve("axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.12'], os: [ubuntu22.04]}\n").cells
    assert (cell.python_source, cell.python_full) == ("standalone", "3.12.7")
    reason = only_drop(
        "python_source: distro\naxes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.12'], os: [ubuntu22.04]}\n"
    )
    assert reason.startswith("ubuntu22.04 ships Python 3.10, not 3.12")


def test_pypi_source_only_has_the_default_variant() -> None:
    reason = only_drop(
        "torch_source: pypi\naxes: {torch: ['2.6'], cuda: ['12.6'], python: ['3.10'], os: [ubuntu22.04]}\n"
    )
    assert (
        reason == "PyPI's torch 2.6.0 wheel for Linux is the cu124 build, not cu126; use torch_source: index"
    )


def test_requested_cudnn_must_match_the_wheel_pin() -> None:
    [cell] = resolve(
        "axes: {torch: ['2.6'], cuda: ['12.4'], cudnn: ['9.1'], python: ['3.10'], os: [ubuntu22.04]}\n"
    ).cells
    assert cell.cudnn == "9.1.0.70"
    with pytest.raises(ConfigError) as info:
        resolve(
            "axes: {torch: ['2.6'], cuda: ['12.4'], cudnn: ['8.9'], python: ['3.10'], os: [ubuntu22.04]}\n"
        )
    assert "pins cuDNN 9.1.0.70" in info.value.message
    assert "pytorch/pytorch#119989" in (info.value.hint or "")


def test_explicit_impossible_include_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(
            "axes: {torch: ['2.6'], cuda: ['12.4'], python: ['3.10'], os: [ubuntu22.04]}\n"
            "include:\n  - {torch: '2.6', cuda: '12.8', python: '3.12', os: ubuntu24.04}\n"
        )
    assert info.value.where.line == 4 and "explicitly included" in (info.value.hint or "")


def test_strict_turns_any_drop_into_an_error() -> None:
    with pytest.raises(ConfigError, match="no cu128 wheels"):
        resolve(
            "strict: true\naxes: {torch: ['2.6'], cuda: ['12.4', '12.8'], python: ['3.10'], "
            "os: [ubuntu22.04]}\n"
        )


def test_bad_cuda_text_is_an_error_where_it_is_read() -> None:
    with pytest.raises(ConfigError, match=r"axes.cuda\[0\]: cuda `12` is not a CUDA version") as caught:
        resolve("axes: {torch: ['2.6'], cuda: ['12']}\n")
    assert caught.value.hint is not None and "did you mean `12." in caught.value.hint


def test_duplicate_cells_are_dropped_and_tag_collisions_are_errors() -> None:
    result = resolve("axes: {torch: ['2.6', '2.6.0'], cuda: ['12.4'], python: ['3.10'], os: [ubuntu22.04]}\n")
    assert len(result.cells) == 1 and result.dropped[0].reason.startswith("duplicate of cell")
    with pytest.raises(ConfigError, match="both get the tag"):
        resolve(
            "image: {repository: acme/pytorch, tag: '{torch}'}\n"
            "axes: {torch: ['2.6'], cuda: ['12.4', '12.6'], python: ['3.10'], os: [ubuntu22.04]}\n"
        )


def test_include_that_duplicates_a_cell_with_other_settings_is_an_error() -> None:
    body = (
        "axes: {torch: ['2.8'], cuda: ['12.8'], python: ['3.12'], os: [ubuntu24.04], flavor: [devel]}\n"
        "include:\n  - {torch: '2.8.0', cuda: '12.8', python: '3.12', os: ubuntu24.04, flavor: devel, "
        "packages: [ninja==1.11.1.4]}\n"
    )
    with pytest.raises(ConfigError, match="already produce") as info:
        resolve(body)
    assert "'2.8' is not '2.8.0'" in (info.value.hint or "")
    extended = resolve(body.replace("torch: '2.8.0'", "torch: '2.8'"))
    assert [c.packages for c in extended.cells] == [("ninja==1.11.1.4",)]


def test_shipped_matrices_resolve() -> None:
    from envkit.matrix import load_matrix

    pytorch = plan(load_matrix("images/pytorch.yaml"))
    assert len(pytorch.cells) >= 6 and not pytorch.dropped
    assert {c.torch for c in pytorch.cells} >= {"2.7.1", "2.8.0"}
    assert {c.flavor for c in pytorch.cells} == {"runtime", "devel"}
    assert {c.python_source for c in pytorch.cells} == {"distro", "standalone"}
    demo = plan(load_matrix("images/cpu-demo.yaml"))
    assert [c.flavor for c in demo.cells] == ["cpu", "devel"]
