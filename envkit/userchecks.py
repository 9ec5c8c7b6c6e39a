"""User checks: acceptance tests a matrix's author declares, run next to envkit's own checks.

A `checks:` list (in the matrix, or in a file given to `envkit validate --checks FILE`) is parsed here
into frozen values with file:line errors. Each check has an `id` (reported as `user.<id>`) and exactly
one kind:

- command:  {argv: [..], exit_code: 0, stdout: REGEX, stderr: REGEX, timeout_s: 30}
- file:     {path: /etc/x (glob allowed), exists: true, mode: "0644", owner: root, type: file|dir|link}
- python:   {expression: "torch.get_num_threads() >= 1"} or {script: "..."}, timeout_s: 30
- env:      {name: APP_MODE, equals: batch} or {name: X, matches: REGEX} or {name: X, set: false}
- metadata: {user: "1001:1001", labels: {key: value}, exposed_ports: ["8080/tcp"]}

The first four run inside the image, in the probe's sandbox, each in its own child with its timeout
(envkit/probe/checks_user.py reads them as JSON); `metadata` checks read the image's configuration on
the host (the engine's image inspect), never anything the container says about itself.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.engine import ImageInfo
from envkit.errors import ConfigError, Where
from envkit.yamlsrc import SourceDoc, load_file

PREFIX = "user."
KINDS = ("command", "file", "python", "env", "metadata")
IN_IMAGE = ("command", "file", "python", "env")
KIND_KEYS: Mapping[str, tuple[str, ...]] = {
    "command": ("argv", "exit_code", "stdout", "stderr", "timeout_s"),
    "file": ("path", "exists", "mode", "owner", "type"),
    "python": ("expression", "script", "timeout_s"),
    "env": ("name", "equals", "matches", "set"),
    "metadata": ("user", "labels", "exposed_ports"),
}
FILE_TYPES = ("file", "dir", "link")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,58}")
_MODE = re.compile(r"0?[0-7]{3,4}")


@dataclass(frozen=True, kw_only=True)
class UserCheck:
    """One declared check: its full id (`user.<id>`), its kind and that kind's settings (JSON values)."""

    id: str
    kind: str
    settings: Mapping[str, Any]
    where: Where = field(compare=False, repr=False)

    @property
    def timeout_s(self) -> float:
        return float(self.settings.get("timeout_s", DEFAULT_TIMEOUT_S))


@dataclass(frozen=True, kw_only=True)
class UserChecks:
    """The checks of one file (or matrix), in their written order."""

    file: str
    checks: tuple[UserCheck, ...]

    def in_image(self) -> tuple[UserCheck, ...]:
        return tuple(check for check in self.checks if check.kind in IN_IMAGE)

    def metadata(self) -> tuple[UserCheck, ...]:
        return tuple(check for check in self.checks if check.kind == "metadata")

    def checks_file(self) -> str:
        """These checks as a checks file again (JSON, which `load_checks` reads as YAML)."""
        checks = [{"id": c.id.removeprefix(PREFIX), c.kind: _as_written(c)} for c in self.checks]
        return json.dumps({"version": 1, "checks": checks}, sort_keys=True, indent=1) + "\n"

    def probe_json(self) -> str:
        """The probe's input (`--user-checks FILE`): the in-image checks only."""
        checks = [{"id": c.id, "kind": c.kind, **c.settings} for c in self.in_image()]
        return json.dumps({"version": 1, "checks": checks}, sort_keys=True, indent=1) + "\n"


def _as_written(check: UserCheck) -> dict[str, Any]:
    """A check's settings as a checks file says them: the parser adds `set: true` to an env check that
    compares the value (and refuses it back alongside `equals`/`matches`), and keeps a file mode as a
    number, which a file writes in octal."""
    settings = dict(check.settings)
    if check.kind == "env" and ("equals" in settings or "matches" in settings):
        settings.pop("set", None)
    if check.kind == "file" and isinstance(settings.get("mode"), int):
        settings["mode"] = f"{settings['mode']:04o}"
    return settings


def load_checks(path: Path | str) -> UserChecks:
    """A checks file: `checks: [...]` (and optionally `version: 1`)."""
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise ConfigError("a checks file must be a mapping with a `checks` list", where=doc.where())
    for key in doc.data:
        if key not in ("version", "checks"):
            _unknown(doc, key, ("version", "checks"), ())
    if doc.data.get("version", 1) != 1:
        raise ConfigError("unsupported checks version", where=doc.where("version"), hint="write `version: 1`")
    return parse_checks(doc, ("checks",))


def parse_checks(doc: SourceDoc, path: tuple[Any, ...]) -> UserChecks:
    """The list at `path` of `doc` (a checks file or a matrix's `checks:` section)."""
    items = _get(doc.data, path)
    if not isinstance(items, list):
        raise ConfigError(
            "`checks` must be a list of checks",
            where=doc.where(*path),
            hint="e.g. checks: [{id: app-mode, env: {name: APP_MODE, equals: batch}}]",
        )
    checks: list[UserCheck] = []
    for index, item in enumerate(items):
        check = _check(doc, (*path, index), item)
        if any(seen.id == check.id for seen in checks):
            raise ConfigError(f"check id `{check.id}` is used twice", where=doc.where(*path, index, "id"))
        checks.append(check)
    return UserChecks(file=doc.file, checks=tuple(checks))


NO_IMAGE_HERE = "no image configuration to read (the probe ran on this host)"


def metadata_records(
    checks: UserChecks, image: ImageInfo | None, why_not: str = NO_IMAGE_HERE
) -> list[dict[str, Any]]:
    """Report records (envkit.report shape) for the `metadata` checks, judged from the image's config;
    SKIP, saying `why_not`, when there is no image (the probe ran on a host, `--local`, or as a job)."""
    if image is None:
        return [_skipped(check, why_not) for check in checks.metadata()]
    return [_metadata_record(check, image) for check in checks.metadata()]


def _skipped(check: UserCheck, why_not: str) -> dict[str, Any]:
    return {
        "id": check.id,
        "status": "SKIP",
        "summary": why_not,
        "metrics": {},
        "duration_s": 0.0,
        "hint": None,
        "device": None,
        "details": {"kind": "metadata", "expected": dict(check.settings)},
    }


# --- parsing -------------------------------------------------------------------------------------------


def _check(doc: SourceDoc, path: tuple[Any, ...], item: Any) -> UserCheck:
    where = doc.where(*path)
    if not isinstance(item, dict):
        raise ConfigError(
            "each check must be a mapping with `id` and one kind",
            where=where,
            hint=f"kinds: {', '.join(KINDS)}",
        )
    for key in item:
        if key != "id" and key not in KINDS:
            _unknown(doc, key, ("id", *KINDS), path)
    raw_id = item.get("id")
    if not isinstance(raw_id, str) or not _ID.fullmatch(raw_id.removeprefix(PREFIX)):
        raise ConfigError(
            f"{raw_id!r} is not a check id",
            where=doc.where(*path, "id"),
            hint="lower-case letters, digits and . _ - (reported as user.<id>)",
        )
    kinds = [kind for kind in KINDS if kind in item]
    if len(kinds) != 1:
        raise ConfigError(f"check `{raw_id}` needs exactly one of: {', '.join(KINDS)}", where=where)
    kind = kinds[0]
    here = (*path, kind)
    body = item[kind]
    if not isinstance(body, dict):
        raise ConfigError(f"`{kind}` must be a mapping", where=doc.where(*here))
    for key in body:
        if key not in KIND_KEYS[kind]:
            _unknown(doc, key, KIND_KEYS[kind], here)
    settings = _SETTINGS[kind](doc, here, body)
    return UserCheck(id=PREFIX + raw_id.removeprefix(PREFIX), kind=kind, settings=settings, where=where)


def _command(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> dict[str, Any]:
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str | int | float) for a in argv):
        raise ConfigError(
            "`argv` must be a non-empty list of words",
            where=doc.where(*path, "argv"),
            hint="e.g. argv: [git, --version] (no shell: use [sh, -c, '...'] for one)",
        )
    out: dict[str, Any] = {"argv": [doc.text(*path, "argv", i) or str(a) for i, a in enumerate(argv)]}
    code = body.get("exit_code", 0)
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise ConfigError("`exit_code` must be 0..255", where=doc.where(*path, "exit_code"))
    out["exit_code"] = code
    for stream in ("stdout", "stderr"):
        if stream in body:
            out[stream] = _regex(doc, (*path, stream), body[stream])
    out["timeout_s"] = _timeout(doc, path, body)
    return out


def _file(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> dict[str, Any]:
    target = body.get("path")
    if not isinstance(target, str) or not target.startswith("/") or not target.isprintable():
        raise ConfigError("`path` must be an absolute path in the image", where=doc.where(*path, "path"))
    out: dict[str, Any] = {"path": target, "exists": _bool(doc, (*path, "exists"), body.get("exists", True))}
    if "mode" in body:
        mode = doc.text(*path, "mode") or str(body["mode"])
        if not _MODE.fullmatch(mode):
            raise ConfigError(
                f"`mode` {mode!r} is not an octal mode",
                where=doc.where(*path, "mode"),
                hint='quote it: mode: "0644"',
            )
        out["mode"] = int(mode, 8)
    if "owner" in body:
        owner = body["owner"]
        if isinstance(owner, bool) or not isinstance(owner, str | int) or not str(owner).isprintable():
            raise ConfigError("`owner` must be a user name or uid", where=doc.where(*path, "owner"))
        out["owner"] = str(owner)
    if "type" in body:
        if body["type"] not in FILE_TYPES:
            close = difflib.get_close_matches(str(body["type"]), FILE_TYPES, n=1)
            raise ConfigError(
                f"`type` must be one of {', '.join(FILE_TYPES)}",
                where=doc.where(*path, "type"),
                hint=f"did you mean `{close[0]}`?" if close else None,
            )
        out["type"] = body["type"]
    if not out["exists"] and len(out) > 2:
        raise ConfigError(
            "a file that must not exist has no mode, owner or type", where=doc.where(*path, "exists")
        )
    return out


def _python(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> dict[str, Any]:
    given = [key for key in ("expression", "script") if key in body]
    if len(given) != 1 or not isinstance(body[given[0]], str) or not body[given[0]].strip():
        raise ConfigError(
            "`python` needs one of `expression` or `script` (text)",
            where=doc.where(*path),
            hint='e.g. python: {expression: "torch.cuda.nccl.version() >= (2, 21)"}',
        )
    source = body[given[0]]
    try:
        compile(source, f"user check {given[0]}", "eval" if given[0] == "expression" else "exec")
    except SyntaxError as error:
        raise ConfigError(
            f"`{given[0]}` is not valid Python: {error.msg}", where=doc.where(*path, given[0])
        ) from None
    return {given[0]: source, "timeout_s": _timeout(doc, path, body)}


def _env(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError("`name` must be an environment variable name", where=doc.where(*path, "name"))
    tests = [key for key in ("equals", "matches", "set") if key in body]
    if len(tests) > 1:
        raise ConfigError("use one of `equals`, `matches` or `set`", where=doc.where(*path))
    out: dict[str, Any] = {"name": name, "set": True}
    if "equals" in body:
        out["equals"] = doc.text(*path, "equals") or str(body["equals"])
    elif "matches" in body:
        out["matches"] = _regex(doc, (*path, "matches"), body["matches"])
    elif "set" in body:
        out["set"] = _bool(doc, (*path, "set"), body["set"])
    return out


def _metadata(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "user" in body:
        out["user"] = doc.text(*path, "user") or str(body["user"])
    if "labels" in body:
        labels = body["labels"]
        if not isinstance(labels, dict):
            raise ConfigError(
                "`labels` must be a mapping of label to value", where=doc.where(*path, "labels")
            )
        out["labels"] = {str(k): doc.text(*path, "labels", k) or str(v) for k, v in labels.items()}
    if "exposed_ports" in body:
        ports = body["exposed_ports"]
        if not isinstance(ports, list):
            raise ConfigError(
                "`exposed_ports` must be a list like [8080/tcp]", where=doc.where(*path, "exposed_ports")
            )
        out["exposed_ports"] = sorted(_port(str(p)) for p in ports)
    if not out:
        raise ConfigError("`metadata` needs `user`, `labels` or `exposed_ports`", where=doc.where(*path))
    return out


_SETTINGS = {"command": _command, "file": _file, "python": _python, "env": _env, "metadata": _metadata}


def _timeout(doc: SourceDoc, path: tuple[Any, ...], body: dict[str, Any]) -> float:
    value = body.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_S:
        raise ConfigError(
            f"`timeout_s` must be a number of seconds up to {MAX_TIMEOUT_S:.0f}",
            where=doc.where(*path, "timeout_s"),
        )
    return float(value)


def _regex(doc: SourceDoc, path: tuple[Any, ...], value: Any) -> str:
    text = doc.text(*path) or str(value)
    try:
        re.compile(text)
    except re.error as error:
        raise ConfigError(f"not a regular expression: {error}", where=doc.where(*path)) from None
    return text


def _bool(doc: SourceDoc, path: tuple[Any, ...], value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", where=doc.where(*path))
    return value


def _port(text: str) -> str:
    return text if "/" in text else f"{text}/tcp"


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _unknown(doc: SourceDoc, key: Any, known: Sequence[str], path: tuple[Any, ...]) -> None:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
    raise ConfigError(f"unknown key `{key}`", where=doc.where(*path, key), hint=hint)


# --- metadata, judged on the host -----------------------------------------------------------------------


def _metadata_record(check: UserCheck, image: ImageInfo) -> dict[str, Any]:
    want = check.settings
    problems = []
    have: dict[str, Any] = {}
    if "user" in want:
        have["user"] = image.user
        if image.user != want["user"]:
            problems.append(f"user is {image.user or '(root, unset)'!r}, not {want['user']!r}")
    for key, value in want.get("labels", {}).items():
        found = image.labels.get(key)
        have.setdefault("labels", {})[key] = found
        if found != value:
            problems.append(f"label {key} is {found!r}, not {value!r}")
    if "exposed_ports" in want:
        ports = sorted(image.exposed_ports)
        have["exposed_ports"] = ports
        if ports != want["exposed_ports"]:
            problems.append(f"exposed ports are {ports}, not {want['exposed_ports']}")
    status = "FAIL" if problems else "PASS"
    summary = "; ".join(problems) if problems else "the image configuration matches"
    return {
        "id": check.id,
        "status": status,
        "summary": summary[:300],
        "metrics": {},
        "duration_s": 0.0,
        "hint": f"declared at {check.where}" if problems else None,
        "device": None,
        "details": {"kind": "metadata", "expected": dict(want), "found": have},
    }
