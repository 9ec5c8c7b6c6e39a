"""scripts/update_compat.py, run offline against local copies of the upstream files."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
import urllib.parse
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from envkit.compat import COLUMNS, DATA_DIR, load_kb

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "compat"
PYPI = FIXTURES / "pypi"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_compat", ROOT / "scripts" / "update_compat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["update_compat"] = module
    spec.loader.exec_module(module)
    return module


uc = _load_script()


def _copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "base"
    target.mkdir()
    for name in COLUMNS:
        shutil.copyfile(DATA_DIR / name, target / name)
    return target


# --- PyPI through pip -----------------------------------------------------------------------------


def test_parse_index_versions() -> None:
    text = "torch (2.15.0)\nAvailable versions: 2.15.0, 2.14.1, 2.4.0\n  INSTALLED: 2.13.0+cpu\n"
    assert uc.parse_index_versions(text) == ("2.15.0", "2.14.1", "2.4.0")
    assert uc.parse_index_versions("ERROR: No matching distribution found for torch") == ()


@pytest.mark.parametrize(
    ("version", "cuda", "cudnn", "nccl"),
    [
        ("2.4.0", "12.1", "9.1.0.70", "2.20.5"),  # old metadata style: "nvidia-cudnn-cu12 (==9.1.0.70)"
        ("2.6.0", "12.4", "9.1.0.70", "2.21.5"),
        ("2.15.0", "13.2", "9.26.0.51", "2.30.7"),  # CUDA 13: one cuda-toolkit[...]==13.2.2 pin
    ],
)
def test_parse_pip_report(version: str, cuda: str, cudnn: str, nccl: str) -> None:
    wheel = uc.parse_pip_report(json.loads((PYPI / f"torch-{version}.json").read_text()))
    assert (wheel.version, wheel.cuda, wheel.cudnn, wheel.nccl) == (version, cuda, cudnn, nccl)


def test_cpu_only_report_is_refused() -> None:
    report = {"install": [{"metadata": {"version": "2.6.0+cpu", "requires_dist": ["filelock", "sympy"]}}]}
    with pytest.raises(uc.UpdateError, match="no CUDA runtime"):
        uc.parse_pip_report(report)
    with pytest.raises(uc.UpdateError, match="install"):
        uc.parse_pip_report({"install": []})


def test_query_saved_pypi() -> None:
    releases = uc.query_pypi(uc.SavedPypi(PYPI, PYPI), "2.4.0")
    assert [r.version for r in releases] == ["2.4.0", "2.6.0", "2.15.0"]  # 2.3.1 is below the floor
    pythons = {r.version: r.pythons for r in releases}
    assert pythons["2.4.0"] == ("3.8", "3.9", "3.10", "3.11", "3.12")
    assert pythons["2.6.0"] == ("3.9", "3.10", "3.11", "3.12", "3.13")
    assert pythons["2.15.0"] == ("3.11", "3.12", "3.13", "3.14", "3.15")


def test_pip_runs_without_this_machines_pip_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/xdg/pip/constraints.txt")
    monkeypatch.setenv("PIP_FIND_LINKS", "/somewhere/wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    env = uc._pip_env()
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert env["PIP_CONSTRAINT"] == "" and env["PIP_FIND_LINKS"] == ""
    assert "PIP_NO_INDEX" not in env


# --- generate_binary_build_matrix.py ---------------------------------------------------------------


def test_parse_build_matrix_individual_nvidia_packages() -> None:
    arches = uc.parse_build_matrix((FIXTURES / "generate_binary_build_matrix-2.7.py").read_text())
    assert [(a.cuda, a.cudnn, a.nccl) for a in arches] == [
        ("11.8", "9.1.0.70", "2.21.5"),
        ("12.6", "9.5.1.17", "2.25.1"),
        ("12.8", "9.8.0.87", "2.25.1"),
    ]


def test_parse_build_matrix_cuda_toolkit_metapackage() -> None:
    arches = uc.parse_build_matrix((FIXTURES / "generate_binary_build_matrix-2.14.py").read_text())
    assert [(a.cuda, a.cudnn) for a in arches] == [
        ("12.6", "9.10.2.21"),
        ("13.0", "9.24.0.43"),
        ("13.2", "9.24.0.43"),
    ]


def test_parse_build_matrix_errors() -> None:
    with pytest.raises(uc.UpdateError, match="not found"):
        uc.parse_build_matrix('CUDA_ARCHES = ["12.6"]\n')
    with pytest.raises(uc.UpdateError, match="not a literal"):
        uc.parse_build_matrix("CUDA_ARCHES = list_without(ALL, ['12.9'])\n")
    with pytest.raises(uc.UpdateError, match=r"no nvidia-cudnn pin for CUDA 12\.6"):
        uc.parse_build_matrix(
            'CUDA_ARCHES = ["12.6"]\nPYTORCH_EXTRA_INSTALL_REQUIREMENTS = {"12.6": "x==1"}\n'
        )


# --- build_cuda.sh -----------------------------------------------------------------------------------


def test_build_cuda_base_list_and_aarch64_branch() -> None:
    branches = uc.parse_build_cuda((FIXTURES / "build_cuda-2.5.sh").read_text())
    assert branches["12.4"] == ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0+PTX")  # the x86 else branch
    assert branches["11.8"] == ("3.7", "5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0")
    assert uc.arch_for(branches, "11.7") == ("3.7", "5.0", "6.0", "7.0", "7.5", "8.0", "8.6")
    assert uc.arch_for(branches, "12.6") is None


def test_build_cuda_literal_lists_ignore_libtorch_blocks() -> None:
    branches = uc.parse_build_cuda((FIXTURES / "build_cuda-2.8.sh").read_text())
    assert branches == {
        "12.6": ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"),
        "12.8": ("7.0", "7.5", "8.0", "8.6", "9.0", "10.0", "12.0"),
        "12.9": ("7.0", "7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"),
    }


def test_build_cuda_substitutions() -> None:
    branches = uc.parse_build_cuda((FIXTURES / "build_cuda-2.10.sh").read_text())
    assert branches["12.6"][:2] == ("5.0", "6.0") and branches["12.6"][-1] == "9.0"
    assert branches["12.9"][0] == "7.0"  # the libtorch-only removal of 7.0 does not apply to wheels
    assert branches["13.0"] == ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX")  # 11.0 is aarch64-only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('case ${CUDA_VERSION} in\n  12.8) TORCH_CUDA_ARCH_LIST="$(curl x)" ;;\nesac\n', "unsupported shell"),
        (
            'case ${CUDA_VERSION} in\n  12.8) TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST};9.0" ;;\nesac\n',
            "not defined",
        ),
        (
            'case ${CUDA_VERSION} in\n  12.8)\n    if [[ "$X" ]]; then\n      TORCH_CUDA_ARCH_LIST="9.0"\n'
            "    fi\n    ;;\nesac\n",
            "unsupported condition",
        ),
        (
            'case ${CUDA_VERSION} in\n  12.8)\n    TORCH_CUDA_ARCH_LIST="9.0"\n    # ;;\nesac\n',
            "not terminated",
        ),
        ('TORCH_CUDA_ARCH_LIST="9.0"\n', "no 'case"),
        ('case ${CUDA_VERSION} in\n  12.8) TORCH_CUDA_ARCH_LIST="9.0;sm_100" ;;\nesac\n', "unexpected arch"),
    ],
)
def test_build_cuda_refuses_what_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(uc.UpdateError, match=message):
        uc.parse_build_cuda(text)


# --- CUDA release notes -------------------------------------------------------------------------------


def test_parse_release_notes_html() -> None:
    drivers, compat = uc.parse_release_notes((FIXTURES / "cuda-release-notes.html").read_text())
    floors = {row["cuda"]: row["driver_min"] for row in drivers}
    assert floors["12.4"] == "550.54.14"  # the GA row, not "12.4 Update 1"
    assert floors["12.8"] == "570.26"
    assert floors["13.0"] == "580.65.06"
    assert "11.7" not in floors  # below --min-cuda 11.8
    assert {row["cuda_major"]: row["driver_min"] for row in compat} == {
        "13": "580",
        "12": "525.60.13",
        "11": "450.80.02",
    }
    assert all(row["source"].startswith("CUDA Toolkit Release Notes") for row in drivers + compat)


def test_parse_release_notes_text_table() -> None:
    text = "| CUDA 12.8 GA | >=570.26 | >=570.65 |\n| CUDA 12.x | >=525.60.13 | >=528.33 |\n"
    drivers, compat = uc.parse_release_notes(text)
    assert [(r["cuda"], r["driver_min"]) for r in drivers] == [("12.8", "570.26")]
    assert [(r["cuda_major"], r["driver_min"]) for r in compat] == [("12", "525.60.13")]
    with pytest.raises(uc.UpdateError, match="GA"):
        uc.parse_release_notes("<table><tr><td>nothing</td></tr></table>")


# --- regeneration -------------------------------------------------------------------------------------


def test_write_csv_sorts_versions_numerically(tmp_path: Path) -> None:
    rows = [{"cuda": c, "driver_min": "1", "source": "s"} for c in ("13.0", "12.10", "12.9", "11.8")]
    uc.write_csv(tmp_path / "cuda_drivers.csv", rows)
    lines = (tmp_path / "cuda_drivers.csv").read_text().splitlines()
    assert lines == ["cuda,driver_min,source", "11.8,1,s", "12.9,1,s", "12.10,1,s", "13.0,1,s"]


def test_shipped_data_is_what_the_script_writes() -> None:
    notes = str(FIXTURES / "cuda-release-notes.html")
    assert uc.main(["--check", "--skip-pypi", "--release-notes", notes]) == 0


def test_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _copy_data(tmp_path)
    text = (base / "cuda_drivers.csv").read_text().replace("570.26,", "570.99,")
    (base / "cuda_drivers.csv").write_text(text)
    notes = str(FIXTURES / "cuda-release-notes.html")
    assert uc.main(["--check", "--skip-pypi", "--base", str(base), "--release-notes", notes]) == 1
    out = capsys.readouterr().out
    assert "-12.8,570.99," in out and "+12.8,570.26," in out


def test_regenerate_from_saved_pypi_and_local_upstream_files(tmp_path: Path) -> None:
    base, out = _copy_data(tmp_path), tmp_path / "out"
    inputs = uc.Inputs(
        base=base,
        pypi=uc.query_pypi(uc.SavedPypi(PYPI, PYPI), "2.4.0"),
        matrices={
            "2.15": uc.parse_build_matrix((FIXTURES / "generate_binary_build_matrix-2.14.py").read_text())
        },
        build_cuda={"2.15": uc.parse_build_cuda((FIXTURES / "build_cuda-2.10.sh").read_text())},
        release_notes=None,
    )
    uc.regenerate(inputs, out)
    kb = load_kb(out)
    assert kb.known_torch() == ("2.4.0", "2.6.0", "2.15.0")  # PyPI's list decides which releases exist
    newest = kb.torch("2.15.0")
    assert newest is not None and newest.pythons == ("3.11", "3.12", "3.13", "3.14", "3.15")
    assert [v.name for v in newest.cuda_variants()] == ["cu126", "cu130", "cu132"]
    cu132, cu130 = newest.variant("cu132"), newest.variant("cu130")
    assert cu132 is not None and cu130 is not None
    # PyPI's metadata wins over the matrix file for the default variant; it agrees with the row read
    # from the wheel itself, which is kept (pins from its METADATA, arch list from cuobjdump).
    assert (cu132.cudnn, cu132.nccl) == ("9.26.0.51", "2.30.7")
    assert cu132.source.startswith("PyPI torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl: ")
    assert cu132.arch_list[-1] == "12.0" and cu132.evidence == "wheel"
    assert cu130.cudnn == "9.24.0.43" and "generate_binary_build_matrix.py, release 2.15" in cu130.source
    assert cu130.arch_list == ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX")
    assert "build_cuda.sh, release 2.15" in cu130.source
    old = kb.torch("2.6.0")
    assert old is not None and old.variant("cu118") is not None  # curated rows are carried over
    assert old.variant("cu126").cudnn == "9.5.1.17"  # type: ignore[union-attr]


def test_metadata_that_disagrees_with_a_wheel_read_row_replaces_it(tmp_path: Path) -> None:
    base = _copy_data(tmp_path)
    variants = base / "torch_variants.csv"
    variants.write_text(
        variants.read_text().replace("2.15.0,cu132,13.2,9.26.0.51", "2.15.0,cu132,13.2,9.25.0.1")
    )
    pypi = uc.query_pypi(uc.SavedPypi(PYPI, PYPI), "2.4.0")
    uc.regenerate(
        uc.Inputs(base=base, pypi=pypi, matrices={}, build_cuda={}, release_notes=None), tmp_path / "o"
    )
    cu132 = load_kb(tmp_path / "o").torch("2.15.0").variant("cu132")  # type: ignore[union-attr]
    assert cu132 is not None and cu132.cudnn == "9.26.0.51"
    assert cu132.source.startswith("PyPI torch==2.15.0 wheel metadata") and "cuobjdump" in cu132.source


def test_regeneration_is_idempotent(tmp_path: Path) -> None:
    base, first, second = _copy_data(tmp_path), tmp_path / "one", tmp_path / "two"
    pypi = uc.query_pypi(uc.SavedPypi(PYPI, PYPI), "2.4.0")
    uc.regenerate(uc.Inputs(base=base, pypi=pypi, matrices={}, build_cuda={}, release_notes=None), first)
    uc.regenerate(uc.Inputs(base=first, pypi=pypi, matrices={}, build_cuda={}, release_notes=None), second)
    assert uc.diff_dirs(second, first) == []
    # The saved reports reproduce the shipped default-variant rows exactly.
    shipped = (base / "torch_variants.csv").read_text().splitlines()
    for line in (first / "torch_variants.csv").read_text().splitlines():
        assert line in shipped


def test_missing_arch_list_is_an_error(tmp_path: Path) -> None:
    base = _copy_data(tmp_path)
    variants = base / "torch_variants.csv"
    variants.write_text(
        "\n".join(line for line in variants.read_text().splitlines() if not line.startswith("2.15.0,cu132"))
        + "\n"
    )
    pypi = uc.query_pypi(uc.SavedPypi(PYPI, PYPI), "2.4.0")
    inputs = uc.Inputs(base=base, pypi=pypi, matrices={}, build_cuda={}, release_notes=None)
    with pytest.raises(uc.UpdateError, match=r"--build-cuda 2\.15=PATH"):
        uc.regenerate(inputs, tmp_path / "out")


def test_main_writes_out_dir_offline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        "--base",
        str(_copy_data(tmp_path)),
        "--out",
        str(out),
        "--pip-index",
        str(PYPI),
        "--pip-reports",
        str(PYPI),
        "--build-cuda",
        "2.8=" + str(FIXTURES / "build_cuda-2.8.sh"),
    ]
    assert uc.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(COLUMNS)
    assert load_kb(out).known_torch() == ("2.4.0", "2.6.0", "2.15.0")


def test_main_bad_pair_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert uc.main(["--skip-pypi", "--check", "--matrix", "two=file.py"]) == 2
    assert "MINOR=PATH" in capsys.readouterr().err


# --- the wheel itself: METADATA pins and cuobjdump's arch list ---------------------------------------

CUOBJDUMP = FIXTURES / "cuobjdump"
METADATA_2_15 = """Metadata-Version: 2.4
Name: torch
Version: 2.15.0
Requires-Dist: filelock
Requires-Dist: cuda-toolkit[cublas,cudart]==13.2.2; platform_system == "Linux"
Requires-Dist: nvidia-cudnn-cu13==9.26.0.51; platform_system == "Linux"
Requires-Dist: nvidia-nccl-cu13==2.30.7; platform_system == "Linux"

A long description that is not a header.
"""


def _cuobjdump() -> Path:
    try:
        return uc.find_cuobjdump()
    except uc.UpdateError:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")


def _wheel(
    tmp_path: Path, library: Path, name: str = "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
) -> Path:
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch-2.15.0.dist-info/METADATA", METADATA_2_15)
        archive.write(library, uc.WHEEL_LIBRARY)
    return wheel


def test_parse_cuobjdump_reads_the_tools_real_output() -> None:
    elf, ptx = (CUOBJDUMP / "list-elf.txt").read_text(), (CUOBJDUMP / "list-ptx.txt").read_text()
    assert uc.parse_cuobjdump(elf, ptx) == ("7.5", "12.0+PTX")
    assert uc.parse_cuobjdump(elf, "") == ("7.5", "12.0")


def test_parse_cuobjdump_on_the_real_listing_of_torch_2_13_0() -> None:
    # cuobjdump 13.5 --list-elf of torch/lib/libtorch_cuda.so in PyPI's
    # torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (its --list-ptx printed nothing).
    listing = gzip.decompress((CUOBJDUMP / "torch-2.13.0-cp311-list-elf.txt.gz").read_bytes()).decode()
    assert len(listing.splitlines()) == 2819 and "sm_103.cubin" in listing and "sm_89.cubin" in listing
    assert uc.parse_cuobjdump(listing, "") == ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0")


def test_parse_cuobjdump_keeps_archs_every_file_carries() -> None:
    files = [("75", "90"), ("75", "90", "90a"), ("75", "90", "103"), ("75", "90")]
    elf = "\n".join(
        f"ELF file {i:4}: libtorch_cuda.{i}.sm_{sm}.cubin"
        for i, archs in enumerate(files, start=1)
        for sm in archs
    )
    ptx = "\n".join(f"PTX file {i:4}: libtorch_cuda.{i}.sm_90.ptx" for i in range(1, 5))
    assert uc.parse_cuobjdump(elf, "") == ("7.5", "9.0")
    assert uc.parse_cuobjdump(elf, ptx) == ("7.5", "9.0+PTX")
    assert uc.parse_cuobjdump(elf, ptx.split("\n")[0]) == ("7.5", "9.0")  # PTX in one file only


@pytest.mark.parametrize(
    ("elf", "ptx", "error"),
    [
        ("", "", "no cubins"),
        ("ELF file    1: x.1.sm_80.cubin", "PTX file    1: x.1.sm_90.ptx", "PTX without a cubin for sm_90"),
        ("Fatbin elf code:\n================", "", "unexpected cuobjdump output"),
    ],
)
def test_parse_cuobjdump_refuses_what_the_notation_cannot_say(elf: str, ptx: str, error: str) -> None:
    with pytest.raises(uc.UpdateError, match=error):
        uc.parse_cuobjdump(elf, ptx)


def test_parse_metadata_reads_requires_dist() -> None:
    wheel = uc.parse_metadata(METADATA_2_15)
    assert (wheel.version, wheel.cuda, wheel.cudnn, wheel.nccl) == ("2.15.0", "13.2", "9.26.0.51", "2.30.7")


@pytest.mark.parametrize(
    ("library", "arch"),
    [
        ("libtorch_cuda-noptx.so", ("7.5", "12.0")),
        ("libtorch_cuda-ptx.so", ("7.5", "12.0+PTX")),
    ],
)
def test_read_wheel_runs_cuobjdump_on_the_wheels_library(
    tmp_path: Path, library: str, arch: tuple[str, ...]
) -> None:
    facts = uc.read_wheel(_wheel(tmp_path, CUOBJDUMP / library), _cuobjdump())
    assert facts.arch_list == arch
    assert (facts.wheel.cuda, facts.wheel.cudnn) == ("13.2", "9.26.0.51")
    # The source names exactly which files were read.
    assert facts.source.startswith(
        "PyPI torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl: "
        "torch-2.15.0.dist-info/METADATA Requires-Dist; arch: cuobjdump"
    )
    assert "torch/lib/libtorch_cuda.so in that wheel" in facts.source
    assert ("no PTX" in facts.source) == (library == "libtorch_cuda-noptx.so")


def test_read_wheel_without_the_library_is_an_error(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch-2.15.0.dist-info/METADATA", METADATA_2_15)
    with pytest.raises(uc.UpdateError, match=r"libtorch_cuda\.so"):
        uc.read_wheel(wheel, Path("cuobjdump"))


def test_main_with_a_wheel_writes_the_row_read_from_it(tmp_path: Path) -> None:
    _cuobjdump()
    wheel = _wheel(tmp_path, CUOBJDUMP / "libtorch_cuda-ptx.so")
    out = tmp_path / "out"
    assert (
        uc.main(
            ["--skip-pypi", "--base", str(_copy_data(tmp_path)), "--out", str(out), "--wheel", str(wheel)]
        )
        == 0
    )
    variant = load_kb(out).torch("2.15.0").variant("cu132")  # type: ignore[union-attr]
    assert variant is not None and variant.arch_list == ("7.5", "12.0+PTX")
    assert variant.evidence == "wheel" and wheel.name in variant.source


# --- nvidia/cuda tag list ---------------------------------------------------------------------------

TAGS = (
    "12.9.1-base-ubuntu24.04",
    "12.9.2-base-ubuntu20.04",
    "12.9.2-cudnn-devel-ubuntu22.04",
    "12.9.2-runtime-ubuntu24.04",
    "13.0.3-devel-ubuntu22.04",
    "13.0.3-cudnn-runtime-ubuntu24.04",
    "13.3.0-base-ubuntu22.04",
    "13.3.0-base-ubuntu24.04",
    "13.5.0-base-ubuntu26.04",
    "13.5.0-base-ubi9",
    "12.9.2-devel-ubuntu22.04-rc",
    "latest",
)


def _capture(tmp_path: Path) -> Path:
    path = tmp_path / "tags.json"
    path.write_text(
        json.dumps(
            {
                "origin": "https://registry.example/v2/nvidia/cuda/tags/list",
                "captured": "2026-11-30",
                "tags": list(TAGS),
            }
        )
    )
    return path


def test_image_rows_take_each_lines_newest_patch(tmp_path: Path) -> None:
    carried = uc.read_csv(DATA_DIR / "cuda_images.csv")
    rows = {r["cuda"]: r for r in uc.image_rows(uc.load_tag_capture(_capture(tmp_path)), carried)}
    assert rows["12.9.2"]["ubuntu"] == "20.04 22.04 24.04" and "12.9.1" not in rows
    assert rows["13.0.3"]["ubuntu"] == "22.04 24.04" and rows["13.0.3"]["cudnn_tag"] == "cudnn"
    assert rows["13.5.0"]["ubuntu"] == "26.04"  # a new line; ubi9 tags are not Ubuntu
    assert "registry.example" in rows["13.5.0"]["source"] and "2026-11-30" in rows["13.5.0"]["source"]
    # A carried row newer than the tag list (checked by hand) stays, and so do stated end-of-support dates.
    assert "13.3.1" in rows and "13.3.0" not in rows
    assert rows["11.8.0"]["eol"] == "2025-08"


def test_main_reads_a_captured_tag_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--check", "--skip-pypi", "--cuda-tags", str(_capture(tmp_path))]
    assert uc.main(argv) == 1  # the capture moves 13.5 in: drift against the shipped data
    assert "+13.5.0,cudnn,26.04,," in capsys.readouterr().out


def test_a_capture_without_origin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    path.write_text(json.dumps({"tags": list(TAGS)}))
    with pytest.raises(uc.UpdateError, match="origin"):
        uc.load_tag_capture(path)


class _Registry(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for a registry's tag-list API: bearer token first, then two pages."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            self._send(200, {"token": "t0ken"})
        elif self.headers.get("Authorization") != "Bearer t0ken":
            realm = f"http://{self.headers['Host']}/token"
            self._send(401, {}, {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'})
        elif "last=" not in url.query:
            self._send(
                200,
                {"name": "nvidia/cuda", "tags": list(TAGS[:6])},
                {"Link": '</v2/nvidia/cuda/tags/list?n=1000&last=x>; rel="next"'},
            )
        else:
            self._send(200, {"name": "nvidia/cuda", "tags": list(TAGS[6:])})

    def _send(self, code: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_fetch_tags_pages_through_a_registrys_tag_list_with_an_anonymous_token() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}"
        tags = uc.fetch_tags(mirror)
    finally:
        server.shutdown()
        server.server_close()
    assert tags.tags == TAGS and tags.origin == f"{mirror}/v2/nvidia/cuda/tags/list"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", tags.date)


def test_download_wheels_without_pypi_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    _cuobjdump()
    assert uc.main(["--skip-pypi", "--check", "--download-wheels"]) == 2
    assert "drop --skip-pypi" in capsys.readouterr().err
