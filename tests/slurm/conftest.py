"""Fixtures for the slurm tier: a real Slurm controller (scripts/ensure-slurm.sh starts one on
localhost with fake GPU types h100 and a100), the local Docker engine its jobs use, and a CPU demo image.

No reachable Slurm skips the tier, unless ENVKIT_REQUIRE_SLURM=1 (CI), which makes it a failure.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_support import active_envkit_jobs, eventually

from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.errors import EngineUnavailable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEMO_MATRIX = ROOT / "images" / "cpu-demo.yaml"
DEMO_CELL = "2.13.0-cpu-py3.11-debian12-cpu"
DEMO_IMAGE = f"envkit-demo/pytorch:{DEMO_CELL}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slurm)
            item.add_marker(pytest.mark.docker)


def _unavailable(reason: str) -> None:
    if os.environ.get("ENVKIT_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (ENVKIT_REQUIRE_SLURM=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm() -> str:
    """SLURM_CONF of a controller that answers: $SLURM_CONF, else the one scripts/ensure-slurm.sh writes."""
    state = Path(
        os.environ.get("ENVKIT_SLURM_DIR")
        or Path(os.environ.get("ENVKIT_STATE_DIR", "/tmp/envkit")) / "slurm"
    )
    conf = os.environ.get("SLURM_CONF") or str(state / "slurm.conf")
    os.environ["SLURM_CONF"] = conf
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%G %t"], capture_output=True, text=True, timeout=30, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        _unavailable(f"no Slurm: {error}")
    if done.returncode != 0:
        _unavailable(f"no Slurm answers (SLURM_CONF={conf}): {done.stderr.strip()[:300]}")
    if "gpu:h100" not in done.stdout or "gpu:a100" not in done.stdout:
        _unavailable(f"the Slurm node has no fake h100 and a100 GPUs: {done.stdout.strip()}")
    return conf


@pytest.fixture(scope="session")
def engine() -> DockerSdkEngine:
    engine = DockerSdkEngine()
    try:
        engine.info()
    except EngineUnavailable as error:
        if os.environ.get("ENVKIT_REQUIRE_ENGINE") == "1" or os.environ.get("ENVKIT_REQUIRE_SLURM") == "1":
            pytest.fail(f"no Docker engine for the Slurm jobs: {error.render()}", pytrace=False)
        pytest.skip(f"no Docker engine: {error.render()}")
    return engine


@pytest.fixture(scope="session")
def image(slurm: str, engine: DockerSdkEngine) -> Iterator[str]:
    """The CPU demo image under a tag of its own (built first when missing), untagged afterwards."""
    if engine.image(DEMO_IMAGE) is None:
        _build_demo()
    ref = f"envkit-slurm-test/pytorch:{uuid.uuid4().hex[:10]}"
    repository, tag = ref.split(":")
    engine.api.tag(DEMO_IMAGE, repository, tag)
    try:
        yield ref
    finally:
        engine.api.remove_image(ref)


# An image whose probe never finishes: its interpreter of choice ($ENVKIT_PYTHON, which envkit's probe
# launcher tries first) answers the launcher's checks but sleeps instead of running the probe. Jobs
# then end only by the scheduler's hand (time limit, cancel, node failure), never by themselves.
SLOW_DOCKERFILE = """FROM {base}
RUN printf '#!/bin/sh\\nif [ "$1" = -m ]; then exec sleep 3600; fi\\nexec python3 "$@"\\n' > /usr/local/bin/slow-python \\
 && chmod 755 /usr/local/bin/slow-python
ENV ENVKIT_PYTHON=/usr/local/bin/slow-python
"""


@pytest.fixture(scope="session")
def slow_image(image: str, engine: DockerSdkEngine) -> Iterator[str]:
    """A tag of the demo image whose probe hangs (SLOW_DOCKERFILE), removed afterwards."""
    ref = f"envkit-slurm-test/slow:{uuid.uuid4().hex[:10]}"
    dockerfile = io.BytesIO(SLOW_DOCKERFILE.format(base=image).encode())
    for _ in engine.api.build(fileobj=dockerfile, tag=ref, rm=True, forcerm=True, decode=True):
        pass
    if engine.image(ref) is None:
        pytest.fail(f"building {ref} failed")
    try:
        yield ref
    finally:
        engine.api.remove_image(ref)


def _build_demo() -> None:
    wheelhouse = os.environ.get("PIP_FIND_LINKS")
    if not wheelhouse:
        _unavailable("the CPU demo image is missing and $PIP_FIND_LINKS names no wheelhouse to build it")
    command = [
        sys.executable,
        "-m",
        "envkit",
        "build",
        str(DEMO_MATRIX),
        "--only",
        DEMO_CELL,
        "--wheelhouse",
        wheelhouse,
    ]
    if os.environ.get("PIP_CERT"):
        command += ["--ca-bundle", os.environ["PIP_CERT"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"building the demo image failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False
        )


@pytest.fixture(autouse=True)
def _no_job_left(slurm: str) -> Iterator[None]:
    """Every test must leave no envkit job of its own queued or running."""
    before = active_envkit_jobs()
    yield
    assert eventually(lambda: not (active_envkit_jobs() - before), 30), (
        f"jobs left: {active_envkit_jobs() - before}"
    )
