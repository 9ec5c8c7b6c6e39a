"""The CI examples are what users copy: zizmor (GitHub Actions security audit, offline) finds nothing,
and both files validate against the published workflow schemas that check-jsonschema bundles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"


def tool(name: str) -> str:
    """The linter from the test extra (`pip install -e '.[test]'`), next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


GITHUB_WORKFLOWS = ("github-actions.yml", "github-lock-drift.yml")


@pytest.mark.parametrize("file", GITHUB_WORKFLOWS)
def test_zizmor_finds_nothing_in_the_github_actions_examples(file: str) -> None:
    done = run(tool("zizmor"), "--offline", "--no-progress", str(DOCS / file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("file", "schema"),
    [
        *((name, "vendor.github-workflows") for name in GITHUB_WORKFLOWS),
        ("gitlab-ci.yml", "vendor.gitlab-ci"),
    ],
)
def test_ci_examples_match_the_published_schemas(file: str, schema: str) -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", schema, str(DOCS / file))
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_matrix_value_is_expanded_inside_a_script() -> None:
    text = (DOCS / "github-actions.yml").read_text()
    run_blocks = [line for line in text.splitlines() if line.lstrip().startswith(("run:", "- run:"))]
    assert run_blocks and not [line for line in run_blocks if "${{" in line]
