"""The engine interface against a real Docker engine, both backends."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit.engine import BuildFailed, BuildRequest, ContainerSpec, EngineError, ExitStatus, get_engine
from envkit.engine.buildkit import BuildKitEngine, probe_cli
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.errors import EngineUnavailable, RegistryError

MiB = 2**20


@pytest.fixture
def ref() -> Iterator[str]:
    """A unique image name, removed (with every tag made from it) after the test."""
    name = f"envkit-test/engine:{uuid.uuid4().hex[:12]}"
    yield name
    engine = DockerSdkEngine()
    for suffix in ("", "-alias"):
        engine.remove_image(name + suffix, force=True)


@pytest.fixture
def container(engine: DockerSdkEngine) -> Iterator[list[str]]:
    """Collects container ids to remove after the test, even when it fails."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        engine.remove_container(cid)


def context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    folder = tmp_path / "ctx"
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def run(engine: DockerSdkEngine, ids: list[str], spec: ContainerSpec, timeout_s: float = 60) -> ExitStatus:
    cid = engine.create(spec)
    ids.append(cid)
    engine.start(cid)
    return engine.wait(cid, timeout_s)


def test_info(engine: DockerSdkEngine) -> None:
    info = engine.info()
    assert info.version
    assert tuple(map(int, info.api_version.split("."))) >= (1, 40)
    assert info.backend == "docker"


def test_build_inspect_tag_and_remove(
    engine: DockerSdkEngine, base_image: str, ref: str, tmp_path: Path
) -> None:
    dockerfile = f'FROM {base_image}\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
    lines: list[str] = []
    req = BuildRequest(
        context_dir=context(tmp_path, dockerfile),
        tags=(ref,),
        labels={"io.envkit.cell": "engine-test", "io.envkit.python": "3.11"},
        build_args={"GREETING": "hello from envkit"},
    )
    image_id = engine.build(req, lines.append)
    assert image_id.startswith("sha256:")
    assert any("GREETING" in line for line in lines)

    info = engine.image(ref)
    assert info is not None and info.id == image_id
    assert info.tags == (ref,)
    assert info.labels["io.envkit.cell"] == "engine-test"
    assert info.labels["io.envkit.managed"] == "true"
    assert info.size > 0 and info.created
    assert image_id in [i.id for i in engine.images("io.envkit.cell=engine-test")]
    assert any("GREETING" in line for line in engine.history(ref))

    engine.tag(image_id, ref + "-alias")
    engine.remove_image(ref)
    assert engine.image(ref) is None
    assert engine.image(ref + "-alias") is not None
    engine.remove_image(ref + "-alias")
    assert engine.image(image_id) is None
    engine.remove_image(ref + "-alias")  # removing twice is not an error


def test_build_failure_carries_the_log_tail(engine: DockerSdkEngine, base_image: str, tmp_path: Path) -> None:
    dockerfile = f"FROM {base_image}\nRUN echo envkit-marker-7f3a && exit 7\n"
    with pytest.raises(BuildFailed) as caught:
        engine.build(BuildRequest(context_dir=context(tmp_path, dockerfile)), lambda line: None)
    assert "envkit-marker-7f3a" in caught.value.log_tail
    assert caught.value.exit_code == 1


def test_container_files_in_and_out(
    engine: DockerSdkEngine, base_image: str, container: list[str], tmp_path: Path
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("VALUE = 42\n")
    main = textwrap.dedent(
        """\
        import os, sys
        sys.path.insert(0, "/opt/probe")
        import pkg.mod
        caps = next(line for line in open("/proc/self/status") if line.startswith("CapEff")).split()[1]
        arg = open("/opt/probe/arg.txt").read()
        out = f"{pkg.mod.VALUE} {arg} {sorted(os.listdir('/sys/class/net'))} {caps}"
        open("/tmp/result.txt", "w").write(out)
        print("done")
        sys.exit(3)
        """
    )
    command = ("python3", "/opt/probe/main.py")
    spec = ContainerSpec(image=base_image, command=command, labels={"io.envkit.cell": "t"})
    cid = engine.create(spec)
    container.append(cid)
    engine.put_files(cid, "/opt/probe", {"arg.txt": b"hi", "main.py": main.encode(), "pkg": tmp_path / "pkg"})
    assert cid in engine.containers("io.envkit.managed=true")
    engine.start(cid)
    status = engine.wait(cid, timeout_s=60)
    assert status == ExitStatus(code=3, oom_killed=False, timed_out=False, error=None)
    # Network disabled (only loopback) and every capability dropped, by default.
    assert engine.get_file(cid, "/tmp/result.txt") == b"42 hi ['lo'] 0000000000000000"
    assert engine.get_file(cid, "/tmp/missing.txt") is None
    assert engine.logs(cid).strip() == "done"
    engine.remove_container(cid)
    engine.remove_container(cid)
    assert cid not in engine.containers("io.envkit.managed=true")
    with pytest.raises(EngineError):
        engine.start(cid)


def test_wait_timeout_kills_the_container(
    engine: DockerSdkEngine, base_image: str, container: list[str]
) -> None:
    status = run(engine, container, ContainerSpec(image=base_image, command=("sleep", "300")), timeout_s=1)
    assert status.timed_out
    assert status.code is not None  # it was killed, not left running
    assert container[0] not in engine.containers("io.envkit.managed=true", all=False)


def test_oom_killed_container_is_reported(
    engine: DockerSdkEngine, base_image: str, container: list[str]
) -> None:
    hog = ("python3", "-c", "data = b'x' * (512 * 2**20)")
    status = run(engine, container, ContainerSpec(image=base_image, command=hog, mem_limit=32 * MiB))
    assert status.oom_killed
    assert status.code == 137
    assert not status.timed_out


def test_push_returns_digest_and_refusal_is_registry_error(
    engine: DockerSdkEngine, base_image: str, registry: str
) -> None:
    target = f"{registry}/envkit-test/base:{uuid.uuid4().hex[:8]}"
    engine.tag(base_image, target)
    try:
        assert engine.push(target).startswith("sha256:")
    finally:
        engine.remove_image(target)
    with pytest.raises(RegistryError):
        engine.push(f"{registry}/envkit-test/not-here:1")


def test_buildkit_finds_a_working_cli_and_keeps_secrets_out_of_the_image(
    engine: DockerSdkEngine, base_image: str, ref: str, tmp_path: Path
) -> None:
    marker = f"envkit-secret-{uuid.uuid4().hex}"
    secret = tmp_path / "ca.pem"
    secret.write_text(marker)
    dockerfile = (
        f"FROM {base_image}\n"
        "RUN --mount=type=cache,target=/var/cache/envkit echo cached > /var/cache/envkit/x\n"
        "RUN --mount=type=secret,id=pipcert wc -c < /run/secrets/pipcert > /secret-size\n"
    )
    buildkit = get_engine("buildkit")
    assert isinstance(buildkit, BuildKitEngine)
    assert probe_cli(buildkit.cli) is None
    lines: list[str] = []
    req = BuildRequest(context_dir=context(tmp_path, dockerfile), tags=(ref,), secrets={"pipcert": secret})
    image_id = buildkit.build(req, lines.append)
    assert any(line.startswith("#") for line in lines)  # --progress=plain output was streamed
    assert engine.image(ref) is not None and engine.image(ref).id == image_id  # type: ignore[union-attr]
    assert not any(marker in line for line in engine.history(ref))
    assert marker.encode() not in b"".join(engine.save(ref))


def test_unreachable_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine"):
        get_engine().info()
