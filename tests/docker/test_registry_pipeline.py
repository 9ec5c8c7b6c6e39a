"""The registry is the pipeline, on real parts: Debian's docker-registry on loopback (plain HTTP, and
TLS with a self-signed CA plus htpasswd), the first engine as runner A, and an empty second dockerd
(scripts/runner-engine.sh) as runner B.

Runner A builds the CPU demo matrix with --push; runner B runs the same build and skips every cell by
registry, holding no image afterwards; B validates by digest; promote runs with DOCKER_HOST pointing at
nothing and releases the staged digests; verify checks them. Faults: the release registry stopped by
its pid mid-promote, and a proxy that cuts the connection mid-upload; each rerun completes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import DemoImages, empty_runner, free_port, run_script

from envkit.registry import RegistrySettings, get_registry

POLICY = "version: 1\nrequire:\n  env.torch: [PASS]\n  env.versions: [PASS]\n"
NO_ENGINE = "unix:///nonexistent/envkit-no-engine.sock"
STATE = Path(os.environ.get("ENVKIT_STATE_DIR", "/tmp/envkit"))
COMMAND_TIMEOUT_S = 1800


def envkit(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the envkit CLI in a child process (its own DOCKER_HOST and Docker config)."""
    return subprocess.run(
        [sys.executable, "-m", "envkit", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=child_env(**env),
        check=False,
    )


def child_env(**env: str) -> dict[str, str]:
    # Wide, unbuffered output: lines are read as they come and never wrapped.
    return {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1", **env}


def pid_of(port: str) -> int:
    return int((STATE / f"registry-{port}" / "pid").read_text())


@dataclass
class Pipeline:
    demo: DemoImages
    staging: str  # host:port/prefix
    work: Path
    runner_b: str  # DOCKER_HOST of the empty runner
    policy: Path
    staged: dict[str, str]  # cell id -> digest

    @property
    def repository(self) -> str:
        return self.demo.repository

    def promote(self, release: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        return envkit(
            "promote",
            str(self.demo.matrix),
            *self.demo.flags,
            "--from",
            self.staging,
            "--to",
            release,
            "--reports",
            str(self.work / "reports"),
            "--policy",
            str(self.policy),
            "--record",
            str(self.work / f"record-{uuid.uuid4().hex[:6]}.json"),
            *extra,
            cwd=self.work,
            DOCKER_HOST=NO_ENGINE,
            **env,
        )

    def released(self, release: str, **settings: object) -> dict[str, str | None]:
        """Cell id -> the digest RELEASE's cell tag names (None when untagged)."""
        host, _, prefix = release.partition("/")
        registry = get_registry(host, RegistrySettings(**settings))  # type: ignore[arg-type]
        found = {}
        for cell_id in self.staged:
            descriptor = registry.head_manifest(f"{prefix}/{self.repository}", cell_id)
            found[cell_id] = descriptor.digest if descriptor else None
        return found


@pytest.fixture(scope="module")
def runner_b(base_image: str) -> Iterator[str]:
    with empty_runner("b", base_image) as host:
        yield host


@pytest.fixture(scope="module")
def pipeline(
    demo: DemoImages, registry: str, runner_b: str, tmp_path_factory: pytest.TempPathFactory
) -> Pipeline:
    work = tmp_path_factory.mktemp("registry-pipeline")
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    staging = f"{registry}/stage-{uuid.uuid4().hex[:6]}"
    return Pipeline(demo=demo, staging=staging, work=work, runner_b=runner_b, policy=policy, staged={})


def build_report(path: Path) -> dict[str, dict[str, object]]:
    return {cell["cell"]: cell for cell in json.loads(path.read_text())["cells"]}


def test_runner_a_builds_and_pushes_content_tag_then_cell_tag(pipeline: Pipeline) -> None:
    report = pipeline.work / "build-a.json"
    done = envkit(
        "build",
        str(pipeline.demo.matrix),
        *pipeline.demo.flags,
        "--push",
        pipeline.staging,
        "--report",
        str(report),
        cwd=pipeline.work,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cells = build_report(report)
    assert set(cells) == set(pipeline.demo.cell_ids)
    host, _, prefix = pipeline.staging.partition("/")
    registry = get_registry(host)
    for cell_id, cell in cells.items():
        assert cell["status"] in ("built", "skipped") and cell["skipped_by"] != "registry"
        digest = str(cell["digest"])
        content_tag = str(cell["pushed"][0]).rpartition(":")[2]  # type: ignore[index]
        assert registry.head_manifest(f"{prefix}/{pipeline.repository}", content_tag).digest == digest  # type: ignore[union-attr]
        assert registry.head_manifest(f"{prefix}/{pipeline.repository}", cell_id).digest == digest  # type: ignore[union-attr]
        pipeline.staged[cell_id] = digest
    names = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert not [name for name in names if name.startswith(pipeline.staging)]  # no registry name left behind


def test_empty_runner_b_skips_every_cell_by_registry_and_pulls_nothing(pipeline: Pipeline) -> None:
    assert pipeline.staged, "runner A's build did not run"
    report = pipeline.work / "build-b.json"
    done = envkit(
        "build",
        str(pipeline.demo.matrix),
        *pipeline.demo.flags,
        "--push",
        pipeline.staging,
        "--report",
        str(report),
        cwd=pipeline.work,
        DOCKER_HOST=pipeline.runner_b,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cells = build_report(report)
    assert {c: (cells[c]["status"], cells[c]["skipped_by"], cells[c]["digest"]) for c in cells} == {
        c: ("skipped", "registry", d) for c, d in pipeline.staged.items()
    }
    assert "skipped (registry)" in done.stdout
    images = subprocess.run(
        ["docker", "-H", pipeline.runner_b, "images", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert images.stdout.strip() == ""


def test_runner_b_validates_by_digest(pipeline: Pipeline) -> None:
    assert pipeline.staged, "runner A's build did not run"
    done = envkit(
        "validate",
        "--matrix",
        str(pipeline.demo.matrix),
        "--registry",
        pipeline.staging,
        "--only",
        "env.torch",
        "--only",
        "env.versions",
        "--out-dir",
        "reports",
        cwd=pipeline.work,
        DOCKER_HOST=pipeline.runner_b,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(p.read_text()) for p in (pipeline.work / "reports").glob("*.json")]
    validated = {r["image"]["labels"]["io.envkit.cell"]: r["image"]["digest"] for r in reports}
    assert validated == pipeline.staged
    assert all("@sha256:" in r["image"]["ref"] for r in reports)


def test_promote_with_no_engine_releases_the_staged_digests_and_verify_passes(
    pipeline: Pipeline, registry: str
) -> None:
    release = f"{registry}/release-{uuid.uuid4().hex[:6]}"
    done = pipeline.promote(release)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pipeline.released(release) == pipeline.staged
    assert re.search(r"blobs: [1-9]\d* mounted, 0 uploaded", done.stdout)
    cell_id, digest = next(iter(pipeline.staged.items()))
    ok = envkit(
        "verify",
        f"{release}/{pipeline.repository}:{cell_id}",
        "--policy",
        str(pipeline.policy),
        cwd=pipeline.work,
        DOCKER_HOST=NO_ENGINE,
    )
    assert ok.returncode == 0 and f"@{digest}" in ok.stdout, ok.stdout + ok.stderr
    unvetted = envkit("verify", f"{pipeline.staging}/{pipeline.repository}@{digest}", cwd=pipeline.work)
    assert unvetted.returncode == 1


def test_registry_stopped_by_pid_mid_promote_tags_nothing_and_the_rerun_completes(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    port = str(free_port())
    address = run_script("start-registry.sh", port).strip().splitlines()[-1]
    release = f"{address}/rel"
    try:
        record = tmp_path / "record.json"
        argv = [
            sys.executable,
            "-m",
            "envkit",
            "promote",
            str(pipeline.demo.matrix),
            *pipeline.demo.flags,
            "--from",
            pipeline.staging,
            "--to",
            release,
            "--reports",
            str(pipeline.work / "reports"),
            "--policy",
            str(pipeline.policy),
            "--record",
            str(record),
        ]
        child = subprocess.Popen(
            argv,
            cwd=pipeline.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(DOCKER_HOST=NO_ENGINE),
        )
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("copied "):  # the first image is in; stop the registry during the next
                os.kill(pid_of(port), signal.SIGKILL)
                break
        out, err = child.communicate(timeout=COMMAND_TIMEOUT_S)
        assert child.returncode == 3, out + err
        assert address in err and "nothing was tagged" in err
        run_script("start-registry.sh", port)  # the same storage: what was copied is still there
        assert set(pipeline.released(release).values()) == {None}
        again = pipeline.promote(release)
        assert again.returncode == 0, again.stdout + again.stderr
        assert re.search(r"blobs: \d+ mounted, \d+ uploaded, [1-9]\d* already there", again.stdout)
        assert pipeline.released(release) == pipeline.staged
    finally:
        run_script("start-registry.sh", "stop", port)


class CuttingProxy:
    """A TCP proxy to a registry that, while `cut` is set, drops both connections once a client has sent
    more than `limit` bytes upstream (an upload cut mid-way)."""

    def __init__(self, upstream: str, limit: int) -> None:
        host, _, port = upstream.partition(":")
        self.upstream = (host, int(port))
        self.limit = limit
        self.cut = True
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counting: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                sent += len(data) if counting else 0
                if counting and self.cut and sent > self.limit:
                    self.cuts += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.server.close()


def test_a_connection_cut_mid_upload_is_exit_3_and_the_rerun_completes(pipeline: Pipeline) -> None:
    port = str(free_port())
    address = run_script("start-registry.sh", port).strip().splitlines()[-1]
    proxy = CuttingProxy(address, limit=8 * 1024**2)
    release = f"{proxy.address}/rel"
    try:
        done = pipeline.promote(release)
        assert done.returncode == 3, done.stdout + done.stderr
        assert proxy.cuts >= 1 and proxy.address in done.stderr
        assert set(pipeline.released(f"{address}/rel").values()) == {None}
        proxy.cut = False
        again = pipeline.promote(release)
        assert again.returncode == 0, again.stdout + again.stderr
        assert pipeline.released(f"{address}/rel") == pipeline.staged
    finally:
        proxy.close()
        run_script("start-registry.sh", "stop", port)


def test_tls_registry_with_htpasswd_login_from_a_docker_config(pipeline: Pipeline, tmp_path: Path) -> None:
    port = str(free_port())
    address = run_script("start-registry.sh", "tls", port).strip().splitlines()[-1]
    folder = STATE / f"registry-{port}"
    config, ca = folder / "docker-config", folder / "ca.crt"
    password = base64.b64decode(json.loads((config / "config.json").read_text())["auths"][address]["auth"])
    secret = password.decode().partition(":")[2]
    release = f"{address}/rel"
    try:
        untrusted = pipeline.promote(release, DOCKER_CONFIG=str(config))
        assert untrusted.returncode == 3 and "could not be verified" in untrusted.stderr
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        bad = base64.b64encode(b"envkit:not-the-password-0123").decode()
        (wrong / "config.json").write_text(json.dumps({"auths": {address: {"auth": bad}}}))
        refused = pipeline.promote(release, "--registry-ca-bundle", str(ca), DOCKER_CONFIG=str(wrong))
        assert refused.returncode == 3 and "refused the credentials" in refused.stderr
        assert "not-the-password-0123" not in refused.stdout + refused.stderr
        done = pipeline.promote(release, "--registry-ca-bundle", str(ca), DOCKER_CONFIG=str(config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert pipeline.released(release, ca_bundle=ca, docker_config=config) == pipeline.staged
        cell_id = next(iter(pipeline.staged))
        ok = envkit(
            "verify",
            f"{release}/{pipeline.repository}:{cell_id}",
            "--ca-bundle",
            str(ca),
            cwd=pipeline.work,
            DOCKER_CONFIG=str(config),
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        records = "".join(p.read_text() for p in pipeline.work.glob("record-*.json"))
        for text in (done.stdout, done.stderr, ok.stdout, ok.stderr, records):
            assert secret not in text
    finally:
        run_script("start-registry.sh", "stop", port)
