"""Safe YAML loading that keeps where every value came from.

PyYAML's safe loader gives plain values but forgets lines, and it reads `2.10` as the float 2.1. This
module composes the node graph itself so callers get plain values, the line of every key path, and
the raw text of every scalar (versions are read from the raw text). It also refuses what a hostile
document could use to hurt us: non-standard tags, duplicate keys, alias bombs and huge files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envkit.errors import ConfigError, Where

# PyYAML's pure-Python scanner reads token-dense text at tens of KB/s and keeps two marks per node, so
# this bounds CPU time and memory, not just file size; hand-written matrices and policies are a few KB.
MAX_BYTES = 256 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

PathKey = tuple[Any, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class SourceDoc:
    """A loaded document: `data` holds plain values; lines and raw scalar text are kept per key path."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(repr=False)
    raw: dict[PathKey, str] = field(repr=False)

    def where(self, *path: Any) -> Where:
        """The file:line of `path` (or of its nearest known parent) and the dotted key."""
        probe: PathKey = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return Where(self.file, self.lines.get(probe), dotted(path))

    def text(self, *path: Any) -> str | None:
        """The scalar's text exactly as written (so `2.10` stays "2.10")."""
        return self.raw.get(tuple(path))


def dotted(path: Iterable[Any]) -> str:
    """`("axes", "torch", 2)` → `axes.torch[2]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_file(path: Path | str, max_bytes: int = MAX_BYTES) -> SourceDoc:
    """Read and load a YAML file; every problem is a ConfigError naming the file.

    `max_bytes` is raised only for files envkit writes itself (a lock of a large matrix)."""
    path = Path(path)
    try:
        # Read one byte past the limit instead of trusting stat(): /dev/zero and pipes report size 0.
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ConfigError(f"file is larger than {max_bytes} bytes", where=Where(str(path)))
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", where=Where(str(path))) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", where=Where(str(path))) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", where=Where(str(path))) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where=Where(str(path))) from None
    return load_text(text, str(path), max_bytes)


def load_text(text: str, file: str, max_bytes: int = MAX_BYTES) -> SourceDoc:
    """Load YAML text (one document) into a SourceDoc."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError(f"document larger than {max_bytes} bytes", where=Where(file))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.composer.ComposerError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file) from None
    except RecursionError:
        raise ConfigError("document nests too deeply", where=Where(file)) from None
    builder = _Builder(file)
    data = None if node is None else builder.build(node, (), 0)
    return SourceDoc(file, data, builder.lines, builder.raw)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing deep flow nesting while it scans.

    Every open `[` or `{` leaves a pending simple key that the scanner re-checks on each later token, so
    deeply nested flow text costs time in proportion to size × depth: a 20 KB document nesting 400
    levels took 5 s before the composer gave up.
    """

    def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(
                None, None, f"flow collections nest deeper than {MAX_DEPTH} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)


def _yaml_error(exc: yaml.YAMLError, file: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(f"invalid YAML: {problem}", where=Where(file, line))


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[PathKey, int] = {}
        self.raw: dict[PathKey, str] = {}
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def fail(self, message: str, node: yaml.Node, path: PathKey) -> ConfigError:
        return ConfigError(message, where=Where(self.file, node.start_mark.line + 1, dotted(path) or None))

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(f"document expands to more than {MAX_NODES} values (alias bomb?)", node, path)
        if depth > MAX_DEPTH:
            raise self.fail(f"document nests deeper than {MAX_DEPTH} levels", node, path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self.mapping(node, path, depth)
        raise self.fail(f"YAML tag {node.tag!r} is not allowed here", node, path)

    def scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        self.raw[path] = node.value
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(f"YAML tag {node.tag!r} is not allowed here", node, path)
        try:
            return self.constructor.construct_object(node, deep=True)
        # PyYAML's constructors index into the text: `!!bool ""` is a KeyError, `!!int "-"` an IndexError.
        except (yaml.YAMLError, ValueError, ArithmeticError, LookupError) as exc:
            raise self.fail(f"bad scalar {node.value[:40]!r}: {exc}", node, path) from None

    def mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: set[Any] = set()  # keys that came from a `<<` merge may be overridden once
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                source = self.build(value_node, path, depth + 1)
                for part in source if isinstance(source, list) else [source]:
                    if not isinstance(part, dict):
                        raise self.fail("a merge key (<<) needs a mapping", value_node, path)
                    for key, value in part.items():
                        if key not in result:
                            result[key] = value
                            merged.add(key)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("mapping keys must be plain scalars", key_node, path)
            key = self.scalar(key_node, (*path, "<key>"))
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise self.fail("mapping keys must be plain scalars", key_node, path)
            key = key_node.value if not isinstance(key, str) else key
            key_path = (*path, key)
            if key in result and key not in merged:
                raise self.fail(f"duplicate key {key!r}", key_node, key_path)
            self.lines[key_path] = key_node.start_mark.line + 1
            merged.discard(key)
            result[key] = self.build(value_node, key_path, depth + 1)
        self.raw.pop((*path, "<key>"), None)
        return result
