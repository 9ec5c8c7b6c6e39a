"""Shared docker-tier helpers: the CPU demo images (built once a session), image inspection, and the
scripts that start the parts a test needs (a registry, an empty second engine)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envkit.cli import main
from envkit.engine import ContainerSpec
from envkit.engine.docker_sdk import DockerSdkEngine

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT_S = 900


def run_script(name: str, *args: str) -> str:
    """Run scripts/NAME; its stdout, or a test failure showing its stderr."""
    done = subprocess.run(
        [str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"scripts/{name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}", pytrace=False
        )
    return done.stdout


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def empty_runner(prefix: str, base_image: str, *, load_base: bool = False) -> Iterator[str]:
    """An empty second dockerd (scripts/runner-engine.sh), standing in for a fresh CI runner: its
    DOCKER_HOST. `load_base` copies the local base in (it is in no registry). Afterwards the first
    engine must still run a container (a second daemon once deleted the first one's bridge)."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    host = run_script("runner-engine.sh", "start", name).strip().splitlines()[-1]
    try:
        if load_base:
            save = subprocess.Popen(["docker", "save", base_image], stdout=subprocess.PIPE)
            load = subprocess.run(
                ["docker", "-H", host, "load"], stdin=save.stdout, capture_output=True, check=False
            )
            assert save.wait() == 0 and load.returncode == 0, load.stderr
        yield host
    finally:
        run_script("runner-engine.sh", "stop", name)
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "bridge", base_image, "true"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"the first engine cannot run a container any more: {done.stderr}"


@dataclass
class DemoImages:
    """The CPU demo matrix built under a unique repository for this test session."""

    matrix: Path
    repository: str
    flags: list[str]
    canary: str
    report: Path
    first_exit: int
    first_duration: float
    images: list[str]
    cell_ids: list[str]
    extra_images: list[str] = field(default_factory=list)


def wheelhouse_or_skip() -> Path:
    """$PIP_FIND_LINKS when it holds a torch wheel; CI (ENVKIT_REQUIRE_ENGINE=1) must have it."""
    folder = Path(os.environ.get("PIP_FIND_LINKS", "") or "/nonexistent")
    if folder.is_dir() and any(folder.glob("torch-*cp311*.whl")):
        return folder
    reason = "no torch wheel for cp311 in $PIP_FIND_LINKS (the demo wheelhouse)"
    if os.environ.get("ENVKIT_REQUIRE_ENGINE") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def canary_ca_bundle(folder: Path, canary: str) -> Path:
    """The CA bundle pip needs here ($PIP_CERT, if set) plus a unique marker line to search images for."""
    bundle = folder / "ca-bundle.pem"
    source = os.environ.get("PIP_CERT")
    text = Path(source).read_text() if source and Path(source).is_file() else ""
    bundle.write_text(text + f"\n# {canary}\n")
    return bundle


@pytest.fixture(scope="session")
def demo(
    engine: DockerSdkEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoImages]:
    folder = tmp_path_factory.mktemp("demo")
    repository = f"envkit-test/demo-{uuid.uuid4().hex[:8]}"
    matrix = folder / "cpu-demo.yaml"
    text = (ROOT / "images" / "cpu-demo.yaml").read_text()
    matrix.write_text(
        text.replace("envkit-demo/pytorch", repository).replace("envkit-local/debian:bookworm", base_image)
    )
    canary = f"envkit-canary-{uuid.uuid4().hex}"
    flags = ["--wheelhouse", str(wheelhouse_or_skip()), "--ca-bundle", str(canary_ca_bundle(folder, canary))]
    report = folder / "build.json"
    clock = time.monotonic()
    code = main(["build", str(matrix), *flags, "--report", str(report), "--log-dir", str(folder / "logs")])
    duration = time.monotonic() - clock
    import json

    cells = json.loads(report.read_text())["cells"] if report.exists() else []
    images = [c["image"] for c in cells]
    demo = DemoImages(
        matrix=matrix,
        repository=repository,
        flags=flags,
        canary=canary,
        report=report,
        first_exit=code,
        first_duration=duration,
        images=images,
        cell_ids=[c["cell"] for c in cells],
    )
    yield demo
    for cell in cells:
        for tag in cell["tags"]:
            engine.remove_image(tag, force=True)
    for image in demo.extra_images:
        engine.remove_image(image, force=True)
    shutil.rmtree(folder, ignore_errors=True)


def run_in_image(
    engine: DockerSdkEngine, image: str, script: str, timeout_s: float = 120
) -> tuple[int | None, str]:
    """Run `sh -c script` in a throw-away container; (exit code, output)."""
    cid = engine.create(ContainerSpec(image=image, command=("/bin/sh", "-c", script)))
    try:
        engine.start(cid)
        status = engine.wait(cid, timeout_s)
        return status.code, engine.logs(cid)
    finally:
        engine.remove_container(cid)


def canary_in_image(engine: DockerSdkEngine, image: str, canary: bytes) -> bool:
    """True when `canary` occurs anywhere in `docker save` of the image (every layer, config, history)."""
    window = b""
    for chunk in engine.save(image):
        window = window[-len(canary) :] + chunk
        if canary in window:
            return True
    return False
