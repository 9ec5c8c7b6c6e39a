"""The matrix keys that make an image yours: `apt`, `env`, `user`, `copy` and `steps`.

Each key is parsed here into frozen values with file:line errors; envkit.matrix calls one parser per key
next to `packages` and merges them the same way (an include entry adds to lists and maps, and replaces
`user`). Every value that reaches the Dockerfile passes the injection guard (envkit.safety): no value can
start a new Dockerfile instruction. `steps` are shell run as root during the build: trusted input from
the matrix's author, like the rest of the matrix; the guard still keeps each to one RUN instruction.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envkit import safety
from envkit.errors import ConfigError, UnsafeValueError
from envkit.yamlsrc import SourceDoc

KEYS = ("apt", "env", "user", "copy", "steps")
STEP_PLACES = ("after-system", "after-python")
USER_KEYS = ("name", "uid", "gid", "home", "shell")
COPY_KEYS = ("src", "dest")
STEP_KEYS = ("at", "run")
# The venv and the probe depend on these; a matrix may not change them.
RESERVED_ENV = ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "LD_PRELOAD", "HOME")


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    """The non-root user the final image runs as."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str = "/bin/bash"


@dataclass(frozen=True, kw_only=True)
class CopySpec:
    """A file of the matrix's folder (`src`, as written) copied to `dest` in the image; `source` is the
    checked absolute path of the file."""

    src: str
    dest: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Step:
    """One shell command line run as root at a named place of the final stage."""

    at: str
    run: str


def parse_apt(doc: SourceDoc, path: tuple[Any, ...]) -> tuple[str, ...]:
    """`apt: [libgl1, "git=1:2.39.5-0+deb12u2"]`: Debian package names, optionally pinned."""
    items = _get(doc, path)
    if not isinstance(items, list):
        raise ConfigError("`apt` must be a list of Debian package names", where=doc.where(*path))
    return tuple(safety.apt_package(_scalar(doc, (*path, i)), doc.where(*path, i)) for i in range(len(items)))


def parse_env(doc: SourceDoc, path: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """`env: {NAME: value}`: sorted (name, value) pairs; values are literal text (no $ expansion)."""
    data = _get(doc, path)
    if not isinstance(data, dict):
        raise ConfigError("`env` must be a mapping of NAME: value", where=doc.where(*path))
    pairs = []
    for key in sorted(data, key=str):
        where = doc.where(*path, key)
        name = safety.env_name(key, where)
        if name in RESERVED_ENV:
            raise ConfigError(
                f"`{name}` is set by envkit", where=where, hint=f"envkit owns {', '.join(RESERVED_ENV)}"
            )
        pairs.append((name, safety.env_value(_scalar(doc, (*path, key)), where)))
    return tuple(pairs)


def parse_user(doc: SourceDoc, path: tuple[Any, ...]) -> UserSpec:
    """`user: {name: app, uid: 1001, gid: 1001, home: /home/app}` (home and gid have defaults)."""
    data = _get(doc, path)
    if not isinstance(data, dict):
        raise ConfigError("`user` must be a mapping with `name` and `uid`", where=doc.where(*path))
    _reject_unknown(doc, data, USER_KEYS, path)
    if "name" not in data or "uid" not in data:
        raise ConfigError(
            "`user` needs `name` and `uid`", where=doc.where(*path), hint="e.g. user: {name: app, uid: 1001}"
        )
    name = safety.user_name(_scalar(doc, (*path, "name")), doc.where(*path, "name"))
    if name == "root":
        raise ConfigError("`user` must not be root", where=doc.where(*path, "name"), hint="omit `user`")
    uid = _id(doc, (*path, "uid"))
    gid = _id(doc, (*path, "gid")) if "gid" in data else uid
    home = safety.image_path(
        _scalar(doc, (*path, "home")) if "home" in data else f"/home/{name}", doc.where(*path, "home")
    )
    shell = safety.image_path(
        _scalar(doc, (*path, "shell")) if "shell" in data else "/bin/bash", doc.where(*path, "shell")
    )
    return UserSpec(name=name, uid=uid, gid=gid, home=home, shell=shell)


def parse_copy(doc: SourceDoc, path: tuple[Any, ...]) -> tuple[CopySpec, ...]:
    """`copy: [{src: files/app.cfg, dest: /etc/app/app.cfg}]`: regular files inside the matrix's folder
    (after following links) to absolute paths in the image."""
    items = _get(doc, path)
    if not isinstance(items, list):
        raise ConfigError("`copy` must be a list of {src, dest} mappings", where=doc.where(*path))
    folder = Path(os.path.realpath(Path(doc.file).parent))
    specs = []
    for index, item in enumerate(items):
        here = (*path, index)
        if not isinstance(item, dict) or "src" not in item or "dest" not in item:
            raise ConfigError(
                "each `copy` entry needs `src` and `dest`",
                where=doc.where(*here),
                hint="e.g. {src: files/app.cfg, dest: /etc/app/app.cfg}",
            )
        _reject_unknown(doc, item, COPY_KEYS, here)
        src = _scalar(doc, (*here, "src"))
        where = doc.where(*here, "src")
        source = confined_file(folder, src, where)
        dest = safety.image_path(_scalar(doc, (*here, "dest")), doc.where(*here, "dest"))
        if dest.endswith("/"):
            raise ConfigError(
                "`dest` names the file in the image, not a folder",
                where=doc.where(*here, "dest"),
                hint=f"e.g. {dest}{Path(src).name}",
            )
        specs.append(CopySpec(src=src, dest=dest, source=str(source)))
    return tuple(specs)


def confined_file(folder: Path, src: str, where: Any) -> Path:
    """The real path of `src` (relative to `folder`); refused when it leaves the folder, even through a
    symbolic link, or is not a regular file."""
    if (
        not src
        or len(src) > 1024
        or not src.isprintable()
        or os.path.isabs(src)
        or "\\" in src
        or any(part == ".." for part in Path(src).parts)
    ):
        raise UnsafeValueError(
            f"copy source {src!r} is not a relative path inside the matrix's folder",
            where=where,
            hint="name a file next to the matrix file, e.g. files/app.cfg",
        )
    try:
        real = Path(os.path.realpath(folder / src))
        is_file = real.is_file()
    except (OSError, ValueError):
        raise ConfigError(f"copy source {src!r} cannot be read", where=where) from None
    if real != folder and folder not in real.parents:
        raise UnsafeValueError(
            f"copy source {src!r} leads outside the matrix's folder (to {real})",
            where=where,
            hint="copy the file into the matrix's folder instead of linking to it",
        )
    if not is_file:
        raise ConfigError(
            f"copy source {src!r} is not a file",
            where=where,
            hint="name an existing regular file in the matrix's folder",
        )
    return real


def parse_steps(doc: SourceDoc, path: tuple[Any, ...]) -> tuple[Step, ...]:
    """`steps: [{at: after-system, run: "echo ok > /etc/motd"}]`: one shell line each."""
    items = _get(doc, path)
    if not isinstance(items, list):
        raise ConfigError("`steps` must be a list of {at, run} mappings", where=doc.where(*path))
    steps = []
    for index, item in enumerate(items):
        here = (*path, index)
        if not isinstance(item, dict) or "run" not in item:
            raise ConfigError(
                "each `steps` entry needs `run` (and `at`)",
                where=doc.where(*here),
                hint=f"e.g. {{at: after-system, run: 'echo hello'}}; places: {', '.join(STEP_PLACES)}",
            )
        _reject_unknown(doc, item, STEP_KEYS, here)
        at = _scalar(doc, (*here, "at")) if "at" in item else "after-python"
        if at not in STEP_PLACES:
            close = difflib.get_close_matches(at, STEP_PLACES, n=1)
            raise ConfigError(
                f"`{at}` is not a step place",
                where=doc.where(*here, "at"),
                hint=f"did you mean `{close[0]}`?" if close else f"places: {', '.join(STEP_PLACES)}",
            )
        steps.append(
            Step(at=at, run=safety.shell_line(_scalar(doc, (*here, "run")), doc.where(*here, "run")))
        )
    return tuple(steps)


def merge_env(
    base: Sequence[tuple[str, str]], more: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """An include entry's `env` over the matrix's: names it sets win; sorted by name."""
    return tuple(sorted({**dict(base), **dict(more)}.items()))


# --- helpers -----------------------------------------------------------------------------------------


def _get(doc: SourceDoc, path: tuple[Any, ...]) -> Any:
    data = doc.data
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _scalar(doc: SourceDoc, path: tuple[Any, ...]) -> str:
    value = _get(doc, path)
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"expected text, got {type(value).__name__}", where=doc.where(*path))
    return doc.text(*path) or str(value)


def _id(doc: SourceDoc, path: tuple[Any, ...]) -> int:
    value = _get(doc, path)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65533:
        raise ConfigError(
            f"expected a number from 1 to 65533, got {value!r}",
            where=doc.where(*path),
            hint="a fixed non-root id, e.g. 1001 (0 is root)",
        )
    return value


def _reject_unknown(
    doc: SourceDoc, data: Mapping[Any, Any], known: Sequence[str], path: tuple[Any, ...]
) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"unknown key `{key}`", where=doc.where(*path, key), hint=hint)
