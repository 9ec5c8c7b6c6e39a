"""Values are checked where they are read: typos are exit 2 naming file:line with a "did you mean",
entries that match nothing are warned about, and a plan of zero cells is not a success."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from envkit.cli import main

HEAD = "version: 1\nimage: {repository: acme/pytorch}\n"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


def plan_exit(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = main(["plan", str(path), *flags])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("axis", "typo", "line", "suggestion"),
    [
        ("os", "ubuntu24", 5, "did you mean `ubuntu24.04`?"),
        ("flavor", "runtme", 5, "did you mean `runtime`?"),
        ("cuda", "cu128", 5, "did you mean `12.8`?"),
        ("cuda", "cuda12.6", 5, "did you mean `12.6`?"),
    ],
)
def test_a_misspelt_axis_value_is_exit_2_naming_file_line_and_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], axis: str, typo: str, line: int, suggestion: str
) -> None:
    path = write(tmp_path, f"axes:\n  torch: ['2.8']\n  {axis}: [{typo}]\n")
    code, err = plan_exit(path, capsys)
    assert code == 2
    first, hint = err.rstrip("\n").split("\n")
    assert first.startswith(f"envkit: error: {path}:{line}: axes.{axis}[0]: ") and f"`{typo}`" in first
    assert suggestion in hint


def test_typos_in_include_exclude_and_defaults_are_caught_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for body, key in (
        ("axes: {torch: ['2.8']}\ndefaults: {flavor: devl}\n", "defaults.flavor"),
        ("axes: {torch: ['2.8']}\nexclude:\n  - {os: debian-12}\n", "exclude[0].os"),
        ("include:\n  - {torch: '2.8', cuda: cu126}\n", "include[0].cuda"),
    ):
        code, err = plan_exit(write(tmp_path, body), capsys)
        assert code == 2 and f": {key}: " in err and "did you mean" in err, err


def test_an_exclude_that_matches_nothing_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """\
        axes: {torch: ['2.8'], cuda: ['12.8'], python: ['3.12'], os: [ubuntu24.04]}
        exclude:
          - {os: ubuntu22.04}
        """,
    )
    code, err = plan_exit(path, capsys)
    assert code == 0
    assert f"envkit: warning: {path}:5: exclude[0]: (os=ubuntu22.04) matches no combination" in err


def test_under_strict_an_entry_that_matches_nothing_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """\
        strict: true
        axes: {torch: ['2.8'], cuda: ['12.8'], python: ['3.12'], os: [ubuntu24.04]}
        exclude:
          - {python: '3.11'}
        """,
    )
    code, err = plan_exit(path, capsys)
    assert code == 2 and err.startswith(f"envkit: error: {path}:6: exclude[0]: (python=3.11) matches no")


def test_a_partial_include_that_extends_nothing_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Meant to add a package to the torch 2.8 + Python 3.13 cells, but the axes have no Python 3.13: the
    # entry adds a cell of its own, with cuda and os from the defaults.
    path = write(
        tmp_path,
        """\
        axes: {torch: ['2.8'], cuda: ['12.8'], python: ['3.12'], os: [ubuntu24.04]}
        include:
          - {torch: '2.8', python: '3.13', packages: [ninja]}
        """,
    )
    code, err = plan_exit(path, capsys)
    assert code == 0
    assert "include[0]: (torch=2.8, python=3.13, packages) extends no combination of the axes" in err


def test_a_full_include_that_adds_a_cell_is_not_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """\
        axes: {torch: ['2.8'], python: ['3.12']}
        include:
          - {torch: '2.7', python: '3.11'}
        """,
    )
    assert plan_exit(path, capsys) == (0, "")


def test_a_plan_with_zero_cells_is_exit_2_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "axes: {torch: ['2.8'], cuda: ['11.8'], python: ['3.12'], os: [ubuntu24.04]}\n")
    code, err = plan_exit(path, capsys)
    assert code == 2
    assert err.startswith(f"envkit: error: {path}:1: the matrix resolves to no cells (1 dropped)")
    assert "--allow-empty" in err
    assert plan_exit(path, capsys, "--allow-empty")[0] == 0
    assert main(["render", str(path), "-o", str(tmp_path / "out")]) == 2


def test_an_allowed_empty_github_matrix_says_how_to_guard_the_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "axes: {torch: ['2.8'], cuda: ['11.8'], python: ['3.12'], os: [ubuntu24.04]}\n")
    assert main(["plan", str(path), "--allow-empty", "--format", "github-matrix"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"include": []}
    assert "GitHub Actions rejects an empty matrix" in err
    assert ".include[0] != null" in err


def test_an_unknown_check_in_a_policy_is_exit_2_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    report = Path(__file__).parent / "fixtures" / "reports" / "cpu-quick-pass.json"
    for body, key, suggestion in (
        ("require: {gpu.visiblity: [PASS]}\n", "require.gpu.visiblity", "'gpu.visibility'"),
        (
            "thresholds:\n  - {check: throughput.generat, metric: x, min: 1}\n",
            "thresholds[0].check",
            "'throughput.generate'",
        ),
        ("allow_skip: [gpu.kernel]\n", "allow_skip[0]", "'gpu.kernels'"),
    ):
        policy.write_text("version: 1\n" + body)
        assert main(["gate", str(report), "--policy", str(policy)]) == 2
        err = capsys.readouterr().err
        assert f"{policy}:2: {key}: " in err or f"{policy}:3: {key}: " in err, err
        assert f"did you mean {suggestion}?" in err


def test_validate_only_with_an_unknown_check_is_exit_2_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "--local", "--only", "env.torh"]) == 2
    err = capsys.readouterr().err
    assert "--only env.torh: unknown check" in err and "did you mean 'env.torch'?" in err
