"""Shared docker-tier helpers: the CPU demo images (built once a session) and image inspection."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envkit.cli import main
from envkit.engine import ContainerSpec
from envkit.engine.docker_sdk import DockerSdkEngine

ROOT = Path(__file__).resolve().parents[2]


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
