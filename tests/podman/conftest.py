"""The podman tier: envkit's core build, validate and gc against Podman's Docker-compatible API.

A `podman system service` of the tier's own, with its own storage, on a socket in the tier's own
folder, stopped by its pid at the end. Missing podman skips the tier, unless ENVKIT_REQUIRE_PODMAN=1
(CI, after scripts/ensure-podman.sh), which makes it a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit.engine.docker_sdk import DEFAULT_HOST, DockerSdkEngine
from envkit.errors import EngineUnavailable

HERE = Path(__file__).resolve().parent
BASE_IMAGE = os.environ.get("ENVKIT_BASE_IMAGE", "envkit-local/debian:bookworm")
START_S = 60
# The Docker engine the base image is copied from: whatever DOCKER_HOST named before this tier.
DOCKER_HOST = os.environ.get("DOCKER_HOST") or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.podman)


def _missing(reason: str) -> None:
    if os.environ.get("ENVKIT_REQUIRE_PODMAN") == "1":
        pytest.fail(
            f"{reason} (ENVKIT_REQUIRE_PODMAN=1; scripts/ensure-podman.sh installs it)", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman() -> Iterator[DockerSdkEngine]:
    """An engine talking to a podman API service of this session's own; DOCKER_HOST points at it."""
    binary = shutil.which("podman")
    if binary is None:
        _missing("podman is not installed")
    assert binary is not None
    # A short folder of its own: a unix socket's path must stay under ~100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="envkit-podman-"))
    storage = ["--root", str(folder / "root"), "--runroot", str(folder / "run")]
    socket = folder / "api.sock"
    with open(folder / "service.log", "wb") as log:
        service = subprocess.Popen(
            [binary, *storage, "system", "service", "--time=0", f"unix://{socket}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    previous = os.environ.get("DOCKER_HOST")
    try:
        engine = DockerSdkEngine(host=f"unix://{socket}")
        _wait_for(engine, service, folder)
        os.environ["DOCKER_HOST"] = f"unix://{socket}"
        yield engine
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=30)
        subprocess.run([binary, *storage, "system", "reset", "--force"], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for(engine: DockerSdkEngine, service: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and service.poll() is None:
        try:
            engine.info()
            return
        except EngineUnavailable:
            time.sleep(0.5)
    log = (folder / "service.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"podman system service did not answer within {START_S} s:\n{log}", pytrace=False)


@pytest.fixture(scope="session")
def podman_base(podman: DockerSdkEngine) -> str:
    """The local Debian base, copied from the Docker engine into podman's storage."""
    import docker

    source = DockerSdkEngine(host=DOCKER_HOST or DEFAULT_HOST)
    try:
        if source.image(BASE_IMAGE) is None:
            _missing(f"the base image {BASE_IMAGE} is not on the Docker engine (make base-image)")
        data = b"".join(source.save(BASE_IMAGE))
    except EngineUnavailable as error:
        _missing(f"no Docker engine to copy the base image from: {error.message}")
    client = docker.APIClient(base_url=podman.host, version="auto")
    list(client.load_image(data))
    assert podman.image(BASE_IMAGE) is not None, "the loaded base must be found under its Docker name"
    return BASE_IMAGE
