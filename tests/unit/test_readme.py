"""The README's matrix reference is a real matrix: it parses and resolves with the shipped data."""

from __future__ import annotations

import re
from pathlib import Path

from envkit.matrix import parse_matrix
from envkit.resolve import plan
from envkit.yamlsrc import load_text

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README.read_text().split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head


def test_readme_matrix_example_resolves() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    matrix_block = next(b for b in blocks if "axes:" in b)
    result = plan(parse_matrix(load_text(matrix_block, "README.md")))
    assert len(result.cells) >= 4
    assert any(c.python_source == "standalone" for c in result.cells)
    assert any(c.packages == ("numpy>=2.1,<3", "ninja==1.11.1.4") for c in result.cells)


def test_readme_install_command_names_the_distribution_in_pyproject() -> None:
    name = re.search(r'^name = "([^"]+)"$', (README.parent / "pyproject.toml").read_text(), re.M).group(1)
    assert name != "envkit"  # an unrelated project on the package index
    assert f"pip install {name}" in README.read_text()
