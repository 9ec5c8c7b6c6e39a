"""Matrix parsing and GitHub-Actions-style expansion."""

from __future__ import annotations

import textwrap

import pytest

from envkit.errors import ConfigError
from envkit.matrix import expand, parse_matrix
from envkit.yamlsrc import load_text


def parse(text: str):
    return parse_matrix(load_text(textwrap.dedent(text), "m.yaml"))


def values(matrix) -> list[dict[str, str]]:
    return [dict(r.values) for r in expand(matrix)]


BASE = """
image: {repository: acme/pytorch}
"""


def test_axes_form_a_cartesian_product_in_axis_order() -> None:
    m = parse(BASE + "axes:\n  python: ['3.11', '3.12']\n  torch: ['2.6', '2.7']\n")
    assert values(m) == [
        {"torch": "2.6", "python": "3.11"},
        {"torch": "2.6", "python": "3.12"},
        {"torch": "2.7", "python": "3.11"},
        {"torch": "2.7", "python": "3.12"},
    ]


def test_versions_keep_their_written_text() -> None:
    # YAML reads 2.10 as the float 2.1; a matrix must not.
    m = parse(BASE + "axes:\n  torch: [2.10, 2.9]\n  python: [3.10]\n")
    assert [v["torch"] for v in values(m)] == ["2.10", "2.9"]
    assert values(m)[0]["python"] == "3.10"


def test_exclude_removes_partial_matches() -> None:
    m = parse(
        BASE
        + """
axes: {torch: ['2.6', '2.7'], cuda: ['12.4', '12.6'], python: ['3.11']}
exclude:
  - {torch: '2.7', cuda: '12.4'}
"""
    )
    assert {(v["torch"], v["cuda"]) for v in values(m)} == {("2.6", "12.4"), ("2.6", "12.6"), ("2.7", "12.6")}


def test_include_extends_matching_combinations_without_overwriting_originals() -> None:
    m = parse(
        BASE
        + """
axes: {torch: ['2.6', '2.7'], python: ['3.11']}
include:
  - {torch: '2.7', flavor: devel}
"""
    )
    result = values(m)
    assert {"torch": "2.7", "python": "3.11", "flavor": "devel"} in result
    assert {"torch": "2.6", "python": "3.11"} in result
    assert len(result) == 2


def test_include_that_contradicts_every_combination_adds_an_explicit_cell() -> None:
    m = parse(
        BASE
        + """
axes: {torch: ['2.6'], python: ['3.11']}
include:
  - {torch: '2.8', python: '3.12'}
"""
    )
    requests = expand(m)
    assert [dict(r.values) for r in requests][-1] == {"torch": "2.8", "python": "3.12"}
    assert requests[-1].explicit and requests[-1].origin == "include[0]"
    assert not requests[0].explicit


def test_later_include_may_overwrite_a_value_an_earlier_include_added() -> None:
    m = parse(
        BASE
        + """
axes: {torch: ['2.6']}
include:
  - {flavor: runtime}
  - {flavor: devel}
"""
    )
    assert values(m) == [{"torch": "2.6", "flavor": "devel"}]


def test_include_settings_and_packages_merge() -> None:
    m = parse(
        BASE
        + """
packages: ["numpy==2.1.3"]
axes: {torch: ['2.6', '2.7']}
include:
  - {torch: '2.7', packages: ["transformers>=4.46,<5"], torch_source: pypi}
"""
    )
    requests = expand(m)
    assert requests[0].settings.packages == ("numpy==2.1.3",)
    assert requests[1].settings.packages == ("numpy==2.1.3", "transformers>=4.46,<5")
    assert requests[1].settings.torch_source == "pypi"


def test_defaults_fill_missing_axes() -> None:
    m = parse(BASE + "defaults: {os: ubuntu22.04}\naxes: {torch: ['2.6']}\n")
    assert values(m) == [{"os": "ubuntu22.04", "torch": "2.6"}]


def test_cuda_none_is_normalised() -> None:
    m = parse(BASE + "axes: {torch: ['2.6'], cuda: [cpu, none, '12.4']}\n")
    assert [v["cuda"] for v in values(m)] == ["none", "12.4"]


@pytest.mark.parametrize(
    ("text", "line", "key", "hint"),
    [
        (BASE + "axis: {torch: ['2.6']}\n", 3, "axis", "did you mean `axes`"),
        (BASE + "axes: {torhc: ['2.6']}\n", 3, "axes.torhc", "did you mean `torch`"),
        (BASE + "axes: {torch: []}\n", 3, "axes.torch", None),
        (BASE + "axes: {torch: ['2.6']}\ninclude: [{torch: '2.7', bsae: x}]\n", 4, "include[0].bsae", "base"),
        (BASE + "axes: {torch: ['2.6']}\npython_source: conda\n", 4, "python_source", None),
        ("image: {repository: Acme/PyTorch}\naxes: {torch: ['2.6']}\n", 1, "image.repository", None),
        (BASE + "axes:\n  torch:\n    - '2.6'\n    - '2.6; rm -rf /'\n", 6, "axes.torch[1]", None),
        (BASE + "image_tag: x\n", 3, "image_tag", "did you mean `image`"),
        (BASE + "axes: {torch: ['2.6']}\nversion: 2\n", 4, "version", None),
    ],
)
def test_bad_input_names_file_line_and_key(text: str, line: int, key: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert info.value.where is not None
    assert (info.value.where.file, info.value.where.line, info.value.where.key) == ("m.yaml", line, key)
    if hint:
        assert hint in (info.value.hint or "")


def test_tag_template_fields_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown tag field"):
        parse("image: {repository: a/b, tag: '{torch}-{cdua}'}\naxes: {torch: ['2.6']}\n")
    with pytest.raises(ConfigError, match="image tag"):
        parse("image: {repository: a/b, tag: '{torch}/../x'}\naxes: {torch: ['2.6']}\n")


def test_labels_reject_reserved_prefixes_and_multiline_values() -> None:
    with pytest.raises(ConfigError, match="set by envkit"):
        parse(BASE + "axes: {torch: ['2.6']}\nlabels: {io.envkit.cell: x}\n")
    with pytest.raises(ConfigError, match="one-line"):
        parse(BASE + "axes: {torch: ['2.6']}\nlabels: {com.example.x: \"a\\nRUN evil\"}\n")


def test_empty_matrix_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no cells"):
        parse(BASE)


def test_too_many_raw_cells_is_an_error() -> None:
    many = ", ".join(f"'1.{i}'" for i in range(60))
    m = parse(
        BASE
        + f"axes: {{torch: [{many}], python: [{many}], os: [{', '.join(f'ubuntu{i + 10}.04' for i in range(60))}]}}\n"
    )
    with pytest.raises(ConfigError, match="limit"):
        expand(m)


def test_registry_may_carry_a_port_and_prefix() -> None:
    m = parse("image: {repository: acme/pytorch, registry: 'localhost:5000/team'}\naxes: {torch: ['2.6']}\n")
    assert m.image.full_repository == "localhost:5000/team/acme/pytorch"
    with pytest.raises(ConfigError, match="registry"):
        parse("image: {repository: acme/pytorch, registry: 'http://x'}\naxes: {torch: ['2.6']}\n")
