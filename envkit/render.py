"""Rendering: a resolved Cell becomes a BuildContext (Dockerfile text, context files, labels, hash).

Renders are byte-for-byte reproducible: collections are sorted, no timestamps, and the content hash
covers everything that affects the image bytes (the Dockerfile and the contents of the context files).
The CA bundle is the exception on purpose: it lets pip reach an index, it never lands in the image, and
rotating it must not rebuild every image.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from envkit import compat, safety
from envkit import labels as L
from envkit.errors import ConfigError, UnsafeValueError, Where
from envkit.resolve import Cell, Plan

if TYPE_CHECKING:
    from envkit.lock import CellLock

CA_BUNDLE_NAME = "ca-bundle.pem"
WHEELHOUSE_DIR = "wheelhouse"
CA_SECRET_ID = "ca-bundle"
LOCKED_REQUIREMENTS = "requirements.lock"
_WHEEL = re.compile(
    r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-(?:\d[^-]*-)?(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl"
)


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """Build-time inputs that change the rendered context (not the matrix itself)."""

    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    buildkit: bool = False
    cache_mounts: bool = False
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """Everything a build needs: Dockerfile text, files to place in the context, labels and tags."""

    cell: Cell
    dockerfile: str
    files: Mapping[str, Path]
    labels: Mapping[str, str]
    content_hash: str
    hash_tag: str
    secrets: tuple[str, ...] = field(default=())
    # A locked build: what FROM names (the base by digest) and files written from text (the locked
    # requirements); both are part of the content hash.
    base_ref: str = ""
    generated: Mapping[str, str] = field(default_factory=dict)

    @property
    def from_ref(self) -> str:
        """The base image as the Dockerfile's FROM names it (by digest when locked to a registry)."""
        return self.base_ref or self.cell.base

    @property
    def tags(self) -> tuple[str, ...]:
        """The cell tag and the content-hash tag, both under the cell's repository."""
        return (self.cell.image, f"{self.cell.repository}:{self.hash_tag}")

    def write(self, directory: Path) -> Path:
        """Write the Dockerfile and context files into `directory` (created); returns the Dockerfile path."""
        directory.mkdir(parents=True, exist_ok=True)
        dockerfile = directory / "Dockerfile"
        dockerfile.write_text(self.dockerfile, encoding="utf-8")
        for rel, source in sorted(self.files.items()):
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source, target)
        for rel, text in sorted(self.generated.items()):
            (directory / rel).write_text(text, encoding="utf-8")
        return dockerfile


class FileHasher:
    """sha256 of files, computed once per (path, size, mtime) for the life of this object."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            self._known[key] = digest.hexdigest()
        return self._known[key]


def hash_tag(content_hash: str) -> str:
    """The content-hash tag of a build: `content-` and the first 16 hex digits of the hash."""
    return f"content-{content_hash[:16]}"


def render_plan(plan: Plan, options: RenderOptions, hasher: FileHasher | None = None) -> list[BuildContext]:
    """Render every cell of a plan, in plan order."""
    hasher = hasher or FileHasher()
    return [render_cell(cell, plan.matrix.name, plan.matrix.labels, options, hasher) for cell in plan.cells]


def render_cell(
    cell: Cell,
    matrix_name: str,
    extra_labels: Mapping[str, str],
    options: RenderOptions,
    hasher: FileHasher | None = None,
    locked: CellLock | None = None,
) -> BuildContext:
    """Render one cell; raises ConfigError when an input the cell needs is missing or unsafe.

    With `locked` (the cell's lock entry), FROM names the base by digest and pip installs exactly the
    locked packages with `--require-hashes --no-deps`; without it the render is as it always was.
    """
    hasher = hasher or FileHasher()
    _check_cell(cell)
    files = _context_files(cell, options)
    generated = {LOCKED_REQUIREMENTS: locked.requirements_text()} if locked is not None else {}
    labels = cell_labels(cell, matrix_name, extra_labels)
    variables = _template_variables(cell, matrix_name, options, files) | _locked_variables(
        cell, locked, files
    )
    body = _template().render(**variables, labels=sorted(labels.items()))
    content_hash = _content_hash(body, files, hasher, generated)
    labels = {**labels, L.CONTENT_HASH: content_hash}
    dockerfile = _template().render(**variables, labels=sorted(labels.items()))
    return BuildContext(
        cell=cell,
        dockerfile=dockerfile,
        files=files,
        labels=labels,
        content_hash=content_hash,
        hash_tag=hash_tag(content_hash),
        secrets=_secret_ids(options),
        base_ref=variables["base_ref"],
        generated=generated,
    )


def nvidia_env(cell: Cell) -> list[tuple[str, str]]:
    """The NVIDIA Container Toolkit variables a CUDA cell sets itself when its base is not nvidia/cuda.

    nvidia/cuda images set them already (with a finer NVIDIA_REQUIRE_CUDA); any other base lacks them,
    and without NVIDIA_VISIBLE_DEVICES the toolkit gives the container no GPU. The require-CUDA floor is
    the CUDA major's first minor: torch's wheels bring their own CUDA runtime, which runs on any driver of
    that major under minor-version compatibility (the io.envkit.driver-floor label keeps the full floor).
    """
    if cell.cuda is None or _is_nvidia_cuda(cell.base):
        return []
    major = cell.cuda.split(".")[0]
    return [
        ("NVIDIA_VISIBLE_DEVICES", "all"),
        ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
        ("NVIDIA_REQUIRE_CUDA", f"cuda>={major}.0"),
    ]


def _is_nvidia_cuda(image: str) -> bool:
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name == "nvidia/cuda" or name.endswith("/nvidia/cuda")


def cell_labels(cell: Cell, matrix_name: str, extra: Mapping[str, str]) -> dict[str, str]:
    """OCI labels plus envkit labels carrying every resolved version (the probe checks them)."""
    labels = {
        "org.opencontainers.image.title": cell.repository.rsplit("/", 1)[-1],
        "org.opencontainers.image.description": f"PyTorch {cell.torch} ({cell.variant}), "
        f"Python {cell.python}, "
        f"{cell.os}, {cell.flavor}",
        "org.opencontainers.image.version": cell.tag,
        "org.opencontainers.image.base.name": cell.base,
        "org.opencontainers.image.ref.name": cell.tag,
        L.MANAGED: "true",
        # The matrix's name, not its file: moving or renaming the file must not change any image.
        L.MATRIX: matrix_name,
        L.CELL: cell.id,
        L.TORCH: cell.torch,
        L.TORCH_VARIANT: cell.variant,
        L.TORCH_SOURCE: cell.torch_source,
        L.CUDA: cell.cuda or "",
        L.CUDA_FULL: cell.cuda_full or "",
        L.CUDNN: cell.cudnn or "",
        L.NCCL: cell.nccl or "",
        L.PYTHON: cell.python,
        L.PYTHON_SOURCE: cell.python_source,
        L.OS: cell.os,
        L.FLAVOR: cell.flavor,
        L.DRIVER_FLOOR: cell.driver_floor or "",
        L.ARCH_LIST: ";".join(cell.arch_list),
        **extra,
    }
    for key, value in labels.items():
        safety.label_key(key)
        safety.label_value(value, cell.where)
    return labels


# --- internals ---------------------------------------------------------------------------------------


def _check_cell(cell: Cell) -> None:
    """Re-check every cell value that reaches the Dockerfile, whoever built the Cell."""
    where = cell.where
    safety.path_part(cell.id, where)
    safety.image_ref(cell.base, where)
    safety.repository(cell.repository, where)
    safety.tag(cell.tag, where)
    for value in (cell.torch, cell.python, cell.python_full, cell.cuda, cell.cuda_full, cell.cudnn):
        if value is not None:
            safety.version(value, where)
    for value in (cell.variant, cell.os, cell.flavor, cell.python_source, cell.torch_source):
        safety.name(value, where)
    for package in cell.packages:
        safety.requirement(package, where)
    if cell.torch_index is not None:
        safety.url(cell.torch_index, where)


def _template() -> jinja2.Template:
    return _environment().get_template("Dockerfile.j2")


@functools.cache
def _environment() -> jinja2.Environment:
    # Built once: parsing the templates dominated rendering cost (50 ms a cell) before this was cached.
    root = resources.files("envkit.templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_refuse_multiline,
    )
    env.filters["dockerfile_quote"] = safety.dockerfile_quote
    return env


def _refuse_multiline(value: Any) -> Any:
    # Defence in depth: values are validated before rendering; a line break reaching the template
    # anyway would let a value start a new Dockerfile instruction.
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise UnsafeValueError(f"refusing to render a value with a line break: {value[:40]!r}")
    return value


def _template_variables(
    cell: Cell, matrix_name: str, options: RenderOptions, files: Mapping[str, Path]
) -> dict[str, Any]:
    wheelhouse_files = sorted(rel for rel in files if rel.startswith(WHEELHOUSE_DIR + "/"))
    kb = compat.load_kb()
    build = kb.python_build(cell.python)
    archive = build.archive if cell.python_source == "standalone" and build is not None else None
    return {
        "cell": cell,
        "matrix_name": matrix_name,
        "python_tuple": ", ".join(cell.python.split(".")),
        "python_build": build,
        "python_url": f"{kb.download_root('python_build_standalone')}/{build.release}" if build else "",
        "python_archive": archive,
        "wheelhouse_files": wheelhouse_files,
        "ca_bundle": CA_BUNDLE_NAME in files or (options.ca_bundle is not None and options.buildkit),
        "buildkit": options.buildkit,
        "mounts": _mounts(options),
        "pip": f"{_pip_env(options)}/opt/venv/bin/pip install"
        + ("" if options.buildkit and options.cache_mounts else " --no-cache-dir"),
        "torch_args": _torch_args(cell, wheelhouse_files),
        "nvidia_env": nvidia_env(cell),
        # Requirements may hold `<` or `>`; quoted, the shell cannot read them as redirections.
        "packages": " ".join(shlex.quote(package) for package in cell.packages),
    }


def _locked_variables(cell: Cell, locked: CellLock | None, files: Mapping[str, Path]) -> dict[str, Any]:
    if locked is None:
        return {"locked": None, "base_ref": cell.base}
    base = locked.base
    safety.image_ref(base.pinned, cell.where)
    sources = []
    if any(rel.startswith(WHEELHOUSE_DIR + "/") for rel in files):
        sources.append(f"--find-links /tmp/envkit/{WHEELHOUSE_DIR}")
    if cell.torch_source == "index" and cell.torch_index is not None:
        sources.append(f"--extra-index-url {safety.url(cell.torch_index)}")
    return {
        "locked": {
            "base": f"{base.kind} {base.digest}",
            "packages": len(locked.packages),
            "requirements": LOCKED_REQUIREMENTS,
        },
        "base_ref": base.pinned,
        "torch_args": " ".join(
            ["--require-hashes", "--no-deps", "-r", f"/tmp/envkit/{LOCKED_REQUIREMENTS}", *sources]
        ),
    }


def _mounts(options: RenderOptions) -> list[str]:
    mounts = []
    if options.buildkit and options.cache_mounts:
        mounts.append("type=cache,target=/root/.cache/pip")
    if options.buildkit and options.ca_bundle is not None:
        mounts.append(f"type=secret,id={CA_SECRET_ID},target=/run/secrets/{CA_SECRET_ID}")
    for secret in options.secrets:
        mounts.append(f"type=secret,id={safety.path_part(secret)},target=/run/secrets/{secret}")
    return mounts


def _pip_env(options: RenderOptions) -> str:
    if options.ca_bundle is None:
        return ""
    path = f"/run/secrets/{CA_SECRET_ID}" if options.buildkit else f"/tmp/envkit/{CA_BUNDLE_NAME}"
    return f"PIP_CERT={path} "


def _secret_ids(options: RenderOptions) -> tuple[str, ...]:
    ids = list(options.secrets)
    if options.buildkit and options.ca_bundle is not None:
        ids.append(CA_SECRET_ID)
    return tuple(sorted(ids))


def _torch_args(cell: Cell, wheelhouse_files: list[str]) -> str:
    if cell.torch_source == "wheelhouse":
        wheel = _torch_wheel(cell, wheelhouse_files)
        return f"/tmp/envkit/{wheel} --find-links /tmp/envkit/{WHEELHOUSE_DIR}"
    if cell.torch_source == "pypi":
        return f"torch=={cell.torch}"
    assert cell.torch_index is not None
    return f"torch=={cell.torch} --index-url {safety.url(cell.torch_index)}"


def _torch_wheel(cell: Cell, wheelhouse_files: list[str]) -> str:
    python_tag = "cp" + cell.python.replace(".", "")
    for rel in wheelhouse_files:
        match = _WHEEL.fullmatch(rel.split("/", 1)[1])
        if not match or match["name"] != "torch" or python_tag not in match["py"].split("."):
            continue
        version, _, local = match["version"].partition("+")
        # A wheel without a local label is PyPI's build of the release's default variant.
        if version == cell.torch and (local == cell.variant or (not local and cell.variant != "cpu")):
            return rel
    raise ConfigError(
        f"cell {cell.id}: the wheelhouse has no torch {cell.torch} wheel for {cell.variant} and {python_tag}",
        where=cell.where,
        hint="add the wheel to the folder given with --wheelhouse (pip download torch==...)",
    )


def _context_files(cell: Cell, options: RenderOptions) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if cell.torch_source == "wheelhouse":
        if options.wheelhouse is None:
            raise ConfigError(
                f"cell {cell.id} installs torch from a wheelhouse",
                where=cell.where,
                hint="pass --wheelhouse DIR (a folder of .whl files)",
            )
        files.update(_wheelhouse_files(cell, options.wheelhouse))
    if options.ca_bundle is not None and not options.buildkit:
        files[CA_BUNDLE_NAME] = _readable(options.ca_bundle, "--ca-bundle")
    return files


def _wheelhouse_files(cell: Cell, folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"wheelhouse {folder} is not a folder", hint="pass --wheelhouse DIR")
    files = {}
    for path in sorted(folder.iterdir()):
        match = _WHEEL.fullmatch(path.name)
        if not match or not path.is_file():
            continue
        # Only this cell's torch wheel goes into its context: other torch wheels are large and unused.
        if match["name"] == "torch" and match["version"].split("+")[0] != cell.torch:
            continue
        files[f"{WHEELHOUSE_DIR}/{safety.path_part(path.name, Where(str(path)))}"] = path
    return files


def _readable(path: Path, flag: str) -> Path:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{flag} {path}: not a readable file")
    return path


def _content_hash(
    body: str, files: Mapping[str, Path], hasher: FileHasher, generated: Mapping[str, str]
) -> str:
    hashed = {rel: hasher(path) for rel, path in sorted(files.items()) if rel != CA_BUNDLE_NAME}
    hashed.update({rel: hashlib.sha256(text.encode("utf-8")).hexdigest() for rel, text in generated.items()})
    canonical = json.dumps({"dockerfile": body, "files": hashed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
