"""The registry client's edge cases against a small in-process HTTP server speaking the v2 protocol.

The main proofs run against Debian's real docker-registry (tests/docker/test_registry_pipeline.py);
here: the Bearer token flow, credential sources, refusals and server errors, and that no secret
reaches an error message or a log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from envkit.errors import ConfigError, RegistryError, UsageError
from envkit.registry import RegistrySettings, get_registry, parse_reference, parse_root
from envkit.registry.auth import load_credentials, parse_challenge
from envkit.registry.client import HttpRegistry, _pieces, is_loopback

PASSWORD = "s3cret-Pa55word-never-shown"
TOKEN = "tok-abc-never-shown"
MANIFEST = json.dumps({"schemaVersion": 2, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    """Answers /v2/ and one manifest; `mode` picks the auth scheme or a failure."""

    mode = "bearer"
    seen: list[dict[str, Any]] = []  # noqa: RUF012 - reset per test by the fixture

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        if self.mode == "bearer":
            return given == f"Bearer {TOKEN}"
        if self.mode == "basic":
            return given == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        return self.mode == "open"

    def _challenge(self) -> None:
        port = self.server.server_address[1]
        header = (
            f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"'
            if self.mode == "bearer"
            else 'Basic realm="fake"'
        )
        self._send(
            401,
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            {"WWW-Authenticate": header},
        )

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        if self.path.startswith("/token"):
            good = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != good:
                self._send(401)
                return
            self._send(200, json.dumps({"token": TOKEN}).encode())
            return
        self._manifest()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&"))
        self.seen.append({"path": self.path, "form": form})
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == PASSWORD:
            self._send(200, json.dumps({"access_token": TOKEN}).encode())
            return
        self._send(401)

    def do_HEAD(self) -> None:
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        self._manifest()

    def _manifest(self) -> None:
        if self.mode == "fail":
            self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"filesystem full"}]}')
            return
        if not self._authorized():
            self._challenge()
            return
        if self.path.endswith("/manifests/1"):
            self._send(
                200,
                MANIFEST,
                {
                    "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                    "Docker-Content-Digest": DIGEST,
                },
            )
            return
        self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')


@pytest.fixture
def server() -> Iterator[str]:
    FakeRegistry.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def docker_config(tmp_path: Path, host: str, password: str = PASSWORD) -> Path:
    folder = tmp_path / "docker-config"
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"alice:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def client(host: str, config: Path) -> HttpRegistry:
    registry = get_registry(host, RegistrySettings(docker_config=config, timeout_s=10))
    assert isinstance(registry, HttpRegistry)
    return registry


def test_bearer_challenge_fetches_a_token_with_the_docker_config_login(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "bearer"
    found = client(server, docker_config(tmp_path, server)).head_manifest("team/app", "1")
    assert found is not None and found.digest == DIGEST
    token_calls = [s for s in FakeRegistry.seen if s["path"].startswith("/token")]
    assert len(token_calls) == 1
    assert "scope=repository%3Ateam%2Fapp%3Apull" in token_calls[0]["path"]


def test_basic_challenge_sends_the_login(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "basic"
    registry = client(server, docker_config(tmp_path, server))
    assert registry.get_manifest("team/app", "1") is not None
    assert registry.head_manifest("team/app", "2") is None


@pytest.mark.parametrize("mode", ["bearer", "basic"])
def test_refused_credentials_are_exit_3_and_never_shown(
    server: str, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    FakeRegistry.mode = mode
    wrong = "wr0ng-Pa55word-never-shown"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RegistryError) as caught:
        client(server, docker_config(tmp_path, server, wrong)).head_manifest("team/app", "1")
    text = caught.value.render()
    assert caught.value.exit_code == 3
    assert server in text and "team/app" in text
    assert "docker login" in text
    for secret in (wrong, base64.b64encode(f"alice:{wrong}".encode()).decode(), PASSWORD, TOKEN):
        assert secret not in text
        assert secret not in caplog.text


def test_no_credentials_says_how_to_log_in(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "basic"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="refused the credentials") as caught:
        client(server, tmp_path / "empty").head_manifest("team/app", "1")
    assert "no credentials for" in caught.value.render()


def test_server_error_is_exit_3_naming_registry_and_ref(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "fail"
    with pytest.raises(RegistryError) as caught:
        client(server, tmp_path).head_manifest("team/app", "1")
    assert caught.value.exit_code == 3
    assert f"registry {server} failed HEAD team/app:1 (500)" in caught.value.message


def test_get_by_digest_checks_the_bytes_against_the_digest(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "open"
    registry = client(server, tmp_path)
    assert registry.get_manifest("team/app", "1") is not None
    wrong = "sha256:" + "0" * 64
    FakeRegistry.mode = "open"
    assert registry.get_manifest("team/app", wrong) is None  # 404 from the fake: absent, not an error


def test_unreachable_registry_is_exit_3_naming_it(tmp_path: Path) -> None:
    registry = client("127.0.0.1:9", tmp_path)
    with pytest.raises(RegistryError) as caught:
        registry.head_manifest("team/app", "1")
    assert caught.value.exit_code == 3
    assert "127.0.0.1:9" in caught.value.message and "team/app" in caught.value.message


def test_plain_http_only_for_loopback_or_named_insecure_hosts() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000") and not is_loopback("10.0.0.1")
    named = HttpRegistry("registry.example:5000", RegistrySettings(insecure=("registry.example",)))
    other = HttpRegistry("other.example:5000", RegistrySettings(insecure=("registry.example",)))
    assert named._plain_http_allowed() and not other._plain_http_allowed()


def test_credentials_from_a_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-envkittest"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread host\necho "{\\"Username\\": \\"bob\\", \\"Secret\\": \\"from-$host\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.example": "envkittest"}}))
    found = load_credentials("reg.example", tmp_path)
    assert found is not None and (found.username, found.secret) == ("bob", "from-reg.example")
    assert "from-reg.example" not in repr(found)
    assert load_credentials("other.example", tmp_path) is None


def test_a_broken_auth_entry_is_a_config_error_without_the_value(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://reg.example": {"auth": "bm9jb2xvbg=="}}})
    )
    with pytest.raises(ConfigError) as caught:
        load_credentials("reg.example", tmp_path)
    assert "bm9jb2xvbg" not in caught.value.render() and "nocolon" not in caught.value.render()


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="a:b:pull"'
    )
    assert scheme == "bearer" and params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "a:b:pull",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/ml/app:1", ("127.0.0.1:5000", "ml/app", "1", None)),
        ("reg.example/app@sha256:" + "a" * 64, ("reg.example", "app", None, "sha256:" + "a" * 64)),
        ("localhost/app", ("localhost", "app", None, None)),
    ],
)
def test_references_parse(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize(
    "text",
    ["app:1", "acme/app:1", "reg.example/App:1", "reg.example/app@sha256:xyz", "https://reg.example/app"],
)
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_registry_roots() -> None:
    assert parse_root("127.0.0.1:5000/ml/stage") == ("127.0.0.1:5000", "ml/stage")
    with pytest.raises(UsageError, match="without a scheme"):
        parse_root("http://127.0.0.1:5000")


def test_chunks_are_recut_into_pieces_of_the_chunk_size() -> None:
    pieces = list(_pieces([b"abc", b"defgh", b"ij"], 4))
    assert pieces == [b"abcd", b"efgh", b"ij"]
    assert list(_pieces([], 4)) == [b""]


def test_an_identity_token_is_exchanged_for_an_access_token(server: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "bearer"
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auths": {server: {"identitytoken": PASSWORD}}}))
    assert client(server, folder).head_manifest("team/app", "1") is not None
    [post] = [s for s in FakeRegistry.seen if "form" in s]
    assert post["form"]["grant_type"] == "refresh_token"


def test_creds_store_applies_to_every_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-envkitstore"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"carol\\", \\"Secret\\": \\"x\\"}"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "envkitstore"}))
    found = load_credentials("any.example", tmp_path)
    assert found is not None and found.username == "carol" and "envkitstore" in found.source
