"""A real build of the custom demo (apt, env, a non-root user, a copied file, steps), validated with user
checks of every kind: some pass, some fail on purpose, one hangs and is killed."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ROOT, canary_ca_bundle, run_in_image, wheelhouse_or_skip

from envkit.cli import main
from envkit.engine import ContainerSpec
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.matrix import load_matrix
from envkit.render import RenderOptions, render_plan
from envkit.report import load_report
from envkit.resolve import plan

EPOCH = "1700000000"
FAILING_ON_PURPOSE = """\
  - id: probe-runs-as-app
    command: {argv: [id, -u], stdout: "^1001$"}
  - id: step-ran
    file: {path: /etc/app-tree-version, exists: true, owner: root}
  - id: greeting-is-literal
    env: {name: APP_GREETING, equals: "hello from $HOME"}
  - id: wrong-exit
    command: {argv: [tree, --no-such-flag], exit_code: 0, timeout_s: 10}
  - id: config-must-be-absent
    file: {path: /etc/app/app.cfg, exists: false}
  - id: too-many-threads
    python: {expression: "torch.get_num_threads() > 100000"}
  - id: wrong-mode
    env: {name: APP_MODE, equals: online}
  - id: wrong-label
    metadata: {labels: {com.acme.team: ml}}
  - id: hangs
    command: {argv: [sleep, "600"], timeout_s: 2}
"""


@dataclass(frozen=True)
class Built:
    image: str
    tags: tuple[str, ...]
    folder: Path


@pytest.fixture(scope="module")
def built(
    engine: DockerSdkEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("custom")
    shutil.copytree(ROOT / "images" / "custom-demo", folder / "custom-demo")
    matrix = folder / "custom-demo" / "matrix.yaml"
    repository = f"envkit-test/custom-{uuid.uuid4().hex[:8]}"
    matrix.write_text(
        matrix.read_text()
        .replace("envkit-demo/custom", repository)
        .replace("envkit-local/debian:bookworm", base_image)
    )
    flags = ["--wheelhouse", str(wheelhouse_or_skip()), "--ca-bundle", str(canary_ca_bundle(folder, "c"))]
    report = folder / "build.json"
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        code = main(
            ["build", str(matrix), *flags, "--report", str(report), "--log-dir", str(folder / "logs")]
        )
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous
    cells = json.loads(report.read_text())["cells"] if report.exists() else []
    tags = tuple(tag for cell in cells for tag in cell["tags"])
    try:
        assert code == 0, (folder / "logs").glob("*.log") and [
            p.read_text()[-3000:] for p in (folder / "logs").glob("*.log")
        ]
        yield Built(image=cells[0]["image"], tags=tags, folder=folder)
    finally:
        for tag in tags:
            engine.remove_image(tag, force=True)


def test_the_image_runs_as_its_user_with_its_packages_env_file_and_steps(
    engine: DockerSdkEngine, built: Built
) -> None:
    info = engine.image(built.image)
    assert info is not None and info.user == "1001:1001"
    assert info.labels["io.envkit.user"] == "app:1001:1001"
    assert info.labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    code, output = run_in_image(
        engine,
        built.image,
        'id -un; pwd; echo "$APP_MODE|$APP_GREETING"; cat /etc/app/app.cfg; stat -c %U:%a /etc/app/app.cfg; '
        "tree --version; cat /etc/app-torch-version; ls /var/lib/apt/lists | grep -c _ || true",
    )
    lines = output.splitlines()
    assert code == 0, output
    assert lines[:3] == ["app", "/home/app", "batch|hello from $HOME"]
    assert "mode = batch" in output and "root:644" in output and "tree v2" in output
    assert "2.13.0" in output
    assert lines[-1] == "0"  # the apt lists were removed in the same layer


def test_user_checks_run_in_the_probe_sandbox_with_the_usual_statuses(built: Built, tmp_path: Path) -> None:
    checks = tmp_path / "checks.yaml"
    checks.write_text((ROOT / "images" / "custom-demo" / "checks.yaml").read_text() + FAILING_ON_PURPOSE)
    out = tmp_path / "report.json"
    ids = [line.split("id: ")[1] for line in checks.read_text().splitlines() if "- id: " in line]
    only = [arg for check_id in ids for arg in ("--only", f"user.{check_id}")]
    code = main(["validate", built.image, "--checks", str(checks), *only, "--out", str(out)])
    report = load_report(out)
    statuses = {check.id: check.status for check in report.checks}
    assert code == 1
    assert statuses == {
        "user.tree-runs": "PASS",
        "user.config-file": "PASS",
        "user.no-ssh-host-keys": "PASS",
        "user.torch-threads": "PASS",
        "user.app-mode": "PASS",
        "user.probe-runs-as-app": "PASS",
        "user.step-ran": "PASS",
        "user.greeting-is-literal": "PASS",
        "user.wrong-exit": "FAIL",
        "user.config-must-be-absent": "FAIL",
        "user.too-many-threads": "FAIL",
        "user.wrong-mode": "FAIL",
        "user.hangs": "ERROR",
        "user.runs-as-app": "PASS",
        "user.wrong-label": "FAIL",
        "runner.container": "PASS",
    }
    [hang] = report.find("user.hangs")
    assert "did not finish within 2 s and was killed" in hang.summary


USER_STEP = """\
version: 1
image: {{repository: envkit-test/uid}}
axes: {{torch: ["2.13.0"], cuda: [none], python: ["3.11"], os: [debian12], flavor: [cpu]}}
base: {base}
user: {{name: app, uid: {uid}}}
"""


def rendered_user_step(folder: Path, base: str, uid: int) -> tuple[str, ...]:
    """The `user` RUN step of a rendered cell, as the build runs it: under the Dockerfile's SHELL."""
    (folder / "matrix.yaml").write_text(USER_STEP.format(base=base, uid=uid))
    (context,) = render_plan(plan(load_matrix(folder / "matrix.yaml")), RenderOptions())
    text = context.dockerfile
    shell = json.loads(text.split("\nSHELL ", 1)[1].split("\n", 1)[0])
    step = next(part for part in text.split("\nRUN ")[1:] if "useradd" in part)
    return (*shell, step.split("\n# ", 1)[0].split("\nCOPY ", 1)[0].split("\nLABEL", 1)[0])


@pytest.mark.parametrize(("uid", "code", "said"), [(1, 1, "is already user 'daemon'"), (1001, 0, "")])
def test_the_user_step_refuses_a_uid_the_base_already_has(
    engine: DockerSdkEngine, base_image: str, tmp_path: Path, uid: int, code: int, said: str
) -> None:
    # Debian's base has daemon at uid 1; useradd alone would say only "UID 1 is not unique".
    # As a build step runs: root with the engine's default capabilities (useradd chowns /etc/gshadow).
    command = rendered_user_step(tmp_path, base_image, uid)
    assert command[:3] == ("/bin/bash", "-o", "pipefail")  # as the Dockerfile's SHELL says
    cid = engine.create(ContainerSpec(image=base_image, command=command, cap_drop=()))
    try:
        engine.start(cid)
        status, output = engine.wait(cid, 120).code, engine.logs(cid)
    finally:
        engine.remove_container(cid)
    assert status == code, output
    assert said in output
    if said:
        assert "set another user.uid in the matrix" in output
