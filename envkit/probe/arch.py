"""Does a torch wheel carry kernels for a device? Pure functions over torch.cuda.get_arch_list().

A cubin (sm_XY) runs on the same major architecture with an equal or higher minor (sm_86 code runs on
an 8.9 device); an arch-specific cubin (sm_90a) runs only on exactly that device. PTX (compute_XY) is
JIT-compiled at load for any device at or above XY (slow first start). Otherwise: no kernel image.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

EXACT = "exact SASS"
COMPATIBLE = "compatible SASS"
PTX_ONLY = "PTX only"
NONE = "none"

_ENTRY = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")


@dataclasses.dataclass(frozen=True)
class ArchEntry:
    """One arch-list entry: `kind` is "sm" (cubin) or "compute" (PTX); suffix "", "a" or "f"."""

    kind: str
    major: int
    minor: int
    suffix: str
    text: str


@dataclasses.dataclass(frozen=True)
class ArchMatch:
    """How a device is served: one of EXACT, COMPATIBLE, PTX_ONLY, NONE, and the entry used."""

    kind: str
    via: str | None


def parse_entry(text: str) -> ArchEntry | None:
    """Parse "sm_86", "sm_90a", "compute_120"; None for anything else."""
    match = _ENTRY.match(text.strip())
    if not match:
        return None
    kind, major, minor, suffix = match.groups()
    return ArchEntry(kind=kind, major=int(major), minor=int(minor), suffix=suffix, text=text.strip())


def parse_capability(text: str) -> tuple[int, int]:
    """ "8.9" -> (8, 9); raises ValueError on anything else."""
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def sm_name(capability: tuple[int, int]) -> str:
    """(9, 0) -> "sm_90"."""
    return f"sm_{capability[0]}{capability[1]}"


def classify(capability: tuple[int, int], arch_list: Iterable[str]) -> ArchMatch:
    """How a device of compute `capability` is served by a wheel built for `arch_list`."""
    entries = [entry for entry in (parse_entry(text) for text in arch_list) if entry]
    major, minor = capability
    exact = [e for e in entries if e.kind == "sm" and (e.major, e.minor) == (major, minor)]
    if exact:
        return ArchMatch(kind=EXACT, via=exact[0].text)
    same_major = [
        e for e in entries if e.kind == "sm" and e.major == major and e.minor < minor and e.suffix != "a"
    ]
    if same_major:
        return ArchMatch(kind=COMPATIBLE, via=max(same_major, key=lambda e: e.minor).text)
    ptx = [e for e in entries if e.kind == "compute" and _ptx_runs(e, capability)]
    if ptx:
        return ArchMatch(kind=PTX_ONLY, via=max(ptx, key=lambda e: (e.major, e.minor)).text)
    return ArchMatch(kind=NONE, via=None)


def _ptx_runs(entry: ArchEntry, capability: tuple[int, int]) -> bool:
    if entry.suffix == "a":
        return (entry.major, entry.minor) == capability
    if entry.suffix == "f":
        return entry.major == capability[0] and entry.minor <= capability[1]
    return (entry.major, entry.minor) <= capability


def label_to_arch_list(label: str) -> Sequence[str]:
    """io.envkit.arch-list ("8.0;8.6;9.0+PTX") in get_arch_list() form (sm_80, sm_86, sm_90, compute_90)."""
    result = []
    for item in re.split(r"[;\s,]+", label.strip()):
        if not item:
            continue
        base, plus, rest = item.partition("+")
        major, minor = parse_capability(base.rstrip("af"))
        suffix = base[-1] if base[-1] in "af" else ""
        result.append(f"sm_{major}{minor}{suffix}")
        if plus and rest.upper() == "PTX":
            result.append(f"compute_{major}{minor}{suffix}")
    return result
