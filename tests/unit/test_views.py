"""Views: JUnit counts, Markdown caps, GitHub summary/annotations, HTML escaping, CLI exit codes."""

from __future__ import annotations

import dataclasses
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from envkit import cli
from envkit.gate import run_gate
from envkit.policy import Policy, load_policy
from envkit.report import Report, dump_report, load_report
from envkit.views import (
    append_github_summary,
    gate_markdown,
    github_annotations,
    junit_xml,
    print_gate,
    print_reports,
    reports_html,
    reports_markdown,
    truncate_markdown,
)

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
H100, A100, CPU, BROKEN = (
    FIXTURES / f"{name}.json"
    for name in ("h100-full-pass", "a100-full-pass", "cpu-quick-pass", "h100-cpu-torch-oom-fail")
)
POLICY = """\
version: 1
require: {env.torch: [PASS], gpu.visibility: [PASS], throughput.generate: }
allow_skip: [gpu.*]
thresholds:
  - {check: throughput.generate, metric: decode_tokens_per_s, min: 800, gpu: "H100*"}
  - {check: throughput.generate, metric: itl_p99_ms, max: 20}
"""
HOSTILE = (
    'evil/<script>document.documentElement.setAttribute("data-pwned","1")</script>|x"><img src=x>[b]x[/b]'
)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def policy(policy_file: Path) -> Policy:
    return load_policy(policy_file)


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this area's commands, so these tests do not depend on the other commands importing."""
    monkeypatch.setattr(
        cli, "COMMAND_MODULES", ("envkit.commands.gate", "envkit.commands.report", "envkit.commands.diff")
    )
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def hostile(report: Report) -> Report:
    assert report.image is not None
    return dataclasses.replace(report, image=dataclasses.replace(report.image, ref=HOSTILE))


def all_reports() -> list[Report]:
    return [load_report(path) for path in (H100, A100, CPU, BROKEN)]


def test_commands_are_registered_in_the_cli() -> None:
    for name in ("gate", "report", "diff"):
        assert f"envkit.commands.{name}" in cli.COMMAND_MODULES


def test_junit_parses_back_with_right_counts(policy: Policy) -> None:
    result = run_gate(all_reports(), policy)
    root = ET.fromstring(junit_xml(result))
    suites = root.findall("testsuite")
    assert len(suites) == 4
    for suite, verdict in zip(suites, result.verdicts, strict=True):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases) == len(verdict.findings)
        assert int(suite.get("failures", "-1")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("skipped", "-1")) == sum(1 for c in cases if c.find("skipped") is not None)
        assert {c.get("classname") for c in cases} == {verdict.report.label}
    assert int(root.get("tests", "0")) == sum(int(s.get("tests", "0")) for s in suites)
    assert int(root.get("failures", "0")) == 5
    h100_names = [c.get("name") for c in suites[0].findall("testcase")]
    assert "gpu.kernels[gpu0]" in h100_names and "gpu.kernels[gpu1]" in h100_names
    assert "threshold:throughput.generate[gpu0]:decode_tokens_per_s" in h100_names
    torch_case = next(c for c in suites[3].findall("testcase") if c.get("name") == "env.torch")
    failure = torch_case.find("failure")
    assert failure is not None and "CPU-only build" in failure.get("message", "")
    assert "hint: the install step resolved the CPU wheel" in (failure.text or "")


def test_junit_reports_error_status_as_error(policy: Policy) -> None:
    report = load_report(H100)
    report = dataclasses.replace(
        report,
        checks=tuple(
            dataclasses.replace(c, status="ERROR") if c.id == "oom.cpu" else c for c in report.checks
        ),
    )
    root = ET.fromstring(junit_xml(run_gate([report], policy)))
    assert root.get("errors") == "1" and root.get("failures") == "0"


def test_junit_stays_valid_with_hostile_text(policy: Policy) -> None:
    root = ET.fromstring(junit_xml(run_gate([hostile(load_report(BROKEN))], policy)))
    assert root.find("testsuite/testcase").get("classname") == HOSTILE


def test_gate_markdown_lists_verdicts_and_failures(policy: Policy) -> None:
    text = gate_markdown(run_gate(all_reports(), policy))
    assert text.startswith("## envkit gate: FAILED")
    assert text.count("✅ PASS") == 3 and text.count("❌ FAIL") == 1
    assert "required check throughput.generate is missing" in text


def test_markdown_escapes_untrusted_text(policy: Policy) -> None:
    report = hostile(load_report(BROKEN))
    for text in (gate_markdown(run_gate([report], policy)), reports_markdown([report])):
        assert "<script>" not in text and "<img" not in text
        row = next(line for line in text.splitlines() if "evil" in line and line.startswith("|"))
        assert len(re.findall(r"(?<!\\)\|", row)) == row.count("|") - 1  # the label's pipe is escaped


def test_truncate_markdown_cuts_at_a_line_and_says_so() -> None:
    text = "".join(f"| row {i} | {'x' * 50} |\n" for i in range(1000))
    cut = truncate_markdown(text, 10_000)
    assert len(cut.encode()) <= 10_000
    assert "Truncated" in cut and f"{len(text.encode())} bytes" in cut
    body = cut.split("\n\n> **Truncated**")[0]
    assert all(line.endswith("|") for line in body.splitlines())
    assert truncate_markdown("short\n", 10_000) == "short\n"


def test_github_summary_is_capped_under_one_mib(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    append_github_summary(summary, "| a |\n" * 400_000)
    assert summary.stat().st_size < 1024 * 1024
    assert summary.read_text().startswith("previous step\n") and "Truncated" in summary.read_text()


def test_annotations_escape_workflow_command_syntax(policy: Policy) -> None:
    lines = github_annotations(run_gate([load_report(BROKEN)], policy))
    assert len(lines) == 5
    assert all(line.startswith("::error title=envkit gate%3A envkit/pytorch%3A") for line in lines)
    assert all("\n" not in line for line in lines)
    assert "%0Ahint: " in lines[0]


def test_gate_cli_in_github_actions(
    tmp_path: Path,
    policy_file: Path,
    commands: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit, markdown = tmp_path / "junit.xml", tmp_path / "gate.md"
    code = cli.main(
        [
            "gate",
            str(FIXTURES),
            "--policy",
            str(policy_file),
            "--junit",
            str(junit),
            "--markdown",
            str(markdown),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert out.count("::error title=") == 5
    assert summary.read_text() == markdown.read_text()
    assert ET.parse(junit).getroot().get("failures") == "5"


@pytest.mark.parametrize(
    ("files", "policy_text", "code", "words"),
    [
        ([H100, A100, CPU], POLICY, 0, "gate: PASS"),
        ([BROKEN], POLICY, 1, "gate: FAIL"),
        ([H100], "version: 1\nrequires: {}\n", 2, "did you mean 'require'"),
        ([FIXTURES / "missing.json"], POLICY, 2, "report file not found"),
    ],
)
def test_gate_exit_codes(
    tmp_path: Path,
    commands: None,
    capsys: pytest.CaptureFixture[str],
    files: list[Path],
    policy_text: str,
    code: int,
    words: str,
) -> None:
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(policy_text)
    assert cli.main(["gate", *map(str, files), "--policy", str(policy_file)]) == code
    captured = capsys.readouterr()
    assert words in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_gate_without_policy_is_a_usage_error(commands: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gate", str(H100)]) == 2
    assert "--policy" in capsys.readouterr().err


def test_bad_report_is_exit_2_naming_the_file(
    tmp_path: Path, commands: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(H100.read_text().replace('"PASS"', '"OK"', 1))
    assert cli.main(["report", str(bad)]) == 2
    assert f"{bad}: $.checks[0].status" in capsys.readouterr().err


def test_report_cli_writes_html_and_markdown(tmp_path: Path, commands: None) -> None:
    html_file, md_file = tmp_path / "r.html", tmp_path / "r.md"
    assert cli.main(["report", str(FIXTURES), "--html", str(html_file), "--markdown", str(md_file)]) == 0
    assert html_file.read_text() == reports_html(sorted_fixtures())
    assert md_file.read_text().startswith("# envkit validation reports")


def sorted_fixtures() -> list[Report]:
    return [load_report(path) for path in sorted(FIXTURES.glob("*.json"))]


def test_report_cli_prints_a_terminal_table(commands: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(H100)]) == 0
    out = capsys.readouterr().out
    assert "throughput.generate[gpu0]" in out and "1,463" in out


def test_terminal_views_do_not_interpret_markup(policy: Policy) -> None:
    console = Console(file=io.StringIO(), width=400, record=True)
    report = hostile(load_report(BROKEN))
    print_reports(console, [report])
    print_gate(console, run_gate([report], policy))
    assert "[b]x[/b]" in console.export_text()


def test_html_is_self_contained_and_escapes_hostile_labels(tmp_path: Path) -> None:
    reports = [*all_reports()[:3], hostile(load_report(H100))]
    page = reports_html(reports)
    assert "<script>document" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;document.documentElement.setAttribute(&quot;data-pwned&quot;" in page
    assert page.count("<script>") == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_html_script_and_style_match_their_csp_hashes() -> None:
    import base64
    import hashlib

    page = reports_html(all_reports())
    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        assert body is not None
        digest = base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in page


def test_html_charts_have_one_bar_per_report_and_series() -> None:
    reports = all_reports()
    page = reports_html(reports)
    bars = re.findall(
        r'<rect class="bar s\d" [^>]*data-chart="(\w+)" data-image="([^"]*)" '
        r'data-series="(\w+)" data-value="([^"]+)"',
        page,
    )
    by_chart = {chart: [b for b in bars if b[0] == chart] for chart in ("decode", "itl", "kv")}
    # the broken report has no throughput metrics: "n/a" instead of a bar
    assert len(by_chart["decode"]) == 3 and len(by_chart["kv"]) == 3 and len(by_chart["itl"]) == 6
    assert page.count('data-missing="true"') == 4
    decode = {image: float(value) for _, image, _, value in by_chart["decode"]}
    assert (
        decode["envkit/pytorch:torch2.6.0-cu124-py3.11-ubuntu22.04-runtime @ NVIDIA H100 80GB HBM3 (full)"]
        == 1462.8
    )
    widths = [
        float(w)
        for w in re.findall(
            r'<rect class="bar s0" x="\d+" y="\d+" width="([\d.]+)"[^>]*'
            r'data-chart="decode"',
            page,
        )
    ]
    assert max(widths) == 380.0 and min(widths) < 30


def test_html_is_deterministic() -> None:
    assert reports_html(all_reports()) == reports_html(all_reports())


def test_html_with_gate_shows_gate_column(policy: Policy) -> None:
    reports = all_reports()
    page = reports_html(reports, run_gate(reports, policy))
    assert "gate FAILED" in page and "<th>verdict</th>" in page


# --- the verdict at a glance -------------------------------------------------------------------------


def test_terminal_opens_with_one_verdict_line_per_image(policy: Policy) -> None:
    reports = all_reports()
    for width in (80, 200):
        console = Console(file=io.StringIO(), width=width, record=True)
        print_reports(console, reports, run_gate(reports, policy))
        lines = console.export_text().splitlines()
        assert [line.split()[0] for line in lines[:4]] == ["releasable", "releasable", "releasable", "NOT"]
        assert lines[3].startswith("NOT releasable  envkit/pytorch:torch2.6.0-cu124")
        assert "— env.torch FAIL; env.versions FAIL; gpu.visibility FAIL (+2 more)" in lines[3]
        assert lines[4] == f"policy: {policy.source}"


def test_gate_terminal_and_markdown_open_with_the_verdict(policy: Policy) -> None:
    result = run_gate(all_reports(), policy)
    console = Console(file=io.StringIO(), width=120, record=True)
    print_gate(console, result)
    assert console.export_text().splitlines()[3].startswith("NOT releasable")
    markdown = gate_markdown(result).splitlines()
    assert markdown[2].startswith("- ✅ **releasable** — envkit/pytorch:torch2.6.0-cu124")
    assert markdown[5].startswith("- ❌ **not releasable** — ") and "env.torch FAIL" in markdown[5]


def test_markdown_report_opens_with_the_verdict_and_counts_na() -> None:
    cpu = load_report(CPU)
    na = dataclasses.replace(
        cpu,
        checks=tuple(
            dataclasses.replace(c, status="N/A") if c.id.startswith("gpu.") else c for c in cpu.checks
        ),
    )
    text = reports_markdown([na])
    lines = text.splitlines()
    assert lines[2].startswith("- ✅ **releasable** — envkit/pytorch:torch2.6.0-cpu")
    assert "| n/a | pass | skip | warn | fail | error |" in text
    assert "| WARN | 4 | 6 | 2 | 1 | 0 | 0 |" in text  # 4 N/A records, the report is WARN (env.shm)


def test_two_reports_of_one_image_are_told_apart(policy: Policy) -> None:
    first = load_report(H100)
    second = dataclasses.replace(first, created="2025-03-15T09:00:00Z")
    page = reports_html([first, second], run_gate([first, second], policy))
    items = re.findall(r'<li class="verdict (\w+)" data-image="([^"]+)"', page)
    assert len(items) == 2 and items[0][1] != items[1][1]
    assert items[1][1].endswith("· 2025-03-15T09:00:00Z")
    assert '<time datetime="2025-03-15T09:00:00Z">' in page
    assert "sha256:" in page.split('id="verdict"')[1].split("</section>")[0]  # the image id


def test_html_opens_with_the_verdict_under_the_policy_and_styles_na_apart(policy: Policy) -> None:
    cpu = load_report(CPU)
    na = dataclasses.replace(
        cpu,
        checks=tuple(
            dataclasses.replace(c, status="N/A") if c.id.startswith("gpu.") else c for c in cpu.checks
        ),
    )
    reports = [na, load_report(BROKEN)]
    page = reports_html(reports, run_gate(reports, policy))
    body = page.split("<body>", 1)[1]
    assert body.index('id="verdict"') < body.index('id="status"')
    assert f'data-policy="{policy.source}"' in page
    assert re.search(r'data-releasable="false"[^>]*><strong>NOT RELEASABLE</strong>', page)
    assert '<td class="NA">N/A</td>' in page and ".NA{" in page
    assert '<td class="SKIP">' not in page.split("gpu.kernels", 1)[1].split("</tr>", 1)[0]


def test_report_cli_takes_a_policy(
    policy_file: Path, commands: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["report", str(BROKEN), "--policy", str(policy_file)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("NOT releasable") and "env.torch FAIL" in first
    page = tmp_path / "r.html"
    assert cli.main(["report", str(CPU), "--policy", str(policy_file), "--html", str(page)]) == 0
    assert f'data-policy="{policy_file}"' in page.read_text()


def test_dump_of_hostile_report_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(dump_report(hostile(load_report(H100))))
    assert load_report(path).label == HOSTILE


def test_html_names_the_image_by_digest_when_the_report_has_one(policy: Policy) -> None:
    report = load_report(H100)
    assert report.image is not None
    pushed = dataclasses.replace(report, image=dataclasses.replace(report.image, digest="sha256:" + "d" * 64))
    verdict = reports_html([pushed]).split('id="verdict"')[1].split("</section>")[0]
    assert "image sha256:" + "d" * 64 in verdict and report.image.id not in verdict
