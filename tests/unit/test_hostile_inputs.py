"""Hostile inputs on the host side: special files named *.json, links in a wheelhouse, builds of one
cell racing each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envkit.errors import ConfigError
from envkit.report import load_report, load_reports
from envkit.yamlsrc import load_file

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
# Generous: a refused file answers at once; the guard only keeps a regression from hanging the suite.
GUARD_S = 120


def envkit(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *argv], cwd=cwd, capture_output=True, text=True, timeout=GUARD_S
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["gate", "{fifo}", "--policy", "{policy}"],
        ["report", "{fifo}"],
        ["diff", "{fifo}", "{good}"],
        ["gate", "{folder}", "--policy", "{policy}"],
    ],
    ids=["gate", "report", "diff", "gate-folder"],
)
def test_a_fifo_named_json_is_refused_not_waited_on(command: list[str], fifo: Path, tmp_path: Path) -> None:
    good = FIXTURES / "cpu-quick-pass.json"
    policy = tmp_path / "policy" / "policy.yml"
    policy.parent.mkdir()
    policy.write_text("version: 1\nrequire:\n  env.torch: [PASS]\n")
    argv = [arg.format(fifo=fifo, good=good, folder=fifo.parent, policy=policy) for arg in command]
    done = envkit(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr and "report.json" in done.stderr


def test_the_report_loader_refuses_devices_and_fifos_before_reading(fifo: Path) -> None:
    # promote reads its reports through load_reports, the same path.
    for path in (fifo, Path(os.devnull)):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_report(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_reports([fifo.parent])


def test_a_fifo_given_as_a_policy_or_matrix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_file(path)


# --- CI output cannot be hijacked ------------------------------------------------------------------------


def hostile_report(folder: Path) -> Path:
    """A failing report whose every free text carries workflow commands, placed where wrapping would
    put them at the start of a line."""
    import json

    data = json.loads((FIXTURES / "cpu-quick-pass.json").read_text())
    data["image"]["ref"] = "acme/" + "x" * 150 + "::add-mask::ref"
    for check in data["checks"]:
        if check["id"] == "env.torch":
            check["status"] = "FAIL"
            check["summary"] = "y" * 130 + " ::error::summary " + "z" * 200 + " ::add-mask::tail"
            check["hint"] = "first line\n::error file=x::hint line\n  ::set-output name=a::b"
    path = folder / "hostile.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("in_actions", [True, False], ids=["github-actions", "plain-ci"])
@pytest.mark.parametrize("command", ["gate", "report"])
def test_untrusted_text_never_begins_a_line_of_ci_output(
    command: str,
    in_actions: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from envkit.cli import main

    report = hostile_report(tmp_path)
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nrequire:\n  env.torch: [PASS]\n")
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    if in_actions:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    else:
        monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    argv = ["gate", str(report), "--policy", str(policy)] if command == "gate" else ["report", str(report)]
    main(argv)
    lines = capsys.readouterr().out.splitlines()
    commands = [line for line in lines if line.lstrip().startswith("::")]
    # The only workflow commands are envkit's: the fence and (gate) its escaped annotations.
    fences = [line for line in commands if line.startswith("::stop-commands::")]
    annotations = [line for line in commands if line.startswith("::error title=envkit gate%3A ")]
    assert len(fences) == (1 if in_actions else 0)
    if in_actions:
        token = fences[0].removeprefix("::stop-commands::")
        assert len(token) >= 32 and f"::{token}::" in lines
        start, end = lines.index(fences[0]), lines.index(f"::{token}::")
        outside = [line for line in lines[:start] + lines[end:] if not line.startswith("::error title=")]
        assert not [line for line in outside if "::add-mask::" in line or "::error::" in line]
        assert set(commands) == {fences[0], f"::{token}::", *annotations}
    else:
        assert commands == annotations == []


# --- the wheelhouse cannot smuggle files -----------------------------------------------------------------


def wheelhouse_cell() -> object:
    from dataclasses import replace

    from cells import CPU_CELL

    return replace(CPU_CELL, torch_source="wheelhouse", torch_index=None, flavor="devel")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch wheel")
    return folder


def test_a_wheelhouse_link_to_a_file_outside_it_is_refused(wheels: Path, tmp_path: Path) -> None:
    from envkit.render import RenderOptions, render_cell

    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    (wheels / "sympy-1.13.3-py3-none-any.whl").symlink_to(secret)
    with pytest.raises(ConfigError, match="outside the wheelhouse") as refused:
        render_cell(wheelhouse_cell(), "m", {}, RenderOptions(wheelhouse=wheels))  # type: ignore[arg-type]
    assert refused.value.exit_code == 2


def test_a_link_inside_the_wheelhouse_is_copied_as_its_content(wheels: Path, tmp_path: Path) -> None:
    from envkit.render import RenderOptions, render_cell

    (wheels / "real").mkdir()
    (wheels / "real" / "sympy.bin").write_bytes(b"sympy wheel")
    (wheels / "sympy-1.13.3-py3-none-any.whl").symlink_to(wheels / "real" / "sympy.bin")
    context = render_cell(wheelhouse_cell(), "m", {}, RenderOptions(wheelhouse=wheels))  # type: ignore[arg-type]
    out = tmp_path / "out"
    context.write(out)
    copied = out / "wheelhouse" / "sympy-1.13.3-py3-none-any.whl"
    assert not copied.is_symlink() and copied.read_bytes() == b"sympy wheel"


def test_editing_a_rendered_context_never_edits_the_users_files(wheels: Path, tmp_path: Path) -> None:
    from envkit.render import RenderOptions, render_cell

    context = render_cell(wheelhouse_cell(), "m", {}, RenderOptions(wheelhouse=wheels))  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    decoy = tmp_path / "users-dockerfile"
    decoy.write_text("the user's own file")
    (out / "Dockerfile").symlink_to(decoy)  # left in the output folder: not to be written through
    context.write(out)
    for path in out.rglob("*"):
        if path.is_file():
            assert not path.is_symlink() and path.stat().st_nlink == 1, path
            path.write_bytes(b"edited")
    assert decoy.read_text() == "the user's own file"
    assert (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").read_bytes() == b"torch wheel"


# --- concurrent builds of one cell ------------------------------------------------------------------------


def test_two_forced_builds_of_one_cell_take_turns_and_record_their_images(tmp_path: Path) -> None:
    import threading
    from collections.abc import Callable

    from cells import cell
    from fakes import FakeEngine

    from envkit.build import BuildSettings, build_contexts
    from envkit.engine import BuildRequest
    from envkit.render import RenderOptions, render_cell
    from envkit.scratch import recorded_builds

    class Overlapping(FakeEngine):
        """Counts builds in flight; the first waits a while for a second to join it."""

        def __init__(self) -> None:
            super().__init__()
            self.active = 0
            self.most = 0
            self.second_started = threading.Event()
            self.guard = threading.Lock()

        def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
            with self.guard:
                self.active += 1
                self.most = max(self.most, self.active)
                first = self.active == 1 and not self.builds
                if not first:
                    self.second_started.set()
            if first:
                self.second_started.wait(3)  # joined at once without the lock; never with it
            try:
                with self.guard:
                    return super().build(req, on_line)
            finally:
                with self.guard:
                    self.active -= 1

    engine = Overlapping()
    context = render_cell(cell(id="a"), "m.yaml", {}, RenderOptions())
    # Two runs as from two shells: each with its own --log-dir, sharing only the cell's tag.
    settings = [
        BuildSettings(jobs=1, log_dir=tmp_path / f"logs{i}", force=True, state_root=tmp_path / ".envkit")
        for i in range(2)
    ]
    reports = []
    runs = [
        threading.Thread(target=lambda s=s: reports.append(build_contexts("m.yaml", [context], engine, s)))
        for s in settings
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert len(reports) == 2 and engine.most == 1
    built = {report.results[0].image_id for report in reports}
    assert len(built) == 2 and built <= recorded_builds(tmp_path / ".envkit")  # gc may take the older one
    cell_image, hash_image = engine.image(context.tags[0]), engine.image(context.tags[1])
    assert cell_image is not None and hash_image is not None and cell_image.id == hash_image.id
    for one in settings:
        assert (one.log_dir / "a.log").read_text().count("Step 1/1") == 1  # each run's own whole log
