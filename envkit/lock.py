"""Locks: per cell, the base image's digest and a hash-locked set of Python packages.

`envkit lock MATRIX` writes `<matrix stem>.lock.yaml` beside the matrix (docs/lock.md). A cell's entry
records what the matrix asked for (a fingerprint of the cell's inputs), the base image's digest, and
every Python package the image installs, with the hashes pip checks under `--require-hashes`. The
packages are resolved for the target (the cell's Python, manylinux x86_64), not for this host, by uv.

The file is envkit's output and review material: entries are sorted, nothing in it depends on the
order of the matrix, and reading it back checks every value (file:line: key on any error).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from envkit import safety
from envkit.compat import KnowledgeBase, version_key
from envkit.engine import Engine
from envkit.errors import ConfigError, EnvironmentFault, EnvkitError, UsageError, Where
from envkit.registry import INDEX_TYPES, Registry, get_registry, parse_reference
from envkit.resolve import Cell
from envkit.yamlsrc import SourceDoc, load_file

LOCK_VERSION = 1
LOCK_SUFFIX = ".lock.yaml"
TARGET_PLATFORM = "x86_64-manylinux_2_28"
# A CUDA cell's entry is about 8 KB (torch pulls ~25 wheels); this allows a few hundred cells.
MAX_LOCK_BYTES = 4 * 1024**2
BASE_KINDS = ("local", "registry")
REQUIREMENTS_NAME = "requirements.lock"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_PACKAGE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,100}[a-z0-9])?")
_PACKAGE_VERSION = re.compile(r"[0-9A-Za-z.!+_-]{1,64}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,250}\.(?:whl|tar\.gz|zip)")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SOURCE = re.compile(r"(default-index|index [^\s]+|find-links [^\s]+)")
HEADER = (
    "# envkit lock: base image digests and hash-locked Python packages, one entry per cell.\n"
    "# Written by `envkit lock`; refresh with `envkit lock --update`, look for drift with\n"
    "# `envkit lock --check` (docs/lock.md). Review changes; do not edit by hand.\n"
)


@dataclass(frozen=True, kw_only=True)
class BaseDigest:
    """The base image as locked: a registry digest (index and linux/amd64 manifest), or a local image id."""

    ref: str
    kind: str
    digest: str
    manifest: str | None = None

    @property
    def pinned(self) -> str:
        """What a `FROM` line names: the registry manifest by digest; a local base by its name."""
        if self.kind == "registry":
            return f"{_without_tag(self.ref)}@{self.manifest or self.digest}"
        return self.ref


@dataclass(frozen=True, kw_only=True)
class LockedFile:
    """One distribution file the target may install: its file name and sha256."""

    file: str
    hash: str


@dataclass(frozen=True, kw_only=True)
class LockedPackage:
    """One installed distribution: normalised name, exact version, the files (and hashes) pip may accept."""

    name: str
    version: str
    files: tuple[LockedFile, ...]

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(sorted({f.hash for f in self.files}))

    def requirement(self) -> str:
        """The package as a `--require-hashes` requirements line (with continuation lines)."""
        hashes = "".join(f" \\\n    --hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version}{hashes}\n"


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """How the packages were resolved: by what, for which Python and platform, from where, from what."""

    tool: str
    python: str
    platform: str
    sources: tuple[str, ...]
    requirements: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CellLock:
    """One cell's entry in the lock file."""

    cell: str
    inputs: str
    resolved_at: str
    base: BaseDigest
    resolution: Resolution
    packages: tuple[LockedPackage, ...]
    where: Where | None = field(default=None, compare=False, repr=False)

    def requirements_text(self) -> str:
        """The locked packages as a requirements file for `pip install --require-hashes --no-deps`."""
        # Only what pip reads and the cell id: re-locking to the same packages must not change the hash.
        head = f"# envkit lock of cell {self.cell}: install with --require-hashes --no-deps\n"
        return head + "".join(package.requirement() for package in self.packages)

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)


@dataclass(frozen=True, kw_only=True)
class Lock:
    """A lock file: the matrix it was made for and one entry per cell id."""

    file: str
    matrix: str
    cells: Mapping[str, CellLock]

    def with_cells(self, cells: Sequence[CellLock]) -> Lock:
        """This lock with `cells` added or replacing the entries of the same ids."""
        merged = dict(self.cells)
        merged.update({entry.cell: entry for entry in cells})
        return replace(self, cells=merged)


def lock_path(matrix_file: Path | str) -> Path:
    """Where the lock of `matrix_file` lives: beside it, `<stem>.lock.yaml`."""
    path = Path(matrix_file)
    return path.with_name(path.stem + LOCK_SUFFIX)


def cell_inputs(cell: Cell) -> str:
    """A fingerprint of everything a cell's lock depends on, as the matrix resolved it.

    A lock entry whose fingerprint differs from the cell's no longer describes that cell.
    """
    record = {
        "base": cell.base,
        "torch": cell.torch,
        "variant": cell.variant,
        "python": cell.python,
        "python_full": cell.python_full,
        "platform": TARGET_PLATFORM,
        "torch_source": cell.torch_source,
        "torch_index": cell.torch_index,
        "packages": sorted(cell.packages),
    }
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def mismatch(cell: Cell, lock: Lock) -> str | None:
    """Why the lock cannot be used for `cell` (no entry, or made for other inputs); None when it fits."""
    entry = lock.cells.get(cell.id)
    if entry is None:
        return f"{lock.file} has no entry for cell {cell.id}"
    if entry.inputs != cell_inputs(cell):
        return f"the entry for cell {cell.id} in {lock.file} was made for other matrix values"
    return None


# --- the file ----------------------------------------------------------------------------------------


def dump_lock(lock: Lock) -> str:
    """The lock file's text: a header, then cells sorted by id, packages sorted by name."""
    data = {
        "version": LOCK_VERSION,
        "matrix": lock.matrix,
        "cells": {cell_id: _cell_record(lock.cells[cell_id]) for cell_id in sorted(lock.cells)},
    }
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=200, allow_unicode=False)
    return HEADER + body


def write_lock(lock: Lock, path: Path) -> None:
    """Write the lock atomically (a half-written lock would be read as invalid)."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(dump_lock(lock), encoding="utf-8")
    staging.replace(path)


def _cell_record(entry: CellLock) -> dict[str, Any]:
    base: dict[str, Any] = {"ref": entry.base.ref, "kind": entry.base.kind, "digest": entry.base.digest}
    if entry.base.manifest is not None:
        base["manifest"] = entry.base.manifest
    return {
        "inputs": entry.inputs,
        "resolved_at": entry.resolved_at,
        "base": base,
        "resolution": {
            "tool": entry.resolution.tool,
            "python": entry.resolution.python,
            "platform": entry.resolution.platform,
            "sources": list(entry.resolution.sources),
            "requirements": list(entry.resolution.requirements),
        },
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "files": [{"file": f.file, "hash": f.hash} for f in sorted(p.files, key=lambda f: f.file)],
            }
            for p in sorted(entry.packages, key=lambda p: p.name)
        ],
    }


def read_lock(path: Path | str) -> Lock:
    """Read and check a lock file; any bad shape or value is a ConfigError naming file:line: key."""
    return parse_lock(load_file(path, MAX_LOCK_BYTES))


def parse_lock(doc: SourceDoc) -> Lock:
    """Check and parse a loaded lock document."""
    data = doc.data
    _keys(doc, (), data, ("version", "matrix", "cells"), required=("version", "matrix", "cells"))
    if data["version"] != LOCK_VERSION:
        raise ConfigError(
            f"unsupported lock version {data['version']!r}",
            where=doc.where("version"),
            hint=f"this envkit reads version {LOCK_VERSION}; rewrite the lock with `envkit lock`",
        )
    matrix = _text(doc, ("matrix",))
    cells = data["cells"]
    if not isinstance(cells, dict):
        raise _bad(doc, ("cells",), "must be a mapping of cell id to entry")
    return Lock(
        file=doc.file,
        matrix=matrix,
        cells={str(cell_id): _parse_cell(doc, str(cell_id)) for cell_id in cells},
    )


def _parse_cell(doc: SourceDoc, cell_id: str) -> CellLock:
    path: tuple[Any, ...] = ("cells", cell_id)
    safety.path_part(cell_id, doc.where(*path))
    keys = ("inputs", "resolved_at", "base", "resolution", "packages")
    _keys(doc, path, doc.data["cells"][cell_id], keys, required=keys)
    packages = _list(doc, (*path, "packages"))
    parsed = tuple(_parse_package(doc, (*path, "packages", i)) for i in range(len(packages)))
    names = [p.name for p in parsed]
    if names != sorted(set(names)):
        raise _bad(doc, (*path, "packages"), "packages must be sorted by name, each listed once")
    return CellLock(
        cell=cell_id,
        inputs=_matching(doc, (*path, "inputs"), _DIGEST, "a sha256:<64 hex digits> fingerprint"),
        resolved_at=_matching(doc, (*path, "resolved_at"), _TIMESTAMP, "a UTC time, 2026-01-31T12:00:00Z"),
        base=_parse_base(doc, (*path, "base")),
        resolution=_parse_resolution(doc, (*path, "resolution")),
        packages=parsed,
        where=doc.where(*path),
    )


def _parse_base(doc: SourceDoc, path: tuple[Any, ...]) -> BaseDigest:
    required = ("ref", "kind", "digest")
    _keys(doc, path, _at(doc, path), (*required, "manifest"), required=required)
    kind = _text(doc, (*path, "kind"))
    if kind not in BASE_KINDS:
        raise _bad(doc, (*path, "kind"), f"{kind!r} is not one of {', '.join(BASE_KINDS)}")
    manifest = None
    if "manifest" in _at(doc, path):
        manifest = _matching(doc, (*path, "manifest"), _DIGEST, "a digest: sha256:<64 hex digits>")
    return BaseDigest(
        ref=safety.image_ref(_text(doc, (*path, "ref")), doc.where(*path, "ref")),
        kind=kind,
        digest=_matching(doc, (*path, "digest"), _DIGEST, "a digest: sha256:<64 hex digits>"),
        manifest=manifest,
    )


def _parse_resolution(doc: SourceDoc, path: tuple[Any, ...]) -> Resolution:
    keys = ("tool", "python", "platform", "sources", "requirements")
    _keys(doc, path, _at(doc, path), keys, required=keys)
    sources = _list(doc, (*path, "sources"))
    requirements = _list(doc, (*path, "requirements"))
    return Resolution(
        tool=_text(doc, (*path, "tool")),
        python=safety.version(_text(doc, (*path, "python")), doc.where(*path, "python")),
        platform=safety.name(_text(doc, (*path, "platform")), doc.where(*path, "platform")),
        sources=tuple(
            _matching(doc, (*path, "sources", i), _SOURCE, "default-index, index URL or find-links DIR")
            for i in range(len(sources))
        ),
        requirements=tuple(
            safety.requirement(_text(doc, (*path, "requirements", i)), doc.where(*path, "requirements", i))
            for i in range(len(requirements))
        ),
    )


def _parse_package(doc: SourceDoc, path: tuple[Any, ...]) -> LockedPackage:
    _keys(doc, path, _at(doc, path), ("name", "version", "files"), required=("name", "version", "files"))
    files = _list(doc, (*path, "files"))
    if not files:
        raise _bad(doc, (*path, "files"), "a locked package needs at least one file and its hash")
    return LockedPackage(
        name=_matching(doc, (*path, "name"), _PACKAGE, "a normalised package name (lower case)"),
        version=_matching(doc, (*path, "version"), _PACKAGE_VERSION, "a package version"),
        files=tuple(_parse_file(doc, (*path, "files", i)) for i in range(len(files))),
    )


def _parse_file(doc: SourceDoc, path: tuple[Any, ...]) -> LockedFile:
    _keys(doc, path, _at(doc, path), ("file", "hash"), required=("file", "hash"))
    return LockedFile(
        file=_matching(doc, (*path, "file"), _FILE, "a wheel or sdist file name"),
        hash=_matching(doc, (*path, "hash"), _HASH, "a hash: sha256:<64 hex digits>"),
    )


def _at(doc: SourceDoc, path: tuple[Any, ...]) -> Any:
    value = doc.data
    for part in path:
        value = value[part]
    return value


def _bad(doc: SourceDoc, path: tuple[Any, ...], problem: str) -> ConfigError:
    return ConfigError(
        problem,
        where=doc.where(*path),
        hint="the lock is written by `envkit lock`; rewrite it with `envkit lock MATRIX` rather than by hand",
    )


def _keys(
    doc: SourceDoc, path: tuple[Any, ...], value: Any, allowed: tuple[str, ...], required: tuple[str, ...]
) -> None:
    if not isinstance(value, dict):
        raise _bad(doc, path, f"expected a mapping with {', '.join(required)}")
    for key in value:
        if key not in allowed:
            raise _bad(doc, (*path, key), f"unknown key {key!r} (expected {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise _bad(doc, path, f"missing key {key!r}")


def _text(doc: SourceDoc, path: tuple[Any, ...]) -> str:
    value = _at(doc, path)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _bad(doc, path, "expected a text value")
    return doc.text(*path) or str(value)


def _list(doc: SourceDoc, path: tuple[Any, ...]) -> list[Any]:
    value = _at(doc, path)
    if not isinstance(value, list):
        raise _bad(doc, path, "expected a list")
    return value


def _matching(doc: SourceDoc, path: tuple[Any, ...], pattern: re.Pattern[str], what: str) -> str:
    text = _text(doc, path)
    if not pattern.fullmatch(text):
        raise _bad(doc, path, f"{text[:80]!r} is not {what}")
    return text


def _without_tag(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rpartition("/")[2]
    return name.rpartition(":")[0] if ":" in last else name


# --- making entries ----------------------------------------------------------------------------------


BaseResolver = Callable[[str], BaseDigest]
"""Resolves a base image reference to its digest now (registry manifest HEAD, or the engine's image id)."""

PackageResolver = Callable[[Cell], tuple[Resolution, tuple[LockedPackage, ...]]]
"""Resolves a cell's Python packages for its target (`UvResolver` below)."""


def lock_cell(
    cell: Cell, resolve_base: BaseResolver, resolve_packages: PackageResolver, now: str
) -> CellLock:
    """A fresh lock entry for `cell`, resolved now."""
    resolution, packages = resolve_packages(cell)
    return CellLock(
        cell=cell.id,
        inputs=cell_inputs(cell),
        resolved_at=now,
        base=resolve_base(cell.base),
        resolution=resolution,
        packages=packages,
    )


# --- resolving packages with uv ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ResolverSettings:
    """Where uv may look: a wheelhouse (find-links), whether to stay offline, a CA bundle for an index."""

    wheelhouse: Path | None = None
    offline: bool = False
    ca_bundle: Path | None = None


def find_uv() -> str:
    """The uv executable: `uv` on PATH, else the one the `uv` Python package ships."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise EnvironmentFault(
            "uv is not installed; envkit resolves locks with it", hint="pip install uv"
        ) from None


class UvResolver:
    """Resolves a cell's packages for its target with `uv pip compile` (PEP 751 output, one file per
    package for the target platform, with its sha256)."""

    def __init__(self, settings: ResolverSettings, uv: str | None = None) -> None:
        self.settings = settings
        self.uv = uv or find_uv()

    def __call__(self, cell: Cell) -> tuple[Resolution, tuple[LockedPackage, ...]]:
        requirements = (f"torch=={cell.torch}", *sorted(cell.packages))
        pylock = self._compile(cell, requirements, no_deps=False)
        resolution = Resolution(
            tool=self.version(),
            python=cell.python,
            platform=TARGET_PLATFORM,
            sources=self._sources(cell),
            requirements=requirements,
        )
        return resolution, parse_pylock(pylock, cell)

    def newest_torch(self, cell: Cell) -> str | None:
        """The newest torch of the cell's minor release its sources offer now (None if none is found)."""
        major, minor = cell.torch.split(".")[:2]
        spec = f"torch>={cell.torch},<{major}.{int(minor) + 1}"
        try:
            packages = parse_pylock(self._compile(cell, (spec,), no_deps=True), cell)
        except ConfigError:
            return None
        torch = next((p for p in packages if p.name == "torch"), None)
        return None if torch is None else torch.version.split("+")[0]

    @functools.cache  # noqa: B019  (one resolver lives for one command)
    def version(self) -> str:
        done = subprocess.run([self.uv, "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip() or "uv"

    def _sources(self, cell: Cell) -> tuple[str, ...]:
        sources = []
        if self.settings.wheelhouse is not None:
            sources.append(f"find-links {self.settings.wheelhouse}")
        if cell.torch_source == "index" and cell.torch_index and not self.settings.offline:
            sources.append(f"index {cell.torch_index}")
        if not self.settings.offline:
            sources.append("default-index")
        return tuple(sources)

    def _command(self, cell: Cell, output: Path, no_deps: bool) -> list[str]:
        command = [
            self.uv,
            "pip",
            "compile",
            "-",
            "--output-file",
            str(output),
            "--format",
            "pylock.toml",
            "--python-version",
            cell.python,
            "--python-platform",
            TARGET_PLATFORM,
            "--generate-hashes",
            "--no-header",
            "--quiet",
            "--no-config",
        ]
        if no_deps:
            command.append("--no-deps")
        if self.settings.wheelhouse is not None:
            command += ["--find-links", str(self.settings.wheelhouse)]
        if self.settings.offline:
            command += ["--offline", "--no-index"]
        elif cell.torch_source == "index" and cell.torch_index:
            command += ["--extra-index-url", cell.torch_index]
        return command

    def _compile(self, cell: Cell, requirements: Sequence[str], no_deps: bool) -> str:
        if cell.torch_source == "wheelhouse" and self.settings.wheelhouse is None:
            raise UsageError(f"cell {cell.id} installs torch from a wheelhouse", hint="pass --wheelhouse DIR")
        if self.settings.offline and self.settings.wheelhouse is None:
            raise UsageError("--offline resolves from a wheelhouse only", hint="pass --wheelhouse DIR")
        env = dict(os.environ)
        if self.settings.ca_bundle is not None:
            env["SSL_CERT_FILE"] = str(self.settings.ca_bundle)
        with tempfile.TemporaryDirectory(prefix="envkit-lock-") as scratch:
            output = Path(scratch) / "pylock.toml"
            done = subprocess.run(
                self._command(cell, output, no_deps),
                input="\n".join(requirements) + "\n",
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode != 0:
                raise _uv_failure(cell, done.stderr)
            return output.read_text(encoding="utf-8")


def _uv_failure(cell: Cell, stderr: str) -> EnvkitError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = " ".join(lines[-6:])[:600] or "no output"
    if "No solution found" in stderr or "not found in the" in stderr or "not available" in stderr:
        return ConfigError(
            f"cell {cell.id}: uv found no set of packages for Python {cell.python} on {TARGET_PLATFORM}: "
            f"{detail}",
            where=cell.where,
            hint="check the cell's torch, python and packages; offline, the wheelhouse must hold every "
            "package and its dependencies",
        )
    return EnvironmentFault(
        f"cell {cell.id}: uv could not resolve packages: {detail}",
        hint="is the index reachable? behind a proxy pass --ca-bundle FILE; "
        "offline use --wheelhouse DIR --offline",
    )


def parse_pylock(text: str, cell: Cell) -> tuple[LockedPackage, ...]:
    """The packages of a PEP 751 lock (as uv writes it for one platform), sorted by name."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise EnvironmentFault("envkit lock needs Python 3.11 or newer (tomllib)") from None
    data = tomllib.loads(text)
    packages = []
    for entry in data.get("packages", []):
        files = [_pylock_file(wheel) for wheel in entry.get("wheels", [])]
        if not files and "sdist" in entry:
            files = [_pylock_file(entry["sdist"])]
        if not files:
            raise ConfigError(
                f"cell {cell.id}: {entry.get('name')} {entry.get('version')} has no file with a hash",
                where=cell.where,
                hint="a package installed from a folder or a VCS URL cannot be hash-locked",
            )
        packages.append(
            LockedPackage(
                name=re.sub(r"[-_.]+", "-", str(entry["name"])).lower(),
                version=str(entry["version"]),
                files=tuple(sorted(files, key=lambda f: f.file)),
            )
        )
    return tuple(sorted(packages, key=lambda p: p.name))


def _pylock_file(record: Mapping[str, Any]) -> LockedFile:
    location = str(record.get("url") or record.get("path") or "")
    name = str(record.get("name") or urllib.parse.unquote(location.rstrip("/").rsplit("/", 1)[-1]))
    return LockedFile(file=name, hash="sha256:" + str(record["hashes"]["sha256"]))


# --- resolving base images ---------------------------------------------------------------------------

PLATFORM_OS = "linux"
PLATFORM_ARCH = "amd64"


def names_registry(ref: str) -> bool:
    """True when the image reference starts with a registry host (a dot or a port, or localhost)."""
    first, sep, _ = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


class BaseLookup:
    """Resolves bases now: a reference naming a registry host by a manifest HEAD (for a multi-platform
    index also its linux/amd64 manifest), any other by the engine's image id (a local or pulled base)."""

    def __init__(
        self,
        engine: Engine | None,
        registry_for: Callable[[str], Registry] | None = None,
    ) -> None:
        self.engine = engine
        self.registry_for = registry_for or get_registry

    def __call__(self, ref: str) -> BaseDigest:
        if names_registry(ref):
            return self._remote(ref)
        return self._local(ref)

    def _local(self, ref: str) -> BaseDigest:
        image = self.engine.image(ref) if self.engine is not None else None
        if image is None:
            raise ConfigError(
                f"base image {ref} is not on the engine and its name has no registry host",
                hint="build or pull it first, or name it with its registry (HOST/REPOSITORY:TAG)",
            )
        return BaseDigest(ref=ref, kind="local", digest=image.id)

    def _remote(self, ref: str) -> BaseDigest:
        parsed = parse_reference(ref)
        registry = self.registry_for(parsed.host)
        found = registry.head_manifest(parsed.repository, parsed.reference)
        if found is None:
            raise ConfigError(
                f"base image {ref}: the registry has no such manifest",
                hint="check the base's name and tag (`base` in the matrix)",
            )
        manifest = found.digest
        if found.media_type in INDEX_TYPES:
            manifest = self._platform_manifest(registry, parsed.repository, found.digest, ref)
        return BaseDigest(ref=ref, kind="registry", digest=found.digest, manifest=manifest)

    def _platform_manifest(self, registry: Registry, repository: str, digest: str, ref: str) -> str:
        index = registry.get_manifest(repository, digest)
        entries = json.loads(index.body).get("manifests", []) if index is not None else []
        for entry in entries:
            platform = entry.get("platform") or {}
            if platform.get("os") == PLATFORM_OS and platform.get("architecture") == PLATFORM_ARCH:
                return str(entry["digest"])
        raise ConfigError(
            f"base image {ref} is a multi-platform index without a {PLATFORM_OS}/{PLATFORM_ARCH} image",
            hint="envkit builds linux/amd64 images; choose a base that offers one",
        )


# --- drift -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Drift:
    """One way the world moved away from a cell's lock entry; `update` says whether `--update` fixes it."""

    cell: str
    what: str
    locked: str
    now: str
    update: bool


@dataclass(frozen=True, kw_only=True)
class Checkers:
    """What `check_cell` asks about the world now; each is a seam a test can replace."""

    resolve_base: BaseResolver
    resolve_packages: PackageResolver
    newest_torch: Callable[[Cell], str | None]
    cuda_end_of_support: Callable[[Cell], str | None]


def check_cell(cell: Cell, lock: Lock, checkers: Checkers) -> tuple[list[Drift], CellLock | None]:
    """Every drift of `cell` from its lock entry, and the entry resolved now (None when nothing needs one).

    The fresh entry is what `--update` writes: only cells with a drift it can fix get one.
    """
    drifts = _matrix_drifts(cell, checkers)
    entry = lock.cells.get(cell.id)
    if entry is None or entry.inputs != cell_inputs(cell):
        why = "no entry" if entry is None else "made for other matrix values"
        drifts.append(Drift(cell=cell.id, what="lock entry", locked=why, now="matrix changed", update=True))
        resolution, packages = checkers.resolve_packages(cell)
        fresh = CellLock(
            cell=cell.id,
            inputs=cell_inputs(cell),
            resolved_at=utc_now(),
            base=checkers.resolve_base(cell.base),
            resolution=resolution,
            packages=packages,
        )
        return drifts, fresh
    base = checkers.resolve_base(entry.base.ref)
    if base.digest != entry.base.digest:
        drifts.append(
            Drift(
                cell=cell.id,
                what=f"base {entry.base.ref}",
                locked=_short(entry.base.digest),
                now=_short(base.digest),
                update=True,
            )
        )
    resolution, packages = checkers.resolve_packages(cell)
    drifts += package_drifts(cell.id, entry.packages, packages)
    if not any(d.update for d in drifts):
        return drifts, None
    fresh = replace(entry, resolved_at=utc_now(), base=base, resolution=resolution, packages=packages)
    return drifts, fresh


def _matrix_drifts(cell: Cell, checkers: Checkers) -> list[Drift]:
    """Drifts only a matrix edit fixes: a newer torch patch, the CUDA image line past its end of support."""
    drifts = []
    newest = checkers.newest_torch(cell)
    if newest is not None and version_key(newest) > version_key(cell.torch):
        drifts.append(
            Drift(cell=cell.id, what="torch (newer patch)", locked=cell.torch, now=newest, update=False)
        )
    ended = checkers.cuda_end_of_support(cell)
    if ended is not None:
        drifts.append(
            Drift(
                cell=cell.id,
                what=f"CUDA {cell.cuda_full} image line",
                locked="supported",
                now=f"end of support {ended}",
                update=False,
            )
        )
    return drifts


def package_drifts(
    cell_id: str, locked: Sequence[LockedPackage], now: Sequence[LockedPackage]
) -> list[Drift]:
    """Packages added, removed, at another version, or at the same version with other files (a new build)."""
    before = {p.name: p for p in locked}
    after = {p.name: p for p in now}
    drifts = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None or new is None or old.version != new.version:
            locked_text = old.version if old else "absent"
            now_text = new.version if new else "absent"
        else:
            locked_text = f"{old.version} ({len(old.files)} files)"
            now_text = f"{new.version} (new build: other files or hashes)"
        drifts.append(
            Drift(cell=cell_id, what=f"package {name}", locked=locked_text, now=now_text, update=True)
        )
    return drifts


def newest_torch_known(kb: KnowledgeBase, cell: Cell) -> str | None:
    """The newest torch release of the cell's minor in the knowledge base."""
    minor = cell.torch.split(".")[:2]
    same = [r.version for r in kb.releases if r.version.split(".")[:2] == minor]
    return max(same, key=version_key, default=None)


def cuda_end_of_support(kb: KnowledgeBase, cell: Cell, today: datetime.date) -> str | None:
    """The end-of-support date of the cell's CUDA image line when it has passed, else None."""
    if cell.cuda is None:
        return None
    line = kb.cuda_image(cell.cuda)
    if line is None or not line.past_end_of_support(today):
        return None
    return str(line.eol)


def utc_now() -> str:
    """The current UTC time as the lock writes it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(digest: str) -> str:
    return digest[:19]


def entries_for(cells: Sequence[Cell], matrix_file: Path | str) -> dict[str, CellLock]:
    """The lock entry of every cell, for `--locked`; a ConfigError naming the cell when one is missing
    or was made for other matrix values (never a silent fallback to floating versions)."""
    path = lock_path(matrix_file)
    if not path.is_file():
        raise ConfigError(
            f"--locked: no lock file {path} for {cells[0].id if cells else 'the matrix'}",
            where=cells[0].where if cells else None,
            hint=f"create it with `envkit lock {matrix_file}` and commit it",
        )
    lock = read_lock(path)
    for cell in cells:
        problem = mismatch(cell, lock)
        if problem is not None:
            raise ConfigError(
                f"--locked: cell {cell.id}: {problem}",
                where=cell.where,
                hint=f"refresh the lock with `envkit lock --update --only {cell.id} {matrix_file}`",
            )
    return {cell.id: lock.cells[cell.id] for cell in cells}


def check_local_bases(entries: Mapping[str, CellLock], current: Callable[[str], str | None]) -> None:
    """Refuse a locked local base whose image id is not the locked one (`current` gives the id now)."""
    for cell_id, entry in sorted(entries.items()):
        if entry.base.kind != "local":
            continue
        now = current(entry.base.ref)
        if now != entry.base.digest:
            seen = "is not on the engine" if now is None else f"is now image {now[:19]}"
            raise ConfigError(
                f"--locked: cell {cell_id}: base {entry.base.ref} {seen}; "
                f"the lock pins {entry.base.digest[:19]}",
                where=entry.where,
                hint="restore that base image, or accept the new one with `envkit lock --update`",
            )
