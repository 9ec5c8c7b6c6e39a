"""JUnit XML of a gate result, for CI test reporters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from envkit.gate import FAIL, SKIP, GateResult, ImageVerdict
from envkit.views.common import display_name


def junit_xml(result: GateResult) -> str:
    """JUnit XML: a testsuite per report, a testcase per finding (failures carry message and hint)."""
    root = ET.Element("testsuites", name="envkit gate")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for verdict in result.verdicts:
        suite, counts, seconds = _junit_suite(verdict)
        root.append(suite)
        totals = {key: totals[key] + counts[key] for key in totals}
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_suite(verdict: ImageVerdict) -> tuple[ET.Element, dict[str, int], float]:
    report = verdict.report
    suite = ET.Element(
        "testsuite",
        name=display_name(report),
        hostname=report.host.hostname or "unknown",
        timestamp=report.created,
    )
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds = 0.0
    for finding in verdict.findings:
        case = ET.SubElement(
            suite, "testcase", classname=report.label, name=finding.name, time=f"{finding.duration_s:.3f}"
        )
        counts["tests"] += 1
        seconds += finding.duration_s
        text = finding.message + (f"\nhint: {finding.hint}" if finding.hint else "")
        if finding.effect == FAIL and finding.status == "ERROR":
            ET.SubElement(case, "error", message=finding.message, type="ERROR").text = text
            counts["errors"] += 1
        elif finding.effect == FAIL:
            ET.SubElement(
                case, "failure", message=finding.message, type=finding.status or finding.kind
            ).text = text
            counts["failures"] += 1
        elif finding.effect == SKIP:
            ET.SubElement(case, "skipped", message=finding.message)
            counts["skipped"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    return suite, counts, seconds
