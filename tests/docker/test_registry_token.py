"""The Bearer token flow against Debian's real docker-registry in token-auth mode.

No packaged token issuer (Harbor, docker_auth, GitLab) can be run here, so the test runs a small one:
an HTTP endpoint that checks a Basic login and returns a JWT signed with a throw-away RSA key, in the
format distribution verifies (https://distribution.github.io/distribution/spec/auth/jwt/). The
registry itself is the real one: it sends the `WWW-Authenticate: Bearer realm=...` challenge and
checks the token's signature, audience, issuer and granted actions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import free_port

from envkit.errors import RegistryError
from envkit.registry import OCI_MANIFEST, Manifest, RegistrySettings, get_registry

ISSUER = "envkit-test-issuer"
SERVICE = "envkit-registry"
USER, PASSWORD = "deployer", f"pw-{uuid.uuid4().hex}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Signs registry tokens with `key` (its certificate is the registry's rootcertbundle)."""

    def __init__(self, folder: Path) -> None:
        self.key, self.cert = folder / "issuer.key", folder / "issuer.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=envkit test token issuer",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.grants: list[str] = []

    def token(self, scopes: list[str]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
            self.grants.append(scope)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"


def token_server(issuer: Issuer) -> ThreadingHTTPServer:
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            if self.headers.get("Authorization") != good or query.get("service") != [SERVICE]:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"token": issuer.token(query.get("scope", []))}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Issuer]]:
    """host:port of a docker-registry that accepts only tokens from the test issuer."""
    if subprocess.run(["sh", "-c", "command -v docker-registry"], capture_output=True).returncode != 0:
        if os.environ.get("ENVKIT_REQUIRE_ENGINE") == "1":
            pytest.fail("docker-registry is not installed (scripts/install-test-deps.sh)", pytrace=False)
        pytest.skip("docker-registry is not installed")
    folder = tmp_path_factory.mktemp("token-registry")
    issuer = Issuer(folder)
    tokens = token_server(issuer)
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {folder}/storage\n"
        f"http:\n  addr: {address}\nauth:\n  token:\n"
        f"    realm: http://127.0.0.1:{tokens.server_address[1]}/token\n"
        f"    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {issuer.cert}\n"
    )
    log = (folder / "registry.log").open("w")
    server = subprocess.Popen(
        ["docker-registry", "serve", str(folder / "config.yml")], stdout=log, stderr=log
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(tuple(address.split(":")), timeout=0.2).close()  # type: ignore[arg-type]
                break
            except OSError:
                time.sleep(0.1)
        yield address, issuer
    finally:
        server.terminate()
        server.wait(timeout=30)
        tokens.shutdown()
        log.close()


def login(folder: Path, host: str, password: str) -> Path:
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def test_bearer_tokens_from_the_realm_let_the_client_push_and_read(
    token_registry: tuple[str, Issuer], tmp_path: Path
) -> None:
    host, issuer = token_registry
    registry = get_registry(host, RegistrySettings(docker_config=login(tmp_path / "ok", host, PASSWORD)))
    blob = b"{}"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    registry.upload_blob("team/app", digest, [blob])
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest, "size": 2},
            "layers": [],
        }
    ).encode()
    manifest = Manifest(
        media_type=OCI_MANIFEST, digest="sha256:" + hashlib.sha256(body).hexdigest(), body=body
    )
    assert registry.put_manifest("team/app", "v1", manifest) == manifest.digest
    found = registry.head_manifest("team/app", "v1")
    assert found is not None and found.digest == manifest.digest
    assert "repository:team/app:pull,push" in issuer.grants


def test_a_refused_login_is_exit_3_and_never_shown(
    token_registry: tuple[str, Issuer], tmp_path: Path
) -> None:
    host, _ = token_registry
    wrong = f"wrong-{uuid.uuid4().hex}"
    registry = get_registry(host, RegistrySettings(docker_config=login(tmp_path / "bad", host, wrong)))
    with pytest.raises(RegistryError) as caught:
        registry.head_manifest("team/app", "v1")
    assert caught.value.exit_code == 3
    text = caught.value.render()
    assert "refused the credentials" in text and host in text and wrong not in text
