"""Hand-made resolved cells for unit tests that must not depend on the shipped knowledge base."""

from __future__ import annotations

from dataclasses import replace

from envkit.errors import Where
from envkit.resolve import Cell

CPU_CELL = Cell(
    id="2.13.0-cpu-py3.11-debian12-cpu",
    torch="2.13.0",
    variant="cpu",
    cuda=None,
    cuda_full=None,
    cudnn=None,
    nccl=None,
    python="3.11",
    python_full=None,
    python_source="distro",
    os="debian12",
    flavor="cpu",
    base="debian:bookworm-slim",
    torch_source="index",
    torch_index="https://example.org/whl/cpu",
    driver_floor=None,
    compat_floor=None,
    arch_list=(),
    packages=(),
    repository="acme/pytorch",
    tag="2.13.0-cpu-py3.11-debian12-cpu",
    origin="axes",
    where=Where("m.yaml", 3, "axes"),
)

CUDA_CELL = replace(
    CPU_CELL,
    id="2.6.0-cu124-py3.11-ubuntu22.04-runtime",
    torch="2.6.0",
    variant="cu124",
    cuda="12.4",
    cuda_full="12.4.1",
    cudnn="9.1.0.70",
    python="3.10",
    os="ubuntu22.04",
    flavor="runtime",
    base="nvidia/cuda:12.4.1-base-ubuntu22.04",
    torch_index="https://example.org/whl/cu124",
    driver_floor="550.54.14",
    compat_floor="525.60.13",
    arch_list=("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"),
    tag="2.6.0-cu124-py3.10-ubuntu22.04-runtime",
)


def cell(**changes: object) -> Cell:
    """CPU_CELL with some fields changed (id and tag follow `id` when only that is given)."""
    if "id" in changes and "tag" not in changes:
        changes["tag"] = changes["id"]
    return replace(CPU_CELL, **changes)  # type: ignore[arg-type]
