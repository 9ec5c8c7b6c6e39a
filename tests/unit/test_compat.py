"""The compatibility knowledge base: shipped data, validation rules, queries and `envkit compat`."""

from __future__ import annotations

import csv
import datetime
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit import compat
from envkit.cli import main
from envkit.compat import (
    COLUMNS,
    DATA_DIR,
    KnowledgeBaseError,
    load_kb,
    split_local,
    variant_for_cuda,
    version_key,
)
from envkit.errors import ConfigError

# `pip index versions torch` on 2026-11-27, releases >= 2.4.0.
PYPI_RELEASES = (
    "2.4.0",
    "2.4.1",
    "2.5.0",
    "2.5.1",
    "2.6.0",
    "2.7.0",
    "2.7.1",
    "2.8.0",
    "2.9.0",
    "2.9.1",
    "2.10.0",
    "2.11.0",
    "2.12.0",
    "2.12.1",
    "2.13.0",
    "2.14.0",
    "2.14.1",
    "2.15.0",
)


@pytest.fixture(scope="module")
def kb() -> compat.KnowledgeBase:
    return load_kb()


# --- shipped data --------------------------------------------------------------------------------


def test_every_pypi_release_from_2_4_is_known_in_order(kb: compat.KnowledgeBase) -> None:
    assert kb.known_torch() == PYPI_RELEASES


def test_every_release_has_cpu_and_its_pypi_default(kb: compat.KnowledgeBase) -> None:
    for release in kb.releases:
        assert release.variant("cpu") is not None, release.version
        assert release.default.is_cuda, release.version


def test_every_row_names_its_source() -> None:
    for name in COLUMNS:
        with (DATA_DIR / name).open(newline="") as handle:
            for row in csv.DictReader(handle):
                assert row["source"].strip(), (name, row)


@pytest.mark.parametrize(
    ("torch", "variants", "default"),
    [
        ("2.4.0", {"cpu", "cu118", "cu121", "cu124"}, "cu121"),
        ("2.5.1", {"cpu", "cu118", "cu121", "cu124"}, "cu124"),
        ("2.6.0", {"cpu", "cu118", "cu124", "cu126"}, "cu124"),
        ("2.7.1", {"cpu", "cu118", "cu126", "cu128"}, "cu126"),
        ("2.8.0", {"cpu", "cu126", "cu128", "cu129"}, "cu128"),
        ("2.9.0", {"cpu", "cu126", "cu128", "cu130"}, "cu128"),
        ("2.11.0", {"cpu", "cu126", "cu128", "cu130"}, "cu130"),
        ("2.12.0", {"cpu", "cu126", "cu130", "cu132"}, "cu130"),
        ("2.15.0", {"cpu", "cu132"}, "cu132"),
    ],
)
def test_variants_per_release(kb: compat.KnowledgeBase, torch: str, variants: set[str], default: str) -> None:
    release = kb.torch(torch)
    assert release is not None
    assert {v.name for v in release.variants} == variants
    assert release.default_variant == default


@pytest.mark.parametrize(
    ("torch", "variant", "cudnn"),
    [
        ("2.4.0", "cu121", "9.1.0.70"),
        ("2.6.0", "cu124", "9.1.0.70"),
        ("2.6.0", "cu126", "9.5.1.17"),
        ("2.7.0", "cu128", "9.7.1.26"),
        ("2.8.0", "cu129", "9.10.2.21"),
        ("2.9.1", "cu130", "9.13.0.50"),
        ("2.11.0", "cu130", "9.19.0.56"),
        ("2.13.0", "cu130", "9.20.0.48"),
        ("2.14.1", "cu130", "9.24.0.43"),
        ("2.15.0", "cu132", "9.26.0.51"),
    ],
)
def test_cudnn_pins(kb: compat.KnowledgeBase, torch: str, variant: str, cudnn: str) -> None:
    release = kb.torch(torch)
    assert release is not None
    found = release.variant(variant)
    assert found is not None and found.cudnn == cudnn


def test_pypi_default_pins_come_from_wheel_metadata(kb: compat.KnowledgeBase) -> None:
    newest = kb.torch("2.15.0")
    assert newest is not None
    assert (newest.default.cuda, newest.default.nccl) == ("13.2", "2.30.7")
    assert newest.default.source.startswith("PyPI torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl: ")
    assert newest.pythons == ("3.11", "3.12", "3.13", "3.14", "3.15")


def test_arch_lists(kb: compat.KnowledgeBase) -> None:
    def arch(torch: str, variant: str) -> tuple[str, ...]:
        release = kb.torch(torch)
        assert release is not None
        found = release.variant(variant)
        assert found is not None
        return found.arch_list

    assert arch("2.6.0", "cu118")[0] == "3.7"
    assert arch("2.6.0", "cu126") == ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0")
    assert arch("2.7.0", "cu128")[-1] == "12.0+PTX"
    assert "7.0" in arch("2.8.0", "cu128") and arch("2.8.0", "cu128")[-1] == "12.0"
    assert arch("2.9.0", "cu130")[0] == "7.5"
    # The CUDA 13 release wheels ship machine code only: cuobjdump --list-ptx on their libtorch_cuda.so
    # lists no PTX (pytorch/pytorch#175567), so the label must not promise compute_120.
    assert arch("2.13.0", "cu130") == ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0")
    assert arch("2.15.0", "cu132") == ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0")


def test_cuda_13_rows_from_2_11_on_promise_no_ptx(kb: compat.KnowledgeBase) -> None:
    rows = [
        (r.version, v)
        for r in kb.releases
        if version_key(r.version) >= (2, 11)
        for v in r.cuda_variants()
        if (v.cuda or "").startswith("13.")
    ]
    assert len(rows) >= 11
    for version, variant in rows:
        assert not any(a.endswith("+PTX") for a in variant.arch_list), (version, variant.name)


def test_arch_lists_read_from_wheels_name_the_file_and_tool(kb: compat.KnowledgeBase) -> None:
    read = {(r.version, v.name) for r in kb.releases for v in r.variants if v.evidence == "wheel" and v.cuda}
    assert {("2.11.0", "cu130"), ("2.13.0", "cu130"), ("2.14.1", "cu130"), ("2.15.0", "cu132")} <= read
    for version, name in (("2.13.0", "cu130"), ("2.15.0", "cu132")):  # read by scripts/update_compat.py
        source = kb.torch(version).variant(name).source  # type: ignore[union-attr]
        assert source.startswith(f"PyPI torch-{version}-cp311-cp311-manylinux_2_28_x86_64.whl: ")
    for version, name in read:
        variant = kb.torch(version).variant(name)  # type: ignore[union-attr]
        assert variant is not None and "cuobjdump" in variant.source and "libtorch_cuda.so" in variant.source
    inferred = kb.torch("2.13.0").variant("cu132")  # type: ignore[union-attr]
    assert inferred is not None and inferred.evidence == "secondary"


def test_no_row_cites_a_notes_file() -> None:
    for name in COLUMNS:
        with (DATA_DIR / name).open(newline="") as handle:
            for row in csv.DictReader(handle):
                assert "compat-sources" not in row["source"] and "notes" not in row["source"], (name, row)


def test_driver_and_compat_floors(kb: compat.KnowledgeBase) -> None:
    assert kb.driver_floor("12.8") == "570.26"
    assert kb.driver_floor("12.4") == "550.54.14"
    assert kb.driver_floor("12.4.1") == "550.54.14"
    assert kb.driver_floor("13.0") == "580.65.06"
    assert kb.driver_floor("12.7") is None
    assert kb.driver_floor("junk") is None
    assert kb.compat_floor("12.8") == "525.60.13"
    assert kb.compat_floor("11.8") == "450.80.02"
    assert kb.compat_floor("13.2") == "580"
    assert kb.compat_floor("10.2") is None


def test_image_lines(kb: compat.KnowledgeBase) -> None:
    line = kb.cuda_image("12.4")
    assert line is not None and (line.cuda, line.cudnn_tag, line.minor) == ("12.4.1", "cudnn", "12.4")
    assert kb.cuda_image("12.4.1") == line
    assert kb.cuda_image("12.4.0") is None
    assert kb.cuda_image("12.3") is not None and kb.cuda_image("12.3").cudnn_tag == "cudnn9"  # type: ignore[union-attr]
    assert "24.04" in kb.cuda_image("12.8").ubuntu  # type: ignore[union-attr]
    assert "24.04" not in kb.cuda_image("12.4").ubuntu  # type: ignore[union-attr]
    assert kb.cuda_image("12") is None
    # Each line's newest published patch: NVIDIA supports only that one and deletes the others.
    assert [kb.cuda_image(m).cuda for m in ("12.9", "13.0", "13.1", "13.2")] == [  # type: ignore[union-attr]
        "12.9.2",
        "13.0.3",
        "13.1.2",
        "13.2.1",
    ]
    newest = kb.cuda_image("13.3")
    assert newest is not None and "26.04" in newest.ubuntu and newest.evidence == "secondary"
    assert kb.cuda_image("13.0").ubuntu == ("22.04", "24.04")  # type: ignore[union-attr]
    assert kb.cuda_image("12.9").evidence == "registry"  # type: ignore[union-attr]


def test_end_of_support(kb: compat.KnowledgeBase) -> None:
    line = kb.cuda_image("11.8")
    assert line is not None and line.eol == datetime.date(2025, 8, 1)
    assert compat.end_of_support(kb, "11.8.0", datetime.date(2025, 7, 31)) is None
    why = compat.end_of_support(kb, "11.8.0", datetime.date(2025, 8, 1))
    assert why is not None and "since 2025-08" in why and "support-policy.md" in why
    assert compat.end_of_support(kb, "12.8.1", datetime.date(2030, 1, 1)) is None  # NVIDIA states no date
    assert compat.end_of_support(kb, "9.9.9", datetime.date(2030, 1, 1)) is None


def test_os_python(kb: compat.KnowledgeBase) -> None:
    assert kb.os_python("ubuntu22.04") == "3.10"
    assert kb.os_python("ubuntu24.04") == "3.12"
    assert kb.os_python("debian12") == "3.11"
    assert kb.os_python("debian13") == "3.13"
    assert kb.os_python("centos7") is None
    assert kb.os_python("ubuntu26.04") == "3.14"


def test_facts_other_modules_used_to_hold(kb: compat.KnowledgeBase) -> None:
    assert kb.default_os(cuda=False) == "debian12" and kb.default_os(cuda=True) == "ubuntu22.04"
    assert kb.cpu_base("debian12") == "debian:bookworm-slim" and kb.cpu_base("ubuntu26.04") == "ubuntu:26.04"
    assert kb.cpu_base("centos7") is None
    build = kb.python_build("3.12")
    assert build is not None and build.archive.startswith("cpython-3.12.7+20241016-x86_64")
    assert kb.download_root("torch_index").startswith("https://")
    assert kb.download_root("python_build_standalone").startswith("https://")


def test_the_probes_copy_of_the_minor_compat_floors_matches_the_knowledge_base(
    kb: compat.KnowledgeBase,
) -> None:
    # The probe runs inside images with only the standard library, so it carries its own copy.
    from envkit.probe import versions

    assert kb.compat_floors() == versions.MINOR_COMPAT_FLOORS


# --- queries --------------------------------------------------------------------------------------


def test_version_key_orders_numerically() -> None:
    assert version_key("2.10.0") > version_key("2.9.1")
    assert sorted(["3.9", "3.14", "3.10"], key=version_key) == ["3.9", "3.10", "3.14"]
    for junk in ("", "2.x", "2.6.0+cu124", "v2", "2..1", " 2.1"):
        with pytest.raises(ValueError):
            version_key(junk)


def test_split_local_and_variant_for_cuda() -> None:
    assert split_local("2.6.0+cu124") == ("2.6.0", "cu124")
    assert split_local("2.6.0") == ("2.6.0", None)
    assert variant_for_cuda("12.4") == "cu124"
    assert variant_for_cuda("13.0") == "cu130"
    assert variant_for_cuda("11.8") == "cu118"
    with pytest.raises(ValueError):
        variant_for_cuda("12")


def test_torch_spec_resolution(kb: compat.KnowledgeBase) -> None:
    assert kb.torch("2.6").version == "2.6.0"  # type: ignore[union-attr]
    assert kb.torch("2.9").version == "2.9.1"  # type: ignore[union-attr]
    assert kb.torch("2.12.0").version == "2.12.0"  # type: ignore[union-attr]
    assert kb.torch("2.6.0+cu124").version == "2.6.0"  # type: ignore[union-attr]
    assert kb.torch("2").version == "2.15.0"  # type: ignore[union-attr]
    assert kb.torch("2.3") is None
    assert kb.torch("2.6.1") is None
    assert kb.torch("latest") is None


def test_cuda_variants_sorted_by_cuda_not_by_name(kb: compat.KnowledgeBase) -> None:
    release = kb.torch("2.7.0")
    assert release is not None
    assert [v.name for v in release.cuda_variants()] == ["cu118", "cu126", "cu128"]
    assert all(v.is_cuda for v in release.cuda_variants())


def test_releases_for_python(kb: compat.KnowledgeBase) -> None:
    assert [r.version for r in kb.releases_for_python("3.15")] == ["2.15.0"]
    assert [r.version for r in kb.releases_for_python("3.8")] == ["2.4.0", "2.4.1"]
    assert "2.15.0" not in [r.version for r in kb.releases_for_python("3.10")]
    assert kb.releases_for_python("2.7") == ()


def test_cuda_runs_on_driver(kb: compat.KnowledgeBase) -> None:
    assert kb.cuda_runs_on_driver("550.54.14")[-1] == "12.4"
    assert "12.5" not in kb.cuda_runs_on_driver("550.54.14")
    assert kb.cuda_runs_on_driver("570.26")[-1] == "12.8"
    assert kb.cuda_runs_on_driver("570.25.99")[-1] == "12.6"
    assert kb.cuda_runs_on_driver("470.1") == ()
    with pytest.raises(ValueError):
        kb.cuda_runs_on_driver("latest")


def test_default_load_is_cached() -> None:
    assert load_kb() is load_kb()


# --- validation rules: each fires on a broken copy, naming file and line ---------------------------


def _copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.mkdir()
    for name in COLUMNS:
        shutil.copyfile(DATA_DIR / name, target / name)
    return target


def _edit(path: Path, change: Callable[[list[list[str]]], None]) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def _find(rows: list[list[str]], *values: str) -> int:
    return next(i for i, row in enumerate(rows) if all(v in row for v in values))


def _set(torch: str, variant: str, column: str, value: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        rows[_find(rows, torch, variant)][rows[0].index(column)] = value

    return change


def _drop(*values: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        del rows[_find(rows, *values)]

    return change


def _duplicate(*values: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        rows.append(list(rows[_find(rows, *values)]))

    return change


def _append(row: list[str]) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        rows.append(row)

    return change


def _header(rows: list[list[str]]) -> None:
    rows[0][0] = "pytorch"


VARIANTS, RELEASES = "torch_variants.csv", "torch_releases.csv"
BROKEN = [
    (
        "variant torch missing from releases",
        VARIANTS,
        _append(["2.99.0", "cpu", "", "", "", "", "x"]),
        "2.99.0 is not in torch_releases.csv",
    ),
    (
        "default variant not among variants",
        RELEASES,
        _set("2.6.0", "cu124", "default_variant", "cu999"),
        "default variant 'cu999'",
    ),
    ("release without cpu variant", VARIANTS, _drop("2.6.0", "cpu"), "no cpu variant"),
    ("cuda variant without cudnn", VARIANTS, _set("2.6.0", "cu126", "cudnn", ""), "exact cuDNN"),
    ("cpu variant with cudnn", VARIANTS, _set("2.6.0", "cpu", "cudnn", "9.1.0.70"), "cpu variant must leave"),
    ("cpu variant with cuda", VARIANTS, _set("2.6.0", "cpu", "cuda", "12.4"), "cpu variant must leave"),
    ("cuda does not match name", VARIANTS, _set("2.6.0", "cu126", "cuda", "12.4"), "does not match"),
    ("bad arch entry", VARIANTS, _set("2.6.0", "cu126", "arch_list", "5.0;sm_90"), "arch entry 'sm_90'"),
    ("cuda variant without arch", VARIANTS, _set("2.6.0", "cu126", "arch_list", ""), "GPU arch list"),
    ("unparseable cudnn", VARIANTS, _set("2.6.0", "cu126", "cudnn", "9.x"), "not a dotted numeric version"),
    ("unparseable torch", RELEASES, _set("2.6.0", "cu124", "torch", "2.6.x"), "not a dotted numeric"),
    ("bad python", RELEASES, _set("2.6.0", "cu124", "python", "3.9 py3.10"), "not a Python minor"),
    ("duplicate variant", VARIANTS, _duplicate("2.6.0", "cu126"), "duplicate torch/variant"),
    ("duplicate release", RELEASES, _duplicate("2.6.0"), "duplicate torch release"),
    ("duplicate driver", "cuda_drivers.csv", _duplicate("12.4"), "duplicate CUDA minor"),
    ("empty source", VARIANTS, _set("2.6.0", "cu126", "source", " "), "non-empty source"),
    ("header mismatch", "cuda_images.csv", _header, "header is"),
    ("wrong field count", "os_python.csv", _append(["debian14", "3.14"]), "2 fields, expected 3"),
    (
        "no driver floor for a variant's CUDA",
        "cuda_drivers.csv",
        _drop("12.6"),
        "CUDA 12.6 has no driver floor",
    ),
    (
        "no image line for a variant's CUDA",
        "cuda_images.csv",
        _drop("12.6.3"),
        "CUDA 12.6 has no nvidia/cuda line",
    ),
    (
        "no minor-compat floor for a variant's CUDA",
        "cuda_minor_compat.csv",
        _drop("13"),
        "no major in cuda_minor_compat.csv",
    ),
    ("bad cudnn tag", "cuda_images.csv", _set("12.4.1", "cudnn", "cudnn_tag", "cudnn7"), "cudnn_tag"),
    ("image line with a minor only", "cuda_images.csv", _set("12.4.1", "cudnn", "cuda", "12.4"), "full CUDA"),
    ("bad os name", "os_python.csv", _set("debian12", "3.11", "os", "bookworm"), "not like ubuntu22.04"),
    ("bad end of support", "cuda_images.csv", _set("11.8.0", "cudnn8", "eol", "August 2025"), "not a date"),
    (
        "impossible end of support",
        "cuda_images.csv",
        _set("11.8.0", "cudnn8", "eol", "2025-13"),
        "not a date",
    ),
    (
        "cpu base of an unknown os",
        "os_bases.csv",
        _set("debian12", "debian:bookworm-slim", "os", "debian99"),
        "not in os_python.csv",
    ),
    (
        "cpu base not an image",
        "os_bases.csv",
        _set("debian12", "debian:bookworm-slim", "cpu_base", "a b"),
        "not an image",
    ),
    (
        "python build of another minor",
        "python_builds.csv",
        _set("3.12", "3.12.7", "full_version", "3.11.9"),
        "not a release of Python",
    ),
    ("unknown default", "defaults.csv", _set("os_cpu", "debian12", "name", "os_gpu"), "unknown name"),
    (
        "unknown download",
        "download_sources.csv",
        _set("torch_index", "torch_index", "name", "torch"),
        "unknown name",
    ),
]


@pytest.mark.parametrize(("name", "file", "change", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validation_rule_fires(
    tmp_path: Path, name: str, file: str, change: Callable[[list[list[str]]], None], message: str
) -> None:
    data = _copy_data(tmp_path)
    _edit(data / file, change)
    with pytest.raises(KnowledgeBaseError) as caught:
        load_kb(data)
    error = caught.value
    assert message in error.message
    assert error.where is not None and error.where.line is not None
    assert isinstance(error, ConfigError) and error.exit_code == 2
    rendered = error.render()
    assert Path(error.where.file).name in rendered and f":{error.where.line}" in rendered


def test_error_names_the_line_and_column(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    path = data / VARIANTS
    line = _find(list(csv.reader(path.open())), "2.6.0", "cu126") + 1
    _edit(path, _set("2.6.0", "cu126", "cudnn", "nine"))
    with pytest.raises(KnowledgeBaseError) as caught:
        load_kb(data)
    assert caught.value.where is not None
    assert (caught.value.where.line, caught.value.where.key) == (line, "cudnn")
    assert caught.value.render().startswith(f"{path}:{line}: cudnn: ")


def test_missing_default_and_default_os_without_python(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    _edit(data / "defaults.csv", _drop("os_cuda"))
    with pytest.raises(KnowledgeBaseError, match="missing rows: os_cuda"):
        load_kb(data)
    (tmp_path / "again").mkdir()
    data = _copy_data(tmp_path / "again")
    _edit(data / "defaults.csv", _set("os_cpu", "debian12", "value", "debian99"))
    with pytest.raises(KnowledgeBaseError, match=r"default OS 'debian99' is not in os_python\.csv"):
        load_kb(data)


def test_missing_file_is_a_knowledge_base_error(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    (data / "os_python.csv").unlink()
    with pytest.raises(KnowledgeBaseError, match="cannot read data file"):
        load_kb(data)


def test_a_clean_copy_loads(tmp_path: Path) -> None:
    assert load_kb(_copy_data(tmp_path)).known_torch() == PYPI_RELEASES


# --- envkit compat ----------------------------------------------------------------------------------


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["compat", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_torch(capsys: pytest.CaptureFixture[str]) -> None:
    record = _json(capsys, "torch", "2.6")
    assert record["torch"] == "2.6.0" and record["pypi_default"] == "cu124"
    variants = {v["variant"]: v for v in record["variants"]}  # type: ignore[union-attr, index]
    assert set(variants) == {"cpu", "cu118", "cu124", "cu126"}
    assert variants["cu126"]["cudnn"] == "9.5.1.17"
    assert variants["cu126"]["driver_floor"] == "560.28.03"
    assert variants["cu124"]["pypi_default"] is True
    assert variants["cu118"]["arch_list"][0] == "3.7"


def test_cli_torch_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compat", "torch", "2.6.0"]) == 0
    out = capsys.readouterr().out
    assert "torch 2.6.0" in out and "cu126" in out and "9.5.1.17" in out and "cu124 (PyPI)" in out


def test_cli_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    record = _json(capsys, "cuda", "12.8")
    assert (record["driver_floor"], record["compat_floor"]) == ("570.26", "525.60.13")
    images = record["images"]
    assert [i["cuda"] for i in images] == ["12.8.1"]  # type: ignore[union-attr, index]
    assert "12.8.1-cudnn-runtime-ubuntu24.04" in images[0]["tags"]  # type: ignore[index]
    shipped = {(v["torch"], v["variant"]) for v in record["torch"]}  # type: ignore[union-attr, index]
    assert ("2.7.0", "cu128") in shipped and ("2.8.0", "cu128") in shipped
    assert all(variant == "cu128" for _, variant in shipped)


def test_cli_python(capsys: pytest.CaptureFixture[str]) -> None:
    record = _json(capsys, "python", "3.13")
    assert record["torch"][0] == "2.5.0"  # type: ignore[index]
    assert "2.4.1" not in record["torch"]  # type: ignore[operator]
    assert record["distributions"] == ["debian13"]


def test_cli_driver(capsys: pytest.CaptureFixture[str]) -> None:
    record = _json(capsys, "driver", "550.54.14")
    assert record["cuda"][-1] == "12.4"  # type: ignore[index]
    assert record["minor_compat_majors"] == ["11", "12"]
    pairs = {(v["torch"], v["variant"]) for v in record["variants"]}  # type: ignore[union-attr, index]
    assert ("2.6.0", "cu124") in pairs and ("2.6.0", "cu126") not in pairs
    # What the header promises: the variants of newer 12.x minors run under minor-version compatibility.
    compat_pairs = {(v["torch"], v["variant"]) for v in record["minor_compat_variants"]}  # type: ignore[union-attr, index]
    assert ("2.6.0", "cu126") in compat_pairs and ("2.8.0", "cu128") in compat_pairs
    assert not compat_pairs & pairs
    assert all(v["cuda"].startswith(("11.", "12.")) for v in record["minor_compat_variants"])  # type: ignore[union-attr, index]


def test_cli_driver_table_lists_minor_compat_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compat", "driver", "580.65.06"]) == 0
    out = capsys.readouterr().out
    assert "cu132" in out  # 580 fully supports CUDA 13.0 only: cu132 is listed as a minor-compat variant


def test_cli_shows_what_was_read_from_an_artifact(capsys: pytest.CaptureFixture[str]) -> None:
    record = _json(capsys, "torch", "2.13.0")
    evidence = {v["variant"]: v["evidence"] for v in record["variants"]}  # type: ignore[union-attr, index]
    assert evidence == {"cpu": "upstream", "cu126": "secondary", "cu130": "wheel", "cu132": "secondary"}
    assert main(["compat", "torch", "2.13.0"]) == 0
    assert "read from" in capsys.readouterr().out
    record = _json(capsys, "cuda", "11.8")
    assert record["images"][0]["end_of_support"] == "2025-08"  # type: ignore[index]


PAST_EOL = """\
version: 1
name: old
image: {repository: acme/old}
axes:
  torch: ["2.4.0"]
  cuda: ["11.8", "12.4"]
  python: ["3.10"]
  os: [ubuntu22.04]
"""


def test_plan_warns_about_a_cuda_line_past_its_end_of_support(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "old.yaml"
    matrix.write_text(PAST_EOL)
    assert main(["plan", str(matrix), "--json"]) == 0
    captured = capsys.readouterr()
    [warning] = [line for line in captured.err.splitlines() if line.startswith("envkit: warning:")]
    assert "2.4.0-cu118-py3.10-ubuntu22.04-runtime" in warning and "nvidia/cuda 11.8.0" in warning
    assert "cu124" not in warning
    assert len(json.loads(captured.out)["cells"]) == 2  # stdout stays machine-readable


# --- resolution reads its facts from the knowledge base -------------------------------------------


def _plan(tmp_path: Path, axes: str) -> object:
    from envkit.matrix import load_matrix
    from envkit.resolve import plan

    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"version: 1\nname: m\nimage: {{repository: acme/m}}\naxes:\n{axes}")
    return plan(load_matrix(matrix))


def test_ubuntu_26_04_gets_a_true_answer_either_way(tmp_path: Path) -> None:
    cpu = _plan(tmp_path, '  torch: ["2.13.0"]\n  cuda: [none]\n  os: [ubuntu26.04]\n')
    [cell] = cpu.cells  # type: ignore[attr-defined]
    assert (cell.base, cell.python, cell.python_source) == ("ubuntu:26.04", "3.14", "distro")
    cuda = _plan(tmp_path, '  torch: ["2.13.0"]\n  cuda: ["13.0"]\n  os: [ubuntu26.04]\n')
    [dropped] = cuda.dropped  # type: ignore[attr-defined]
    assert "13.0.3" in dropped.reason and "not 26.04" in dropped.reason


def test_default_os_and_cpu_base_come_from_the_knowledge_base(tmp_path: Path) -> None:
    result = _plan(tmp_path, '  torch: ["2.13.0"]\n  cuda: [none, "13.0"]\n  python: ["3.11", "3.10"]\n')
    bases = {(c.os, c.base) for c in result.cells}  # type: ignore[attr-defined]
    assert ("debian12", "debian:bookworm-slim") in bases
    assert ("ubuntu22.04", "nvidia/cuda:13.0.3-base-ubuntu22.04") in bases


@pytest.mark.parametrize(
    "argv",
    [
        ["torch", "9.9"],
        ["torch", "latest"],
        ["cuda", "12.7"],
        ["cuda", "twelve"],
        ["python", "2.7"],
        ["driver", "new"],
        ["torch"],
        [],
    ],
)
def test_cli_unknown_is_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["compat", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("envkit: error:")
    assert "Traceback" not in err


def test_cli_unknown_version_lists_known(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compat", "torch", "9.9", "--json"]) == 2
    err = capsys.readouterr().err
    assert "known: 2.4.0" in err and "2.15.0" in err
