"""GPU checks on a CPU image are N/A (they do not apply); on a CUDA image without a GPU they SKIP."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit.probe import checks_gpu, checks_oom
from envkit.probe.context import Context
from envkit.probe.outcome import NA, SKIP

CPU_LABELS = {"io.envkit.cuda": "", "io.envkit.torch-variant": "cpu", "io.envkit.flavor": "cpu"}
CUDA_LABELS = {"io.envkit.cuda": "12.4", "io.envkit.torch-variant": "cu124", "io.envkit.flavor": "runtime"}
Install = Callable[[str | None], None]
GPU_CHECKS = (
    checks_gpu.check_visibility,
    checks_gpu.check_driver,
    checks_gpu.check_arch,
    checks_gpu.check_kernels,
    checks_oom.check_oom_gpu,
)


@pytest.fixture
def fake_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """A torch whose version.py says what the test writes; torch itself is never imported."""

    def install(version_py: str | None) -> None:
        package = tmp_path / "torch"
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("raise ImportError('not for import')\n")
        if version_py is not None:
            (package / "version.py").write_text(version_py)
        spec = importlib.machinery.ModuleSpec("torch", None, origin=str(package / "__init__.py"))
        real = importlib.util.find_spec
        monkeypatch.setattr(
            checks_gpu.importlib.util,
            "find_spec",
            lambda name, *a: spec if name == "torch" else real(name, *a),
        )

    return install


CPU_TORCH = "__version__ = '2.6.0+cpu'\ncuda: Optional[str] = None\nhip: Optional[str] = None\n"
CUDA_TORCH = "__version__ = '2.6.0+cu124'\ncuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n"


@pytest.mark.parametrize("check", GPU_CHECKS, ids=lambda c: c.__name__)
def test_gpu_checks_on_a_cpu_image_are_not_applicable(
    fake_torch: Install, check: Callable[[Context], object]
) -> None:
    fake_torch(CPU_TORCH)
    outcome = check(Context(labels=CPU_LABELS))
    assert isinstance(outcome, checks_gpu.Outcome)
    assert outcome.status == NA and "not applicable" in outcome.summary


@pytest.mark.parametrize(
    ("labels", "version_py"),
    [
        (CUDA_LABELS, CPU_TORCH),  # a CUDA image shipping CPU torch: env.versions fails it; GPU checks skip
        (CPU_LABELS, CUDA_TORCH),  # a CPU label on a CUDA torch: the GPU could be used
        ({}, CUDA_TORCH),
        (CPU_LABELS, None),  # torch without a version file: cannot tell
    ],
)
def test_not_applicable_only_when_nothing_promises_or_ships_cuda(
    fake_torch: Install, labels: dict[str, str], version_py: str | None
) -> None:
    fake_torch(version_py)
    assert checks_gpu.not_applicable(Context(labels=labels)) is None


def test_an_image_without_labels_and_with_cpu_torch_is_not_applicable(fake_torch: Install) -> None:
    fake_torch(CPU_TORCH)
    assert checks_gpu.not_applicable(Context()) is not None


def test_cuda_image_on_a_host_without_gpu_still_skips(
    fake_torch: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(CUDA_TORCH)
    monkeypatch.setattr(checks_gpu, "no_nvidia_device_nodes", lambda: True)
    assert checks_gpu.check_visibility(Context(labels=CUDA_LABELS)).status == SKIP
