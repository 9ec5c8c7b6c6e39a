"""User layers for real: a CPU cell with JupyterLab and sshd built from the wheelhouse, both service
checks run in the probe's sandbox, hostile variants that must fail, and per-container host keys."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support import canary_ca_bundle, wheelhouse_or_skip

from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.report import load_report

MATRIX = """
name: user-layer
image: {{repository: {repository}}}
base: {base}
torch_source: wheelhouse
user_layer: {layer}
axes: {{torch: ["2.13.0"], cuda: [none], python: ["3.11"], os: [debian12], flavor: [cpu]}}
"""
SERVICES = ("service.jupyter", "service.ssh")

HOSTILE = {
    # A config file that empties the token: the server starts with authentication off.
    "empty-token": "USER root\nRUN mkdir -p /etc/jupyter && printf \"c.IdentityProvider.token = ''\\n\" "
    "> /etc/jupyter/jupyter_server_config.py\nUSER envkit\n",
    # One host key made at build time: every container would share it.
    "baked-host-key": "RUN ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/envkit/ssh_host_ed25519_key\n",
    "passwords": "USER root\nRUN sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' "
    "/etc/ssh/sshd_config\nUSER envkit\n",
}


def _build(engine: DockerSdkEngine, base: str, folder: Path, layer: str) -> tuple[int, list[dict]]:
    repository = f"envkit-test/user-layer-{uuid.uuid4().hex[:8]}"
    matrix = folder / "m.yaml"
    matrix.write_text(MATRIX.format(repository=repository, base=base, layer=layer))
    flags = ["--wheelhouse", str(wheelhouse_or_skip()), "--ca-bundle", str(canary_ca_bundle(folder, "ul"))]
    report = folder / "build.json"
    code = main(["build", str(matrix), *flags, "--report", str(report), "--log-dir", str(folder / "logs")])
    return code, json.loads(report.read_text())["cells"] if report.exists() else []


@pytest.fixture(scope="module", params=["[jupyter, ssh]", "jupyter", "ssh"])
def built(
    request: pytest.FixtureRequest,
    engine: DockerSdkEngine,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """(layer, image) for a CPU cell with both layers, and with each alone."""
    folder = tmp_path_factory.mktemp("user-layer")
    code, cells = _build(engine, base_image, folder, request.param)
    try:
        assert code == 0 and len(cells) == 1, [p.read_text()[-3000:] for p in (folder / "logs").glob("*")]
        yield request.param, cells[0]["image"]
    finally:
        for cell in cells:
            for tag in cell["tags"]:
                engine.remove_image(tag, force=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def layered(
    engine: DockerSdkEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The image with both layers (the hostile variants are built FROM it)."""
    folder = tmp_path_factory.mktemp("user-layer-both")
    code, cells = _build(engine, base_image, folder, "[jupyter, ssh]")
    try:
        assert code == 0 and len(cells) == 1
        yield cells[0]["image"]
    finally:
        for cell in cells:
            for tag in cell["tags"]:
                engine.remove_image(tag, force=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hostile(layered: str) -> Iterator[dict[str, str]]:
    client = docker.from_env()
    suffix = uuid.uuid4().hex[:8]
    made = {}
    try:
        for name, body in HOSTILE.items():
            tag = f"envkit-test/user-layer-{name}:{suffix}"
            client.images.build(fileobj=io.BytesIO(f"FROM {layered}\n{body}".encode()), tag=tag, rm=True)
            made[name] = tag
        yield made
    finally:
        for tag in made.values():
            client.images.remove(tag, force=True)


def validate(image: str, folder: Path, *checks: str) -> dict[str, tuple[str, str]]:
    out = folder / f"{uuid.uuid4().hex[:6]}.json"
    only = [arg for check in checks for arg in ("--only", check)]
    main(["validate", image, *only, "--out", str(out)])
    return {c.id: (c.status, c.summary) for c in load_report(out).checks if c.id.startswith("service.")}


def test_each_layer_passes_its_check_and_the_other_finds_no_service(
    built: tuple[str, str], tmp_path: Path
) -> None:
    layer, image = built
    # Both asked for by id, as for a foreign image: the missing service is a SKIP that says so.
    found = validate(image, tmp_path, *SERVICES)
    if "jupyter" in layer:
        assert found["service.jupyter"][0] == "PASS", found
        assert "cuda available: False" in found["service.jupyter"][1]
    else:
        assert found["service.jupyter"][0] == "SKIP" and "no Jupyter server" in found["service.jupyter"][1]
    if "ssh" in layer:
        assert found["service.ssh"][0] == "PASS", found
        assert "imported torch 2.13.0" in found["service.ssh"][1]
    else:
        assert found["service.ssh"] == ("SKIP", "no sshd in this image"), found


def test_jupyter_with_an_empty_token_fails(hostile: dict[str, str], tmp_path: Path) -> None:
    status, summary = validate(hostile["empty-token"], tmp_path, "service.jupyter")["service.jupyter"]
    assert status == "FAIL" and "without a token or password" in summary


def test_baked_host_key_fails(hostile: dict[str, str], tmp_path: Path) -> None:
    status, summary = validate(hostile["baked-host-key"], tmp_path, "service.ssh")["service.ssh"]
    assert status == "FAIL" and "holds SSH host private keys" in summary
    assert "/etc/ssh/envkit/ssh_host_ed25519_key" in summary


def test_sshd_allowing_passwords_fails(hostile: dict[str, str], tmp_path: Path) -> None:
    status, summary = validate(hostile["passwords"], tmp_path, "service.ssh")["service.ssh"]
    assert status == "FAIL" and "PasswordAuthentication yes" in summary


def test_two_containers_from_one_image_have_different_host_keys(layered: str) -> None:
    client = docker.from_env()
    containers = [
        client.containers.run(
            layered,
            detach=True,
            environment={"JUPYTER_TOKEN": "t" * 32},
            labels={"io.envkit.test": "user-layer"},
        )
        for _ in range(2)
    ]
    try:
        keys = []
        for container in containers:
            keys.append(_wait_for_host_key(container))
        assert keys[0] != keys[1]
        logs = containers[0].logs().decode(errors="replace")
        assert "no SSH public key given" in logs
    finally:
        for container in containers:
            container.remove(force=True)


def _wait_for_host_key(container) -> str:
    for _ in range(60):
        code, out = container.exec_run(["cat", "/etc/ssh/envkit/ssh_host_ed25519_key.pub"])
        if code == 0:
            return out.decode().split()[1]
        time.sleep(0.5)
    raise AssertionError(container.logs().decode(errors="replace"))


def test_generated_token_is_printed_and_never_empty(layered: str) -> None:
    client = docker.from_env()
    container = client.containers.run(
        layered, ["envkit-start", "jupyter"], detach=True, environment={"JUPYTER_TOKEN": ""}
    )
    try:
        for _ in range(60):
            logs = container.logs().decode(errors="replace")
            if "this container's token is" in logs:
                break
            time.sleep(0.5)
        token = logs.split("this container's token is", 1)[1].split()[0]
        assert len(token) >= 32
    finally:
        container.remove(force=True)


def first_http_answer(url: str, deadline: float) -> urllib.error.HTTPError:
    """The first HTTP error answer from `url` (here: the refusal without a token), retrying while the
    connection is closed or refused: a published port answers before the server behind it listens."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=10)
        except urllib.error.HTTPError as answer:
            return answer
        except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        pytest.fail(f"{url} answered without a token")


def test_the_readme_commands_work_from_the_host(layered: str, tmp_path: Path) -> None:
    """`docker run -p 8888 -p 2222 -e SSH_AUTHORIZED_KEYS=...`: token from the log, ssh as envkit."""
    import subprocess

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    client = docker.from_env()
    container = client.containers.run(
        layered,
        detach=True,
        ports={"2222/tcp": ("127.0.0.1", None), "8888/tcp": ("127.0.0.1", None)},
        environment={"SSH_AUTHORIZED_KEYS": key.with_suffix(".pub").read_text().strip()},
    )
    try:
        token = ""
        for _ in range(120):
            logs = container.logs().decode(errors="replace")
            if "this container's token is" in logs and "ServerApp" in logs:
                token = logs.split("this container's token is", 1)[1].split()[0]
                break
            time.sleep(0.5)
        container.reload()
        ports = container.attrs["NetworkSettings"]["Ports"]
        lab, ssh = ports["8888/tcp"][0]["HostPort"], ports["2222/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{lab}/api/status"
        # The log line comes before the server listens; until then docker-proxy accepts and closes.
        refused = first_http_answer(url, deadline=time.monotonic() + 120)
        assert refused.code == 403
        accepted = urllib.request.urlopen(
            urllib.request.Request(url, headers={"Authorization": f"token {token}"}), timeout=10
        )
        assert accepted.status == 200
        argv = [
            "ssh",
            "-i",
            str(key),
            "-p",
            ssh,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "envkit@127.0.0.1",
            "python -c 'import torch; print(torch.__version__)'; id -un",
        ]
        deadline = time.monotonic() + 120
        while True:  # sshd may still be starting: ssh then says the connection was closed (255)
            login = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            starting = login.returncode == 255 and "Connection" in login.stderr
            if not starting or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert login.returncode == 0, login.stderr
        assert login.stdout.split()[-2:] == ["2.13.0+cpu", "envkit"]
    finally:
        container.remove(force=True)
