"""`envkit lock` against the real engine and a real local registry (Debian's docker-registry).

Resolution is offline against a wheelhouse holding torch and its dependencies
(scripts/make-lock-wheelhouse.sh makes it once), so the lock itself needs no network.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import ROOT, canary_ca_bundle, run_in_image, wheelhouse_or_skip

from envkit import labels
from envkit import lock as L
from envkit.cli import main
from envkit.engine import BuildRequest, EngineError
from envkit.engine.docker_sdk import DockerSdkEngine

CPU = "2.13.0-cpu-py3.11-debian12-cpu"
DEVEL = "2.13.0-cpu-py3.11-debian12-devel"
# Every installed distribution with the sha256 of every file it installed, from the image itself.
INVENTORY = r"""/opt/venv/bin/python - <<'EOF'
import importlib.metadata as m, json
print(json.dumps(sorted(
    (d.metadata["Name"].lower(), d.version, sorted((str(f), f.hash.value if f.hash else "") for f in d.files or []))
    for d in m.distributions())))
EOF
/opt/venv/bin/pip freeze --all"""

MATRIX = """\
version: 1
name: {name}
image:
  repository: {repository}
torch_source: wheelhouse
axes:
  torch: ["2.13.0"]
  cuda: [none]
  python: ["3.11"]
  os: [debian12]
  flavor: [cpu, devel]
include:
  - flavor: cpu
    base: {cpu_base}
  - flavor: devel
    base: {devel_base}
"""


@dataclass
class Setup:
    matrix: Path
    repository: str
    lock_flags: list[str]
    build_flags: list[str]
    images: list[str] = field(default_factory=list)  # removed newest first (children before parents)
    bases: list[str] = field(default_factory=list)  # base images this test made (parents of build cache)

    def keep(self, image_id: str) -> None:
        if image_id not in self.images:
            self.images.append(image_id)


def lock_wheelhouse() -> Path:
    source = wheelhouse_or_skip()
    done = subprocess.run(
        [str(ROOT / "scripts" / "make-lock-wheelhouse.sh"), str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def setup(engine: DockerSdkEngine, base_image: str, registry: str, tmp_path: Path) -> Iterator[Setup]:
    wheels = lock_wheelhouse()
    name = f"lock-{uuid.uuid4().hex[:8]}"
    base_id = engine.image(base_image).id  # type: ignore[union-attr]
    bases = {flavor: f"{registry}/envkit-test/{name}-{flavor}:1" for flavor in ("cpu", "devel")}
    for ref in bases.values():
        engine.tag(base_id, ref)
        engine.push(ref)
    repository = f"envkit-test/{name}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        MATRIX.format(name=name, repository=repository, cpu_base=bases["cpu"], devel_base=bases["devel"])
    )
    bundle = canary_ca_bundle(tmp_path, f"canary-{name}")
    state = Setup(
        matrix=matrix,
        repository=repository,
        lock_flags=["--wheelhouse", str(wheels), "--offline"],
        build_flags=[
            "--wheelhouse",
            str(wheels),
            "--ca-bundle",
            str(bundle),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
    )
    yield state
    for image in engine.images(f"{labels.MATRIX}={name}"):
        state.keep(image.id)
    for image_id in reversed(state.images):
        engine.remove_image(image_id, force=True)
    for ref in bases.values():
        engine.remove_image(ref)  # the tag only: the image is the shared local base
    for ref in engine.image(base_id).digests:  # type: ignore[union-attr]
        if f"/envkit-test/{name}-" in ref:  # what the push and the digest-pinned FROM left on it
            engine.remove_image(ref)
    # The classic builder keeps intermediate images of the cells' stages as its cache; those are
    # children of the moved base and inherit its test label: remove them (children first), then it.
    for _ in range(3):
        children = [
            i.id for i in engine.images(f"io.envkit.test-moved={repository}") if i.id not in state.bases
        ]
        for image_id in children:
            with contextlib.suppress(EngineError):
                engine.remove_image(image_id, force=True)
    for image_id in state.bases:
        with contextlib.suppress(EngineError):
            engine.remove_image(image_id, force=True)


def build(setup: Setup, tmp_path: Path, *extra: str) -> dict[str, dict[str, object]]:
    report = tmp_path / f"build-{uuid.uuid4().hex[:6]}.json"
    code = main(["build", str(setup.matrix), "--locked", *setup.build_flags, "--report", str(report), *extra])
    cells = {c["cell"]: c for c in json.loads(report.read_text())["cells"]} if report.exists() else {}
    for cell in cells.values():
        if cell.get("image_id"):
            setup.keep(str(cell["image_id"]))
    assert code in (0, 1), code
    return cells


def test_a_moved_base_tag_is_drift_and_only_its_cell_rebuilds(
    engine: DockerSdkEngine, base_image: str, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(setup.matrix), *setup.lock_flags]) == 0
    lock_file = L.lock_path(setup.matrix)
    first = L.read_lock(lock_file)
    assert {e.base.kind for e in first.cells.values()} == {"registry"}
    built = build(setup, tmp_path)
    assert {cell: c["status"] for cell, c in built.items()} == {CPU: "built", DEVEL: "built"}
    assert main(["lock", "--check", str(setup.matrix), *setup.lock_flags]) == 0
    capsys.readouterr()

    # Someone pushes a different image under the cpu cell's base tag.
    context = tmp_path / "moved"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f'FROM {base_image}\nLABEL io.envkit.test-moved="{setup.repository}"\n'
    )
    moved = engine.build(BuildRequest(context_dir=context), lambda line: None)
    setup.bases.append(moved)
    cpu_base = first.cells[CPU].base.ref
    engine.tag(moved, cpu_base)
    engine.push(cpu_base)

    assert main(["lock", "--check", str(setup.matrix), *setup.lock_flags]) == 1
    out = capsys.readouterr().out
    assert f"base {cpu_base}" in out and CPU in out and DEVEL not in out

    # The lock still pins the old digest: a locked build changes nothing.
    again = build(setup, tmp_path)
    assert {cell: c["status"] for cell, c in again.items()} == {CPU: "skipped", DEVEL: "skipped"}

    assert main(["lock", "--update", str(setup.matrix), *setup.lock_flags]) == 0
    updated = L.read_lock(lock_file)
    assert updated.cells[DEVEL] == first.cells[DEVEL]
    assert updated.cells[CPU].base.digest != first.cells[CPU].base.digest
    assert updated.cells[CPU].packages == first.cells[CPU].packages
    assert main(["lock", "--check", str(setup.matrix), *setup.lock_flags]) == 0

    rebuilt = build(setup, tmp_path)
    assert {cell: c["status"] for cell, c in rebuilt.items()} == {CPU: "built", DEVEL: "skipped"}
    image = engine.image(str(rebuilt[CPU]["image_id"]))
    assert image is not None and image.labels.get("io.envkit.test-moved") == setup.repository


def test_two_builds_from_one_lock_install_identical_files(
    engine: DockerSdkEngine, setup: Setup, tmp_path: Path
) -> None:
    assert main(["lock", str(setup.matrix), *setup.lock_flags, "--only", CPU]) == 0
    first = build(setup, tmp_path, "--only", CPU)[CPU]
    assert first["status"] == "built", first
    code, before = run_in_image(engine, str(first["image"]), INVENTORY)
    assert code == 0, before
    for tag in first["tags"]:  # type: ignore[attr-defined]
        engine.remove_image(str(tag), force=True)
    second = build(setup, tmp_path, "--only", CPU, "--no-cache")[CPU]
    assert second["status"] == "built", second
    code, after = run_in_image(engine, str(second["image"]), INVENTORY)
    assert code == 0, after
    assert "torch==2.13.0+cpu" in before and "filelock==" in before
    assert after == before


def test_a_corrupted_hash_fails_the_build_naming_the_package_and_tags_nothing(
    engine: DockerSdkEngine, setup: Setup, tmp_path: Path
) -> None:
    assert main(["lock", str(setup.matrix), *setup.lock_flags, "--only", CPU]) == 0
    lock_file = L.lock_path(setup.matrix)
    lock = L.read_lock(lock_file)
    filelock = lock.cells[CPU].package("filelock")
    assert filelock is not None
    text = lock_file.read_text()
    bad = "sha256:" + "0" * 64
    lock_file.write_text(text.replace(filelock.files[0].hash, bad))
    cells = build(setup, tmp_path, "--only", CPU)
    result = cells[CPU]
    assert result["status"] == "failed"
    tail = str(result["log_tail"])
    assert "DO NOT MATCH THE HASHES" in tail and f"filelock=={filelock.version}" in tail, tail
    for tag in result["tags"]:  # type: ignore[attr-defined]
        assert engine.image(str(tag)) is None, f"{tag} was tagged by a failed build"
