"""Validation reports (schema "envkit.report/1"): frozen dataclasses, a strict loader, a deterministic dump.

A report file is untrusted input (it may come from a CI artifact someone else produced), so the loader
checks every type, refuses unknown keys, NaN/Infinity, duplicate keys, control characters and huge
files, and names the file and JSON path of the first problem.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.errors import ConfigError, Where

SCHEMA = "envkit.report/1"
STATUSES = ("PASS", "WARN", "FAIL", "SKIP", "ERROR")
PROFILES = ("quick", "full")
MODES = ("container", "local")
# json builds every value before any check runs: 16 MiB of `[{},{},...]` peaked at 850 MB.
MAX_REPORT_BYTES = 4 * 1024 * 1024
MAX_STRING_CHARS = 65_536
MAX_DEPTH = 32

# \Z, not $: `$` also matches before a trailing newline.
CHECK_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
METRIC_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
# C0 controls (except tab/newline where multi-line text is allowed), DEL and C1 controls: they can
# rewrite a terminal or break XML, and no honest report needs them. Lone surrogates cannot be written
# as UTF-8 and U+FFFE/U+FFFF are not XML characters, so they are refused with them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

HIGHER_IS_BETTER = frozenset(
    {"decode_tokens_per_s", "tokens_per_s_nocache", "kv_speedup", "bandwidth_utilisation"}
)
LOWER_IS_BETTER = frozenset({"ttft_ms", "tpot_ms", "itl_p50_ms", "itl_p99_ms", "peak_memory_mib"})


@dataclass(frozen=True, kw_only=True)
class GpuInfo:
    """One GPU of the host that produced the report."""

    index: int
    name: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    compute_capability: str | None = None
    mem_clock_max_mhz: int | None = None
    bus_width_bits: int | None = None
    sm_clock_max_mhz: int | None = None


@dataclass(frozen=True, kw_only=True)
class Host:
    """Fingerprint of the machine the checks ran on."""

    hostname: str
    platform: str
    python: str
    driver: str | None = None
    cuda_driver: str | None = None
    gpus: tuple[GpuInfo, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    """The image the checks ran in (absent for `validate --local`)."""

    ref: str
    id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    digest: str | None = None  # the registry manifest digest (sha256:...) validated, when known


@dataclass(frozen=True, kw_only=True)
class Check:
    """One check record; `device` is the GPU index for per-device checks."""

    id: str
    status: str
    summary: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    hint: str | None = None
    device: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """`gpu.kernels[gpu0]` for per-device records, else the plain id."""
        return self.id if self.device is None else f"{self.id}[gpu{self.device}]"


@dataclass(frozen=True, kw_only=True)
class RunnerFate:
    """What happened to the container that ran the probe."""

    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class Report:
    """A parsed validation report; `source` is the file it came from (not part of the JSON)."""

    schema: str
    envkit_version: str
    created: str
    profile: str
    mode: str
    image: ImageInfo | None
    host: Host
    checks: tuple[Check, ...]
    runner: RunnerFate | None
    source: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """How people name this report: the image ref, or `local:<hostname>` for a host run."""
        return self.image.ref if self.image else f"local:{self.host.hostname}"

    @property
    def cell(self) -> str | None:
        """The envkit cell id from the image labels, when envkit built the image."""
        return self.image.labels.get(L.CELL) if self.image else None

    @property
    def gpu_model(self) -> str:
        """The first GPU's name, or "cpu" on a host without GPUs."""
        return self.host.gpus[0].name if self.host.gpus else "cpu"

    def gpu_name(self, device: int | None) -> str:
        """Name of GPU `device` (the first GPU when None); "cpu" when the host has none."""
        for gpu in self.host.gpus:
            if device is None or gpu.index == device:
                return gpu.name
        return self.gpu_model

    def find(self, check_id: str) -> tuple[Check, ...]:
        """Every record of `check_id` (several when the check ran per device)."""
        return tuple(check for check in self.checks if check.id == check_id)

    def worst_status(self) -> str:
        """The worst status among the checks (ERROR > FAIL > WARN > SKIP > PASS); PASS when empty."""
        order = ("PASS", "SKIP", "WARN", "FAIL", "ERROR")
        return max((check.status for check in self.checks), key=order.index, default="PASS")

    def versions(self) -> dict[str, str]:
        """Versions worth showing side by side: image labels envkit sets, plus driver and envkit."""
        image_labels = self.image.labels if self.image else {}
        keys = ("torch", "torch-variant", "cuda", "cudnn", "python", "os", "flavor")
        found = {key: image_labels[L.key(key)] for key in keys if image_labels.get(L.key(key))}
        found["driver"] = self.host.driver or "-"
        found["gpu"] = self.gpu_model
        found["envkit"] = self.envkit_version
        return found


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")


def clean_text(text: str, *, multiline: bool = False) -> str:
    """`text` made acceptable to `load_report`: ANSI sequences dropped, other controls shown as `?`.

    For writers of reports (the runner's log tails, exception messages): one line unless `multiline`,
    where newlines and tabs stay; `\\r\\n` becomes `\\n`.
    """
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    if not multiline:
        text = " ".join(text.split("\n"))
    pattern = _CONTROL if multiline else _CONTROL_ONE_LINE
    return pattern.sub("?", text)[:MAX_STRING_CHARS]


def metric_direction(name: str) -> str | None:
    """ "higher" or "lower" is better for a metric name, or None when envkit cannot tell."""
    if name in HIGHER_IS_BETTER:
        return "higher"
    if name in LOWER_IS_BETTER:
        return "lower"
    if name.endswith(("_per_s", "_speedup", "_utilisation", "_utilization", "_tflops", "_gbps")):
        return "higher"
    if name.endswith(("_ms", "_us", "_err", "_error")) or "memory" in name:
        return "lower"
    return None


def load_report(path: Path | str) -> Report:
    """Read, check and parse a report file; every problem is a ConfigError naming the file and JSON path."""
    path = Path(path)
    text = _read_capped(path)
    try:
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", where=Where(str(path), exc.lineno)) from None
    except _BadJSON as exc:
        raise ConfigError(str(exc), where=Where(str(path))) from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"not acceptable JSON: {exc}", where=Where(str(path))) from None
    return report_from_dict(data, source=str(path))


def report_from_dict(data: Any, *, source: str = "<report>") -> Report:
    """Build a Report from already-decoded JSON, with the same strict checks as `load_report`."""
    reader = _Reader(source)
    return reader.report(data)


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON values, keys in schema order, maps sorted."""
    image = None
    if report.image:
        image = {
            "ref": report.image.ref,
            "id": report.image.id,
            "labels": dict(sorted(report.image.labels.items())),
        }
        if report.image.digest is not None:  # only registry-validated images have one
            image["digest"] = report.image.digest
    runner = None
    if report.runner:
        runner = {
            "exit_code": report.runner.exit_code,
            "oom_killed": report.runner.oom_killed,
            "timed_out": report.runner.timed_out,
            "duration_s": report.runner.duration_s,
        }
    return {
        "schema": report.schema,
        "envkit_version": report.envkit_version,
        "created": report.created,
        "profile": report.profile,
        "mode": report.mode,
        "image": image,
        "host": _host_to_dict(report.host),
        "checks": [_check_to_dict(check) for check in report.checks],
        "runner": runner,
    }


def dump_report(report: Report) -> str:
    """Deterministic JSON text of a report (same report, same bytes), ending in a newline."""
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _host_to_dict(host: Host) -> dict[str, Any]:
    gpus = [
        {
            "index": g.index,
            "name": g.name,
            "uuid": g.uuid,
            "memory_total_mib": g.memory_total_mib,
            "compute_capability": g.compute_capability,
            "mem_clock_max_mhz": g.mem_clock_max_mhz,
            "bus_width_bits": g.bus_width_bits,
            "sm_clock_max_mhz": g.sm_clock_max_mhz,
        }
        for g in host.gpus
    ]
    return {
        "hostname": host.hostname,
        "platform": host.platform,
        "python": host.python,
        "driver": host.driver,
        "cuda_driver": host.cuda_driver,
        "gpus": gpus,
    }


def _check_to_dict(check: Check) -> dict[str, Any]:
    return {
        "id": check.id,
        "status": check.status,
        "summary": check.summary,
        "metrics": dict(sorted(check.metrics.items())),
        "duration_s": check.duration_s,
        "hint": check.hint,
        "device": check.device,
        "details": _sorted_json(check.details),
    }


def _sorted_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted_json(item) for item in value]
    return value


class _BadJSON(ValueError):
    pass


def _read_capped(path: Path) -> str:
    where = Where(str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("report file not found", where=where) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a report JSON file", where=where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read report: {exc.strerror}", where=where) from None
    if len(raw) > MAX_REPORT_BYTES:
        raise ConfigError(f"report is larger than {MAX_REPORT_BYTES} bytes; refusing to read it", where=where)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"report is not UTF-8 ({exc.reason})", where=where) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _BadJSON(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _BadJSON(f"{name} is not allowed in a report (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJSON(f"number {text[:40]} is out of range (numbers must be finite)")
    return value


_TOP_KEYS = ("schema", "envkit_version", "created", "profile", "mode", "image", "host", "checks", "runner")
_IMAGE_KEYS = ("ref", "id", "digest", "labels")
_HOST_KEYS = ("hostname", "platform", "python", "driver", "cuda_driver", "gpus")
_GPU_KEYS = (
    "index",
    "name",
    "uuid",
    "memory_total_mib",
    "compute_capability",
    "mem_clock_max_mhz",
    "bus_width_bits",
    "sm_clock_max_mhz",
)
_CHECK_KEYS = ("id", "status", "summary", "metrics", "duration_s", "hint", "device", "details")
_RUNNER_KEYS = ("exit_code", "oom_killed", "timed_out", "duration_s")
# Keys whose value may be null may also be left out.
_OPTIONAL = {
    "image": ("id", "digest", "labels"),
    "host": ("driver", "cuda_driver"),
    "gpu": (
        "uuid",
        "memory_total_mib",
        "compute_capability",
        "mem_clock_max_mhz",
        "bus_width_bits",
        "sm_clock_max_mhz",
    ),
    "check": ("hint", "device", "metrics", "details"),
    "runner": ("exit_code",),
    "top": ("runner",),
}


class _Reader:
    """Walks decoded JSON with a path so every error says where it is."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: tuple[Any, ...], message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, where=Where(self.source, None, _json_path(path)), hint=hint)

    def obj(self, value: Any, path: tuple[Any, ...], keys: tuple[str, ...], kind: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, got {_kind(value)}")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(keys)}"
                raise self.fail((*path, key), f"unknown key {_short(key)!r}", hint)
        for key in keys:
            if key not in value and key not in _OPTIONAL[kind]:
                raise self.fail((*path, key), "required key is missing")
        return value

    def string(
        self, value: Any, path: tuple[Any, ...], *, multiline: bool = False, empty: bool = False
    ) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if len(value) > MAX_STRING_CHARS:
            raise self.fail(path, f"string is longer than {MAX_STRING_CHARS} characters")
        if (_CONTROL if multiline else _CONTROL_ONE_LINE).search(value):
            raise self.fail(path, "string contains control characters")
        if not value and not empty:
            raise self.fail(path, "string must not be empty")
        return value

    def digest(self, value: Any, path: tuple[Any, ...]) -> str | None:
        text = self.opt_string(value, path)
        if text is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", text):
            raise self.fail(path, f"{_short(text)!r} is not a sha256 digest", "write sha256:<64 hex digits>")
        return text

    def opt_string(self, value: Any, path: tuple[Any, ...], *, multiline: bool = False) -> str | None:
        return None if value is None else self.string(value, path, multiline=multiline)

    def integer(self, value: Any, path: tuple[Any, ...], *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_kind(value)}")
        if value < minimum or value > 2**53:
            raise self.fail(path, f"integer {value} is out of range")
        return value

    def opt_integer(self, value: Any, path: tuple[Any, ...], *, minimum: int = 0) -> int | None:
        return None if value is None else self.integer(value, path, minimum=minimum)

    def number(self, value: Any, path: tuple[Any, ...], *, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {_kind(value)}")
        # abs() first: math.isfinite() of an int beyond float range raises OverflowError.
        if abs(value) > 1e300 or not math.isfinite(value):
            raise self.fail(path, "number must be finite")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"number {value} is below {minimum}")
        return value

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, value: Any, path: tuple[Any, ...], choices: tuple[str, ...]) -> str:
        text = self.string(value, path)
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1) or [c for c in choices if c == text.upper()]
            hint = f"did you mean {close[0]!r}?" if close else None
            raise self.fail(path, f"{_short(text)!r} is not one of {', '.join(choices)}", hint)
        return text

    def report(self, data: Any) -> Report:
        if isinstance(data, dict) and data.get("schema") != SCHEMA:
            schema = data.get("schema")
            raise self.fail(
                ("schema",),
                f"unknown report schema {_short(str(schema))!r}; this envkit reads {SCHEMA!r}",
                "re-run the validation with this envkit version, or gate with the envkit that wrote it",
            )
        data = self.obj(data, (), _TOP_KEYS, "top")
        checks = self.listing(data["checks"], ("checks",), self.check)
        return Report(
            schema=SCHEMA,
            envkit_version=self.string(data["envkit_version"], ("envkit_version",)),
            created=self.created(data["created"], ("created",)),
            profile=self.choice(data["profile"], ("profile",), PROFILES),
            mode=self.choice(data["mode"], ("mode",), MODES),
            image=None if data["image"] is None else self.image(data["image"], ("image",)),
            host=self.host(data["host"], ("host",)),
            checks=tuple(checks),
            runner=None if data.get("runner") is None else self.runner(data["runner"], ("runner",)),
            source=self.source,
        )

    def listing(
        self, value: Any, path: tuple[Any, ...], item: Callable[[Any, tuple[Any, ...]], Any]
    ) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a JSON array, got {_kind(value)}")
        if len(value) > 10_000:
            raise self.fail(path, "array has more than 10000 entries")
        return [item(entry, (*path, i)) for i, entry in enumerate(value)]

    def created(self, value: Any, path: tuple[Any, ...]) -> str:
        text = self.string(value, path)
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(path, f"{_short(text)!r} is not an ISO-8601 time") from None
        if stamp.utcoffset() != timedelta(0):
            raise self.fail(path, "time must be in UTC (ending in Z or +00:00)")
        return text

    def image(self, value: Any, path: tuple[Any, ...]) -> ImageInfo:
        data = self.obj(value, path, _IMAGE_KEYS, "image")
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise self.fail((*path, "labels"), f"expected a JSON object, got {_kind(labels)}")
        checked = {
            self.string(key, (*path, "labels", key)): self.string(val, (*path, "labels", key), empty=True)
            for key, val in labels.items()
        }
        return ImageInfo(
            ref=self.string(data["ref"], (*path, "ref")),
            id=self.opt_string(data.get("id"), (*path, "id")),
            labels=checked,
            digest=self.digest(data.get("digest"), (*path, "digest")),
        )

    def host(self, value: Any, path: tuple[Any, ...]) -> Host:
        data = self.obj(value, path, _HOST_KEYS, "host")
        gpus = self.listing(data["gpus"], (*path, "gpus"), self.gpu)
        return Host(
            hostname=self.string(data["hostname"], (*path, "hostname"), empty=True),
            platform=self.string(data["platform"], (*path, "platform"), empty=True),
            python=self.string(data["python"], (*path, "python"), empty=True),
            driver=self.opt_string(data.get("driver"), (*path, "driver")),
            cuda_driver=self.opt_string(data.get("cuda_driver"), (*path, "cuda_driver")),
            gpus=tuple(gpus),
        )

    def gpu(self, value: Any, path: tuple[Any, ...]) -> GpuInfo:
        data = self.obj(value, path, _GPU_KEYS, "gpu")
        ints = {
            key: self.opt_integer(data.get(key), (*path, key))
            for key in ("memory_total_mib", "mem_clock_max_mhz", "bus_width_bits", "sm_clock_max_mhz")
        }
        return GpuInfo(
            index=self.integer(data["index"], (*path, "index")),
            name=self.string(data["name"], (*path, "name")),
            uuid=self.opt_string(data.get("uuid"), (*path, "uuid")),
            compute_capability=self.opt_string(data.get("compute_capability"), (*path, "compute_capability")),
            **ints,
        )

    def check(self, value: Any, path: tuple[Any, ...]) -> Check:
        data = self.obj(value, path, _CHECK_KEYS, "check")
        check_id = self.string(data["id"], (*path, "id"))
        if not CHECK_ID.match(check_id):
            raise self.fail(
                (*path, "id"), f"check id {_short(check_id)!r} is not a valid id (like gpu.visibility)"
            )
        return Check(
            id=check_id,
            status=self.choice(data["status"], (*path, "status"), STATUSES),
            summary=self.string(data["summary"], (*path, "summary"), empty=True),
            metrics=self.metrics(data.get("metrics") or {}, (*path, "metrics")),
            duration_s=self.number(data["duration_s"], (*path, "duration_s"), minimum=0),
            hint=self.opt_string(data.get("hint"), (*path, "hint"), multiline=True),
            device=self.opt_integer(data.get("device"), (*path, "device")),
            details=self.details(data.get("details") or {}, (*path, "details")),
        )

    def metrics(self, value: Any, path: tuple[Any, ...]) -> dict[str, float]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, got {_kind(value)}")
        result: dict[str, float] = {}
        for key, number in value.items():
            if not METRIC_NAME.match(key):
                raise self.fail(
                    (*path, key), f"metric name {_short(key)!r} is not valid (letters, digits, _ . -)"
                )
            result[key] = self.number(number, (*path, key))
        return result

    def details(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, got {_kind(value)}")
        return self.free_json(value, path, 0)

    def free_json(self, value: Any, path: tuple[Any, ...], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(path, f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            return {
                self.string(key, (*path, key), empty=True): self.free_json(item, (*path, key), depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.free_json(item, (*path, i), depth + 1) for i, item in enumerate(value)]
        if isinstance(value, str):
            return self.string(value, path, multiline=True, empty=True)
        if isinstance(value, float):
            return self.number(value, path)
        return value

    def runner(self, value: Any, path: tuple[Any, ...]) -> RunnerFate:
        data = self.obj(value, path, _RUNNER_KEYS, "runner")
        exit_code = data.get("exit_code")
        if exit_code is not None:
            self.integer(exit_code, (*path, "exit_code"), minimum=-(2**31))
        return RunnerFate(
            exit_code=exit_code,
            oom_killed=self.boolean(data["oom_killed"], (*path, "oom_killed")),
            timed_out=self.boolean(data["timed_out"], (*path, "timed_out")),
            duration_s=self.number(data["duration_s"], (*path, "duration_s"), minimum=0),
        )


def _json_path(path: tuple[Any, ...]) -> str:
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{_short(str(part))}"
    return text


def _short(text: str) -> str:
    """Untrusted text quoted in an error: cut long, controls made visible."""
    text = text if len(text) <= 60 else text[:57] + "..."
    return _CONTROL_ONE_LINE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def check_path(path: Path, what: str) -> None:
    """Refuse a path the file system cannot even look up (e.g. a name too long) as a ConfigError.

    `is_dir()` and `exists()` raise for such errors instead of answering False; "not found" is left to
    the caller, which says it in its own words.
    """
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", where=Where(str(path))) from None


def load_reports(paths: list[Path]) -> list[Report]:
    """Reports from files and folders (a folder gives its *.json files, sorted by name)."""
    reports: list[Report] = []
    for path in paths:
        check_path(path, "the report path")
        if path.is_dir():
            files = sorted(path.glob("*.json"))
            if not files:
                raise ConfigError("folder holds no *.json reports", where=Where(str(path)))
            reports.extend(load_report(file) for file in files)
        else:
            reports.append(load_report(path))
    return reports
