"""BuildKit backend: finding a docker CLI that can build, and running it, with fake CLIs in tmp_path."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from envkit.engine import BuildFailed, BuildRequest
from envkit.engine.buildkit import BuildKitEngine, build_argv, cli_candidates, find_cli, probe_cli
from envkit.errors import EngineUnavailable, UnsafeValueError

NO_BUILDX = """\
echo "ERROR: BuildKit is enabled but the buildx component is missing or broken." >&2
exit 1
"""
WITH_BUILDKIT = """\
if [ "$1 $2" = "build --help" ]; then
  echo "Usage:  docker build [OPTIONS] PATH"; echo "      --secret stringArray"; exit 0
fi
"""


def fake_cli(folder: Path, body: str, name: str = "docker") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_candidates_follow_path_order_then_well_known_and_drop_duplicates(tmp_path: Path) -> None:
    first = fake_cli(tmp_path / "a", NO_BUILDX)
    second = fake_cli(tmp_path / "b", WITH_BUILDKIT)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "docker").symlink_to(second)
    well_known = fake_cli(tmp_path / "w", WITH_BUILDKIT)
    path = os.pathsep.join(str(tmp_path / d) for d in ("a", "b", "c", "empty"))
    found = cli_candidates({"PATH": path}, well_known=(str(well_known), str(first), "/nonexistent/docker"))
    assert found == [str(first), str(second), str(well_known)]


def test_override_is_the_only_candidate(tmp_path: Path) -> None:
    fake_cli(tmp_path / "a", WITH_BUILDKIT)
    assert cli_candidates({"PATH": str(tmp_path / "a"), "ENVKIT_DOCKER_CLI": "/opt/x/docker"}) == [
        "/opt/x/docker"
    ]


def test_probe_refuses_cli_without_buildx_and_accepts_one_with_buildkit(tmp_path: Path) -> None:
    assert "buildx component is missing" in (probe_cli(str(fake_cli(tmp_path / "a", NO_BUILDX))) or "")
    assert probe_cli(str(fake_cli(tmp_path / "b", WITH_BUILDKIT))) is None
    assert "no --secret" in (probe_cli(str(fake_cli(tmp_path / "c", "echo 'Usage: build'\n"))) or "")
    assert "could not run" in (probe_cli(str(tmp_path / "missing")) or "")


def test_find_cli_skips_the_broken_first_candidate(tmp_path: Path) -> None:
    broken = fake_cli(tmp_path / "a", NO_BUILDX)
    working = fake_cli(tmp_path / "b", WITH_BUILDKIT)
    assert find_cli([str(broken), str(working)]) == str(working)


def test_find_cli_names_every_refusal_when_none_works(tmp_path: Path) -> None:
    broken = fake_cli(tmp_path / "a", NO_BUILDX)
    with pytest.raises(EngineUnavailable) as caught:
        find_cli([str(broken)])
    assert str(broken) in caught.value.message
    assert "buildx" in caught.value.message
    assert "ENVKIT_DOCKER_CLI" in (caught.value.hint or "")
    assert caught.value.exit_code == 3


def test_engine_probes_once_per_instance(tmp_path: Path) -> None:
    counter = tmp_path / "probes"
    cli = fake_cli(tmp_path / "a", f"echo x >> {counter}\n" + WITH_BUILDKIT)
    engine = BuildKitEngine(env={"ENVKIT_DOCKER_CLI": str(cli), "PATH": ""})
    assert engine.cli == engine.cli == str(cli)
    assert len(counter.read_text().splitlines()) == 1


def request(tmp_path: Path, **kwargs: object) -> BuildRequest:
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(str(kwargs.pop("dockerfile_text", "FROM scratch\n")))
    return BuildRequest(context_dir=context, **kwargs)  # type: ignore[arg-type]


def test_argv_is_a_list_with_labels_args_and_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "ca.pem"
    secret.write_text("cert")
    req = request(
        tmp_path,
        tags=("x:1",),
        labels={"k": "v; rm -rf / $(x)"},
        build_args={"A": "1 2"},
        secrets={"pipcert": secret},
        network_mode="host",
    )
    argv = build_argv("/bin/docker", req, tmp_path / "iid")
    assert argv[:3] == ["/bin/docker", "build", "--progress=plain"]
    assert argv[argv.index("k=v; rm -rf / $(x)") - 1 :][:2] == ["--label", "k=v; rm -rf / $(x)"]
    assert "io.envkit.managed=true" in argv
    assert f"id=pipcert,src={secret}" in argv
    assert "A=1 2" in argv
    assert argv[-1] == str(req.context_dir)


@pytest.mark.parametrize(
    "kwargs",
    [{"labels": {"a=b": "v"}}, {"build_args": {"": "v"}}, {"secrets": {"bad,id": Path("/etc/hostname")}}],
)
def test_argv_rejects_values_that_would_change_meaning(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UnsafeValueError):
        build_argv("docker", request(tmp_path, **kwargs), tmp_path / "iid")


def test_secret_with_comma_in_path_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "a,b.pem"
    secret.write_text("x")
    with pytest.raises(UnsafeValueError, match="comma"):
        build_argv("docker", request(tmp_path, secrets={"s": secret}), tmp_path / "iid")


BUILDING_CLI = WITH_BUILDKIT + textwrap.dedent(
    """\
    while [ $# -gt 0 ]; do
      case "$1" in --iidfile) shift; iid="$1";; esac; shift
    done
    echo "#1 [internal] load build definition"
    echo "#2 DONE 0.1s"
    [ "$DOCKER_BUILDKIT" = 1 ] || { echo "DOCKER_BUILDKIT not set"; exit 9; }
    printf 'sha256:%064d' 7 > "$iid"
    """
)


def test_build_streams_lines_and_returns_the_iidfile_id(tmp_path: Path) -> None:
    cli = fake_cli(tmp_path / "bin", BUILDING_CLI)
    engine = BuildKitEngine(env={"ENVKIT_DOCKER_CLI": str(cli)})
    lines: list[str] = []
    image_id = engine.build(request(tmp_path, tags=("x:1",)), lines.append)
    assert image_id == "sha256:" + "0" * 63 + "7"
    assert lines == ["#1 [internal] load build definition", "#2 DONE 0.1s"]


def test_build_failure_carries_the_log_tail_and_syntax_hint(tmp_path: Path) -> None:
    cli = fake_cli(tmp_path / "bin", WITH_BUILDKIT + 'echo "#5 ERROR: failed to solve: frontend"\nexit 1\n')
    engine = BuildKitEngine(env={"ENVKIT_DOCKER_CLI": str(cli)})
    req = request(tmp_path, dockerfile_text="# syntax=docker/dockerfile:1\nFROM scratch\n")
    with pytest.raises(BuildFailed) as caught:
        engine.build(req, lambda line: None)
    assert "failed to solve" in caught.value.log_tail
    assert "syntax=" in (caught.value.hint or "")


def test_build_against_a_dead_engine_is_engine_unavailable(tmp_path: Path) -> None:
    body = WITH_BUILDKIT + 'echo "ERROR: Cannot connect to the Docker daemon at unix:///x.sock."\nexit 1\n'
    engine = BuildKitEngine(env={"ENVKIT_DOCKER_CLI": str(fake_cli(tmp_path / "bin", body))})
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine"):
        engine.build(request(tmp_path), lambda line: None)
