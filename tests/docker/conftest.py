"""Fixtures for the docker tier: a real engine, the local base image, and a container-leak check.

No reachable engine skips the tier, unless ENVKIT_REQUIRE_ENGINE=1 (CI), which makes it a failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest
from support import free_port, run_script

from envkit.engine import MANAGED_FILTER, MANAGED_LABEL
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.errors import EngineUnavailable

HERE = Path(__file__).resolve().parent
BASE_IMAGE = os.environ.get("ENVKIT_BASE_IMAGE", "envkit-local/debian:bookworm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> DockerSdkEngine:
    """The real engine (DOCKER_HOST or the local socket); skips, or fails under ENVKIT_REQUIRE_ENGINE=1."""
    engine = DockerSdkEngine()
    try:
        engine.info()
    except EngineUnavailable as error:
        reason = f"no Docker engine: {error.render()}"
        if os.environ.get("ENVKIT_REQUIRE_ENGINE") == "1":
            pytest.fail(f"{reason} (ENVKIT_REQUIRE_ENGINE=1)", pytrace=False)
        pytest.skip(reason)
    return engine


@pytest.fixture(scope="session")
def base_image(engine: DockerSdkEngine) -> str:
    """The tag of the local Debian base (made by scripts/make-base-image.sh when missing)."""
    if engine.image(BASE_IMAGE) is None:
        run_script("make-base-image.sh", BASE_IMAGE)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def registry(engine: DockerSdkEngine) -> Iterator[str]:
    """host:port of a throw-away local registry (scripts/start-registry.sh), stopped after the session."""
    port = str(free_port())
    address = run_script("start-registry.sh", port).strip().splitlines()[-1]
    try:
        yield address
    finally:
        run_script("start-registry.sh", "stop", port)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Fail the session when it leaves containers, volumes or dangling images labelled as envkit's."""
    probe = DockerSdkEngine()
    try:
        before = managed_leftovers(probe)
    except EngineUnavailable:
        yield
        return
    stages_before = stage_images(probe)
    yield
    remove_stage_images(probe, stage_images(probe) - stages_before)
    # What existed before the session belongs to someone else; only new things are leaks.
    after = managed_leftovers(probe)
    leaked = {kind: sorted(after[kind] - before[kind]) for kind in after}
    described = [f"{kind}: {[r.removeprefix('sha256:')[:12] for r in refs]}" for kind, refs in leaked.items()]
    assert not any(leaked.values()), f"left behind, labelled {MANAGED_FILTER}: " + "; ".join(described)


def managed_leftovers(engine: DockerSdkEngine) -> dict[str, set[str]]:
    """Containers, volumes and dangling (unnamed) images carrying io.envkit.managed=true, by kind."""
    volumes = engine.api.volumes(filters={"label": MANAGED_FILTER}).get("Volumes") or []
    return {
        "containers": set(engine.containers(MANAGED_FILTER)),
        "volumes": {volume["Name"] for volume in volumes},
        "dangling images": {
            image.id for image in engine.images(MANAGED_FILTER) if not image.tags and not image.digests
        },
    }


def stage_images(engine: DockerSdkEngine) -> set[tuple[int, str]]:
    """Dangling images built FROM the local base (they inherit its label): the classic builder leaves
    each multi-stage build's earlier stages as such images, with no envkit label. Users remove theirs
    with `envkit gc`, which reads the build record; the tier removes the ones it made so repeated runs
    on one engine do not fill its disk (about 14 GB a session)."""
    images = engine.api.images(filters={"dangling": True, "label": "io.envkit.base=true"}) or []
    # Managed ones are envkit's own results: the leak check judges those, so they are not touched here.
    return {
        (image["Created"], image["Id"])
        for image in images
        if MANAGED_LABEL not in (image.get("Labels") or {})
    }


def remove_stage_images(engine: DockerSdkEngine, images: set[tuple[int, str]]) -> None:
    """Remove `images` (creation time, id), children before parents (newest first); one in use stays."""
    for _, image_id in sorted(images, reverse=True):
        with contextlib.suppress(docker.errors.APIError):  # in use, or went with a child: kept/gone
            engine.api.remove_image(image_id)


# The CPU demo images, built once a session and shared by the build and validate tests.
from support import demo  # noqa: E402,F401
