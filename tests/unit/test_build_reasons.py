"""Why a cell would be built (`build --dry-run`), and builds the environment failed exit 3, not 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cells import cell
from fakes import FakeEngine

from envkit.build import BuildSettings, build_contexts, explain
from envkit.cli import main
from envkit.engine import BuildEnvironmentFault, BuildFailed, BuildRequest, build_failure
from envkit.render import RenderOptions, render_cell

# What the engine says (host names made up): the base pull cannot reach a registry; the bridge is gone.
UNREACHABLE = (
    'build failed: failed to resolve reference "registry.example/nvidia/cuda:12.8.1-base-ubuntu24.04": '
    'failed to do request: Head "https://registry.example/v2/": dial tcp: lookup registry.example: '
    "no such host"
)
NO_BRIDGE = "build failed: could not find bridge docker0: route ip+net: no such network interface"
DOCKERFILE_ERROR = (
    "build failed: The command '/bin/sh -c apt-get install -y nope' returned a non-zero code: 100"
)


def context(**changes: object):
    return render_cell(cell(id="a", **changes), "m.yaml", {}, RenderOptions())


def test_engine_messages_of_an_unreachable_registry_or_a_missing_bridge_are_environment_faults() -> None:
    registry, bridge = build_failure(UNREACHABLE), build_failure(NO_BRIDGE)
    assert isinstance(registry, BuildEnvironmentFault) and registry.exit_code == 3
    assert registry.hint is not None and "base image" in registry.hint
    assert isinstance(bridge, BuildEnvironmentFault) and bridge.hint is not None and "bridge" in bridge.hint
    plain = build_failure(DOCKERFILE_ERROR)
    assert type(plain) is BuildFailed and plain.exit_code == 1


class FaultyEngine(FakeEngine):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        raise build_failure(self.message)


@pytest.mark.parametrize(("message", "code"), [(UNREACHABLE, 3), (NO_BRIDGE, 3), (DOCKERFILE_ERROR, 1)])
def test_a_build_the_environment_failed_exits_3(tmp_path: Path, message: str, code: int) -> None:
    report = build_contexts("m.yaml", [context()], FaultyEngine(message), BuildSettings(log_dir=tmp_path))
    [result] = report.results
    assert result.status == "failed" and report.exit_code == code
    assert result.environment_fault is (code == 3)


def test_cli_build_exit_code_follows_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("version: 1\nimage: {repository: acme/pytorch}\naxes: {torch: ['2.8'], cuda: [none]}\n")
    monkeypatch.setattr("envkit.commands.build.get_engine", lambda backend: FaultyEngine(NO_BRIDGE))
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(matrix)]) == 3
    out = capsys.readouterr().out
    assert "could not find bridge docker0" in out
    assert "\n  log: .envkit/m/logs/2.8.0-cpu-py3.11-debian12-cpu.log\n" in out


def test_dry_run_reasons_no_image_changed_input_base_moved_forced_up_to_date(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.add_image("debian:bookworm-slim", labels={"release": "12.7"})
    old = context(torch="2.12.0")
    assert explain([old], engine) == {"a": ("build", "no image acme/pytorch:a")}
    build_contexts("m.yaml", [old], engine, BuildSettings(log_dir=tmp_path))
    assert explain([old], engine) == {"a": ("skip", "up to date")}
    assert explain([old], engine, force=True) == {"a": ("build", "forced")}
    assert explain([context(torch="2.13.0")], engine) == {
        "a": ("build", "content hash differs: torch 2.12.0 → 2.13.0")
    }
    [(action, why)] = explain([context(torch="2.12.0", packages=("ninja",))], engine).values()
    assert (action, why) == (
        "build",
        "content hash differs: the Dockerfile or build files (packages, wheels, templates)",
    )
    engine.add_image("debian:bookworm-slim", labels={"release": "12.8"})
    [(action, why)] = explain([old], engine).values()
    assert action == "build" and why.startswith("base debian:bookworm-slim moved: built on sha256:")


def test_cli_dry_run_prints_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("version: 1\nimage: {repository: acme/pytorch}\naxes: {torch: ['2.8'], cuda: [none]}\n")
    monkeypatch.setattr("envkit.commands.build.get_engine", lambda backend: FakeEngine())
    assert main(["build", str(matrix), "--dry-run"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("build  2.8.0-cpu-py3.11-debian12-cpu  no image acme/pytorch:")


def test_validate_matrix_validates_every_built_cell_and_names_the_unbuilt_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "version: 1\nimage: {repository: acme/pytorch}\naxes: {torch: ['2.7', '2.8'], cuda: [none]}\n"
    )
    engine = FakeEngine()
    built = "acme/pytorch:2.8.0-cpu-py3.11-debian12-cpu"  # the second cell; the first is not built
    engine.add_image(built)
    monkeypatch.setattr("envkit.commands.validate.get_engine", lambda: engine)
    out_dir = tmp_path / "reports"
    assert main(["validate", "--matrix", str(matrix), "--gpus", "none", "--out-dir", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert len(list(out_dir.glob("*.json"))) == 1  # the built cell was validated
    assert "no image 'acme/pytorch:2.7.1-cpu-py3.11-debian12-cpu' on the engine: 1 of 2 not validated" in (
        captured.err
    )


def test_gpus_without_an_nvidia_runtime_says_what_to_install() -> None:
    import docker

    from envkit.engine import EngineError
    from envkit.engine.docker_sdk import translate

    refusal = docker.errors.APIError(
        "500 Server Error", explanation='could not select device driver "" with capabilities: [[gpu]]'
    )
    with pytest.raises(EngineError) as caught, translate("unix:///x.sock", "starting container abc"):
        raise refusal
    assert caught.value.exit_code == 3
    assert caught.value.hint is not None and "NVIDIA Container Toolkit" in caught.value.hint


def test_render_into_a_folder_removes_cells_the_matrix_no_longer_has_and_refuses_another_matrixs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    matrix = tmp_path / "m.yaml"
    head = "version: 1\nimage: {repository: acme/pytorch}\n"
    matrix.write_text(head + "axes: {torch: ['2.7', '2.8'], cuda: [none]}\n")
    assert main(["render", str(matrix), "-o", str(out)]) == 0
    (out / "notes").mkdir()  # not a rendered cell: left alone
    matrix.write_text(head + "axes: {torch: ['2.8'], cuda: [none]}\n")
    assert main(["render", str(matrix), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2.8.0-cpu-py3.11-debian12-cpu", "notes"]
    assert (
        "removed 1 cell(s) the matrix no longer has: 2.7.1-cpu-py3.11-debian12-cpu" in capsys.readouterr().out
    )
    other = tmp_path / "other.yaml"
    other.write_text(head + "axes: {torch: ['2.7'], cuda: [none]}\n")
    assert main(["render", str(other), "-o", str(out)]) == 2
    assert "was rendered from another matrix (m)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["2.8.0-cpu-py3.11-debian12-cpu", "notes"]
