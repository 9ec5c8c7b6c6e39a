"""The version matrix: parsed once from YAML into frozen dataclasses, then expanded into cell requests.

Expansion follows GitHub Actions `strategy.matrix`: the axes form a cartesian product, `exclude`
removes every combination that matches all of an entry's keys, then each `include` entry extends the
combinations it does not contradict, or adds a new combination when it extends none.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envkit import compat, safety
from envkit import labels as L
from envkit.errors import ConfigError, UnsafeValueError, Where
from envkit.yamlsrc import SourceDoc, load_file

AXES = ("torch", "cuda", "cudnn", "python", "os", "flavor")
FLAVORS = ("runtime", "devel", "cpu")
PYTHON_SOURCES = ("auto", "distro", "standalone")
TORCH_SOURCES = ("index", "pypi", "wheelhouse")
CELL_SETTINGS = ("base", "python_source", "torch_source", "packages")
NO_CUDA = ("none", "cpu")
DEFAULT_TAG = "{torch}-{variant}-py{python}-{os}-{flavor}"
MAX_RAW_CELLS = 100_000

TOP_KEYS = (
    "version",
    "name",
    "image",
    "strict",
    "defaults",
    "axes",
    "include",
    "exclude",
    "python_source",
    "torch_source",
    "packages",
    "base",
    "labels",
    "torch_index",
)
IMAGE_KEYS = ("repository", "registry", "tag")


@dataclass(frozen=True, kw_only=True)
class ImageNaming:
    """Where the images go: `[registry/]repository:tag` with `tag` a template over the cell's fields."""

    repository: str
    registry: str | None = None
    tag: str = DEFAULT_TAG
    tag_where: Where | None = field(default=None, compare=False, repr=False)

    @property
    def full_repository(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


@dataclass(frozen=True, kw_only=True)
class CellSettings:
    """Per-cell choices that are not axes; matrix-wide values, overridable by an include entry."""

    base: str | None = None
    python_source: str = "auto"
    torch_source: str = "index"
    packages: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CellRequest:
    """One combination before resolution: axis values as written, and where it came from."""

    values: Mapping[str, str]
    settings: CellSettings
    origin: str
    where: Where
    explicit: bool = False

    def describe(self) -> str:
        return ", ".join(f"{axis}={self.values[axis]}" for axis in AXES if axis in self.values)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """An include or exclude entry: axis values, optional settings (include only), and its place."""

    values: Mapping[str, str]
    settings: Mapping[str, Any]
    where: Where


@dataclass(frozen=True, kw_only=True)
class Matrix:
    """A parsed matrix file. Nothing downstream reads the YAML again."""

    file: str
    name: str
    image: ImageNaming
    strict: bool
    axes: Mapping[str, tuple[str, ...]]
    axis_where: Mapping[str, Where]
    defaults: Mapping[str, str]
    include: tuple[Entry, ...]
    exclude: tuple[Entry, ...]
    settings: CellSettings
    labels: Mapping[str, str]
    torch_index: str | None
    where: Where = field(repr=False)


def load_matrix(path: Path | str) -> Matrix:
    """Read, check and parse a matrix file; any problem is a ConfigError naming file:line:key."""
    return parse_matrix(load_file(path))


def parse_matrix(doc: SourceDoc) -> Matrix:
    """Parse an already-loaded document into a Matrix."""
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(
            "a matrix file must be a mapping with at least `image` and `axes`", where=doc.where()
        )
    _reject_unknown(doc, data, TOP_KEYS, ())
    version = data.get("version", 1)
    if version != 1:
        raise ConfigError(
            f"unsupported matrix version {version!r}",
            where=doc.where("version"),
            hint="this envkit reads `version: 1`",
        )
    axes, axis_where = _parse_axes(doc)
    matrix = Matrix(
        file=doc.file,
        name=_parse_name(doc),
        image=_parse_image(doc),
        strict=_bool(doc, ("strict",), default=False),
        axes=axes,
        axis_where=axis_where,
        defaults=_parse_axis_values(doc, ("defaults",), allow_settings=False)[0],
        include=_parse_entries(doc, "include"),
        exclude=_parse_entries(doc, "exclude"),
        settings=_settings_from(doc, (), data, CellSettings()),
        labels=_parse_labels(doc),
        torch_index=_optional_url(doc, ("torch_index",)),
        where=doc.where(),
    )
    if not matrix.axes and not matrix.include:
        raise ConfigError(
            "the matrix has no cells",
            where=doc.where("axes"),
            hint='add `axes:` (e.g. torch: ["2.6"]) or `include:` entries',
        )
    return matrix


def expand(matrix: Matrix) -> list[CellRequest]:
    """All cell requests in a stable order: product of the axes, minus excludes, plus includes."""
    return [_with_defaults(matrix, c) for c in _expansion(matrix)[0]]


def unmatched_entries(matrix: Matrix) -> list[str]:
    """Warnings, as `file:line: key: message`, for exclude and include entries that match nothing.

    An exclude entry that removes no combination of the axes, and an include entry that extends none
    while naming only some of the axes (it then adds a cell of its own, the other axes from
    `defaults`), are most likely typos. Under `strict: true` the first one is a ConfigError instead.
    """
    notes = _expansion(matrix)[1]
    if notes and matrix.strict:
        where, message = notes[0]
        raise ConfigError(message, where=where, hint="`strict: true` is set; fix or remove the entry")
    return [f"{where}: {message}" for where, message in notes]


def _expansion(matrix: Matrix) -> tuple[list[_Combo], list[tuple[Where, str]]]:
    product = _product(matrix)
    notes: list[tuple[Where, str]] = []
    for entry in matrix.exclude:
        if not any(_matches(c.values, entry.values) for c in product):
            notes.append((entry.where, f"({_describe(entry)}) matches no combination of the axes"))
    combos = [c for c in product if not any(_matches(c.values, e.values) for e in matrix.exclude)]
    for index, entry in enumerate(matrix.include):
        count = len(combos)
        combos = _apply_include(matrix, combos, entry, index)
        added_alone = len(combos) > count
        if added_alone and product and not set(product[0].original) <= set(entry.values):
            notes.append(
                (
                    entry.where,
                    f"({_describe(entry)}) extends no combination of the axes; "
                    "it adds a cell of its own, the other axes from `defaults`",
                )
            )
    return combos, notes


def _describe(entry: Entry) -> str:
    values = [f"{axis}={entry.values[axis]}" for axis in AXES if axis in entry.values]
    return ", ".join(values + sorted(entry.settings))


# --- expansion -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Combo:
    values: Mapping[str, str]
    original: frozenset[str]
    settings: CellSettings
    origin: str
    where: Where
    explicit: bool = False


def _product(matrix: Matrix) -> list[_Combo]:
    if not matrix.axes:
        return []
    names = [axis for axis in AXES if axis in matrix.axes]
    total = 1
    for axis in names:
        total *= len(matrix.axes[axis])
    if total > MAX_RAW_CELLS:
        raise ConfigError(
            f"the axes multiply out to {total} cells; the limit is {MAX_RAW_CELLS}",
            where=matrix.axis_where[names[0]],
            hint="split the matrix or use include entries",
        )
    where = matrix.axis_where[names[0]]
    return [
        _Combo(
            values=dict(zip(names, values, strict=True)),
            original=frozenset(names),
            settings=matrix.settings,
            origin="axes",
            where=where,
        )
        for values in itertools.product(*(matrix.axes[axis] for axis in names))
    ]


def _matches(values: Mapping[str, str], pattern: Mapping[str, str]) -> bool:
    return all(values.get(key) == value for key, value in pattern.items())


def _apply_include(matrix: Matrix, combos: list[_Combo], entry: Entry, index: int) -> list[_Combo]:
    extended = False
    result = []
    for combo in combos:
        # An include may add keys, or overwrite keys an earlier include added, never an original value.
        if all(combo.values.get(k, v) == v for k, v in entry.values.items() if k in combo.original):
            values = {**combo.values, **entry.values}
            settings = _merge_settings(combo.settings, entry.settings)
            result.append(
                _Combo(
                    values=values,
                    original=combo.original,
                    settings=settings,
                    origin=combo.origin,
                    where=combo.where,
                )
            )
            extended = True
        else:
            result.append(combo)
    if not extended:
        result.append(
            _Combo(
                values=dict(entry.values),
                original=frozenset(entry.values),
                settings=_merge_settings(matrix.settings, entry.settings),
                origin=f"include[{index}]",
                where=entry.where,
                explicit=True,
            )
        )
    return result


def _merge_settings(base: CellSettings, overrides: Mapping[str, Any]) -> CellSettings:
    if not overrides:
        return base
    changes = dict(overrides)
    if "packages" in overrides:
        changes["packages"] = tuple(dict.fromkeys((*base.packages, *overrides["packages"])))
    return replace(base, **changes)


def _with_defaults(matrix: Matrix, combo: _Combo) -> CellRequest:
    values = {**matrix.defaults, **combo.values}
    return CellRequest(
        values=values,
        settings=combo.settings,
        origin=combo.origin,
        where=combo.where,
        explicit=combo.explicit,
    )


# --- parsing helpers -------------------------------------------------------------------------------


def _reject_unknown(
    doc: SourceDoc, data: Mapping[Any, Any], known: Sequence[str], path: tuple[Any, ...]
) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"unknown key `{key}`", where=doc.where(*path, key), hint=hint)


def _text(doc: SourceDoc, path: tuple[Any, ...], *, default: str | None = None) -> str:
    value = _get(doc.data, path)
    if value is None:
        if default is None:
            raise ConfigError("this key is required", where=doc.where(*path))
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"expected text, got {type(value).__name__}", where=doc.where(*path))
    return doc.text(*path) or str(value)


def _bool(doc: SourceDoc, path: tuple[Any, ...], *, default: bool) -> bool:
    value = _get(doc.data, path)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", where=doc.where(*path))
    return value


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _mapping(doc: SourceDoc, path: tuple[Any, ...]) -> dict[Any, Any]:
    value = _get(doc.data, path)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {type(value).__name__}", where=doc.where(*path))
    return value


def _parse_name(doc: SourceDoc) -> str:
    name = _text(doc, ("name",), default=Path(doc.file).stem)
    try:
        return safety.path_part(name)
    except UnsafeValueError as exc:
        # The name becomes a folder, .envkit/<name>/, for build logs and promotion records.
        raise UnsafeValueError(
            exc.message,
            where=doc.where("name"),
            hint="the name is a folder name: letters, digits and . _ + - "
            "(set `name:` when the file's name has other characters)",
        ) from None


def _parse_image(doc: SourceDoc) -> ImageNaming:
    data = _mapping(doc, ("image",))
    if not data:
        raise ConfigError(
            "the matrix needs `image.repository`",
            where=doc.where("image"),
            hint="e.g. image: {repository: acme/pytorch}",
        )
    _reject_unknown(doc, data, IMAGE_KEYS, ("image",))
    repository = safety.repository(_text(doc, ("image", "repository")), doc.where("image", "repository"))
    registry = data.get("registry")
    if registry is not None:
        registry = safety.registry(_text(doc, ("image", "registry")), doc.where("image", "registry"))
        # Each part may fit the name limit while both together do not.
        safety.repository(f"{registry}/{repository}", doc.where("image", "repository"))
    template = _text(doc, ("image", "tag"), default=DEFAULT_TAG)
    tag_where = doc.where("image", "tag")
    _check_tag_template(template, tag_where)
    return ImageNaming(repository=repository, registry=registry, tag=template, tag_where=tag_where)


TAG_FIELDS = (
    "torch",
    "torch_mm",
    "variant",
    "cuda",
    "cuda_full",
    "cudnn",
    "cudnn_major",
    "python",
    "os",
    "flavor",
)


def _check_tag_template(template: str, where: Where) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"bad tag template: {exc}", where=where) from None
    for name in fields:
        if name not in TAG_FIELDS:
            close = difflib.get_close_matches(name, TAG_FIELDS, n=1)
            hint = f"did you mean {{{close[0]}}}?" if close else f"fields: {', '.join(TAG_FIELDS)}"
            raise ConfigError(f"unknown tag field {{{name}}}", where=where, hint=hint)
    literal = template
    for name in fields:
        literal = literal.replace("{" + name + "}", "x")
    safety.tag(literal, where)


def _axis_value(doc: SourceDoc, path: tuple[Any, ...], axis: str) -> str:
    value = _get(doc.data, path)
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"expected a version or name for `{axis}`, got {value!r}", where=doc.where(*path))
    text = (doc.text(*path) or str(value)).strip()
    where = doc.where(*path)
    if axis == "os":
        return _os_name(safety.name(text, where), where)
    if axis == "flavor":
        return _flavor(safety.name(text, where), where)
    if axis == "cuda":
        return _cuda(text, where)
    return safety.version(text, where, local=(axis == "torch"))


# The OS names envkit's Dockerfile builds on (apt-based): nvidia/cuda's Ubuntu lines, Debian for CPU.
_OS_NAME = re.compile(r"ubuntu\d\d\.\d\d|debian\d+")
_CUDA_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")
_CUDA_WORD = re.compile(r"(?:cuda|cu)[-_ ]?(\d+\.\d+(?:\.\d+)?|\d{2}\d)", re.IGNORECASE)


@functools.cache
def known_os_names() -> tuple[str, ...]:
    """The OS names the knowledge base has facts for: shipped Pythons, CPU bases, nvidia/cuda lines."""
    kb = compat.load_kb()
    names = {entry.os for entry in kb.os_pythons} | {entry.os for entry in kb.os_bases}
    names.update(f"ubuntu{version}" for line in kb.images for version in line.ubuntu)
    return tuple(sorted(names))


def _os_name(text: str, where: Where) -> str:
    if _OS_NAME.fullmatch(text):
        return text
    known = known_os_names()
    # A prefix first ("ubuntu24" is ubuntu24.04, which difflib rates no closer than ubuntu26.04).
    close = [name for name in known if name.startswith(text)][-1:] or difflib.get_close_matches(
        text, known, n=1, cutoff=0.6
    )
    hint = f"did you mean `{close[0]}`?" if close else f"known: {', '.join(known)}"
    raise ConfigError(f"unknown os `{text}`: envkit builds on ubuntuYY.MM or debianN", where=where, hint=hint)


def _flavor(text: str, where: Where) -> str:
    if text in FLAVORS:
        return text
    close = difflib.get_close_matches(text, FLAVORS, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"choose one of: {', '.join(FLAVORS)}"
    raise ConfigError(f"unknown flavor `{text}`; flavors are {', '.join(FLAVORS)}", where=where, hint=hint)


def _cuda(text: str, where: Where) -> str:
    if text.lower() in NO_CUDA:
        return "none"
    if _CUDA_VERSION.fullmatch(text):
        return safety.version(text, where)
    word = _CUDA_WORD.fullmatch(text)
    guess: str | None
    if word and "." not in word[1]:
        guess = f"{word[1][:-1]}.{word[1][-1]}"  # cu128 -> 12.8: the wheel-index name of a CUDA minor
    elif word:
        guess = word[1]
    else:
        known = compat.load_kb().known_cuda()
        same_major = [cuda for cuda in known if cuda.split(".")[0] == text]
        close = same_major[-1:] or difflib.get_close_matches(text, known, n=1)
        guess = close[0] if close else None
    hint = f"did you mean `{guess}`? " if guess else ""
    raise ConfigError(
        f"cuda `{text}` is not a CUDA version",
        where=where,
        hint=hint + "cuda takes major.minor (12.8), a full version (12.8.1) or none",
    )


def _parse_axes(doc: SourceDoc) -> tuple[dict[str, tuple[str, ...]], dict[str, Where]]:
    data = _mapping(doc, ("axes",))
    _reject_unknown(doc, data, AXES, ("axes",))
    axes: dict[str, tuple[str, ...]] = {}
    where: dict[str, Where] = {}
    for axis in AXES:
        if axis not in data:
            continue
        items = data[axis]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"`axes.{axis}` must be a non-empty list", where=doc.where("axes", axis))
        values = tuple(_axis_value(doc, ("axes", axis, i), axis) for i in range(len(items)))
        axes[axis] = tuple(dict.fromkeys(values))
        where[axis] = doc.where("axes", axis)
    return axes, where


def _parse_axis_values(
    doc: SourceDoc, path: tuple[Any, ...], *, allow_settings: bool
) -> tuple[dict[str, str], dict[str, Any]]:
    data = _mapping(doc, path)
    known = AXES + CELL_SETTINGS if allow_settings else AXES
    _reject_unknown(doc, data, known, path)
    values = {axis: _axis_value(doc, (*path, axis), axis) for axis in AXES if axis in data}
    settings: dict[str, Any] = {}
    if allow_settings:
        settings = _settings_overrides(doc, path, data)
    return values, settings


def _parse_entries(doc: SourceDoc, key: str) -> tuple[Entry, ...]:
    items = _get(doc.data, (key,))
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"`{key}` must be a list of mappings", where=doc.where(key))
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            raise ConfigError(f"each `{key}` entry must be a non-empty mapping", where=doc.where(key, index))
        values, settings = _parse_axis_values(doc, (key, index), allow_settings=(key == "include"))
        entries.append(Entry(values=values, settings=settings, where=doc.where(key, index)))
    return tuple(entries)


def _choice(doc: SourceDoc, path: tuple[Any, ...], choices: Sequence[str]) -> str:
    value = _text(doc, path)
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"choose one of: {', '.join(choices)}"
        raise ConfigError(f"`{value}` is not one of {', '.join(choices)}", where=doc.where(*path), hint=hint)
    return value


def _settings_overrides(doc: SourceDoc, path: tuple[Any, ...], data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.get("base") is not None:
        out["base"] = _base_template(doc, (*path, "base"))
    if data.get("python_source") is not None:
        out["python_source"] = _choice(doc, (*path, "python_source"), PYTHON_SOURCES)
    if data.get("torch_source") is not None:
        out["torch_source"] = _choice(doc, (*path, "torch_source"), TORCH_SOURCES)
    if data.get("packages") is not None:
        out["packages"] = _packages(doc, (*path, "packages"))
    return out


def _settings_from(
    doc: SourceDoc, path: tuple[Any, ...], data: Mapping[str, Any], base: CellSettings
) -> CellSettings:
    return _merge_settings(base, _settings_overrides(doc, path, data))


BASE_FIELDS = ("cuda_full", "cuda", "ubuntu", "os", "python", "flavor")


def _base_template(doc: SourceDoc, path: tuple[Any, ...]) -> str:
    import string

    text = _text(doc, path)
    where = doc.where(*path)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"bad base image template: {exc}", where=where) from None
    literal = text
    for name in fields:
        if name not in BASE_FIELDS:
            raise ConfigError(
                f"unknown base field {{{name}}}", where=where, hint=f"fields: {', '.join(BASE_FIELDS)}"
            )
        literal = literal.replace("{" + name + "}", "x")
    safety.image_ref(literal, where)
    return text


def _packages(doc: SourceDoc, path: tuple[Any, ...]) -> tuple[str, ...]:
    items = _get(doc.data, path)
    if not isinstance(items, list):
        raise ConfigError("`packages` must be a list of pip requirements", where=doc.where(*path))
    return tuple(safety.requirement(_text(doc, (*path, i)), doc.where(*path, i)) for i in range(len(items)))


def _parse_labels(doc: SourceDoc) -> dict[str, str]:
    data = _mapping(doc, ("labels",))
    labels = {}
    for key in sorted(data, key=str):
        where = doc.where("labels", key)
        safety.label_key(key, where)
        if key.startswith(L.RESERVED_PREFIXES):
            raise ConfigError(
                f"label `{key}` is set by envkit",
                where=where,
                hint="use your own reverse-DNS prefix, e.g. com.example.team",
            )
        labels[key] = safety.label_value(_text(doc, ("labels", key)), where)
    return labels


def _optional_url(doc: SourceDoc, path: tuple[Any, ...]) -> str | None:
    if _get(doc.data, path) is None:
        return None
    return safety.url(_text(doc, path).rstrip("/"), doc.where(*path))
