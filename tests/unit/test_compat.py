"""The compatibility knowledge base: shipped data, validation rules, queries and `envkit compat`."""

from __future__ import annotations

import csv
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
    "2.4.0", "2.4.1", "2.5.0", "2.5.1", "2.6.0", "2.7.0", "2.7.1", "2.8.0", "2.9.0", "2.9.1",
    "2.10.0", "2.11.0", "2.12.0", "2.12.1", "2.13.0", "2.14.0", "2.14.1", "2.15.0",
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


@pytest.mark.parametrize(("torch", "variants", "default"), [
    ("2.4.0", {"cpu", "cu118", "cu121", "cu124"}, "cu121"),
    ("2.5.1", {"cpu", "cu118", "cu121", "cu124"}, "cu124"),
    ("2.6.0", {"cpu", "cu118", "cu124", "cu126"}, "cu124"),
    ("2.7.1", {"cpu", "cu118", "cu126", "cu128"}, "cu126"),
    ("2.8.0", {"cpu", "cu126", "cu128", "cu129"}, "cu128"),
    ("2.9.0", {"cpu", "cu126", "cu128", "cu130"}, "cu128"),
    ("2.11.0", {"cpu", "cu126", "cu128", "cu130"}, "cu130"),
    ("2.12.0", {"cpu", "cu126", "cu130", "cu132"}, "cu130"),
    ("2.15.0", {"cpu", "cu132"}, "cu132"),
])
def test_variants_per_release(kb: compat.KnowledgeBase, torch: str, variants: set[str], default: str) -> None:
    release = kb.torch(torch)
    assert release is not None
    assert {v.name for v in release.variants} == variants
    assert release.default_variant == default


@pytest.mark.parametrize(("torch", "variant", "cudnn"), [
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
])
def test_cudnn_pins(kb: compat.KnowledgeBase, torch: str, variant: str, cudnn: str) -> None:
    release = kb.torch(torch)
    assert release is not None
    found = release.variant(variant)
    assert found is not None and found.cudnn == cudnn


def test_pypi_default_pins_come_from_wheel_metadata(kb: compat.KnowledgeBase) -> None:
    newest = kb.torch("2.15.0")
    assert newest is not None
    assert (newest.default.cuda, newest.default.nccl) == ("13.2", "2.30.7")
    assert newest.default.source.startswith("PyPI torch==2.15.0")
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


def test_os_python(kb: compat.KnowledgeBase) -> None:
    assert kb.os_python("ubuntu22.04") == "3.10"
    assert kb.os_python("ubuntu24.04") == "3.12"
    assert kb.os_python("debian12") == "3.11"
    assert kb.os_python("debian13") == "3.13"
    assert kb.os_python("centos7") is None


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
    ("variant torch missing from releases", VARIANTS,
     _append(["2.99.0", "cpu", "", "", "", "", "x"]), "2.99.0 is not in torch_releases.csv"),
    ("default variant not among variants", RELEASES,
     _set("2.6.0", "cu124", "default_variant", "cu999"), "default variant 'cu999'"),
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
    ("no driver floor for a variant's CUDA", "cuda_drivers.csv", _drop("12.6"),
     "CUDA 12.6 has no driver floor"),
    ("no image line for a variant's CUDA", "cuda_images.csv", _drop("12.6.3"),
     "CUDA 12.6 has no nvidia/cuda line"),
    ("no minor-compat floor for a variant's CUDA", "cuda_minor_compat.csv", _drop("13"),
     "no major in cuda_minor_compat.csv"),
    ("bad cudnn tag", "cuda_images.csv", _set("12.4.1", "cudnn", "cudnn_tag", "cudnn7"), "cudnn_tag"),
    ("image line with a minor only", "cuda_images.csv", _set("12.4.1", "cudnn", "cuda", "12.4"), "full CUDA"),
    ("bad os name", "os_python.csv", _set("debian12", "3.11", "os", "bookworm"), "not like ubuntu22.04"),
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


@pytest.mark.parametrize("argv", [
    ["torch", "9.9"], ["torch", "latest"], ["cuda", "12.7"], ["cuda", "twelve"], ["python", "2.7"],
    ["driver", "new"], ["torch"], [],
])
def test_cli_unknown_is_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["compat", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("envkit: error:")
    assert "Traceback" not in err


def test_cli_unknown_version_lists_known(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compat", "torch", "9.9", "--json"]) == 2
    err = capsys.readouterr().err
    assert "known: 2.4.0" in err and "2.15.0" in err
