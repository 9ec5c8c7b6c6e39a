"""Resolution: each cell request becomes a fully resolved Cell, or a Dropped record with its reason.

Every fact used here comes from the knowledge base (envkit.compat); the reasons quote the fact so a
user can see why a combination was refused without reading envkit's data files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from envkit import compat, custom, safety
from envkit.compat import CudaImageLine, KnowledgeBase, TorchRelease, Variant
from envkit.errors import ConfigError, Where
from envkit.matrix import DEFAULT_TAG, CellRequest, Matrix, expand

TWO_CUDNN_ISSUE = "pytorch/pytorch#119989"
UPDATE_HINT = "if it is new, add it with scripts/update_compat.py"


class Drop(Exception):
    """Raised while resolving a request that the knowledge base proves impossible."""


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One fully resolved image: every version, the base, the install strategy and the tag."""

    id: str
    torch: str
    variant: str
    cuda: str | None
    cuda_full: str | None
    cudnn: str | None
    nccl: str | None
    python: str
    python_full: str | None
    python_source: str
    os: str
    flavor: str
    base: str
    torch_source: str
    torch_index: str | None
    driver_floor: str | None
    compat_floor: str | None
    arch_list: tuple[str, ...]
    packages: tuple[str, ...]
    repository: str
    tag: str
    origin: str
    where: Where
    # The keys that make an image yours (envkit.custom); empty when the matrix has none.
    apt: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: custom.UserSpec | None = None
    copy: tuple[custom.CopySpec, ...] = ()
    steps: tuple[custom.Step, ...] = ()
    user_layer: tuple[str, ...] = ()  # services added on top of the flavor (matrix.USER_LAYERS)

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def torch_mm(self) -> str:
        return ".".join(self.torch.split(".")[:2])


@dataclass(frozen=True, kw_only=True)
class Dropped:
    """A request that was not kept, with the reason that names the fact."""

    request: CellRequest
    reason: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The resolved matrix: cells to build and requests dropped (with reasons)."""

    matrix: Matrix
    cells: tuple[Cell, ...]
    dropped: tuple[Dropped, ...]

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        known = ", ".join(c.id for c in self.cells[:8])
        raise ConfigError(f"no cell `{cell_id}` in {self.matrix.file}", hint=f"cells: {known}")


def plan(matrix: Matrix, kb: KnowledgeBase | None = None) -> Plan:
    """Expand and resolve a matrix; raises ConfigError for impossible explicit cells or under strict."""
    kb = kb or compat.load_kb()
    cells: dict[str, Cell] = {}
    dropped: list[Dropped] = []
    for request in expand(matrix):
        try:
            cell = resolve_cell(matrix, request, kb)
        except Drop as drop:
            if request.explicit or matrix.strict:
                why = "explicitly included" if request.explicit else "`strict: true` is set"
                raise ConfigError(
                    f"impossible cell ({request.describe()}): {drop}",
                    where=request.where,
                    hint=f"the cell is {why}; fix or remove it",
                ) from None
            dropped.append(Dropped(request=request, reason=str(drop)))
            continue
        if cell.id in cells:
            if request.explicit and cell != replace(cells[cell.id], origin=cell.origin, where=cell.where):
                raise ConfigError(
                    f"this include adds cell {cell.id}, which the axes already produce with other settings",
                    where=request.where,
                    hint="to extend existing cells an include must match them on every axis it names; "
                    "values compare as written ('2.8' is not '2.8.0')",
                )
            dropped.append(Dropped(request=request, reason=f"duplicate of cell {cell.id}"))
            continue
        cells[cell.id] = cell
    _check_unique_tags(tuple(cells.values()))
    return Plan(matrix=matrix, cells=tuple(cells.values()), dropped=tuple(dropped))


def resolve_cell(matrix: Matrix, request: CellRequest, kb: KnowledgeBase) -> Cell:
    """Resolve one request; raises Drop with the reason when the knowledge base rules it out."""
    values = request.values
    release, suffix = _release(values, kb)
    variant = _variant(release, values, suffix, kb)
    flavor = _flavor(values, variant)
    os_name = values.get("os") or kb.default_os(cuda=variant.cuda is not None)
    # The OS's base-image fact first: a Python default chosen for an OS without that image says less.
    image_line = _cuda_image(variant, os_name, kb, request.settings.base)
    python = _python(release, values, os_name, kb)
    python_source, python_full = _python_source(request.settings.python_source, python, os_name, kb)
    cudnn = _cudnn(values.get("cudnn"), release, variant, request.where)
    _torch_source_fits(request.settings.torch_source, release, variant)
    layer = "-".join(request.settings.user_layer)
    cell_id = f"{release.version}-{variant.name}-py{python}-{os_name}-{flavor}"
    # A layered cell is another image: its id (and a default tag) names the layer; unlayered ids stay.
    cell_id += f"-{layer}" if layer else ""
    fields = {
        "torch": release.version,
        "torch_mm": ".".join(release.version.split(".")[:2]),
        "variant": variant.name,
        "cuda": variant.cuda or "none",
        "cuda_full": image_line or "none",
        "cudnn": cudnn or "none",
        "cudnn_major": (cudnn or "none").split(".")[0],
        "python": python,
        "os": os_name,
        "flavor": flavor,
        "user_layer": layer or "none",
    }
    tag = matrix.image.tag.format(**fields)
    if layer and matrix.image.tag == DEFAULT_TAG:
        tag += f"-{layer}"
    return Cell(
        id=safety.path_part(cell_id, request.where),
        torch=release.version,
        variant=variant.name,
        cuda=variant.cuda,
        cuda_full=image_line,
        cudnn=cudnn,
        nccl=variant.nccl,
        python=python,
        python_full=python_full,
        python_source=python_source,
        os=os_name,
        flavor=flavor,
        base=_base(request.settings.base, variant, image_line, os_name, python, flavor, request.where, kb),
        torch_source=request.settings.torch_source,
        torch_index=_torch_index(matrix, request.settings.torch_source, variant, kb),
        driver_floor=kb.driver_floor(variant.cuda) if variant.cuda else None,
        compat_floor=kb.compat_floor(variant.cuda) if variant.cuda else None,
        arch_list=variant.arch_list,
        packages=request.settings.packages,
        repository=matrix.image.full_repository,
        tag=safety.tag(tag, matrix.image.tag_where or matrix.where),
        user_layer=request.settings.user_layer,
        origin=request.origin,
        where=request.where,
        apt=request.settings.apt,
        env=request.settings.env,
        user=request.settings.user,
        copy=request.settings.copy,
        steps=request.settings.steps,
    )


def _release(values: Mapping[str, str], kb: KnowledgeBase) -> tuple[TorchRelease, str | None]:
    spec = values.get("torch")
    if spec is None:
        raise Drop("no torch version (add a `torch` axis or a `defaults.torch`)")
    version, suffix = compat.split_local(spec)
    release = kb.torch(version)
    if release is None:
        known = kb.releases
        raise Drop(
            f"the knowledge base has no row for torch {spec}: it knows {known[0].version} … "
            f"{known[-1].version} (source: {known[-1].source}); {UPDATE_HINT}"
        )
    return release, suffix


def _variant(
    release: TorchRelease, values: Mapping[str, str], suffix: str | None, kb: KnowledgeBase
) -> Variant:
    cuda = values.get("cuda")
    if cuda is None and suffix is None:
        name = "cpu" if values.get("flavor") == "cpu" else release.default_variant
    elif cuda is None:
        name = suffix or release.default_variant
    else:
        name = "cpu" if cuda == "none" else _variant_name(cuda)
        if suffix is not None and suffix != name:
            raise Drop(f"torch {release.version}+{suffix} contradicts cuda {cuda} ({name})")
    variant = release.variant(name)
    if variant is None:
        raise Drop(_no_variant(release, name, values.get("cuda"), kb))
    return variant


def _no_variant(release: TorchRelease, name: str, cuda: str | None, kb: KnowledgeBase) -> str:
    names = ", ".join(v.name for v in release.variants)
    if cuda is not None and cuda != "none" and kb.driver_floor(cuda) is None:
        known = kb.known_cuda()
        return (
            f"the knowledge base has no row for CUDA {cuda}: it knows CUDA {known[0]} … {known[-1]} "
            f"(source: {kb.driver_floors[-1].source}); {UPDATE_HINT}"
        )
    with_it = [r.version for r in kb.releases if r.variant(name) is not None]
    where_known = f"; {name} wheels: torch {with_it[0]} … {with_it[-1]}" if with_it else ""
    return f"torch {release.version} has no {name} wheels; its variants are {names}{where_known}"


def _variant_name(cuda: str) -> str:
    try:
        return compat.variant_for_cuda(cuda)
    except ValueError:
        raise Drop(f"cuda {cuda} is not a CUDA major.minor version such as 12.4") from None


def _flavor(values: Mapping[str, str], variant: Variant) -> str:
    flavor = values.get("flavor") or ("cpu" if variant.cuda is None else "runtime")
    if flavor == "cpu" and variant.cuda is not None:
        raise Drop(f"flavor cpu takes cuda: none, not cuda {variant.cuda}")
    if flavor == "runtime" and variant.cuda is None:
        raise Drop("flavor runtime needs a CUDA variant; a CPU-only cell uses flavor cpu (or devel)")
    return flavor


def _python(release: TorchRelease, values: Mapping[str, str], os_name: str, kb: KnowledgeBase) -> str:
    python = values.get("python") or kb.os_python(os_name)
    if python is None:
        raise Drop(
            f"no python given, and the knowledge base has no row for {os_name}'s python3 (it knows "
            f"{', '.join(o.os for o in kb.os_pythons)}; envkit/data/os_python.csv); set `python`"
        )
    if python not in release.pythons:
        span = f"{release.pythons[0]}–{release.pythons[-1]}"
        raise Drop(f"torch {release.version} supports Python {span}, not {python}")
    return python


def _python_source(requested: str, python: str, os_name: str, kb: KnowledgeBase) -> tuple[str, str | None]:
    distro_python = kb.os_python(os_name)
    if requested in ("auto", "distro") and distro_python == python:
        return "distro", None
    if requested == "distro":
        if distro_python is None:
            raise Drop(
                f"the knowledge base has no row for {os_name}'s python3 (envkit/data/os_python.csv); "
                "use python_source: standalone for a pinned Python"
            )
        raise Drop(
            f"{os_name} ships Python {distro_python}, not {python}; use python_source: standalone "
            "for a pinned Python"
        )
    build = kb.python_build(python)
    if build is None:
        known = ", ".join(b.python for b in kb.python_builds)
        raise Drop(f"no pinned standalone Python build for {python} (known: {known})")
    return "standalone", build.full_version


def _cudnn(requested: str | None, release: TorchRelease, variant: Variant, where: Where) -> str | None:
    if requested is None:
        return variant.cudnn
    if variant.cudnn is None:
        raise Drop(f"cudnn {requested} was asked for a CPU-only cell")
    if variant.cudnn == requested or variant.cudnn.startswith(requested + "."):
        return variant.cudnn
    raise ConfigError(
        f"cudnn {requested} was requested, but torch {release.version}+{variant.name} pins cuDNN "
        f"{variant.cudnn} in its wheel's requirements",
        where=where,
        hint="a second cuDNN in the image (from the base image or apt) would be loaded beside the "
        "wheel's, and which one a process gets depends on library search order "
        f"({TWO_CUDNN_ISSUE}); drop `cudnn` or set it to {variant.cudnn}",
    )


def _cuda_image(variant: Variant, os_name: str, kb: KnowledgeBase, base_override: str | None) -> str | None:
    if variant.cuda is None:
        return None
    line = kb.cuda_image(variant.cuda)
    if line is None:
        raise Drop(
            f"the knowledge base has no nvidia/cuda image line for CUDA {variant.cuda} "
            "(envkit/data/cuda_images.csv); set `base`, or add the line"
        )
    if base_override is None:
        if not os_name.startswith("ubuntu"):
            raise Drop(f"nvidia/cuda images are Ubuntu-based; {os_name} needs a `base` override")
        ubuntu = os_name.removeprefix("ubuntu")
        if ubuntu not in line.ubuntu:
            raise Drop(_no_image(line, ubuntu, kb))
    return line.cuda


def _no_image(line: CudaImageLine, ubuntu: str, kb: KnowledgeBase) -> str:
    known = f"Ubuntu {', '.join(line.ubuntu)}, not {ubuntu}"
    if any(ubuntu in other.ubuntu for other in kb.images):
        return f"nvidia/cuda {line.cuda} images exist for {known}"
    # No line at all for this Ubuntu: a gap in the hand-kept list, or a release NVIDIA has not built for.
    return (
        f"the knowledge base has no nvidia/cuda image for Ubuntu {ubuntu}: {line.cuda} is listed for "
        f"{known} (source: {line.source}); if NVIDIA publishes one, add it to envkit/data/cuda_images.csv"
    )


def _torch_source_fits(source: str, release: TorchRelease, variant: Variant) -> None:
    if source == "pypi" and variant.name != release.default_variant:
        raise Drop(
            f"PyPI's torch {release.version} wheel for Linux is the {release.default_variant} build, "
            f"not {variant.name}; use torch_source: index"
        )


def _torch_index(matrix: Matrix, source: str, variant: Variant, kb: KnowledgeBase) -> str | None:
    if source != "index":
        return None
    root = matrix.torch_index or kb.download_root("torch_index")
    return f"{root}/{variant.name}"


def _base(
    template: str | None,
    variant: Variant,
    cuda_full: str | None,
    os_name: str,
    python: str,
    flavor: str,
    where: Where,
    kb: KnowledgeBase,
) -> str:
    fields = {
        "cuda_full": cuda_full or "",
        "cuda": variant.cuda or "",
        "os": os_name,
        "python": python,
        "flavor": flavor,
        "ubuntu": os_name.removeprefix("ubuntu"),
    }
    if template is not None:
        return safety.image_ref(template.format(**fields), where)
    if cuda_full is not None:
        # Wheels bring their own CUDA libraries and cuDNN: the `base` image (driver glue, env vars) or
        # `devel` (nvcc for extensions) without a system cuDNN avoids two cuDNNs in one process.
        kind = "devel" if flavor == "devel" else "base"
        return f"nvidia/cuda:{cuda_full}-{kind}-{os_name}"
    base = kb.cpu_base(os_name)
    if base is None:
        known = ", ".join(b.os for b in kb.os_bases)
        raise Drop(f"no CPU base image is known for OS {os_name} (known: {known}); set `base`")
    return base


def _check_unique_tags(cells: tuple[Cell, ...]) -> None:
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.tag in seen:
            raise ConfigError(
                f"cells {seen[cell.tag].id} and {cell.id} both get the tag `{cell.tag}`",
                where=cell.where,
                hint="make `image.tag` include the fields that differ, e.g. {flavor}",
            )
        seen[cell.tag] = cell
