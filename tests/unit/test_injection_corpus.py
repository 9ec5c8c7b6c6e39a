"""Injection corpus: no string field smuggles shell, a Dockerfile instruction, a tag, a path or markup.

Every case (hostile.INJECTIONS × each field that reaches a Dockerfile, tag, label or file path) ends
one of two ways, asserted one case at a time:
- the load fails with a ConfigError (exit 2) whose `where` names the file and the field, or
- the render succeeds and the value appears only in a provably safe form: the Dockerfile keeps the
  instruction skeleton of the clean render (no value started a line, no `# syntax=` directive), every
  LABEL value decodes back from a fully escaped double-quoted string, shell words need no quoting or
  are quoted, and tags and paths fit their grammars.
Report and policy text that reaches JUnit, Markdown, HTML, GitHub annotations or the terminal is
escaped: the structure of each output is the same as with harmless text.
"""

from __future__ import annotations

import copy
import html.parser
import io
import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile
import pytest
from rich.console import Console

from envkit.cli import main
from envkit.errors import ConfigError
from envkit.gate import GateResult, run_gate
from envkit.matrix import load_matrix
from envkit.policy import Policy, load_policy
from envkit.render import BuildContext, RenderOptions, render_plan
from envkit.report import Report, load_report
from envkit.resolve import plan
from envkit.views import (
    gate_markdown,
    github_annotations,
    junit_xml,
    print_gate,
    print_reports,
    reports_html,
    reports_markdown,
)

REPORTS = hostile.GOOD_REPORT.parent
BROKEN = REPORTS / "h100-cpu-torch-oom-fail.json"
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
SHELL_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+", re.ASCII)  # the characters shlex.quote leaves bare


@dataclass(frozen=True, kw_only=True)
class Field:
    """A matrix field: a valid value, how to set it, and the key path an error must name."""

    name: str
    ok: str
    put: Callable[[dict[str, Any], str], None]
    key: Callable[[str], str]


def _set(
    *path: Any, wrap: Callable[[str], Any] = lambda value: value
) -> Callable[[dict[str, Any], str], None]:
    def put(matrix: dict[str, Any], value: str) -> None:
        parent = matrix
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent[path[-1]] = wrap(value)

    return put


def _one_cell_include(matrix: dict[str, Any], value: str) -> None:
    matrix["include"] = [
        {"torch": value, "cuda": "none", "python": "3.11", "os": "debian12", "flavor": "cpu"}
    ]


def _label_key(matrix: dict[str, Any], value: str) -> None:
    matrix["labels"] = {value: "x"}


def _key(text: str) -> Callable[[str], str]:
    return lambda value: text


MATRIX_FIELDS = (
    Field(
        name="image.repository",
        ok="acme/pytorch",
        put=_set("image", "repository"),
        key=_key("image.repository"),
    ),
    Field(
        name="image.registry", ok="ghcr.io/acme", put=_set("image", "registry"), key=_key("image.registry")
    ),
    Field(name="image.tag", ok="{torch}-{variant}", put=_set("image", "tag"), key=_key("image.tag")),
    *(
        Field(
            name=f"axes.{axis}",
            ok=ok,
            put=_set("axes", axis, wrap=lambda v: [v]),
            key=_key(f"axes.{axis}[0]"),
        )
        for axis, ok in (
            ("torch", "2.6"),
            ("cuda", "none"),
            ("cudnn", "9.1"),
            ("python", "3.11"),
            ("os", "debian12"),
            ("flavor", "cpu"),
        )
    ),
    Field(name="include.torch", ok="2.6", put=_one_cell_include, key=_key("include[0].torch")),
    Field(
        name="include.packages",
        ok="numpy==2.1.3",
        put=lambda m, v: m["include"][0].update(packages=[v]),
        key=_key("include[0].packages[0]"),
    ),
    Field(
        name="include.base",
        ok="debian:bookworm-slim",
        put=lambda m, v: m["include"][0].update(base=v),
        key=_key("include[0].base"),
    ),
    Field(
        name="exclude.os",
        ok="ubuntu22.04",
        put=_set("exclude", wrap=lambda v: [{"os": v}]),
        key=_key("exclude[0].os"),
    ),
    Field(name="defaults.python", ok="3.11", put=_set("defaults", "python"), key=_key("defaults.python")),
    Field(
        name="packages", ok="numpy==2.1.3", put=_set("packages", wrap=lambda v: [v]), key=_key("packages[0]")
    ),
    Field(name="base", ok="debian:bookworm-slim", put=_set("base"), key=_key("base")),
    Field(
        name="torch_index",
        ok="https://download.example/whl",
        put=_set("torch_index"),
        key=_key("torch_index"),
    ),
    Field(
        name="labels.value",
        ok="ml platform",
        put=_set("labels", wrap=lambda v: {"com.acme.note": v}),
        key=_key("labels.com.acme.note"),
    ),
    Field(name="labels.key", ok="com.acme.team", put=_label_key, key=lambda value: f"labels.{value}"),
    Field(name="name", ok="pytorch", put=_set("name"), key=_key("name")),
    Field(name="python_source", ok="auto", put=_set("python_source"), key=_key("python_source")),
    Field(name="torch_source", ok="index", put=_set("torch_source"), key=_key("torch_source")),
)
MATRIX_CASES = [
    pytest.param(field, case, id=f"{field.name}-{case}")
    for field in MATRIX_FIELDS
    for case in hostile.INJECTIONS
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    """The render of the unmodified matrix: the skeleton every hostile render must keep."""
    path = tmp_path_factory.mktemp("clean") / "matrix.yaml"
    path.write_bytes(hostile.to_json_yaml(hostile.VALID_MATRIX))
    (context,) = render_plan(plan(load_matrix(path)), RenderOptions())
    return context


def render_matrix(path: Path, options: RenderOptions | None = None) -> list[BuildContext]:
    with hostile.time_limit(20):
        return render_plan(plan(load_matrix(path)), options or RenderOptions())


def assert_names_field(error: ConfigError, path: Path, key: str) -> None:
    """Exit 2, naming file and key; a key PyYAML cannot read at all (over 1024 characters) has its line."""
    assert error.exit_code == 2
    assert error.where is not None and error.where.file == str(path), error.render()
    too_long_for_yaml = len(key) > 1024 and error.message.startswith("invalid YAML")
    assert error.where.key == key or (too_long_for_yaml and error.where.line), error.render()
    hostile.assert_one_line_error(error, str(path))


def assert_safe_render(context: BuildContext, clean: BuildContext) -> None:
    """The render keeps the clean skeleton, its labels round-trip, and its tags and paths are grammatical."""
    assert hostile.dockerfile_skeleton(context.dockerfile) == hostile.dockerfile_skeleton(clean.dockerfile)
    assert hostile.label_values(context.dockerfile) == dict(context.labels)
    for ref in context.tags:
        repository, _, tag = ref.rpartition(":")
        assert TAG.fullmatch(tag), ref
        assert SHELL_SAFE.fullmatch(repository), ref
    assert all(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*", rel)
        for rel in context.files
    )
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", context.cell.id, re.ASCII)


def assert_value_is_safe_where_it_lands(field: Field, value: str, context: BuildContext, matrix: Any) -> None:
    """The one place each accepted value reaches, checked for the form that is safe there."""
    text = context.dockerfile
    if field.name == "labels.value":
        assert (
            context.labels["com.acme.note"] == value
        )  # decoded from the escaped LABEL by assert_safe_render
    elif field.name in ("packages", "include.packages"):
        # Quoted for the shell, and read back by it as exactly one word.
        runs = [line.removesuffix(" \\") for line in text.split("\n") if "pip install" in line]
        assert any(shlex.quote(value) in run and value in shlex.split(run) for run in runs), runs
    elif field.name == "torch_index":
        assert SHELL_SAFE.fullmatch(context.cell.torch_index or ""), context.cell.torch_index
    elif field.name in ("base", "include.base"):
        assert SHELL_SAFE.fullmatch(context.cell.base) and f"FROM {context.cell.base} AS python" in text
    elif field.name == "name":
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", matrix.name, re.ASCII)
    else:
        # Versions, names and repository parts are grammar-checked: nothing outside [A-Za-z0-9._+/:-].
        assert SHELL_SAFE.fullmatch(value), value


@pytest.mark.parametrize(("field", "case"), MATRIX_CASES)
def test_matrix_field(tmp_path: Path, clean: BuildContext, field: Field, case: str) -> None:
    value = hostile.injection(case, field.ok)
    data = copy.deepcopy(hostile.VALID_MATRIX)
    field.put(data, value)
    path = tmp_path / "matrix.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    try:
        contexts = render_matrix(path)
    except ConfigError as error:
        assert_names_field(error, path, field.key(value))
        return
    # Accepted: a value this field may hold (a label's free text, a quoted requirement, ...).
    assert contexts, "an accepted matrix must keep its cell"
    for context in contexts:
        assert_safe_render(context, clean)
        assert_value_is_safe_where_it_lands(field, value, context, load_matrix(path))


def test_accepted_label_text_is_escaped_in_the_dockerfile(tmp_path: Path, clean: BuildContext) -> None:
    """The label value that carries every shell and Dockerfile metacharacter at once stays one value."""
    value = "$(id) `id` ${HOME} \\ \" ' ; && | # syntax=docker/dockerfile:1"
    data = {**hostile.VALID_MATRIX, "labels": {"com.acme.note": value}}
    path = tmp_path / "matrix.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    (context,) = render_matrix(path)
    assert_safe_render(context, clean)
    line = next(line for line in context.dockerfile.split("\n") if "com.acme.note=" in line)
    assert (
        line
        == '      com.acme.note="\\$(id) `id` \\${HOME} \\\\ \\" \' ; && | # syntax=docker/dockerfile:1" \\'
    )


def test_rendered_tag_over_the_limit_names_image_tag(tmp_path: Path) -> None:
    # The template passes on its own (fields count as one character); the rendered tag is 130 long.
    data = {
        **hostile.VALID_MATRIX,
        "image": {"repository": "acme/x", "tag": "x" * 120 + "-{torch}-{variant}"},
    }
    path = tmp_path / "matrix.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    with pytest.raises(ConfigError, match="not a valid image tag") as caught:
        render_matrix(path)
    assert_names_field(caught.value, path, "image.tag")


# File names cannot hold "/" or NUL and stop at 255 bytes; a lone surrogate cannot be a file name here.
_UNNAMEABLE = {"traversal", "absolute-path", "nul", "over-long", "lone-surrogate", "empty"}
FILE_NAME_CASES = [
    case for case in sorted(set(hostile.INJECTIONS) - _UNNAMEABLE) if "/" not in hostile.INJECTIONS[case]
]


@pytest.mark.parametrize("case", FILE_NAME_CASES)
def test_matrix_file_name(tmp_path: Path, clean: BuildContext, case: str) -> None:
    """The matrix's file name reaches error messages only; images carry the matrix's `name`."""
    path = tmp_path / (hostile.injection(case, "m") + ".yaml")
    path.write_bytes(hostile.to_json_yaml(hostile.VALID_MATRIX))
    try:
        (context,) = render_matrix(path)
    except ConfigError as error:
        assert error.where is not None and error.where.file == str(path)
        hostile.assert_one_line_error(error, str(path))
        return
    assert_safe_render(context, clean)
    assert context.labels["io.envkit.matrix"] == hostile.VALID_MATRIX["name"]
    assert path.name not in context.dockerfile


# --- `envkit render --secret ID=FILE` and `--wheelhouse DIR` -----------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with hostile.time_limit(20), redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("case", sorted(hostile.INJECTIONS))
def test_secret_id(tmp_path: Path, clean: BuildContext, case: str) -> None:
    secret_id = hostile.injection(case, "pip-token")
    matrix, secret = tmp_path / "matrix.yaml", tmp_path / "token.txt"
    matrix.write_bytes(hostile.to_json_yaml(hostile.VALID_MATRIX))
    secret.write_text("s3cret")
    # `--secret=...` so that argparse hands even a leading "-" to envkit's own check.
    code, stderr = run_cli(
        ["render", str(matrix), "-o", str(tmp_path / "out"), f"--secret={secret_id}={secret}"]
    )
    if code == 2:
        assert stderr.startswith("envkit: error: --secret ") and "Traceback" not in stderr, stderr
        return
    assert code == 0, stderr
    (dockerfile,) = (tmp_path / "out").glob("*/Dockerfile")
    text = dockerfile.read_text(encoding="utf-8")
    hostile.dockerfile_skeleton(text)
    mount = re.search(r"--mount=type=secret,id=([^,\s]+),target=/run/secrets/(\S+) ", text)
    assert mount and mount[1] == mount[2] == secret_id and SHELL_SAFE.fullmatch(secret_id)


TORCH_WHEEL = "torch-2.6.0+cpu-cp311-cp311-linux_x86_64.whl"
WHEEL_CASES = [
    pytest.param(name, id=f"{where}-{case}")
    for case in sorted(set(hostile.INJECTIONS) - _UNNAMEABLE)
    for where, name in (
        ("other-wheel", hostile.injection(case, "numpy") + "-2.1.3-py3-none-any.whl"),
        ("torch-version", f"torch-2.6.0+cpu{hostile.injection(case, '')}-cp311-cp311-linux_x86_64.whl"),
        ("suffix", "numpy-2.1.3-py3-none-any.whl" + hostile.injection(case, "")),
    )
    if "/" not in name
]


@pytest.mark.parametrize("name", WHEEL_CASES)
def test_wheelhouse_file_name(tmp_path: Path, name: str) -> None:
    """A wheel named with shell characters is skipped or refused, never rendered unquoted."""
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / TORCH_WHEEL).write_bytes(b"torch")
    hostile_wheel = wheelhouse / name
    hostile_wheel.write_bytes(b"hostile")
    matrix = tmp_path / "matrix.yaml"
    matrix.write_bytes(hostile.to_json_yaml({**hostile.VALID_MATRIX, "torch_source": "wheelhouse"}))
    try:
        (context,) = render_matrix(matrix, RenderOptions(wheelhouse=wheelhouse))
    except ConfigError as error:
        # Refused: the error names the offending wheel.
        assert error.exit_code == 2 and error.where is not None and error.where.file == str(hostile_wheel)
        return
    hostile.dockerfile_skeleton(context.dockerfile)
    for rel in context.files:
        assert SHELL_SAFE.fullmatch(rel), rel
    if f"wheelhouse/{name}" in context.files:
        assert SHELL_SAFE.fullmatch(name), name  # kept only when the name needs no quoting
    else:
        assert name not in context.dockerfile


# --- report and policy text in JUnit, Markdown, HTML, GitHub annotations and the terminal -------------


def _report_put(*path: Any) -> Callable[[dict[str, Any], str], None]:
    def put(report: dict[str, Any], value: str) -> None:
        parent = report
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value

    return put


REPORT_FIELDS = {
    "image.ref": _report_put("image", "ref"),
    "image.labels.cell": _report_put("image", "labels", "io.envkit.cell"),
    "image.labels.torch": _report_put("image", "labels", "io.envkit.torch"),
    "host.hostname": _report_put("host", "hostname"),
    "host.gpus.name": _report_put("host", "gpus", 0, "name"),
    "checks.summary": _report_put("checks", 1, "summary"),
    "checks.hint": _report_put("checks", 1, "hint"),
    "checks.details": _report_put("checks", 1, "details", "cuda"),
    "envkit_version": _report_put("envkit_version"),
}
PAYLOADS = {**{case: hostile.injection(case, "x") for case in hostile.INJECTIONS}, **hostile.MARKUP}


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag + "".join(sorted(f" {name}" for name, _ in attrs)))


def html_tags(page: str) -> list[str]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _unescaped_pipes(markdown: str) -> list[int]:
    return [len(re.findall(r"(?<!\\)\|", line)) for line in markdown.split("\n")]


@dataclass(frozen=True, kw_only=True)
class Views:
    """Every output of one gate run, reduced to its structure."""

    junit: ET.Element
    markdown_lines: list[int]
    gate_lines: list[int]
    html: list[str]
    annotations: list[str]
    report: Report
    result: GateResult
    markdown: str
    page: str


def views(report: Report, policy: Policy) -> Views:
    result = run_gate([report], policy)
    # The terminal views: rich must not read report text as markup (Text objects, never markup strings).
    print_reports(Console(file=io.StringIO(), width=160, force_terminal=False), [report])
    print_gate(Console(file=io.StringIO(), width=160, force_terminal=False), result)
    markdown, gate_md, page = (
        reports_markdown([report]),
        gate_markdown(result),
        reports_html([report], result),
    )
    return Views(
        junit=ET.fromstring(junit_xml(result)),
        markdown_lines=_unescaped_pipes(markdown),
        gate_lines=_unescaped_pipes(gate_md),
        html=html_tags(page),
        annotations=github_annotations(result),
        report=report,
        result=result,
        markdown=markdown + gate_md,
        page=page,
    )


def report_with(tmp_path: Path, field: str, value: str) -> Path:
    data = json.loads(BROKEN.read_text(encoding="utf-8"))
    REPORT_FIELDS[field](data, value)
    path = tmp_path / f"report-{len(value)}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def assert_same_structure(hostile_views: Views, clean_views: Views, value: str) -> None:
    assert hostile_views.markdown_lines == clean_views.markdown_lines, "Markdown rows or cells changed"
    assert hostile_views.gate_lines == clean_views.gate_lines, "gate Markdown rows or cells changed"
    assert hostile_views.html == clean_views.html, "HTML elements changed"
    assert len(hostile_views.annotations) == len(clean_views.annotations)
    for line in hostile_views.annotations:
        command, _, title_and_data = line.partition(" title=")
        title, separator, _ = title_and_data.partition("::")
        assert command == "::error" and separator and not re.search(r"[\r\n:,]", title), line
    # Elements and attributes are compared above; these are the payloads' own raw forms.
    for text in (hostile_views.markdown, hostile_views.page):
        assert "<script>alert" not in text and "<x/>" not in text
    assert not re.search(r"(?<!\\)\]\(javascript:", hostile_views.markdown), "a live Markdown link"


@pytest.mark.parametrize(
    ("field", "case"),
    [pytest.param(field, case, id=f"{field}-{case}") for field in REPORT_FIELDS for case in PAYLOADS],
)
def test_report_text(tmp_path: Path, field: str, case: str) -> None:
    value = PAYLOADS[case]
    path = report_with(tmp_path, field, value)
    try:
        report = load_report(path)
    except ConfigError as error:
        assert error.exit_code == 2 and error.where is not None and error.where.file == str(path)
        assert (error.where.key or "").startswith("$."), error.render()
        hostile.assert_one_line_error(error, str(path))
        return
    result = views(report, Policy())
    # The same report with harmless text of the same emptiness (empty labels are left out of views).
    clean_views = views(load_report(report_with(tmp_path, field, "x" if value else "")), Policy())
    assert_same_structure(result, clean_views, value)
    # JUnit keeps the text exactly (escaped on the way in, unescaped by the parser).
    suite = result.junit.find("testsuite")
    assert suite is not None and suite.get("hostname") == (report.host.hostname or "unknown")
    assert {case.get("classname") for case in suite.iter("testcase")} == {report.label}
    failure = next(c for c in suite.iter("testcase") if c.get("name") == "env.torch").find("failure")
    assert failure is not None and (failure.get("message") or "").startswith(
        f"FAIL: {report.checks[1].summary}"
    )


POLICY_FIELDS = {
    "require": lambda policy, value: policy.update(require={value: ["PASS"]}),
    "allow_skip": lambda policy, value: policy.update(allow_skip=[value]),
    "ignore": lambda policy, value: policy.update(ignore=[value]),
    "thresholds.check": lambda policy, value: policy["thresholds"][0].update(check=value),
    "thresholds.metric": lambda policy, value: policy["thresholds"][0].update(metric=value),
    "thresholds.gpu": lambda policy, value: policy["thresholds"][0].update(gpu=value),
    "thresholds.profile": lambda policy, value: policy["thresholds"][0].update(profile=value),
    "baseline.path": lambda policy, value: policy["baseline"].update(path=value),
}
POLICY_KEYS = {
    "require": lambda value: f"require.{value}",
    "allow_skip": lambda value: "allow_skip[0]",
    "ignore": lambda value: "ignore[0]",
    "thresholds.check": lambda value: "thresholds[0].check",
    "thresholds.metric": lambda value: "thresholds[0].metric",
    "thresholds.gpu": lambda value: "thresholds[0].gpu",
    "thresholds.profile": lambda value: "thresholds[0].profile",
    "baseline.path": lambda value: "baseline.path",
}


@pytest.mark.parametrize(
    ("field", "case"),
    [pytest.param(field, case, id=f"{field}-{case}") for field in POLICY_FIELDS for case in PAYLOADS],
)
def test_policy_text(tmp_path: Path, field: str, case: str) -> None:
    value = PAYLOADS[case]
    data = copy.deepcopy(hostile.VALID_POLICY)
    POLICY_FIELDS[field](data, value)
    path = tmp_path / "policy.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    try:
        policy = load_policy(path)
        with hostile.time_limit(20):
            result = views(load_report(BROKEN), policy)
    except ConfigError as error:
        assert error.exit_code == 2 and error.where is not None
        if field == "baseline.path" and error.where.file != str(path):
            # The path was followed (read, never written) and the file it names is not a report.
            assert error.where.file == str(policy.baseline.path if policy.baseline else "")
        else:
            key = POLICY_KEYS[field](value)
            too_long_for_yaml = len(key) > 1024 and error.message.startswith("invalid YAML")
            assert error.where.file == str(path), error.render()
            assert error.where.key == key or (too_long_for_yaml and error.where.line), error.render()
        hostile.assert_one_line_error(error, error.where.file)
        return
    clean = views(load_report(BROKEN), load_policy(_write_policy(tmp_path, hostile.VALID_POLICY)))
    assert result.markdown_lines == clean.markdown_lines
    assert all("\n" not in line and "\r" not in line for line in result.annotations)
    ET.tostring(result.junit)  # parsed above; the policy's text kept it well-formed


def _write_policy(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "clean-policy.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    return path
