"""The registry as a layer cache, on real parts: the first engine builds with BuildKit inline cache and
pushes to a loopback registry (scripts/start-registry.sh); an empty second dockerd
(scripts/runner-engine.sh) builds a changed Dockerfile with `--cache-from` that image and reuses the
unchanged layer byte for byte, without the image being pulled first. The timing is in benchmarks/
(`ci-cache`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import empty_runner

from envkit.engine import BuildRequest
from envkit.engine.buildkit import BuildKitEngine
from envkit.engine.docker_sdk import DockerSdkEngine

# Random bytes: a layer built again differs, so an equal layer on the runner can only be the cached one.
DOCKERFILE = """\
FROM {base}
RUN head -c 2000000 /dev/urandom > /unchanged
RUN echo {last} > /changed
"""


@pytest.fixture
def runner(base_image: str) -> Iterator[str]:
    """An empty second dockerd holding only the base."""
    with empty_runner("c", base_image, load_base=True) as host:
        yield host


def context(folder: Path, base: str, last: str) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text(DOCKERFILE.format(base=base, last=last))
    return folder


def layers(engine: DockerSdkEngine, image_id: str) -> list[str]:
    return list(engine.api.inspect_image(image_id)["RootFS"]["Layers"])


def test_an_empty_runner_reuses_the_unchanged_layer_from_the_registry(
    engine: DockerSdkEngine, base_image: str, registry: str, runner: str, tmp_path: Path
) -> None:
    ref = f"{registry}/cache-{uuid.uuid4().hex[:6]}/cell:one"
    first = BuildKitEngine()
    request = BuildRequest(context_dir=context(tmp_path / "a", base_image, "one"), inline_cache=True)
    built = first.build(request, lambda line: None)
    try:
        first.tag(built, ref)
        first.push(ref)
        before = layers(engine, built)
    finally:
        first.remove_image(ref, force=True)

    lines: list[str] = []
    changed = BuildRequest(
        context_dir=context(tmp_path / "b", base_image, "two"), cache_from=(ref,), inline_cache=True
    )
    rebuilt = BuildKitEngine(host=runner).build(changed, lines.append)

    after = layers(DockerSdkEngine(host=runner), rebuilt)
    assert after[: len(before) - 1] == before[:-1], "\n".join(lines[-30:])  # base + the unchanged layer
    assert after[-1] != before[-1]  # the changed step ran
    assert any(line.endswith(" CACHED") for line in lines)
    assert DockerSdkEngine(host=runner).image(ref) is None  # reused layers came without pulling the image
