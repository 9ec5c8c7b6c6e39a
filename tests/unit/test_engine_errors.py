"""docker-py / requests failures become envkit errors at the engine boundary.

The engine side is a tiny HTTP server on a unix socket in tmp_path (not a Docker engine), so the real
docker-py client is allowed back in for these tests only.
"""

from __future__ import annotations

import io
import json
import socketserver
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker
import docker.api.client
import docker.errors
import pytest
import requests.exceptions

from envkit.engine import BuildRequest, EngineError
from envkit.engine.docker_sdk import DockerSdkEngine, _single_file, _tar_files, translate
from envkit.errors import EngineUnavailable, UsageError


@pytest.fixture
def real_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "APIClient", docker.api.client.APIClient)


class _FakeEngineHandler(BaseHTTPRequestHandler):
    api_version = "1.41"
    drop_after_version = False

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            body = json.dumps({"Version": "99.0", "ApiVersion": self.api_version}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.close_connection = True  # an engine dying mid-request: no response at all

    do_POST = do_GET


def serve(socket_path: Path, handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = socketserver.ThreadingUnixStreamServer(str(socket_path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{socket_path}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_socket(tmp_path: Path, real_client: None) -> Iterator[str]:
    yield from serve(tmp_path / "engine.sock", _FakeEngineHandler)


def test_missing_socket_names_host_and_what_to_do(tmp_path: Path, real_client: None) -> None:
    host = f"unix://{tmp_path}/no.sock"
    with pytest.raises(EngineUnavailable) as caught:
        DockerSdkEngine(host=host).info()
    assert caught.value.message.startswith(f"cannot reach the Docker engine at {host}")
    assert "scripts/ensure-engine.sh" in (caught.value.hint or "")
    assert "DOCKER_HOST" in (caught.value.hint or "")
    assert caught.value.exit_code == 3


def test_docker_host_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_client: None) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/env.sock")
    with pytest.raises(EngineUnavailable, match=r"env\.sock"):
        DockerSdkEngine().info()


def test_refused_tcp_port(real_client: None) -> None:
    with pytest.raises(EngineUnavailable, match=r"tcp://127\.0\.0\.1:9"):
        DockerSdkEngine(host="tcp://127.0.0.1:9").info()


def test_talks_to_the_engine_at_host(fake_socket: str) -> None:
    info = DockerSdkEngine(host=fake_socket).info()
    assert (info.host, info.version, info.api_version, info.backend) == (
        fake_socket,
        "99.0",
        "1.41",
        "docker",
    )


def test_too_old_api_names_the_minimum(tmp_path: Path, real_client: None) -> None:
    class Old(_FakeEngineHandler):
        api_version = "1.30"

    for host in serve(tmp_path / "old.sock", Old):
        with pytest.raises(EngineUnavailable, match=r"API 1\.30; envkit needs 1\.40"):
            DockerSdkEngine(host=host).info()


def test_connection_lost_mid_operation_is_engine_unavailable(fake_socket: str) -> None:
    engine = DockerSdkEngine(host=fake_socket)
    engine.info()
    with pytest.raises(EngineUnavailable, match=r"lost the connection .* while listing containers"):
        engine.containers("io.envkit.managed=true")


def test_translate_maps_api_errors_to_engine_error() -> None:
    with pytest.raises(EngineError, match="refused starting: conflict"), translate("h", "starting"):
        raise docker.errors.APIError("409", explanation="conflict")
    with pytest.raises(EngineUnavailable), translate("h", "x"):
        raise requests.exceptions.ConnectionError("reset")


def test_engine_dying_mid_stream_is_engine_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="while building"), translate("h", "building"):
        raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")


def test_docker_backend_refuses_secrets(tmp_path: Path) -> None:
    req = BuildRequest(context_dir=tmp_path, secrets={"s": tmp_path / "f"})
    with pytest.raises(UsageError, match="BuildKit"):
        DockerSdkEngine(host="unix:///nonexistent").build(req, lambda line: None)


def test_tar_places_files_under_dest_and_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    data = _tar_files("/opt/probe", {"run.json": b"{}", "pkg": tmp_path / "pkg"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        assert all(m.uid == 0 for m in tar.getmembers())
    assert names == ["opt/probe/pkg", "opt/probe/pkg/m.py", "opt/probe/run.json"]
    for bad in ("../etc/passwd", "/etc/passwd", ""):
        with pytest.raises(UsageError):
            _tar_files("/opt", {bad: b"x"})


def test_single_file_from_an_archive() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("result.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    assert _single_file(buffer.getvalue(), "/out/result.json") == b"{}"
