"""Every io.envkit.* label has one name in envkit.labels; the probe reads only labels envkit writes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import envkit
from envkit import labels

PACKAGE = Path(envkit.__file__).parent
LITERAL = re.compile(r"io\.envkit\.[a-z][a-z.-]*")


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_label_literal_outside_the_labels_module() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "labels.py" or "probe" in path.relative_to(PACKAGE).parts:
            continue
        for text in _string_constants(path):
            if LITERAL.search(text):
                offenders.append(f"{path.relative_to(PACKAGE)}: {text[:60]!r}")
    assert offenders == []


def test_every_label_name_is_distinct_and_prefixed() -> None:
    names = {name: value for name, value in vars(labels).items() if name.isupper() and isinstance(value, str)}
    values = [value for name, value in names.items() if name != "PREFIX"]
    assert len(values) == len(set(values))
    assert all(value.startswith(labels.RESERVED_PREFIXES) for value in values)


def test_probe_reads_only_labels_that_envkit_writes() -> None:
    probe_dir = PACKAGE / "probe"
    read = set()
    for path in probe_dir.glob("*.py"):
        read |= set(re.findall(r'label\("([a-z-]+)"\)', path.read_text(encoding="utf-8")))
    assert read, "the probe reads no labels: the pattern no longer matches its code"
    written = {value for name, value in vars(labels).items() if name.isupper() and isinstance(value, str)}
    assert {labels.key(name) for name in read} <= written
