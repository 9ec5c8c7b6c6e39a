"""The injection guard: every value that reaches a Dockerfile, a tag, a label or a file path passes here.

Values are checked against narrow grammars (versions, image references, pip requirements) rather than
escaped after the fact; a value that does not fit is rejected with the place it came from.
"""

from __future__ import annotations

import re

from envkit.errors import UnsafeValueError, Where

# [0-9], not \d: in a str pattern \d also matches other scripts' digits ("２.６", "٣.١١").
_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,6}){0,3}")
_LOCAL_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,6}){0,3}(\+[a-z0-9]{1,16})?")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Docker reference grammar (distribution/reference), restricted to lower-case path components.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_REGISTRY = re.compile(rf"{_DOMAIN}(?:/{_COMPONENT})*")
_IMAGE_REF = re.compile(
    rf"{_REPOSITORY.pattern}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?"
)
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,100}[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:===|==|!=|~=|>=|<=|<|>)[A-Za-z0-9.*+!_-]{1,64}(?:,(?:===|==|!=|~=|>=|<=|<|>)[A-Za-z0-9.*+!_-]{1,64})*)?"
)
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/+-]*)?")
_LABEL_KEY = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,126}[a-z0-9])?")
_PATH_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
MAX_LABEL_VALUE = 1024
MAX_NAME = 255  # Docker's limit on a repository name, registry host included
MAX_IMAGE_REF = MAX_NAME + len(":") + 128 + len("@sha256:") + 64


def _check(
    pattern: re.Pattern[str], value: object, what: str, where: Where | None, example: str, limit: int = 0
) -> str:
    if not isinstance(value, str) or (limit and len(value) > limit) or not pattern.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise UnsafeValueError(f"{shown} is not a valid {what}", where=where, hint=f"expected e.g. {example}")
    return value


def version(value: object, where: Where | None = None, *, local: bool = False) -> str:
    """A dotted numeric version (optionally with a `+local` suffix)."""
    pattern = _LOCAL_VERSION if local else _VERSION
    return _check(pattern, value, "version", where, "2.6.0" + ("+cu124" if local else ""))


def name(value: object, where: Where | None = None) -> str:
    """A lower-case identifier such as an OS, flavor or variant name."""
    return _check(_NAME, value, "name", where, "ubuntu22.04")


def tag(value: object, where: Where | None = None) -> str:
    """A Docker image tag (128 characters of [A-Za-z0-9_.-], not starting with . or -)."""
    return _check(_TAG, value, "image tag", where, "2.6.0-cu124-py3.11")


def repository(value: object, where: Where | None = None) -> str:
    """An image repository name, optionally with a registry host (lower case)."""
    return _check(_REPOSITORY, value, "image repository", where, "ghcr.io/acme/pytorch", MAX_NAME)


def registry(value: object, where: Where | None = None) -> str:
    """A registry host[:port], optionally with a path prefix (e.g. ghcr.io/acme or localhost:5000)."""
    return _check(_REGISTRY, value, "registry", where, "ghcr.io/acme or localhost:5000", MAX_NAME)


def image_ref(value: object, where: Where | None = None) -> str:
    """A full image reference: repository[:tag][@sha256:digest]."""
    return _check(
        _IMAGE_REF, value, "image reference", where, "nvidia/cuda:12.4.1-base-ubuntu22.04", MAX_IMAGE_REF
    )


def requirement(value: object, where: Where | None = None) -> str:
    """A pip requirement without markers, URLs, spaces or options: name[extras]op version,..."""
    return _check(_REQUIREMENT, value, "pip requirement", where, "numpy==2.1.3 or transformers>=4.46,<5")


def url(value: object, where: Where | None = None) -> str:
    """An http(s) URL without credentials, query strings or spaces."""
    return _check(_URL, value, "URL", where, "https://example.org/whl")


def label_key(value: object, where: Where | None = None) -> str:
    """A label key in reverse-DNS style (lower case, dots and dashes)."""
    return _check(_LABEL_KEY, value, "label key", where, "org.example.team")


def path_part(value: object, where: Where | None = None) -> str:
    """One file-name component (no separators, no `..`, no leading dot)."""
    return _check(_PATH_PART, value, "file name", where, "2.6.0-cu124-py3.11-ubuntu22.04-runtime")


def label_value(value: object, where: Where | None = None) -> str:
    """Free text for a label: printable, one line, bounded."""
    if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE or not value.isprintable():
        raise UnsafeValueError(
            "label values must be printable one-line text of at most "
            f"{MAX_LABEL_VALUE} characters, got {str(value)[:40]!r}",
            where=where,
        )
    return value


def dockerfile_quote(value: str) -> str:
    """Quote a checked label value for a Dockerfile LABEL line (no variable expansion, no escapes)."""
    label_value(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


# --- the keys that make an image yours (envkit.custom) -------------------------------------------------

# Debian policy: a package name is [a-z0-9][a-z0-9+.-]+; a version is [epoch:]upstream[-revision].
_APT_PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9+.-]{1,100}(?:=(?:[0-9]{1,4}:)?[A-Za-z0-9][A-Za-z0-9.+~-]{0,100})?"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_IMAGE_PATH = re.compile(r"(?:/[A-Za-z0-9._+@=,-]{1,255}){1,32}/?")
MAX_SHELL_LINE = 4096


def apt_package(value: object, where: Where | None = None) -> str:
    """A Debian package name, optionally pinned as name=version."""
    return _check(_APT_PACKAGE, value, "Debian package", where, "libgl1 or git=1:2.39.5-0+deb12u2")


def env_name(value: object, where: Where | None = None) -> str:
    """An environment variable name: letters, digits and _, not starting with a digit."""
    return _check(_ENV_NAME, value, "environment variable name", where, "APP_MODE")


def env_value(value: object, where: Where | None = None) -> str:
    """An environment value: printable one-line text (written quoted, without $ expansion)."""
    return label_value(value, where)


def user_name(value: object, where: Where | None = None) -> str:
    """A POSIX user or group name (lower case, at most 32 characters)."""
    return _check(_USER_NAME, value, "user name", where, "app")


def image_path(value: object, where: Where | None = None) -> str:
    """An absolute path in the image: no spaces, quotes or variables, no `.` or `..` component."""
    checked = _check(_IMAGE_PATH, value, "absolute path in the image", where, "/etc/app/app.cfg", 1024)
    if any(part in (".", "..") for part in checked.split("/")):
        raise UnsafeValueError(
            f"{checked!r} has a . or .. component", where=where, hint="write the path plainly"
        )
    return checked


def shell_line(value: object, where: Where | None = None) -> str:
    """One line of shell for a RUN instruction: printable, no line break, no trailing backslash (which
    would continue the instruction onto the next line), no heredoc (`<<`, which BuildKit reads as the
    following lines of the Dockerfile) and no JSON exec form."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_SHELL_LINE
        or not value.isprintable()
    ):
        raise UnsafeValueError(
            f"a step must be one printable line of at most {MAX_SHELL_LINE} characters, "
            f"got {str(value)[:40]!r}",
            where=where,
            hint="join commands with && on one line, or copy a script (`copy`) and run it",
        )
    stripped = value.strip()
    if stripped.endswith("\\") or "<<" in stripped or stripped.startswith("["):
        raise UnsafeValueError(
            f"{stripped[:40]!r}: a step may not end in a backslash, use a heredoc (<<) or start with [",
            where=where,
            hint="copy a script into the image (`copy`) and run it in a step",
        )
    return stripped
