"""One severity order: envkit/probe/outcome.py defines it; nothing else in envkit spells out another."""

from __future__ import annotations

import ast
from pathlib import Path

import envkit
from envkit.probe.outcome import NA, SEVERITY_ORDER, STATUSES, severity, worst
from envkit.report import Report

ROOT = Path(envkit.__file__).parent
HOME = ROOT / "probe" / "outcome.py"
NAMES = {"PASS", "WARN", "FAIL", "SKIP", "ERROR", "N/A"}


def _orders(tree: ast.AST) -> list[int]:
    """Lines of tuple/list/set literals naming 3+ statuses, and dicts mapping 3+ statuses to numbers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in NAMES}
        elif isinstance(node, ast.Dict):
            names = {
                k.value
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant)
                and k.value in NAMES
                and isinstance(v, ast.Constant)
                and isinstance(v.value, int)
            }
        else:
            continue
        if len(names) >= 3:
            found.append(node.lineno)
    return found


def test_no_module_but_outcome_spells_out_a_status_order() -> None:
    copies = [
        f"{path.relative_to(ROOT.parent)}:{line}"
        for path in sorted(ROOT.rglob("*.py"))
        if path != HOME
        for line in _orders(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert copies == [], "import SEVERITY_ORDER/STATUSES from envkit.probe.outcome instead"


def test_the_detector_finds_a_copy() -> None:
    assert _orders(ast.parse('ORDER = ("PASS", "SKIP", "WARN", "FAIL", "ERROR")')) == [1]
    assert _orders(ast.parse('RANK = {"SKIP": 0, "PASS": 1, "WARN": 2}')) == [1]
    assert _orders(ast.parse('STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}')) == []


def test_the_order_least_to_most_severe() -> None:
    assert SEVERITY_ORDER == ("N/A", "PASS", "SKIP", "WARN", "FAIL", "ERROR")
    assert set(STATUSES) == set(SEVERITY_ORDER)
    assert [severity(s) for s in SEVERITY_ORDER] == sorted(severity(s) for s in SEVERITY_ORDER)
    assert worst(["PASS", "SKIP"]) == "SKIP" and worst([NA, "PASS"]) == "PASS" and worst([]) == "PASS"


def test_report_gate_and_views_use_that_order() -> None:
    import envkit.gate
    import envkit.policy
    import envkit.report
    import envkit.views.common

    assert envkit.report.STATUSES is STATUSES
    assert envkit.policy.STATUSES is STATUSES
    assert tuple(envkit.views.common.STATUS_STYLE)[: len(SEVERITY_ORDER)] == SEVERITY_ORDER
    assert Report.worst_status.__doc__ and "one severity order" in Report.worst_status.__doc__
