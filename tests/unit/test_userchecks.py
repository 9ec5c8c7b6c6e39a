"""User checks: the spec parser (file:line errors), host-side metadata checks, and the probe's user.* checks."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from envkit.engine import ImageInfo
from envkit.errors import ConfigError
from envkit.matrix import load_matrix
from envkit.policy import load_policy
from envkit.probe.cli import main as probe_main
from envkit.userchecks import load_checks, metadata_records
from envkit.validate import RunSettings, _stage_probe, probe_container_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CHECKS = ROOT / "images" / "custom-demo" / "checks.yaml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "checks.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_the_example_file_declares_every_kind() -> None:
    checks = load_checks(EXAMPLE_CHECKS)
    assert [c.kind for c in checks.checks] == ["command", "file", "file", "python", "env", "metadata"]
    assert all(c.id.startswith("user.") for c in checks.checks)
    probe = json.loads(checks.probe_json())
    assert [c["id"] for c in probe["checks"]] == [c.id for c in checks.in_image()]
    assert "user.runs-as-app" not in checks.probe_json()  # metadata is judged on the host


BAD = [
    ("checks: [{id: a, comand: {argv: [x]}}]", "checks[0].comand", "did you mean `command`?"),
    ("checks: [{id: a, env: {name: X}, file: {path: /x}}]", "checks[0]", "exactly one of"),
    ("checks: [{id: 'A B', env: {name: X}}]", "checks[0].id", "not a check id"),
    ("checks: [{id: a, command: {argv: []}}]", "checks[0].command.argv", "non-empty list"),
    (
        "checks: [{id: a, command: {argv: [x], stdout: '('}}]",
        "checks[0].command.stdout",
        "regular expression",
    ),
    ("checks: [{id: a, command: {argv: [x], timeout_s: 0}}]", "checks[0].command.timeout_s", "seconds"),
    ("checks: [{id: a, file: {path: /x, mode: 999}}]", "checks[0].file.mode", "octal"),
    ("checks: [{id: a, file: {path: x}}]", "checks[0].file.path", "absolute"),
    (
        "checks: [{id: a, file: {path: /x, exists: false, mode: '0644'}}]",
        "checks[0].file.exists",
        "must not exist",
    ),
    ("checks: [{id: a, python: {expression: 'torch.('}}]", "checks[0].python.expression", "not valid Python"),
    ("checks: [{id: a, env: {name: X, equals: a, set: true}}]", "checks[0].env", "one of"),
    ("checks: [{id: a, metadata: {usr: x}}]", "checks[0].metadata.usr", "did you mean `user`?"),
    ("checks: [{id: a, env: {name: X}}, {id: a, env: {name: Y}}]", "checks[1].id", "used twice"),
    ("chekcs: []", "chekcs", "did you mean `checks`?"),
]


@pytest.mark.parametrize(("body", "key", "message"), BAD, ids=[key for _, key, _ in BAD])
def test_bad_checks_name_file_line_and_key(tmp_path: Path, body: str, key: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_checks(path)
    error = caught.value
    assert error.exit_code == 2 and error.where is not None
    assert (error.where.file, error.where.key) == (str(path), key) and error.where.line
    assert message in error.render()


def test_a_matrix_checks_section_is_parsed_with_the_matrix(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "image: {repository: acme/x}\naxes: {torch: ['2.13.0']}\n"
        "checks: [{id: mode, env: {name: APP_MODE, equals: batch}}]\n"
    )
    matrix = load_matrix(path)
    assert matrix.checks is not None and [c.id for c in matrix.checks.checks] == ["user.mode"]


def image(**changes: Any) -> ImageInfo:
    base: dict[str, Any] = {
        "id": "sha256:" + "a" * 64,
        "tags": (),
        "labels": {"io.envkit.user": "app:1001:1001"},
        "size": 1,
        "created": "",
        "user": "1001:1001",
        "exposed_ports": ("8080/tcp",),
    }
    return ImageInfo(**{**base, **changes})


def test_metadata_checks_read_the_image_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        checks:
          - {id: as-app, metadata: {user: "1001:1001", labels: {io.envkit.user: "app:1001:1001"}}}
          - {id: port, metadata: {exposed_ports: [8080]}}
          - {id: wrong, metadata: {user: "1001:1001", labels: {com.acme.team: ml}}}
        """,
    )
    records = metadata_records(load_checks(path), image(user=""))
    assert [(r["id"], r["status"]) for r in records] == [
        ("user.as-app", "FAIL"),
        ("user.port", "PASS"),
        ("user.wrong", "FAIL"),
    ]
    assert "user is '(root, unset)'" in records[0]["summary"]
    assert "label com.acme.team is None" in records[2]["summary"]
    assert metadata_records(load_checks(path), image())[0]["status"] == "PASS"


def test_validate_passes_the_in_image_checks_to_the_probe(tmp_path: Path) -> None:
    checks = load_checks(EXAMPLE_CHECKS)
    spec = probe_container_spec(image(), RunSettings(user_checks=checks), run_id="0123456789abcdef")
    assert spec.command[-2:] == ("--user-checks", f"{spec.working_dir}/user-checks.json")
    assert spec.working_dir.endswith("0123456789abcdef")
    assert spec.user is None  # the image's own user runs the probe and the checks
    staged = _stage_probe(tmp_path, {}, checks)
    assert json.loads((staged / "user-checks.json").read_text()) == json.loads(checks.probe_json())
    assert "--user-checks" not in probe_container_spec(image(), RunSettings()).command


def test_a_policy_can_require_user_checks(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrequire:\n  user.app-mode: [PASS]\n")
    assert [r.check for r in load_policy(path).require] == ["user.app-mode"]


def run_probe(tmp_path: Path, checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = tmp_path / "user-checks.json"
    spec.write_text(json.dumps({"version": 1, "checks": checks}))
    out = tmp_path / "result.json"
    ids = [c["id"] for c in checks]
    assert probe_main(["--user-checks", str(spec), "--only", *ids, "--out", str(out), "--quiet"]) == 0
    return {record["id"]: record for record in json.loads(out.read_text())["checks"]}


def test_probe_runs_user_checks_with_the_usual_statuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVKIT_TEST_MODE", "batch")
    (tmp_path / "present.txt").write_text("x")
    (tmp_path / "present.txt").chmod(0o640)
    py = sys.executable
    records = run_probe(
        tmp_path,
        [
            {
                "id": "user.cmd-ok",
                "kind": "command",
                "argv": [py, "-c", "print('v2.1')"],
                "exit_code": 0,
                "stdout": "^v2",
                "timeout_s": 30,
            },
            {
                "id": "user.cmd-bad",
                "kind": "command",
                "argv": [py, "-c", "import sys; sys.exit(4)"],
                "exit_code": 0,
                "timeout_s": 30,
            },
            {"id": "user.cmd-missing", "kind": "command", "argv": ["no-such-tool-envkit"], "exit_code": 0},
            {
                "id": "user.file-ok",
                "kind": "file",
                "path": str(tmp_path / "present.txt"),
                "exists": True,
                "mode": 0o640,
                "type": "file",
            },
            {
                "id": "user.file-mode",
                "kind": "file",
                "path": str(tmp_path / "present.txt"),
                "exists": True,
                "mode": 0o600,
            },
            {"id": "user.absent", "kind": "file", "path": str(tmp_path / "*.key"), "exists": False},
            {"id": "user.not-absent", "kind": "file", "path": str(tmp_path / "*.txt"), "exists": False},
            {"id": "user.env-ok", "kind": "env", "name": "ENVKIT_TEST_MODE", "equals": "batch", "set": True},
            {
                "id": "user.env-bad",
                "kind": "env",
                "name": "ENVKIT_TEST_MODE",
                "matches": "^online$",
                "set": True,
            },
            {"id": "user.py-true", "kind": "python", "expression": "os.getpid() > 0", "timeout_s": 30},
            {"id": "user.py-false", "kind": "python", "expression": "os.getpid() < 0", "timeout_s": 30},
            {"id": "user.py-raises", "kind": "python", "expression": "1 / 0", "timeout_s": 30},
            {"id": "user.script", "kind": "python", "script": "import sys\nsys.exit(0)", "timeout_s": 30},
        ],
    )
    statuses = {check_id: record["status"] for check_id, record in records.items()}
    assert statuses == {
        "user.cmd-ok": "PASS",
        "user.cmd-bad": "FAIL",
        "user.cmd-missing": "FAIL",
        "user.file-ok": "PASS",
        "user.file-mode": "FAIL",
        "user.absent": "PASS",
        "user.not-absent": "FAIL",
        "user.env-ok": "PASS",
        "user.env-bad": "FAIL",
        "user.py-true": "PASS",
        "user.py-false": "FAIL",
        "user.py-raises": "FAIL",
        "user.script": "PASS",
    }
    assert "exit code 4, expected 0" in records["user.cmd-bad"]["summary"]
    assert "mode 0640, not 0600" in records["user.file-mode"]["summary"]
    assert "false (False)" in records["user.py-false"]["summary"]
    assert "ZeroDivisionError" in records["user.py-raises"]["summary"]


def test_a_hanging_user_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    script = f"import time, pathlib; time.sleep(30); pathlib.Path({str(marker)!r}).write_text('x')"
    records = run_probe(
        tmp_path,
        [{"id": "user.hang", "kind": "command", "argv": [sys.executable, "-c", script], "timeout_s": 1}],
    )
    record = records["user.hang"]
    assert record["status"] == "ERROR"
    assert "did not finish within 1 s and was killed" in record["summary"]
    assert record["details"]["timed_out"] is True
    assert record["details"]["exit_code"] == -9  # SIGKILL to its process group


def test_the_probe_leaves_user_ids_it_does_not_run_to_the_host(tmp_path: Path) -> None:
    spec = tmp_path / "user-checks.json"
    spec.write_text(json.dumps({"checks": [{"id": "user.env", "kind": "env", "name": "PATH", "set": True}]}))
    out = tmp_path / "result.json"
    argv = [
        "--user-checks",
        str(spec),
        "--only",
        "user.env",
        "user.runs-as-app",
        "--out",
        str(out),
        "--quiet",
    ]
    assert probe_main(argv) == 0
    assert [record["id"] for record in json.loads(out.read_text())["checks"]] == ["user.env"]


def test_metadata_checks_skip_without_an_image() -> None:
    records = metadata_records(load_checks(EXAMPLE_CHECKS), None)
    assert [(r["id"], r["status"]) for r in records] == [("user.runs-as-app", "SKIP")]


class _Seen(Exception):
    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings


@pytest.mark.parametrize("flag", [False, True])
def test_validate_takes_the_matrix_checks_or_the_checks_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    import envkit.commands.validate as command
    from envkit.cli import main

    def seen(engine: object, ref: str, settings: RunSettings) -> None:
        raise _Seen(settings)

    engine = type("E", (), {"info": lambda self: None, "image": lambda self, ref: image()})()
    monkeypatch.setattr(command, "get_engine", lambda: engine)
    monkeypatch.setattr(command, "validate_image", seen)
    monkeypatch.setattr(command, "host_has_gpu", lambda: False)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "image: {repository: acme/x}\ntorch_index: https://example.org/whl\n"
        "axes: {torch: ['2.13.0'], cuda: [none], python: ['3.11'], os: [debian12], flavor: [cpu]}\n"
        "checks: [{id: from-matrix, env: {name: A, equals: b}}]\n"
    )
    argv = ["validate", "--matrix", str(matrix)] + (["--checks", str(EXAMPLE_CHECKS)] if flag else [])
    with pytest.raises(_Seen) as caught:
        main(argv)
    checks = caught.value.settings.user_checks
    assert checks is not None
    expected = [c.id for c in load_checks(EXAMPLE_CHECKS).checks] if flag else ["user.from-matrix"]
    assert [c.id for c in checks.checks] == expected


def test_a_policy_may_name_user_checks_and_patterns(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nrequire: {user.app-mode: [PASS]}\nallow_skip: [user.gpu-*]\nignore: [user.*]\n"
    )
    policy = load_policy(path)
    assert policy.allow_skip == ("user.gpu-*",) and policy.ignore == ("user.*",)


def test_validate_only_names_declared_user_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from envkit.cli import main

    argv = ["validate", "img", "--checks", str(EXAMPLE_CHECKS), "--only", "user.tree-run", "--gpus", "none"]
    assert main(argv) == 2
    assert "did you mean 'user.tree-runs'?" in capsys.readouterr().err


def test_a_cluster_job_carries_the_in_image_checks_and_skips_the_metadata_ones(tmp_path: Path) -> None:
    from envkit.runners import Target
    from envkit.validate import JobProbe, RunSettings

    checks = load_checks(EXAMPLE_CHECKS)
    probe = JobProbe(RunSettings(profile="quick", user_checks=checks))
    probe.stage(tmp_path / "probe")
    staged = json.loads((tmp_path / "probe" / "user-checks.json").read_text())
    assert [c["id"] for c in staged["checks"]] == [c.id for c in checks.checks if c.kind != "metadata"]
    command = probe.command("/tmp/envkit/out/result.json")
    assert command[command.index("--user-checks") + 1] == "/tmp/envkit/user-checks.json"

    report = probe.report(Target(image="img", gpu_type="h100"), None, exit_code=1, logs="")
    (metadata,) = report.find("user.runs-as-app")
    assert metadata.status == "SKIP" and "cluster node" in metadata.summary


EVERY_SHAPE = """\
checks:
  - {id: cmd, command: {argv: [tree, -L, "1"], exit_code: 3, stdout: "^x", stderr: "y$", timeout_s: 5}}
  - {id: dir, file: {path: /opt/venv, type: dir, mode: "0755", owner: root}}
  - {id: gone, file: {path: "/etc/ssh/ssh_host_*_key", exists: false}}
  - {id: link, file: {path: /usr/bin/python3, type: link}}
  - {id: expr, python: {expression: "1 + 1 == 2"}}
  - {id: script, python: {script: "import sys\\nsys.exit(0)\\n", timeout_s: 9}}
  - {id: unset, env: {name: NO_SUCH, set: false}}
  - {id: set, env: {name: HOME}}
  - {id: like, env: {name: PATH, matches: "/opt/venv/bin"}}
  - {id: meta, metadata: {user: "1001:1001", labels: {a.b: c}, exposed_ports: ["8888/tcp"]}}
"""


@pytest.mark.parametrize("source", ["example", "every shape"])
def test_a_node_gets_every_check_back_as_a_checks_file_it_can_load(tmp_path: Path, source: str) -> None:
    from envkit.validate import JobProbe, RunSettings

    if source == "example":
        checks = load_checks(EXAMPLE_CHECKS)
    else:
        (tmp_path / "every.yaml").write_text(EVERY_SHAPE)
        checks = load_checks(tmp_path / "every.yaml")
    assert not JobProbe(RunSettings()).write_checks(tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()
    assert JobProbe(RunSettings(user_checks=checks)).write_checks(tmp_path / "checks.json")
    again = load_checks(tmp_path / "checks.json")
    assert [(c.id, c.kind, dict(c.settings)) for c in again.checks] == [
        (c.id, c.kind, dict(c.settings)) for c in checks.checks
    ]


def test_validate_with_a_cluster_runner_hands_the_checks_to_the_job_probe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from envkit.cli import main
    from envkit.commands import validate as command

    seen: list[Any] = []
    monkeypatch.setattr(command, "get_runner", lambda config, probe: seen.append(probe) or 1 / 0)
    argv = ["validate", "img", "--checks", str(EXAMPLE_CHECKS), "--runner", "slurm", "--partition", "p"]
    with pytest.raises(ZeroDivisionError):
        main(argv)
    assert [c.id for c in seen[0].settings.user_checks.checks] == [
        c.id for c in load_checks(EXAMPLE_CHECKS).checks
    ]
    # --only is checked against the declared ids on a cluster runner too
    assert main([*argv, "--only", "user.tree-run"]) == 2
    assert "did you mean 'user.tree-runs'?" in capsys.readouterr().err


def test_a_kubernetes_job_carries_the_in_image_checks_in_its_config_map() -> None:
    from envkit.runners.kubernetes import stage_files
    from envkit.validate import JobProbe, RunSettings

    checks = load_checks(EXAMPLE_CHECKS)
    files = stage_files(JobProbe(RunSettings(user_checks=checks)))
    staged = json.loads(files["user-checks.json"])["checks"]
    assert [c["id"] for c in staged] == [c.id for c in checks.in_image()]
    assert "user-checks.json" not in stage_files(JobProbe(RunSettings()))
