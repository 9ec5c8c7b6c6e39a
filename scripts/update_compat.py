#!/usr/bin/env python3
"""Regenerate envkit's compatibility data (envkit/data/*.csv) from upstream sources.

Usage (from the repository root):

    .venv/bin/python scripts/update_compat.py                      # rewrite envkit/data in place
    .venv/bin/python scripts/update_compat.py --check              # exit 1 if envkit/data has drifted
    .venv/bin/python scripts/update_compat.py --out /tmp/kb \\
        --matrix 2.8=gbbm-v2.8.0.py --build-cuda 2.8=build_cuda-v2.8.0.sh \\
        --release-notes cuda-release-notes.html
    .venv/bin/python scripts/update_compat.py --skip-pypi \\
        --wheel torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl   # pins + arch list from the wheel
    .venv/bin/python scripts/update_compat.py --skip-pypi --registry-mirror https://mirror.example

Where each fact comes from:

1. PyPI, through pip (no wheel is downloaded: PEP 658 metadata, or HTTP range requests):
   ``pip index versions torch`` lists the releases (>= --min-torch); the same query with
   ``--python-version 3.X --only-binary :all: --platform manylinux...`` tells which releases have a
   wheel for each Python minor; ``pip install --dry-run --no-deps --ignore-installed --report`` gives
   each release's metadata, whose ``requires_dist`` pins the PyPI wheel's CUDA runtime, cuDNN and NCCL
   (that is the release's default variant). pip runs with the machine's pip configuration, constraints
   and find-links switched off. Offline, ``--pip-index DIR`` reads saved ``pip index versions`` output
   (``all.txt``, ``py3.X.txt``) and ``--pip-reports DIR`` saved reports (``torch-X.json``);
   ``--skip-pypi`` keeps the current releases and default-variant rows as they are.
2. ``--matrix MINOR=PATH`` (repeatable): a local copy of pytorch/pytorch
   ``.github/scripts/generate_binary_build_matrix.py`` at that release. ``CUDA_ARCHES`` and the
   ``nvidia-cudnn-cuXX`` / ``nvidia-nccl-cuXX`` pins of ``PYTORCH_EXTRA_INSTALL_REQUIREMENTS`` become the
   CUDA variants of every release of that minor.
3. ``--build-cuda MINOR=PATH`` (repeatable): a local copy of ``.ci/manywheel/build_cuda.sh``
   (pytorch/builder ``manywheel/build_cuda.sh`` up to 2.6): the x86_64 wheel's TORCH_CUDA_ARCH_LIST
   per CUDA minor.
4. ``--release-notes PATH``: a local copy of the CUDA Toolkit release notes driver tables (HTML, or a
   text table with ``|`` separators): "CUDA X.Y GA" rows of Table 3 become cuda_drivers.csv and
   "CUDA N.x" rows of Table 2 cuda_minor_compat.csv.

5. ``--wheel FILE`` (repeatable), or ``--download-wheels`` (pip downloads each PyPI release's
   manylinux x86_64 wheel, about 1 GB, one at a time): the wheel itself. Its
   ``*.dist-info/METADATA`` Requires-Dist gives the pins, and NVIDIA's cuobjdump (``--cuobjdump``,
   else PATH, else the ``nvidia-cuda-cuobjdump`` package) run with ``--list-elf`` / ``--list-ptx`` on
   ``torch/lib/libtorch_cuda.so`` gives the arch list; the row's source names the wheel file and the
   files read in it. A wheel's facts win over the PyPI metadata and the build files.
6. ``--cuda-tags FILE`` (a captured tag list, ``{"origin": URL, "captured": "YYYY-MM-DD", "tags":
   [...]}``) or ``--registry-mirror URL`` (the registry's ``/v2/nvidia/cuda/tags/list``, paged, with an
   anonymous token when asked): per CUDA minor its newest patch, its Ubuntu versions and cuDNN tag
   word. End-of-support dates and hand-checked newer patches are carried over.

Everything the given inputs do not cover is carried over, source included, from the current data
(``--base``, default envkit/data): os_python.csv, os_bases.csv, python_builds.csv,
download_sources.csv and defaults.csv are curated by hand, and so are variants for which no matrix
file or wheel was given (variants only on PyTorch's own index stay as their sources say). GitHub is
not reachable from every build machine, hence local copies. Rows are written sorted, so a regeneration
diffs cleanly. The result is loaded with envkit.compat.load_kb before it is written, so inconsistent
output never lands.
"""

from __future__ import annotations

import argparse
import ast
import csv
import difflib
import email.parser
import fnmatch
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from envkit.compat import COLUMNS, DATA_DIR, KnowledgeBaseError, load_kb, version_key  # noqa: E402

PYTHON_CANDIDATES = tuple(f"3.{minor}" for minor in range(8, 17))
LINUX_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
ARCH_MARK = "; arch: "
CPU_SOURCE = "PyTorch wheel index, cpu channel (published for every release)"
# Curated by hand and carried over as they are: facts no upstream file states in a parseable form.
CURATED = ("os_python.csv", "os_bases.csv", "python_builds.csv", "download_sources.csv", "defaults.csv")

Row = dict[str, str]


class UpdateError(Exception):
    """An upstream file could not be parsed, or the inputs do not determine a row."""


# ---------------------------------------------------------------------------------------------
# 1. PyPI through pip


@dataclass(frozen=True, kw_only=True)
class PypiWheel:
    """What a torch release's PyPI wheel metadata pins."""

    version: str
    cuda: str
    cudnn: str
    nccl: str | None


def parse_index_versions(text: str) -> tuple[str, ...]:
    """Versions from ``pip index versions`` output ("Available versions: 2.6.0, 2.5.1, ...")."""
    match = re.search(r"^Available versions:\s*(.+)$", text, re.MULTILINE)
    if not match:
        return ()
    return tuple(v.strip() for v in match.group(1).split(",") if v.strip())


def _pin(requirements: Iterable[str], pattern: str) -> str | None:
    for requirement in requirements:
        spec = requirement.split(";")[0].replace(" ", "").replace("(", "").replace(")", "")
        match = re.fullmatch(pattern + r"==([0-9][0-9.]*)", spec)
        if match:
            return match.group(1)
    return None


def parse_pip_report(report: dict[str, object]) -> PypiWheel:
    """The default variant's pins from a ``pip install --report`` JSON of one torch wheel."""
    try:
        metadata = report["install"][0]["metadata"]  # type: ignore[index]
        version, requires = metadata["version"], metadata.get("requires_dist", [])
    except (KeyError, IndexError, TypeError) as error:
        raise UpdateError(f"pip report has no install[0].metadata: {error}") from None
    runtime = _pin(requires, r"nvidia-cuda-runtime(?:-cu\d+)?") or _pin(
        requires, r"cuda-toolkit(?:\[[^\]]*\])?"
    )
    cudnn = _pin(requires, r"nvidia-cudnn-cu\d+")
    if runtime is None or cudnn is None:
        raise UpdateError(f"torch {version}: metadata pins no CUDA runtime / cuDNN (a CPU-only wheel?)")
    major, minor = version_key(runtime)[:2]
    return PypiWheel(
        version=version, cuda=f"{major}.{minor}", cudnn=cudnn, nccl=_pin(requires, r"nvidia-nccl-cu\d+")
    )


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    # This machine's pip config may cap torch or add a local wheel folder; neither is PyPI's truth.
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CONSTRAINT="", PIP_FIND_LINKS="", PIP_NO_INDEX="")
    env.pop("PIP_NO_INDEX")
    return env


def _pip(args: Sequence[str]) -> str:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=_pip_env(), check=False)
    if result.returncode != 0:
        raise UpdateError(f"{' '.join(command)} failed:\n{result.stderr.strip()[-2000:]}")
    return result.stdout


class LivePypi:
    """Asks PyPI through pip."""

    def versions(self, python: str | None) -> tuple[str, ...]:
        args = ["index", "versions", "torch"]
        if python:
            args += ["--python-version", python, "--only-binary", ":all:", "--implementation", "cp"]
            for platform in LINUX_PLATFORMS:
                args += ["--platform", platform]
        try:
            return parse_index_versions(_pip(args))
        except UpdateError:
            if python:  # no wheel at all for that Python is an error exit of pip
                return ()
            raise

    def report(self, version: str) -> dict[str, object]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            _pip(
                [
                    "install",
                    "--dry-run",
                    "--no-deps",
                    "--ignore-installed",
                    "--no-cache-dir",
                    "--only-binary",
                    ":all:",
                    "--use-feature=fast-deps",
                    "--report",
                    str(out),
                    f"torch=={version}",
                ]
            )
            return json.loads(out.read_text())


class SavedPypi:
    """Reads saved pip output: DIR/all.txt, DIR/py3.X.txt and REPORTS/torch-X.json."""

    def __init__(self, index_dir: Path, reports_dir: Path) -> None:
        self.index_dir, self.reports_dir = index_dir, reports_dir

    def versions(self, python: str | None) -> tuple[str, ...]:
        path = self.index_dir / (f"py{python}.txt" if python else "all.txt")
        return parse_index_versions(path.read_text()) if path.exists() else ()

    def report(self, version: str) -> dict[str, object]:
        path = self.reports_dir / f"torch-{version}.json"
        try:
            return json.loads(path.read_text())
        except OSError as error:
            raise UpdateError(f"no saved pip report for torch {version}: {error}") from None


@dataclass(frozen=True, kw_only=True)
class PypiRelease:
    """One torch release as PyPI shows it."""

    version: str
    pythons: tuple[str, ...]
    wheel: PypiWheel


def query_pypi(pypi: LivePypi | SavedPypi, min_torch: str) -> tuple[PypiRelease, ...]:
    """Every final torch release >= min_torch with its Python minors and default-variant pins."""
    floor = version_key(min_torch)
    releases = [v for v in pypi.versions(None) if re.fullmatch(r"\d+\.\d+\.\d+", v)]
    releases = [v for v in releases if version_key(v) >= floor]
    per_python = {python: set(pypi.versions(python)) for python in PYTHON_CANDIDATES}
    found = []
    for version in sorted(releases, key=version_key):
        pythons = tuple(p for p in PYTHON_CANDIDATES if version in per_python[p])
        if not pythons:
            raise UpdateError(f"torch {version}: no Python minor has a Linux x86_64 wheel")
        found.append(
            PypiRelease(version=version, pythons=pythons, wheel=parse_pip_report(pypi.report(version)))
        )
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# 2. generate_binary_build_matrix.py


@dataclass(frozen=True, kw_only=True)
class MatrixArch:
    """One CUDA arch of a release's binary build matrix and its wheel pins."""

    cuda: str
    cudnn: str
    nccl: str | None


def _module_constants(text: str, names: set[str]) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in ast.parse(text).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in names and node.value is not None:  # type: ignore[attr-defined]
            try:
                found[target.id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            except ValueError:
                raise UpdateError(f"{target.id} is not a literal; update the parser") from None
    return found


def parse_build_matrix(text: str) -> tuple[MatrixArch, ...]:
    """CUDA arches of a generate_binary_build_matrix.py with their cuDNN / NCCL wheel pins."""
    constants = _module_constants(text, {"CUDA_ARCHES", "PYTORCH_EXTRA_INSTALL_REQUIREMENTS"})
    arches, requirements = constants.get("CUDA_ARCHES"), constants.get("PYTORCH_EXTRA_INSTALL_REQUIREMENTS")
    if not isinstance(arches, list) or not isinstance(requirements, dict):
        raise UpdateError("CUDA_ARCHES or PYTORCH_EXTRA_INSTALL_REQUIREMENTS not found")
    found = []
    for cuda in arches:
        pins = [part.strip() for part in str(requirements.get(cuda, "")).split("|")]
        cudnn = _pin(pins, r"nvidia-cudnn-cu\d+")
        if cudnn is None:
            raise UpdateError(f"no nvidia-cudnn pin for CUDA {cuda} in PYTORCH_EXTRA_INSTALL_REQUIREMENTS")
        found.append(MatrixArch(cuda=cuda, cudnn=cudnn, nccl=_pin(pins, r"nvidia-nccl-cu\d+")))
    return tuple(sorted(found, key=lambda a: version_key(a.cuda)))


# ---------------------------------------------------------------------------------------------
# 3. build_cuda.sh

_ASSIGN = re.compile(r'^\s*TORCH_CUDA_ARCH_LIST="(.*)"\s*$')
_X86_CHOICE = re.compile(r'\$\(\[\[ "\$ARCH" == "aarch64" \]\] && echo "[^"]*" \|\| echo "([^"]*)"\)')
_REMOVE = re.compile(r"\$\{TORCH_CUDA_ARCH_LIST//([^/}]*)/\}")
_BRANCH = re.compile(r"^\s*([0-9][0-9.\[\]|]*)\)\s*(.*)$")
# Conditions under which the x86_64 wheel build takes the else branch.
_NON_WHEEL_CONDITION = re.compile(r"aarch64|libtorch")


def _expand(value: str, current: str | None) -> str:
    value = _X86_CHOICE.sub(lambda m: m.group(1), value)
    if "${TORCH_CUDA_ARCH_LIST" in value and current is None:
        raise UpdateError("TORCH_CUDA_ARCH_LIST extends a base list that is not defined")
    value = _REMOVE.sub(lambda m: (current or "").replace(m.group(1), ""), value)
    value = value.replace("${TORCH_CUDA_ARCH_LIST}", current or "")
    if "$" in value or "`" in value:
        raise UpdateError(f"unsupported shell expression in TORCH_CUDA_ARCH_LIST={value!r}")
    return value


def _normalise_arch(value: str) -> tuple[str, ...]:
    entries = {e.strip() for e in value.split(";") if e.strip()}
    for entry in entries:
        if not re.fullmatch(r"\d+\.\d+(\+PTX)?", entry):
            raise UpdateError(f"unexpected arch entry {entry!r}")
    return tuple(sorted(entries, key=lambda e: version_key(e.removesuffix("+PTX"))))


def _branch_assignments(lines: list[str], base: str | None) -> str | None:
    value, stack = base, []  # stack of (takes_this_branch_for_x86) per open if
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("if "):
            if not _NON_WHEEL_CONDITION.search(stripped):
                raise UpdateError(f"unsupported condition in a CUDA branch: {stripped!r}")
            stack.append(False)
        elif stripped.startswith("elif "):
            raise UpdateError(f"unsupported elif in a CUDA branch: {stripped!r}")
        elif stripped == "else" and stack:
            stack[-1] = True
        elif stripped == "fi" and stack:
            stack.pop()
        else:
            match = _ASSIGN.match(line)
            if match and all(stack):
                value = _expand(match.group(1), value)
    return value


def parse_build_cuda(text: str) -> dict[str, tuple[str, ...]]:
    """Case pattern ("12.8", "11.[67]") -> sorted TORCH_CUDA_ARCH_LIST of the x86_64 wheel build."""
    head, sep, rest = text.partition("case ${CUDA_VERSION} in")
    if not sep:
        raise UpdateError("no 'case ${CUDA_VERSION} in' block")
    base = None
    for line in head.splitlines():
        match = _ASSIGN.match(line)
        if match:
            base = _expand(match.group(1), base)
    body = rest.split("\nesac", 1)[0]
    branches: dict[str, tuple[str, ...]] = {}
    pattern, lines = None, []
    for line in body.splitlines():
        if pattern is None:
            match = _BRANCH.match(line)
            if not match:
                continue
            pattern, tail = match.group(1), match.group(2)
            lines = [tail.split(";;")[0]] if tail else []
            if ";;" not in tail:
                continue
        elif ";;" not in line.split("#")[0]:
            lines.append(line)
            continue
        value = _branch_assignments(lines, base)
        if value:
            branches[pattern] = _normalise_arch(value)
        pattern = None
    if pattern is not None:
        raise UpdateError(f"case branch {pattern!r} is not terminated with ';;'")
    return branches


def arch_for(branches: dict[str, tuple[str, ...]], cuda: str) -> tuple[str, ...] | None:
    """The arch list build_cuda.sh gives a CUDA minor, matching glob patterns like 11.[67]."""
    for pattern, arch in branches.items():
        if any(fnmatch.fnmatchcase(cuda, p) for p in pattern.split("|")):
            return arch
    return None


# ---------------------------------------------------------------------------------------------
# 4. CUDA release notes driver tables


class _TableRows(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_rows(text: str) -> list[list[str]]:
    if "<tr" in text.lower():
        parser = _TableRows()
        parser.feed(text)
        return parser.rows
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()]


def _driver(cell: str) -> str | None:
    match = re.search(r"(\d+(?:\.\d+)*)", cell.replace(">=", " ").replace("≥", " "))
    return match.group(1) if match else None


def parse_release_notes(text: str, min_cuda: str = "11.8") -> tuple[list[Row], list[Row]]:
    """Rows for cuda_drivers.csv (GA driver per CUDA minor) and cuda_minor_compat.csv (per major)."""
    drivers: dict[str, Row] = {}
    compat: dict[str, Row] = {}
    for cells in _table_rows(text):
        if len(cells) < 2:
            continue
        ga = re.fullmatch(r"CUDA (\d+\.\d+)(?:\.\d+)? GA", cells[0])
        major = re.fullmatch(r"CUDA (\d+)\.x", cells[0])
        driver = _driver(cells[1])
        if ga and driver and version_key(ga.group(1)) >= version_key(min_cuda):
            cuda = ga.group(1)
            drivers[cuda] = {
                "cuda": cuda,
                "driver_min": driver,
                "source": f"CUDA Toolkit Release Notes, Table 3: CUDA {cuda} GA, Linux x86_64",
            }
        elif major and driver and int(major.group(1)) >= version_key(min_cuda)[0]:
            m = major.group(1)
            compat[m] = {
                "cuda_major": m,
                "driver_min": driver,
                "source": f"CUDA Toolkit Release Notes, Table 2: CUDA {m}.x minor version "
                "compatibility, Linux x86_64",
            }
    if not drivers:
        raise UpdateError("no 'CUDA X.Y GA' rows found in the release notes")
    return list(drivers.values()), list(compat.values())


# ---------------------------------------------------------------------------------------------
# 5. The wheel itself: Requires-Dist from its METADATA, arch list from its libtorch_cuda.so

WHEEL_LIBRARY = "torch/lib/libtorch_cuda.so"
_CUOBJDUMP_LINE = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(sm|compute)_(\d+)([a-z]?)\.(cubin|ptx)\s*$")


@dataclass(frozen=True, kw_only=True)
class WheelFacts:
    """What one torch wheel file says about itself."""

    wheel: PypiWheel
    arch_list: tuple[str, ...]
    source: str


def parse_cuobjdump(elf_listing: str, ptx_listing: str) -> tuple[str, ...]:
    """TORCH_CUDA_ARCH_LIST notation ("8.0", "12.0+PTX") from ``cuobjdump --list-elf`` / ``--list-ptx``.

    Lines look like ``ELF file    1: libtorch_cuda.1.sm_80.cubin`` and ``PTX file    1: x.1.sm_120.ptx``.
    libtorch_cuda.so holds one fatbin per CUDA source file; the arch list torch was built with is what
    every one of them carries. Archs only some files add (torch 2.13.0: sm_89 in 1 of 449, sm_103 in 59)
    and arch-specific cubins (``sm_90a``) are extra kernels that torch.cuda.get_arch_list() does not
    report, so they are not counted. PTX without a cubin of the same arch cannot be written in that
    notation and is refused.
    """
    cubins = _cuobjdump_archs(elf_listing, "ELF")
    if not cubins:
        raise UpdateError("cuobjdump lists no cubins: not a CUDA build of libtorch_cuda.so?")
    files = max(cubins.values())
    built = {sm for sm, count in cubins.items() if count == files}
    ptx = {sm for sm, count in _cuobjdump_archs(ptx_listing, "PTX").items() if count == files}
    orphans = sorted(ptx - built)
    if orphans:
        raise UpdateError(f"PTX without a cubin for sm_{', sm_'.join(map(str, orphans))}")
    return tuple(f"{sm // 10}.{sm % 10}" + ("+PTX" if sm in ptx else "") for sm in sorted(built))


def _cuobjdump_archs(listing: str, kind: str) -> dict[int, int]:
    """How many embedded files carry each plain arch (``sm_90``, not ``sm_90a``)."""
    counts: dict[int, int] = {}
    for line in listing.splitlines():
        match = _CUOBJDUMP_LINE.match(line.strip())
        if line.strip() and match is None and not line.startswith("cuobjdump info"):
            raise UpdateError(f"unexpected cuobjdump output line: {line.strip()[:120]!r}")
        if match and match.group(1) == kind and not match.group(4):
            sm = int(match.group(3))
            counts[sm] = counts.get(sm, 0) + 1
    return counts


def find_cuobjdump(explicit: Path | None = None) -> Path:
    """cuobjdump: the given path, else on PATH, else from the ``nvidia-cuda-cuobjdump`` package."""
    if explicit is not None:
        return explicit
    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    try:
        import nvidia  # the namespace package that nvidia-cuda-cuobjdump installs into
    except ImportError:
        nvidia = None
    for root in getattr(nvidia, "__path__", ()):
        for candidate in sorted(Path(root).glob("cu*/bin/cuobjdump")):
            return candidate
    raise UpdateError("cuobjdump not found: pip install nvidia-cuda-cuobjdump, or pass --cuobjdump PATH")


def _cuobjdump(tool: Path, flag: str, library: Path) -> str:
    result = subprocess.run([str(tool), flag, str(library)], capture_output=True, text=True, check=False)
    # With nothing of the asked kind, cuobjdump says so on stderr ("cuobjdump info : No PTX file found").
    if result.returncode != 0:
        raise UpdateError(f"cuobjdump {flag} {library.name} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def parse_metadata(text: str) -> PypiWheel:
    """The pins of a wheel's ``METADATA`` file (its ``Requires-Dist`` lines)."""
    message = email.parser.HeaderParser().parsestr(text)
    report: dict[str, object] = {
        "install": [
            {
                "metadata": {
                    "version": message.get("Version", ""),
                    "requires_dist": message.get_all("Requires-Dist") or [],
                }
            }
        ]
    }
    return parse_pip_report(report)


def read_wheel(wheel: Path, cuobjdump: Path) -> WheelFacts:
    """Pins from the wheel's METADATA and the arch list from its libtorch_cuda.so, with the files named."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
        if metadata is None or WHEEL_LIBRARY not in archive.namelist():
            raise UpdateError(f"{wheel.name}: needs a .dist-info/METADATA and {WHEEL_LIBRARY}")
        pins = parse_metadata(archive.read(metadata).decode("utf-8"))
        with tempfile.TemporaryDirectory() as tmp:
            library = Path(archive.extract(WHEEL_LIBRARY, tmp))
            arch = parse_cuobjdump(
                _cuobjdump(cuobjdump, "--list-elf", library), _cuobjdump(cuobjdump, "--list-ptx", library)
            )
    with_ptx = [a.removesuffix("+PTX") for a in arch if a.endswith("+PTX")]
    ptx = f"PTX for {', '.join(with_ptx)}" if with_ptx else "no PTX"
    source = (
        f"PyPI {wheel.name}: {metadata} Requires-Dist; arch: cuobjdump --list-elf/--list-ptx of "
        f"{WHEEL_LIBRARY} in that wheel ({ptx})"
    )
    return WheelFacts(wheel=pins, arch_list=arch, source=source)


def download_wheel(version: str, python: str, folder: Path) -> Path:
    """PyPI's manylinux x86_64 torch wheel of one release (about 1 GB; for maintainers, not tests)."""
    args = [
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--dest",
        str(folder),
        f"torch=={version}",
    ]
    for platform in LINUX_PLATFORMS:
        args += ["--platform", platform]
    _pip(args)
    found = sorted(folder.glob(f"torch-{version}-*.whl"))
    if not found:
        raise UpdateError(f"pip download torch=={version} left no wheel in {folder}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# 6. nvidia/cuda image lines from the registry's tag list

_CUDA_TAG = re.compile(r"(\d+\.\d+\.\d+)-(?:(cudnn\d*)-)?(base|runtime|devel)-ubuntu(\d\d\.\d\d)")


@dataclass(frozen=True, kw_only=True)
class TagList:
    """nvidia/cuda tags and where they were read (a URL or a captured file) and when."""

    tags: tuple[str, ...]
    origin: str
    date: str


def load_tag_capture(path: Path) -> TagList:
    """A captured tag list: ``{"origin": URL, "captured": "YYYY-MM-DD", "tags": [...]}``."""
    try:
        data = json.loads(path.read_text())
        return TagList(tags=tuple(data["tags"]), origin=str(data["origin"]), date=str(data["captured"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UpdateError(f"{path}: not a tag capture with origin, captured and tags ({error})") from None


def fetch_tags(mirror: str, repository: str = "nvidia/cuda") -> TagList:
    """Every tag of ``repository`` from a registry's tag-list API (``/v2/<name>/tags/list``), paged."""
    import datetime

    import requests

    url: str | None = f"{mirror.rstrip('/')}/v2/{repository}/tags/list?n=1000"
    tags: list[str] = []
    session = requests.Session()
    while url:
        response = session.get(url, timeout=60)
        if response.status_code == 401:
            session.headers["Authorization"] = f"Bearer {_anonymous_token(session, response, repository)}"
            response = session.get(url, timeout=60)
        if response.status_code != 200:
            raise UpdateError(f"{url}: HTTP {response.status_code}")
        tags += response.json().get("tags") or []
        url = _next_page(mirror, response.headers.get("Link", ""))
    today = datetime.date.today().isoformat()
    return TagList(tags=tuple(tags), origin=f"{mirror.rstrip('/')}/v2/{repository}/tags/list", date=today)


def _anonymous_token(session: object, response: object, repository: str) -> str:
    challenge = getattr(response, "headers", {}).get("WWW-Authenticate", "")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if "realm" not in fields:
        raise UpdateError(f"registry refused the tag list and offers no token: {challenge!r}")
    params = {"service": fields.get("service", ""), "scope": f"repository:{repository}:pull"}
    reply = session.get(fields["realm"], params=params, timeout=60)  # type: ignore[attr-defined]
    return str(reply.json().get("token") or reply.json().get("access_token") or "")


def _next_page(mirror: str, link: str) -> str | None:
    match = re.search(r"<([^>]+)>;\s*rel=\"?next\"?", link)
    if not match:
        return None
    target = match.group(1)
    return target if target.startswith("http") else mirror.rstrip("/") + target


def image_rows(tag_list: TagList, carried: Sequence[Row]) -> list[Row]:
    """cuda_images.csv rows: per CUDA minor its newest patch, that patch's Ubuntu versions and cuDNN tag.

    A carried row whose patch is newer than the tag list's (a hand-checked newer release) is kept, and
    so is its end-of-support date (NVIDIA states those in prose, not in tags).
    """
    patches: dict[str, dict[str, set[str]]] = {}
    for tag in tag_list.tags:
        match = _CUDA_TAG.fullmatch(tag)
        if match:
            entry = patches.setdefault(match.group(1), {"ubuntu": set(), "cudnn": set()})
            entry["ubuntu"].add(match.group(4))
            if match.group(2):
                entry["cudnn"].add(match.group(2))
    old = {_minor(r["cuda"]): r for r in carried}
    newest: dict[str, str] = {}
    for patch in patches:
        minor = _minor(patch)
        if minor not in newest or version_key(patch) > version_key(newest[minor]):
            newest[minor] = patch
    rows = {minor: dict(row) for minor, row in old.items()}
    source = f"nvidia/cuda tag list: {tag_list.origin} (read {tag_list.date})"
    for minor, patch in newest.items():
        previous = old.get(minor)
        if previous and version_key(previous["cuda"]) > version_key(patch):
            continue
        cudnn = sorted(patches[patch]["cudnn"])
        rows[minor] = {
            "cuda": patch,
            "cudnn_tag": cudnn[-1] if cudnn else (previous or {}).get("cudnn_tag", "cudnn"),
            "ubuntu": " ".join(sorted(patches[patch]["ubuntu"], key=version_key)),
            "eol": (previous or {}).get("eol", ""),
            "source": source,
        }
    return list(rows.values())


# ---------------------------------------------------------------------------------------------
# Assembling the rows


def read_csv(path: Path) -> list[Row]:
    """Rows of one data file (empty when it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _arch_source(source: str) -> str:
    return source.split(ARCH_MARK, 1)[1] if ARCH_MARK in source else source


def _sort_keys() -> dict[str, Callable[[Row], object]]:
    def variant_key(row: Row) -> object:
        return version_key(row["torch"]), version_key(row["cuda"]) if row["cuda"] else (0,)

    return {
        "torch_releases.csv": lambda r: version_key(r["torch"]),
        "torch_variants.csv": variant_key,
        "cuda_drivers.csv": lambda r: version_key(r["cuda"]),
        "cuda_minor_compat.csv": lambda r: int(r["cuda_major"]),
        "cuda_images.csv": lambda r: version_key(r["cuda"]),
        "os_python.csv": lambda r: r["os"],
        "os_bases.csv": lambda r: r["os"],
        "python_builds.csv": lambda r: version_key(r["python"]),
        "download_sources.csv": lambda r: r["name"],
        "defaults.csv": lambda r: r["name"],
    }


def write_csv(path: Path, rows: Iterable[Row]) -> None:
    """Write one data file: fixed header, rows sorted by their natural key, LF line ends."""
    columns = COLUMNS[path.name]
    ordered = sorted(rows, key=_sort_keys()[path.name])  # type: ignore[arg-type]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row.get(c, "") for c in columns] for row in ordered)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything one regeneration reads."""

    base: Path
    pypi: tuple[PypiRelease, ...] | None
    matrices: dict[str, tuple[MatrixArch, ...]]
    build_cuda: dict[str, dict[str, tuple[str, ...]]]
    release_notes: tuple[list[Row], list[Row]] | None
    wheels: dict[str, WheelFacts] = field(default_factory=dict)
    tags: TagList | None = None


def _minor(version: str) -> str:
    major, minor = version_key(version)[:2]
    return f"{major}.{minor}"


def _arch(inputs: Inputs, torch: str, cuda: str, carried: Row | None) -> tuple[str, str]:
    branches = inputs.build_cuda.get(_minor(torch))
    arch = arch_for(branches, cuda) if branches else None
    if arch:
        return ";".join(arch), f"pytorch .ci/manywheel/build_cuda.sh, release {_minor(torch)} (local copy)"
    if carried and carried["arch_list"]:
        return carried["arch_list"], _arch_source(carried["source"])
    raise UpdateError(f"torch {torch} CUDA {cuda}: no arch list; pass --build-cuda {_minor(torch)}=PATH")


def _matrix_rows(inputs: Inputs, torch: str, carried: dict[tuple[str, str], Row]) -> list[Row]:
    rows = []
    for arch in inputs.matrices.get(_minor(torch), ()):
        name = "cu" + arch.cuda.replace(".", "")
        arch_list, arch_src = _arch(inputs, torch, arch.cuda, carried.get((torch, name)))
        source = f"pytorch generate_binary_build_matrix.py, release {_minor(torch)} (local copy)"
        rows.append(
            {
                "torch": torch,
                "variant": name,
                "cuda": arch.cuda,
                "cudnn": arch.cudnn,
                "nccl": arch.nccl or "",
                "arch_list": arch_list,
                "source": source + ARCH_MARK + arch_src,
            }
        )
    return rows


def _wheel_row(facts: WheelFacts) -> Row:
    wheel = facts.wheel
    return {
        "torch": wheel.version,
        "variant": "cu" + wheel.cuda.replace(".", ""),
        "cuda": wheel.cuda,
        "cudnn": wheel.cudnn,
        "nccl": wheel.nccl or "",
        "arch_list": ";".join(facts.arch_list),
        "source": facts.source,
    }


def _read_from_wheel(row: Row) -> bool:
    return row["source"].startswith(f"PyPI torch-{row['torch']}-") and "cuobjdump" in row["source"]


def _same_pins(row: Row, wheel: PypiWheel) -> bool:
    return (row["cuda"], row["cudnn"], row["nccl"]) == (wheel.cuda, wheel.cudnn, wheel.nccl or "")


def _default_row(inputs: Inputs, release: PypiRelease, carried: dict[tuple[str, str], Row]) -> Row:
    if release.version in inputs.wheels:
        return _wheel_row(inputs.wheels[release.version])
    wheel = release.wheel
    name = "cu" + wheel.cuda.replace(".", "")
    previous = carried.get((wheel.version, name))
    if previous and _read_from_wheel(previous) and _same_pins(previous, wheel):
        return previous  # a row read from the wheel itself says more than the index's metadata
    arch_list, arch_src = _arch(inputs, wheel.version, wheel.cuda, previous)
    return {
        "torch": wheel.version,
        "variant": name,
        "cuda": wheel.cuda,
        "cudnn": wheel.cudnn,
        "nccl": wheel.nccl or "",
        "arch_list": arch_list,
        "source": f"PyPI torch=={wheel.version} wheel metadata (METADATA Requires-Dist){ARCH_MARK}{arch_src}",
    }


def _release_row(release: PypiRelease) -> Row:
    return {
        "torch": release.version,
        "python": " ".join(release.pythons),
        "default_variant": "cu" + release.wheel.cuda.replace(".", ""),
        "source": f"PyPI torch=={release.version}: wheel tags per Python (pip index versions) "
        "and metadata (pip install --report)",
    }


def build_releases_and_variants(inputs: Inputs) -> tuple[list[Row], list[Row]]:
    """Rows of torch_releases.csv and torch_variants.csv."""
    old_releases = read_csv(inputs.base / "torch_releases.csv")
    carried = {(r["torch"], r["variant"]): r for r in read_csv(inputs.base / "torch_variants.csv")}
    if inputs.pypi is None:
        releases = old_releases
        defaults: dict[str, Row] = {}
    else:
        releases = [_release_row(r) for r in inputs.pypi]
        defaults = {r.version: _default_row(inputs, r, carried) for r in inputs.pypi}
    variants: dict[tuple[str, str], Row] = {}
    for release in releases:
        torch = release["torch"]
        for key, row in carried.items():
            if key[0] == torch:
                variants[key] = row
        variants.setdefault(
            (torch, "cpu"),
            {
                "torch": torch,
                "variant": "cpu",
                "cuda": "",
                "cudnn": "",
                "nccl": "",
                "arch_list": "",
                "source": CPU_SOURCE,
            },
        )
        for row in _matrix_rows(inputs, torch, carried):
            variants[(torch, row["variant"])] = row
        if torch in defaults:
            variants[(torch, defaults[torch]["variant"])] = defaults[torch]
        elif torch in inputs.wheels:
            row = _wheel_row(inputs.wheels[torch])
            variants[(torch, row["variant"])] = row
    return releases, list(variants.values())


def regenerate(inputs: Inputs, out: Path) -> None:
    """Write every data file into ``out`` and check that the result loads cleanly."""
    out.mkdir(parents=True, exist_ok=True)
    releases, variants = build_releases_and_variants(inputs)
    write_csv(out / "torch_releases.csv", releases)
    write_csv(out / "torch_variants.csv", variants)
    if inputs.release_notes is not None:
        drivers, compat = inputs.release_notes
    else:
        drivers = read_csv(inputs.base / "cuda_drivers.csv")
        compat = read_csv(inputs.base / "cuda_minor_compat.csv")
    write_csv(out / "cuda_drivers.csv", drivers)
    write_csv(out / "cuda_minor_compat.csv", compat)
    images = read_csv(inputs.base / "cuda_images.csv")
    write_csv(out / "cuda_images.csv", image_rows(inputs.tags, images) if inputs.tags else images)
    for name in CURATED:
        write_csv(out / name, read_csv(inputs.base / name))
    load_kb(out)


def diff_dirs(expected: Path, actual: Path) -> list[str]:
    """Unified diff lines between the data files of two folders (empty when identical)."""
    lines: list[str] = []
    for name in COLUMNS:
        old = (actual / name).read_text().splitlines(keepends=True) if (actual / name).exists() else []
        new = (expected / name).read_text().splitlines(keepends=True)
        lines += difflib.unified_diff(old, new, f"data/{name}", f"regenerated/{name}")
    return lines


# ---------------------------------------------------------------------------------------------
# Command line


def _pairs(values: Sequence[str], flag: str) -> dict[str, Path]:
    pairs = {}
    for value in values:
        minor, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"\d+\.\d+", minor):
            raise UpdateError(f"{flag} wants MINOR=PATH (e.g. 2.8=build_cuda.sh), got {value!r}")
        pairs[minor] = Path(path)
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, default=DATA_DIR, help="data to carry over (envkit/data)")
    parser.add_argument("--out", type=Path, help="write here instead of over --base")
    parser.add_argument("--check", action="store_true", help="regenerate into a temp dir; exit 1 on drift")
    parser.add_argument("--min-torch", default="2.4.0")
    parser.add_argument("--skip-pypi", action="store_true", help="keep releases and defaults as they are")
    parser.add_argument("--pip-index", type=Path, help="saved pip index output: all.txt, py3.X.txt")
    parser.add_argument("--pip-reports", type=Path, help="saved pip --report files: torch-X.json")
    parser.add_argument("--matrix", action="append", default=[], metavar="MINOR=PATH")
    parser.add_argument("--build-cuda", action="append", default=[], metavar="MINOR=PATH")
    parser.add_argument("--release-notes", type=Path)
    parser.add_argument(
        "--wheel",
        action="append",
        default=[],
        type=Path,
        metavar="WHEEL",
        help="a PyPI torch wheel file: its METADATA pins and libtorch_cuda.so arch list",
    )
    parser.add_argument(
        "--download-wheels",
        action="store_true",
        help="pip download each PyPI release's wheel (about 1 GB each, one at a time)",
    )
    parser.add_argument(
        "--cuobjdump", type=Path, help="cuobjdump (default: PATH, then the nvidia-cuda-cuobjdump package)"
    )
    tags = parser.add_mutually_exclusive_group()
    tags.add_argument(
        "--cuda-tags",
        type=Path,
        metavar="FILE",
        help='captured nvidia/cuda tag list: {"origin": URL, "captured": DATE, "tags": [...]}',
    )
    tags.add_argument(
        "--registry-mirror",
        metavar="URL",
        help="registry (or pull-through mirror) whose /v2/nvidia/cuda/tags/list to read",
    )
    return parser


def _wheels(args: argparse.Namespace, pypi: tuple[PypiRelease, ...] | None) -> dict[str, WheelFacts]:
    if not args.wheel and not args.download_wheels:
        return {}
    tool = find_cuobjdump(args.cuobjdump)
    facts = {}
    for path in args.wheel:
        read = read_wheel(path, tool)
        facts[read.wheel.version] = read
    if args.download_wheels and pypi is None:
        raise UpdateError("--download-wheels needs PyPI's release list: drop --skip-pypi")
    for release in (pypi or ()) if args.download_wheels else ():
        if release.version in facts:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            wheel = download_wheel(release.version, release.pythons[-1], Path(tmp))
            facts[release.version] = read_wheel(wheel, tool)
    return facts


def _inputs(args: argparse.Namespace) -> Inputs:
    pypi: tuple[PypiRelease, ...] | None = None
    if not args.skip_pypi:
        if args.pip_index or args.pip_reports:
            source: LivePypi | SavedPypi = SavedPypi(
                args.pip_index or args.pip_reports, args.pip_reports or args.pip_index
            )
        else:
            source = LivePypi()
        pypi = query_pypi(source, args.min_torch)
    notes = parse_release_notes(args.release_notes.read_text()) if args.release_notes else None
    tags = None
    if args.cuda_tags:
        tags = load_tag_capture(args.cuda_tags)
    elif args.registry_mirror:
        tags = fetch_tags(args.registry_mirror)
    return Inputs(
        base=args.base,
        pypi=pypi,
        matrices={m: parse_build_matrix(p.read_text()) for m, p in _pairs(args.matrix, "--matrix").items()},
        build_cuda={
            m: parse_build_cuda(p.read_text()) for m, p in _pairs(args.build_cuda, "--build-cuda").items()
        },
        release_notes=notes,
        wheels=_wheels(args, pypi),
        tags=tags,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; 0 on success, 1 on drift under --check, 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        inputs = _inputs(args)
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                regenerate(inputs, Path(tmp))
                drift = diff_dirs(Path(tmp), args.base)
            sys.stdout.writelines(drift)
            print("compat data is up to date" if not drift else "compat data has drifted", file=sys.stderr)
            return 1 if drift else 0
        out = args.out or args.base
        with tempfile.TemporaryDirectory() as tmp:
            regenerate(inputs, Path(tmp))
            out.mkdir(parents=True, exist_ok=True)
            for name in COLUMNS:
                shutil.copyfile(Path(tmp) / name, out / name)
        print(f"wrote {len(COLUMNS)} files to {out}", file=sys.stderr)
        return 0
    except (UpdateError, KnowledgeBaseError, OSError) as error:
        print(f"update_compat: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
