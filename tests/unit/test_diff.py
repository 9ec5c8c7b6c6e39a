"""`envkit diff A B`: changed facts, metric ratios with regression markers, status changes."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from envkit import cli
from envkit.diff import diff_json, diff_reports, print_diff
from envkit.report import dump_report, load_report

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
H100 = FIXTURES / "h100-full-pass.json"
A100 = FIXTURES / "a100-full-pass.json"
BROKEN = FIXTURES / "h100-cpu-torch-oom-fail.json"


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("envkit.commands.diff",))


def test_h100_vs_a100_versions_metrics_and_statuses() -> None:
    diff = diff_reports(load_report(H100), load_report(A100))
    changed = {f.name: (f.a, f.b) for f in diff.fields}
    assert changed["label io.envkit.torch"] == ("2.6.0", "2.5.1")
    assert changed["driver"] == ("550.54.15", "535.183.01")
    assert "profile" not in changed
    decode = next(m for m in diff.metrics if m.metric == "decode_tokens_per_s")
    assert decode.ratio == pytest.approx(987.3 / 1462.8)
    assert decode.change(0.05) == "regression"
    itl = next(m for m in diff.metrics if m.metric == "itl_p99_ms")
    assert itl.change(0.05) == "regression"  # latency went up
    assert [(s.check, s.a, s.b) for s in diff.statuses] == [("gpu.kernels[gpu1]", "PASS", None)]


def test_reverse_direction_marks_improvements() -> None:
    diff = diff_reports(load_report(A100), load_report(H100))
    changes = {m.metric: m.change(0.05) for m in diff.metrics if m.check.startswith("throughput")}
    assert changes["decode_tokens_per_s"] == "improvement" and changes["itl_p99_ms"] == "improvement"
    assert changes["peak_memory_mib"] == ""  # within tolerance
    assert diff.regressions() == ()


def test_identical_reports_have_no_differences() -> None:
    diff = diff_reports(load_report(H100), load_report(H100))
    assert diff.fields == () and diff.statuses == () and diff.regressions() == ()
    assert all(m.ratio in (1.0, None) for m in diff.metrics)


def test_checksum_change_is_reported() -> None:
    a = load_report(H100)
    b = dataclasses.replace(
        a,
        checks=tuple(
            dataclasses.replace(c, details={**c.details, "checksum": "0000"})
            if c.id == "throughput.generate"
            else c
            for c in a.checks
        ),
    )
    names = [f.name for f in diff_reports(a, b).fields]
    assert names == ["throughput.generate[gpu0] checksum"]


def test_status_changes_include_checks_that_appeared_or_vanished() -> None:
    diff = diff_reports(load_report(H100), load_report(BROKEN))
    statuses = {s.check: (s.a, s.b) for s in diff.statuses}
    assert statuses["env.torch"] == ("PASS", "FAIL")
    assert statuses["throughput.generate[gpu0]"] == ("PASS", None)
    assert statuses["runner.container"] == ("PASS", "FAIL")


def test_terminal_diff_shows_ratio_and_marker() -> None:
    console = Console(file=io.StringIO(), width=200, record=True)
    print_diff(console, diff_reports(load_report(H100), load_report(A100)))
    text = console.export_text()
    assert "0.675" in text and "▼ regression" in text and "9 regression(s) beyond 5%" in text


def test_diff_cli_json(commands: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diff", str(H100), str(A100), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == len(diff_reports(load_report(H100), load_report(A100)).regressions())
    decode = next(m for m in data["metrics"] if m["metric"] == "decode_tokens_per_s")
    assert decode["change"] == "regression" and decode["direction"] == "higher"
    assert {"name": "label io.envkit.cuda", "a": "12.4", "b": "12.1"} in data["changed"]
    assert data == diff_json(diff_reports(load_report(H100), load_report(A100)))


def test_diff_cli_exit_codes(tmp_path: Path, commands: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diff", str(H100), str(A100)]) == 0
    assert cli.main(["diff", str(H100), str(A100), "--fail-on-regression"]) == 1
    assert cli.main(["diff", str(H100), str(H100), "--fail-on-regression"]) == 0
    assert cli.main(["diff", str(H100), str(A100), "--tolerance", "-1"]) == 2
    assert cli.main(["diff", str(H100)]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(dump_report(load_report(H100)).replace('"schema": "envkit.report/2"', '"schema": "x/9"'))
    assert cli.main(["diff", str(H100), str(bad)]) == 2
    assert "unknown report schema 'x/9'" in capsys.readouterr().err


def test_host_differences_come_first() -> None:
    cpu = load_report(FIXTURES / "cpu-quick-pass.json")
    host = dataclasses.replace(
        cpu.host, cpu_model="AMD EPYC 9654", cpus_available=16, cpu_count=16, loadavg_before=(0.2, 0.3, 0.3)
    )
    quiet = dataclasses.replace(cpu, host=host)
    assert quiet.runner is not None
    busy = dataclasses.replace(
        cpu,
        host=dataclasses.replace(host, cpus_available=4, loadavg_before=(9.5, 7.0, 3.1)),
        runner=dataclasses.replace(quiet.runner, cpus=0.5),
        envkit_version="0.2.0",
    )
    busy = dataclasses.replace(
        busy,
        checks=tuple(
            dataclasses.replace(c, details={**c.details, "environment": {"cgroup_cpu_quota": 0.5}})
            if c.id == "throughput.generate"
            else c
            for c in busy.checks
        ),
    )
    diff = diff_reports(quiet, busy)
    assert [f.group for f in diff.fields] == sorted(
        (f.group for f in diff.fields), key=["host", "image"].index
    )
    host_changes = {f.name: (f.a, f.b) for f in diff.host_changes}
    assert host_changes["cpus available"] == ("16", "4")
    assert host_changes["load before (1/5/15 min)"] == ("0.2 0.3 0.3", "9.5 7 3.1")
    assert host_changes["container cpu limit"] == ("none", "0.5")
    assert host_changes["throughput.generate container saw cgroup_cpu_quota"] == (None, "0.5")
    assert host_changes["hardware class"] == ("cpu: AMD EPYC 9654 x16", "cpu: AMD EPYC 9654 x4")
    assert [f.name for f in diff.image_changes] == ["envkit"]
    console = Console(file=io.StringIO(), width=200, record=True)
    print_diff(console, diff)
    text = console.export_text()
    assert text.index("host (what moves the numbers)") < text.index("image and run") < text.index("metrics")
    data = diff_json(diff)
    assert list(data).index("host") < list(data).index("changed")
