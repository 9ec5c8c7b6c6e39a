"""Validation reports (schema "envkit.report/2"): frozen dataclasses, a strict loader, a deterministic dump.

The dataclasses below are the one definition of the schema: the JSON keys, which of them may be left
out (those with a default) and the writer are all derived from their fields. Reports of the previous
schema ("envkit.report/1", the same shape without the host's CPU, load and GPU clock facts) still load.

A report file is untrusted input (it may come from a CI artifact someone else produced), so the loader
checks every type, refuses unknown keys, NaN/Infinity, duplicate keys, control characters and huge
files, and names the file and JSON path of the first problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.errors import ConfigError, Where
from envkit.probe.context import PRESETS
from envkit.probe.outcome import NA, STATUSES, worst

SCHEMA = "envkit.report/2"
# Schemas this envkit reads; every one of them loads into the current dataclasses.
READABLE_SCHEMAS = ("envkit.report/1", SCHEMA)
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
    # What moves the numbers, read by the host's NVML when the run started (schema 2).
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True, kw_only=True)
class Host:
    """Fingerprint of the machine the checks ran on, collected on the host (not inside the image)."""

    hostname: str
    platform: str
    python: str
    driver: str | None = None
    cuda_driver: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    # Schema 2: what moves CPU numbers. Cores available to envkit's process (affinity), the cgroup's CPU
    # quota in cores (None: unlimited), and the 1/5/15-minute load average before and after the run.
    cpu_model: str | None = None
    cpu_count: int | None = None
    cpus_available: int | None = None
    cgroup_cpu_quota: float | None = None
    loadavg_before: tuple[float, ...] | None = None
    loadavg_after: tuple[float, ...] | None = None

    def hardware_class(self) -> str | None:
        """What a baseline must share to be comparable: the GPU model (of the first GPU, the one the
        throughput check measures), or on a host without GPUs the CPU model and the cores available;
        None when the report does not record them (schema 1 CPU reports)."""
        if self.gpus:
            return f"gpu: {self.gpus[0].name}"
        if self.cpu_model is None or self.cpus_available is None:
            return None
        return f"cpu: {self.cpu_model} x{self.cpus_available}"


@dataclass(frozen=True, kw_only=True)
class ReportImage:
    """The image the checks ran in (absent for `validate --local`)."""

    ref: str
    id: str | None = None
    digest: str | None = None  # the registry manifest digest (sha256:...) validated, when known
    labels: Mapping[str, str] = field(default_factory=dict)


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

    exit_code: int | None = None
    oom_killed: bool
    timed_out: bool
    duration_s: float
    cpus: float | None = None  # the CPU limit the runner gave the container, in cores (schema 2)


@dataclass(frozen=True, kw_only=True)
class Report:
    """A parsed validation report; `source` is the file it came from (not part of the JSON)."""

    schema: str
    envkit_version: str
    created: str
    profile: str
    mode: str
    image: ReportImage | None
    host: Host
    checks: tuple[Check, ...]
    runner: RunnerFate | None = None
    source: str = field(default="", compare=False, metadata={"json": False})

    @property
    def label(self) -> str:
        """How people name this report: the image ref, or `local:<hostname>` for a host run."""
        return self.image.ref if self.image else f"local:{self.host.hostname}"

    @property
    def cell(self) -> str | None:
        """The envkit cell id from the image labels, when envkit built the image."""
        return self.image.labels.get(L.CELL) if self.image else None

    @property
    def profile_label(self) -> str:
        """The profile as it really ran: `full` on a host without a GPU measures the tiny model, not
        the 1b one, and says so (`full (tiny model)`); a preset chosen by hand is named the same way."""
        expected = "1b" if self.profile == "full" else "tiny"
        for check in self.find("throughput.generate"):
            preset = check.details.get("preset")
            # The image's word, so only one of the probe's own preset names is shown (never other text).
            if preset in PRESETS and preset != expected:
                return f"{self.profile} ({preset} model)"
        return self.profile

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
        """The worst status among the checks in envkit's one severity order; PASS when empty.

        N/A checks do not count: a report whose checks are all N/A or PASS is PASS.
        """
        return worst(check.status for check in self.checks if check.status != NA)

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
    """The report as plain JSON values in the current schema: keys in field order, maps sorted."""
    data = _to_json(report)
    data["schema"] = SCHEMA
    return data


def dump_report(report: Report) -> str:
    """Deterministic JSON text of a report (same report, same bytes), ending in a newline."""
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in _json_fields(type(value))}
    if isinstance(value, Mapping):
        return {key: _to_json(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    return value


def _json_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.metadata.get("json", True))


def schema_keys(cls: type) -> tuple[str, ...]:
    """The JSON keys of one schema object (a report dataclass), in the order the writer emits them."""
    return tuple(f.name for f in _json_fields(cls))


def optional_keys(cls: type) -> tuple[str, ...]:
    """The keys a reader may find absent: those whose field has a default."""
    return tuple(
        f.name for f in _json_fields(cls) if f.default is not MISSING or f.default_factory is not MISSING
    )


class _BadJSON(ValueError):
    pass


def _read_capped(path: Path) -> str:
    where = Where(str(path))
    try:
        # Opened without blocking and checked before reading: a FIFO or device named *.json would
        # otherwise hang the reader or feed it without end.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(mode):
                raise ConfigError("is not a regular file (a pipe or device?); not read", where=where)
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


class _Reader:
    """Walks decoded JSON with a path so every error says where it is."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: tuple[Any, ...], message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, where=Where(self.source, None, _json_path(path)), hint=hint)

    def obj(self, value: Any, path: tuple[Any, ...], cls: type) -> dict[str, Any]:
        keys, optional = schema_keys(cls), optional_keys(cls)
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, got {_kind(value)}")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(keys)}"
                raise self.fail((*path, key), f"unknown key {_short(key)!r}", hint)
        for key in keys:
            if key not in value and key not in optional:
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
        if isinstance(data, dict) and data.get("schema") not in READABLE_SCHEMAS:
            schema = data.get("schema")
            raise self.fail(
                ("schema",),
                f"unknown report schema {_short(str(schema))!r}; this envkit reads "
                f"{' and '.join(repr(known) for known in READABLE_SCHEMAS)}",
                "re-run the validation with this envkit version, or gate with the envkit that wrote it",
            )
        data = self.obj(data, (), Report)
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

    def image(self, value: Any, path: tuple[Any, ...]) -> ReportImage:
        data = self.obj(value, path, ReportImage)
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise self.fail((*path, "labels"), f"expected a JSON object, got {_kind(labels)}")
        checked = {
            self.string(key, (*path, "labels", key)): self.string(val, (*path, "labels", key), empty=True)
            for key, val in labels.items()
        }
        return ReportImage(
            ref=self.string(data["ref"], (*path, "ref")),
            id=self.opt_string(data.get("id"), (*path, "id")),
            labels=checked,
            digest=self.digest(data.get("digest"), (*path, "digest")),
        )

    def host(self, value: Any, path: tuple[Any, ...]) -> Host:
        data = self.obj(value, path, Host)
        gpus = self.listing(data.get("gpus", []), (*path, "gpus"), self.gpu)
        quota = data.get("cgroup_cpu_quota")
        return Host(
            hostname=self.string(data["hostname"], (*path, "hostname"), empty=True),
            platform=self.string(data["platform"], (*path, "platform"), empty=True),
            python=self.string(data["python"], (*path, "python"), empty=True),
            driver=self.opt_string(data.get("driver"), (*path, "driver")),
            cuda_driver=self.opt_string(data.get("cuda_driver"), (*path, "cuda_driver")),
            gpus=tuple(gpus),
            cpu_model=self.opt_string(data.get("cpu_model"), (*path, "cpu_model")),
            cpu_count=self.opt_integer(data.get("cpu_count"), (*path, "cpu_count")),
            cpus_available=self.opt_integer(data.get("cpus_available"), (*path, "cpus_available")),
            cgroup_cpu_quota=None
            if quota is None
            else self.number(quota, (*path, "cgroup_cpu_quota"), minimum=0),
            loadavg_before=self.loadavg(data.get("loadavg_before"), (*path, "loadavg_before")),
            loadavg_after=self.loadavg(data.get("loadavg_after"), (*path, "loadavg_after")),
        )

    def loadavg(self, value: Any, path: tuple[Any, ...]) -> tuple[float, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(path, "expected the 1, 5 and 15-minute load averages: an array of 3 numbers")
        return tuple(self.number(item, (*path, i), minimum=0) for i, item in enumerate(value))

    def gpu(self, value: Any, path: tuple[Any, ...]) -> GpuInfo:
        data = self.obj(value, path, GpuInfo)
        ints = {
            key: self.opt_integer(data.get(key), (*path, key))
            for key in (
                "memory_total_mib",
                "mem_clock_max_mhz",
                "bus_width_bits",
                "sm_clock_max_mhz",
                "sm_clock_mhz",
                "mem_clock_mhz",
            )
        }
        power = data.get("power_limit_w")
        return GpuInfo(
            index=self.integer(data["index"], (*path, "index")),
            name=self.string(data["name"], (*path, "name")),
            uuid=self.opt_string(data.get("uuid"), (*path, "uuid")),
            compute_capability=self.opt_string(data.get("compute_capability"), (*path, "compute_capability")),
            power_limit_w=None if power is None else self.number(power, (*path, "power_limit_w"), minimum=0),
            **ints,
        )

    def check(self, value: Any, path: tuple[Any, ...]) -> Check:
        data = self.obj(value, path, Check)
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
            duration_s=self.number(data.get("duration_s", 0.0), (*path, "duration_s"), minimum=0),
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
        data = self.obj(value, path, RunnerFate)
        exit_code = data.get("exit_code")
        if exit_code is not None:
            self.integer(exit_code, (*path, "exit_code"), minimum=-(2**31))
        cpus = data.get("cpus")
        return RunnerFate(
            exit_code=exit_code,
            oom_killed=self.boolean(data["oom_killed"], (*path, "oom_killed")),
            timed_out=self.boolean(data["timed_out"], (*path, "timed_out")),
            duration_s=self.number(data["duration_s"], (*path, "duration_s"), minimum=0),
            cpus=None if cpus is None else self.number(cpus, (*path, "cpus"), minimum=0),
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
