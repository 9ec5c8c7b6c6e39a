"""Hostile documents: envkit's loaders end in a result or one clean error, never a traceback or a hang.

About 2,550 generated documents under `HYPOTHESIS_PROFILE=thorough` (`make fuzz`; matrix, policy and
report loaders; counts below), a quarter of them under the default `quick` profile (tests/unit/conftest.py),
derandomized so CI sees the same ones every run. Each example runs under a hang guard (hostile.time_limit) and each
test under a peak-RSS guard; the expensive classics (alias bomb, biggest report) run in a subprocess
whose own peak RSS is measured.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import hostile
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from envkit import yamlsrc
from envkit.cli import main
from envkit.errors import ConfigError
from envkit.gate import run_gate
from envkit.matrix import load_matrix
from envkit.policy import Policy, load_policy
from envkit.render import RenderOptions, render_plan
from envkit.report import load_report, load_reports
from envkit.resolve import plan
from envkit.views import gate_markdown, github_annotations, junit_xml, reports_html, reports_markdown

MAX_RSS_GROWTH_MIB = 500


def examples(count: int) -> settings:
    """Reproducible settings: fixed seed, no example database, no deadline (the hang guard is ours).

    `count` examples under the `thorough` profile (max_examples 100), scaled by the loaded profile.
    """
    return settings(
        max_examples=max(10, count * settings.default.max_examples // 100),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


@pytest.fixture(autouse=True)
def _memory_guard() -> Iterator[None]:
    before = hostile.peak_rss_mib()
    yield
    grown = hostile.peak_rss_mib() - before
    assert grown < MAX_RSS_GROWTH_MIB, f"peak RSS grew by {grown:.0f} MiB"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(autouse=True)
def _not_in_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    # `envkit gate` appends to the real step summary inside GitHub Actions; fuzz output must not land there.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def write(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


# --- what each loader must survive -------------------------------------------------------------------


def load_plan_render(path: Path) -> None:
    """Matrix → plan → render; a render that succeeds must be structurally safe."""
    for context in render_plan(plan(load_matrix(path)), RenderOptions()):
        hostile.dockerfile_skeleton(context.dockerfile)
        assert hostile.label_values(context.dockerfile) == dict(context.labels)


def gate_and_views(policy: Policy) -> None:
    """The gate on the good report under `policy`, through every output format."""
    result = run_gate(load_reports([hostile.GOOD_REPORT]), policy)
    ET.fromstring(junit_xml(result))
    gate_markdown(result).encode("utf-8")
    assert all("\n" not in line for line in github_annotations(result))


def report_views(path: Path) -> None:
    """A report through the gate and every view; each output must encode as UTF-8 and XML must parse."""
    report = load_report(path)
    result = run_gate([report], Policy())
    ET.fromstring(junit_xml(result))
    reports_markdown([report]).encode("utf-8")
    reports_html([report]).encode("utf-8")


def check_matrix(workdir: Path, data: bytes) -> str:
    path = write(workdir, "matrix.yaml", data)
    result = hostile.outcome(lambda: load_plan_render(path), str(path))
    event(f"matrix: {result}")
    return result


def check_policy(workdir: Path, data: bytes) -> str:
    path = write(workdir, "policy.yaml", data)
    policy: list[Policy] = []
    result = hostile.outcome(lambda: policy.append(load_policy(path)), str(path))
    if result == "ok":
        # A baseline error names the baseline file, not the policy: any file may be named here.
        try:
            with hostile.time_limit(20):
                gate_and_views(policy[0])
        except ConfigError as error:
            assert error.where is not None
            hostile.assert_one_line_error(error, error.where.file)
            result = "baseline error"
    event(f"policy: {result}")
    return result


def check_report(workdir: Path, data: bytes) -> str:
    path = write(workdir, "report.json", data)
    result = hostile.outcome(lambda: report_views(path), str(path))
    event(f"report: {result}")
    return result


# --- generated documents -----------------------------------------------------------------------------


@examples(300)
@given(data=hostile.documents(hostile.structures()))
def test_random_structures_as_matrix(workdir: Path, data: bytes) -> None:
    assert check_matrix(workdir, data) in ("ok", "error")


@examples(200)
@given(data=hostile.documents(hostile.structures()))
def test_random_structures_as_policy(workdir: Path, data: bytes) -> None:
    assert check_policy(workdir, data) in ("ok", "error", "baseline error")


@examples(200)
@given(data=hostile.structures().map(lambda value: json.dumps(value).encode()))
def test_random_structures_as_report(workdir: Path, data: bytes) -> None:
    assert check_report(workdir, data) == "error"


@examples(400)
@given(data=hostile.documents(hostile.near_valid(hostile.VALID_MATRIX)))
def test_near_valid_matrices(workdir: Path, data: bytes) -> None:
    assert check_matrix(workdir, data) in ("ok", "error")


@examples(300)
@given(data=hostile.documents(hostile.near_valid(hostile.VALID_POLICY)))
def test_near_valid_policies(workdir: Path, data: bytes) -> None:
    assert check_policy(workdir, data) in ("ok", "error", "baseline error")


@examples(300)
@given(data=hostile.near_valid(json.loads(hostile.GOOD_REPORT.read_text(encoding="utf-8"))))
def test_near_valid_reports(workdir: Path, data: Any) -> None:
    text = json.dumps(data, ensure_ascii=False, default=str)
    assert check_report(workdir, text.encode("utf-8", "surrogatepass")) in ("ok", "error")


@examples(150)
@given(data=hostile.json_text_mutations())
def test_report_text_mutations(workdir: Path, data: bytes) -> None:
    assert check_report(workdir, data) in ("ok", "error")


@examples(350)
@given(data=hostile.yaml_constructs())
def test_yaml_constructs_as_matrix_and_policy(workdir: Path, data: bytes) -> None:
    assert check_matrix(workdir, data) in ("ok", "error")
    assert check_policy(workdir, data) in ("ok", "error", "baseline error")


# --- through the CLI: exit codes and stderr ----------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`envkit ARGV` in-process, with real-process streams: stdout strict UTF-8, stderr backslashreplace."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    with hostile.time_limit(20), redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, err.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]


def assert_clean_exit(code: int, stderr: str, allowed: tuple[int, ...]) -> None:
    assert code in allowed, (code, stderr)
    assert "Traceback" not in stderr
    if code == 2:
        lines = stderr.rstrip("\n").split("\n")
        assert lines[0].startswith("envkit: error: "), stderr
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), stderr
    else:
        assert "envkit: error" not in stderr, stderr


@examples(150)
@given(data=st.one_of(hostile.documents(hostile.near_valid(hostile.VALID_MATRIX)), hostile.yaml_constructs()))
def test_cli_plan_exits_0_or_2(workdir: Path, data: bytes) -> None:
    code, stderr = run_cli(["plan", str(write(workdir, "cli-matrix.yaml", data))])
    assert_clean_exit(code, stderr, (0, 2))


@examples(100)
@given(data=hostile.documents(hostile.near_valid(hostile.VALID_POLICY)))
def test_cli_gate_exits_0_1_or_2(workdir: Path, data: bytes) -> None:
    policy = write(workdir, "cli-policy.yaml", data)
    code, stderr = run_cli(["gate", str(hostile.GOOD_REPORT), "--policy", str(policy)])
    assert_clean_exit(code, stderr, (0, 1, 2))  # 1: the policy failed the report, a verdict


@examples(100)
@given(
    data=st.one_of(
        hostile.json_text_mutations(),
        hostile.near_valid(json.loads(hostile.GOOD_REPORT.read_text(encoding="utf-8"))).map(
            lambda value: json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
        ),
    )
)
def test_cli_report_exits_0_or_2(workdir: Path, data: bytes) -> None:
    code, stderr = run_cli(["report", str(write(workdir, "cli-report.json", data))])
    assert_clean_exit(code, stderr, (0, 2))


# --- regressions: each was a traceback, a hang or an accepted unsafe value ---------------------------


@pytest.mark.parametrize(
    "scalar", ['!!bool ""', "!!bool maybe", '!!int "-"', '!!int ""', '!!int "_"', '!!float ""', '!!int "+"']
)
def test_bad_tagged_scalars_are_config_errors(scalar: str) -> None:
    # PyYAML's constructors raised KeyError/IndexError here, which escaped as a traceback.
    with pytest.raises(ConfigError, match="bad scalar") as caught:
        yamlsrc.load_text(f"a: {scalar}\n", "m.yaml")
    assert caught.value.where is not None and caught.value.where.key == "a"


def test_deep_flow_nesting_is_refused_while_scanning() -> None:
    # 400 levels of `[` cost ~5 s per 20 KB in PyYAML's scanner before the composer gave up.
    text = "a: [" + ",".join(["[" * 400 + "]" * 400] * 20) + "]\n"
    with hostile.time_limit(20), pytest.raises(ConfigError, match="nest deeper than 64"):
        yamlsrc.load_text(text, "m.yaml")


def test_file_over_the_size_limit_is_refused_before_parsing(workdir: Path) -> None:
    path = write(workdir, "big.yaml", b"a: " + b"x" * yamlsrc.MAX_BYTES)
    with pytest.raises(ConfigError, match="larger than"):
        load_matrix(path)


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ("thresholds:\n  - {check: a.b, metric: m, min: 0x" + "f" * 400 + "}\n", "thresholds[0].min"),
        ("baseline: {path: x, tolerance: 0x" + "f" * 400 + "}\n", "baseline.tolerance"),
    ],
)
def test_policy_numbers_beyond_float_range_are_config_errors(workdir: Path, policy: str, key: str) -> None:
    # math.isfinite() of such an int raised OverflowError.
    path = write(workdir, "p.yaml", ("version: 1\n" + policy).encode())
    with pytest.raises(ConfigError, match="finite number") as caught:
        load_policy(path)
    assert caught.value.where is not None and caught.value.where.key == key


def good_report() -> dict[str, Any]:
    return json.loads(hostile.GOOD_REPORT.read_text(encoding="utf-8"))


def test_report_number_beyond_float_range_exits_2(workdir: Path) -> None:
    text = hostile.GOOD_REPORT.read_text(encoding="utf-8").replace(
        '"duration_s": 0.02', '"duration_s": 1' + "0" * 400
    )
    code, stderr = run_cli(["report", str(write(workdir, "r.json", text.encode()))])
    assert code == 2 and "$.checks[0].duration_s: number must be finite" in stderr


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\ufffe", "\uffff"])
def test_report_strings_that_cannot_be_written_exit_2(workdir: Path, text: str) -> None:
    # A lone surrogate crashed `envkit report` writing to stdout; U+FFFE/U+FFFF made invalid JUnit XML.
    data = good_report()
    data["checks"][0]["summary"] = text
    path = write(workdir, "r.json", json.dumps(data).encode())
    code, stderr = run_cli(["report", str(path)])
    assert code == 2 and "$.checks[0].summary: string contains control characters" in stderr


@pytest.mark.parametrize(
    ("where", "value"),
    [("policy-require", "gpu.visibility\n"), ("policy-glob", "H100*\n"), ("report-metric", "tokens\n")],
)
def test_ids_with_a_trailing_newline_are_refused(workdir: Path, where: str, value: str) -> None:
    # `^...$` patterns matched "id\n": `$` also matches before a final newline.
    if where == "report-metric":
        data = good_report()
        data["checks"][0]["metrics"] = {value: 1.0}
        with pytest.raises(ConfigError, match="metric name"):
            load_report(write(workdir, "r.json", json.dumps(data).encode()))
        return
    body = {"require": [value]} if where == "policy-require" else {"allow_skip": [value]}
    with pytest.raises(ConfigError):
        load_policy(write(workdir, "p.yaml", hostile.to_json_yaml({"version": 1, **body})))


@pytest.mark.parametrize(
    "key", ["x\nenvkit: error: forged", "x\renvkit: error: forged", "x\u2028y", "x\x85y"]
)
def test_document_text_cannot_forge_error_lines(workdir: Path, key: str) -> None:
    data = hostile.to_json_yaml({**hostile.VALID_MATRIX, key: 1})
    code, stderr = run_cli(["plan", str(write(workdir, "m.yaml", data))])
    assert_clean_exit(code, stderr, (2,))
    assert "\\n" in stderr or "\\r" in stderr or "\\u2028" in stderr or "\\x85" in stderr


@pytest.mark.parametrize("name", ["../../../tmp/evil", "/etc", "a/b", "..", ".hidden", "-rf", "a b", "x\ny"])
def test_matrix_name_must_be_a_folder_name(workdir: Path, name: str) -> None:
    # `name` becomes .envkit/<name>/ (build logs, promotion record): "/etc" or "../.." escaped it.
    path = write(workdir, "m.yaml", hostile.to_json_yaml({**hostile.VALID_MATRIX, "name": name}))
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert caught.value.where is not None and caught.value.where.key == "name"


def test_default_name_from_an_unusual_file_name_asks_for_a_name(workdir: Path) -> None:
    matrix = {key: value for key, value in hostile.VALID_MATRIX.items() if key != "name"}
    path = write(workdir, "...yaml", hostile.to_json_yaml(matrix))  # stem ".."
    with pytest.raises(ConfigError, match="not a valid file name") as caught:
        load_matrix(path)
    assert "set `name:`" in (caught.value.hint or "")


# --- the expensive classics, in a process of their own so their peak memory is measurable ------------

_CLASSICS = r"""
import json, resource, sys, time
from pathlib import Path
from envkit.errors import ConfigError
from envkit.report import load_report, MAX_REPORT_BYTES
from envkit.yamlsrc import load_file, load_text

work = Path(sys.argv[1])
laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
]
report = json.loads(Path(sys.argv[2]).read_text())
report["checks"][0]["details"] = {"x": "@"}
text = json.dumps(report)
empties = (MAX_REPORT_BYTES - len(text)) // 3
(work / "objects.json").write_text(text.replace('"@"', "[" + ",".join(["{}"] * empties) + "]"))
results = {}
for name, load in {
    "billion-laughs": lambda: load_text("\n".join(laughs) + "\n", "m.yaml"),
    "deep-flow": lambda: load_text("[" * 100_000, "m.yaml"),
    "deep-block": lambda: load_text("- " * 100_000, "m.yaml"),
    "largest-report": lambda: load_report(work / "objects.json"),
    # stat() says 0 bytes for /dev/zero: reading "the whole file" never ended (and ate all memory).
    "endless-file": lambda: load_file("/dev/zero"),
}.items():
    start = time.monotonic()
    try:
        load()
        results[name] = "ok"
    except ConfigError as error:
        results[name] = error.message
    results[name + " s"] = round(time.monotonic() - start, 1)
results["peak MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps(results))
"""


def _limit_address_space() -> None:
    # A regression then fails with MemoryError in the child instead of exhausting the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 * MAX_RSS_GROWTH_MIB << 20, resource.RLIM_INFINITY))


def test_expensive_classics_stay_bounded(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CLASSICS, str(workdir), str(hostile.GOOD_REPORT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_address_space,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert "alias bomb" in results["billion-laughs"]
    assert "nest" in results["deep-flow"] and "nest" in results["deep-block"]
    assert results["largest-report"] == "ok"  # at the size limit: loads, within the memory bound
    assert "larger than" in results["endless-file"]
    assert results["peak MiB"] < MAX_RSS_GROWTH_MIB, results
