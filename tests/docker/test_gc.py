"""`envkit gc` on the real engine: leftovers of a killed envkit go; the base and the demo images stay."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DemoImages

from envkit.cli import main
from envkit.engine import BuildRequest
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.gc import MIN_AGE_S
from envkit.scratch import record_build, scratch_dir
from envkit.validate import RunSettings, probe_container_spec

LONG_AGO = "2020-01-01T00:00:00Z"


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def load_untagged_image(engine: DockerSdkEngine, labels: dict[str, str], created: str) -> str:
    """`docker load` a one-file image with no tag and a chosen creation time; returns its id.

    A build envkit never tagged looks like this, only older than any build the test could run.
    """
    layer = _tar({"envkit-gc-test": b"left behind\n"})
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {"Labels": labels, "Cmd": ["/envkit-gc-test"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": created, "created_by": "tests/docker/test_gc.py"}],
        }
    ).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [{"Config": f"{config_id}.json", "RepoTags": None, "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    archive = _tar({"manifest.json": manifest, f"{config_id}.json": config, f"{diff_id}/layer.tar": layer})
    for _ in engine.api.load_image(archive):
        pass
    return f"sha256:{config_id}"


@dataclasses.dataclass
class Leftovers:
    stopped_container: str
    running_container: str
    old_image: str
    young_image: str
    stale_dir: Path


@pytest.fixture
def leftovers(
    demo: DemoImages,
    engine: DockerSdkEngine,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Leftovers]:
    """What a killed envkit leaves, plus what a running one is using; all removed afterwards.

    The images count as envkit's builds: they are in the build record of .envkit/ (in tmp_path,
    the current folder for the test)."""
    monkeypatch.chdir(tmp_path)
    run = uuid.uuid4().hex[:12]
    image = engine.image(demo.images[0])
    assert image is not None
    stopped = engine.create(probe_container_spec(image, RunSettings(), demo.images[0]))  # killed mid-run
    spec = probe_container_spec(image, RunSettings(), demo.images[0])
    running = engine.create(dataclasses.replace(spec, entrypoint=("sleep", "600"), command=()))
    engine.start(running)
    labels = {"io.envkit.managed": "true", "io.envkit.cell": "gc-test", "org.example.test-run": run}
    old = load_untagged_image(engine, labels, LONG_AGO)
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nLABEL org.example.test-run={run}\n")
    young = engine.build(
        BuildRequest(context_dir=tmp_path, labels={"org.example.test-run": run}), lambda _: None
    )
    record_build(old, "gc-test")
    record_build(young, "gc-test")
    stale = Path(tempfile.mkdtemp(prefix="envkit-gc-test-"))
    then = time.time() - 2 * MIN_AGE_S
    os.utime(stale, (then, then))
    made = Leftovers(
        stopped_container=stopped,
        running_container=running,
        old_image=old,
        young_image=young,
        stale_dir=stale,
    )
    yield made
    for cid in (stopped, running):
        engine.remove_container(cid)
    for image_id in (old, young):
        engine.remove_image(image_id, force=True)
    if stale.exists():
        stale.rmdir()


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def test_gc_removes_what_a_killed_envkit_left_and_keeps_base_and_demo_images(
    leftovers: Leftovers,
    demo: DemoImages,
    engine: DockerSdkEngine,
    base_image: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir("envkit-gc-test-busy-") as busy:
        os.utime(busy, (time.time() - 2 * MIN_AGE_S,) * 2)
        assert main(["gc", "--dry-run", "--all"]) == 0
        planned = capsys.readouterr().out
        assert all(cid[:12] in planned for cid in (leftovers.stopped_container, leftovers.running_container))
        assert short(leftovers.old_image) in planned and short(leftovers.young_image) in planned
        assert f"keep    scratch   {busy}" in planned  # a locked folder stays even with --all
        assert engine.image(leftovers.old_image) is not None  # a dry run removes nothing

        code = main(["gc"])
        out = capsys.readouterr().out
    failures = [line for line in out.splitlines() if line.startswith("could not remove")]
    assert code == (1 if failures else 0), out
    ours = (leftovers.stopped_container[:12], short(leftovers.old_image), str(leftovers.stale_dir))
    assert not [line for line in failures if any(ref in line for ref in ours)], out

    assert leftovers.stopped_container not in engine.containers("io.envkit.role=validate")
    assert engine.image(leftovers.old_image) is None
    assert not leftovers.stale_dir.exists()
    # What a running envkit may still be using stays without --all.
    assert leftovers.running_container in engine.containers("io.envkit.role=validate", all=False)
    assert engine.image(leftovers.young_image) is not None
    # Tagged images are never touched: the local base (labelled io.envkit.base=true) and the demo.
    assert engine.image(base_image) is not None
    assert engine.image(base_image).labels.get("io.envkit.base") == "true"
    for image in demo.images:
        assert engine.image(image) is not None
