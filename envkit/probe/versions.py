"""Compare what an image ships with what its io.envkit.* labels promise. Pure functions."""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from . import arch
from .outcome import FAIL, PASS, WARN

# CUDA minor-version compatibility floors (reduced feature set) per CUDA major: CUDA compatibility
# guide, docs.nvidia.com/deploy/cuda-compatibility. The probe carries
# this small table itself because it must not depend on envkit's knowledge base inside an image.
MINOR_COMPAT_FLOORS = {11: "450.80.02", 12: "525.60.13", 13: "580"}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One comparison: its status (PASS/WARN/FAIL) and a one-line message."""

    status: str
    message: str


@dataclasses.dataclass(frozen=True)
class Shipped:
    """What the image actually has (from the running interpreter and torch)."""

    python: str
    torch: str | None
    cuda: str | None
    cudnn: str | None
    arch_list: tuple[str, ...] = ()


def version_tuple(text: str) -> tuple[int, ...]:
    """ "550.54.14" -> (550, 54, 14); non-numeric parts end the tuple ("2.6.0+cu124" -> (2, 6, 0))."""
    parts = []
    for piece in re.split(r"[.+]", text.strip()):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def format_cudnn(version: int | None) -> str | None:
    """torch.backends.cudnn.version() as "major.minor.patch" (90100 -> 9.1.0, 8902 -> 8.9.2)."""
    if not version:
        return None
    if version >= 10000:  # cuDNN 9+: major*10000 + minor*100 + patch
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def split_torch_version(version: str) -> tuple[str, str | None]:
    """ "2.6.0+cu124" -> ("2.6.0", "cu124"); "2.6.0" -> ("2.6.0", None)."""
    base, plus, local = version.partition("+")
    return base, (local or None) if plus else None


def shipped_variant(version: str, cuda: str | None) -> str:
    """The wheel variant: the local tag when there is one, else derived from torch.version.cuda."""
    local = split_torch_version(version)[1]
    if local:
        return local
    return "cpu" if not cuda else "cu" + cuda.replace(".", "")


def compare_torch(label_torch: str | None, label_variant: str | None, shipped: Shipped) -> list[Finding]:
    """torch version and wheel variant vs io.envkit.torch / io.envkit.torch-variant."""
    if not label_torch and not label_variant:
        return []
    if shipped.torch is None:
        return [
            Finding(FAIL, f"image labelled torch {label_torch or label_variant} but torch is not importable")
        ]
    findings = []
    base = split_torch_version(shipped.torch)[0]
    if label_torch and base != split_torch_version(label_torch)[0]:
        findings.append(Finding(FAIL, f"torch {shipped.torch} but image labelled torch {label_torch}"))
    variant = shipped_variant(shipped.torch, shipped.cuda)
    if label_variant and variant != label_variant:
        findings.append(Finding(FAIL, f"torch variant {variant} but image labelled {label_variant}"))
    if not findings:
        findings.append(Finding(PASS, f"torch {shipped.torch} matches the labels"))
    return findings


def compare_cuda(label_cuda: str | None, shipped: Shipped) -> list[Finding]:
    """torch.version.cuda vs io.envkit.cuda (empty label = CPU image)."""
    if label_cuda is None or shipped.torch is None:
        return []
    if label_cuda == "":
        if shipped.cuda:
            return [Finding(WARN, f"CPU image ships CUDA {shipped.cuda} torch (larger than needed)")]
        return [Finding(PASS, "CPU image ships CPU torch")]
    if not shipped.cuda:
        return [Finding(FAIL, f"image labelled CUDA {label_cuda} ships CPU-only torch")]
    want, have = version_tuple(label_cuda)[:2], version_tuple(shipped.cuda)[:2]
    if want == have:
        return [Finding(PASS, f"torch CUDA {shipped.cuda} matches CUDA {label_cuda}")]
    if want[:1] == have[:1]:
        return [Finding(WARN, f"torch built for CUDA {shipped.cuda}, image labelled CUDA {label_cuda}")]
    return [Finding(FAIL, f"torch built for CUDA {shipped.cuda}, image labelled CUDA {label_cuda}")]


def compare_cudnn(label_cudnn: str | None, shipped: Shipped) -> list[Finding]:
    """cuDNN loaded by torch vs io.envkit.cudnn (compared on major.minor.patch)."""
    if not label_cudnn or shipped.torch is None:
        return []
    if not shipped.cudnn:
        return [Finding(FAIL, f"image labelled cuDNN {label_cudnn} but torch has no cuDNN")]
    want, have = version_tuple(label_cudnn)[:3], version_tuple(shipped.cudnn)[:3]
    if want == have:
        return [Finding(PASS, f"cuDNN {shipped.cudnn} matches {label_cudnn}")]
    status = WARN if want[:1] == have[:1] else FAIL
    return [Finding(status, f"cuDNN {shipped.cudnn} loaded, image labelled {label_cudnn}")]


def compare_python(label_python: str | None, shipped: Shipped) -> list[Finding]:
    """Interpreter major.minor vs io.envkit.python."""
    if not label_python:
        return []
    want, have = version_tuple(label_python)[:2], version_tuple(shipped.python)[:2]
    if want == have:
        return [Finding(PASS, f"Python {shipped.python} matches {label_python}")]
    return [Finding(FAIL, f"Python {shipped.python} but image labelled Python {label_python}")]


def compare_arch_list(label_arch: str | None, shipped: Shipped) -> list[Finding]:
    """torch.cuda.get_arch_list() vs io.envkit.arch-list (only for CUDA torch)."""
    if not label_arch or not shipped.cuda:
        return []
    try:
        promised = set(arch.label_to_arch_list(label_arch))
    except ValueError:
        return [Finding(WARN, f"unreadable io.envkit.arch-list {label_arch!r}")]
    missing = sorted(promised - set(shipped.arch_list))
    if missing:
        return [Finding(WARN, f"arch list lacks {', '.join(missing)} promised by the label")]
    return [Finding(PASS, "arch list covers the label")]


def compare_all(labels: dict[str, str], shipped: Shipped) -> list[Finding]:
    """Every comparison for which a label exists; [] when there are no io.envkit labels at all."""

    def label(key: str) -> str | None:
        value = labels.get("io.envkit." + key)
        return None if value is None else value.strip()

    return (
        compare_torch(label("torch"), label("torch-variant"), shipped)
        + compare_cuda(label("cuda"), shipped)
        + compare_cudnn(label("cudnn"), shipped)
        + compare_python(label("python"), shipped)
        + compare_arch_list(label("arch-list"), shipped)
    )


def driver_verdict(driver: str, floor: str | None, cuda: str | None) -> Finding:
    """Is host `driver` new enough for an image needing `floor` for CUDA `cuda`?

    Below the floor but at or above the CUDA major's minor-version-compatibility floor is a WARN
    (runs, reduced feature set); below that is a FAIL.
    """
    have = version_tuple(driver)
    cuda_text = f"CUDA {cuda}" if cuda else "this image"
    if floor and have >= version_tuple(floor):
        return Finding(PASS, f"driver {driver} >= {floor} needed by {cuda_text}")
    compat = _compat_floor(cuda)
    if compat and have >= version_tuple(compat):
        if not floor:
            return Finding(PASS, f"driver {driver} >= {compat}, the CUDA {cuda} compatibility floor")
        return Finding(
            WARN, f"driver {driver} < {floor} for CUDA {cuda}; runs under minor-version compatibility"
        )
    needed = floor or compat
    if not needed:
        return Finding(PASS, f"driver {driver} (no floor known to compare with)")
    return Finding(FAIL, f"driver {driver} too old for {cuda_text}, needs >= {needed}")


def _compat_floor(cuda: str | None) -> str | None:
    if not cuda:
        return None
    major = version_tuple(cuda)[:1]
    return MINOR_COMPAT_FLOORS.get(major[0]) if major else None


def summarise(findings: Sequence[Finding]) -> str:
    """The messages of the non-PASS findings (or all of them when everything passed), joined."""
    bad = [f.message for f in findings if f.status != PASS]
    return "; ".join(bad or [f.message for f in findings])
