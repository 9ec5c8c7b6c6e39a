"""Resolve a runner's settings once: command-line flags over the config file's `runner:` section over
defaults, every value checked where it is read (a flag by its name, a file value by file:line:key).

    runner:                       # e.g. envkit-runner.yaml, given with --runner-config
      partition: gpu
      account: ml-infra
      time: "00:30:00"
      constraint: "{gpu_type}"    # {gpu_type} becomes each job's GPU type
      container_runtime: pyxis
      gpus_per_job: 1
      gpu_types: [h100, a100]
      job_dir: /shared/envkit-jobs
      slurm_rest: http://slurm-rest.example:6820
      namespace: envkit
      max_wait: 7200
      envkit_command: /shared/envkit/bin/envkit   # how nodes run envkit (docker runtime)
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envkit.errors import ConfigError, UsageError, Where
from envkit.runners import CONTAINER_RUNTIMES, RUNNERS, ProbeSettings, RunnerConfig
from envkit.yamlsrc import load_file

WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Kubernetes label values (GPU products like NVIDIA-H100-80GB-HBM3): 63 characters, alphanumeric ends.
LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
TIME = re.compile(r"(?:[0-9]{1,3}-)?[0-9]{1,4}(?::[0-9]{1,2}){0,2}")
CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|,!*()\[\]:{}-]{1,256}")
URL = re.compile(r"(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?|unix://?/[A-Za-z0-9._/-]+)/?")
COMMAND_WORD = re.compile(r"[A-Za-z0-9_./+=:-]{1,512}")
NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# config file key → the flag that overrides it
_KEYS = {
    "partition": "--partition",
    "account": "--account",
    "time": "--time",
    "constraint": "--constraint",
    "container_runtime": "--container-runtime",
    "gpus_per_job": "--gpus-per-job",
    "gpu_types": "--gpu-type",
    "job_dir": "--job-dir",
    "slurm_rest": "--slurm-rest",
    "namespace": "--namespace",
    "max_wait": "--max-wait",
    "envkit_command": "--node-envkit",
}


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """The runner's settings and the GPU types to run on."""

    config: RunnerConfig
    gpu_types: tuple[str | None, ...]


def resolve(runner: str, flags: Mapping[str, Any], file: Path | None, probe: ProbeSettings) -> Resolved:
    """Flags (None when not given) over the file's `runner:` section over RunnerConfig's defaults."""
    if runner not in RUNNERS:
        raise UsageError(f"--runner {runner!r}: use local, {', '.join(RUNNERS)}")
    values: dict[str, tuple[Any, Where | str]] = _from_file(file) if file else {}
    for key, flag in _KEYS.items():
        if flags.get(key) is not None:
            values[key] = (flags[key], flag)
    checked = {key: _check(key, value, where, runner) for key, (value, where) in values.items()}
    gpu_types: tuple[str | None, ...] = tuple(checked.pop("gpu_types", ())) or (None,)
    renamed = {"time": "time_limit", "max_wait": "max_wait_s"}
    config = RunnerConfig(runner=runner, probe=probe, **{renamed.get(k, k): v for k, v in checked.items()})
    return Resolved(config=config, gpu_types=gpu_types)


def _from_file(file: Path) -> dict[str, tuple[Any, Where | str]]:
    doc = load_file(file)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("runner"), dict):
        raise ConfigError("expected a mapping with a 'runner:' section", where=doc.where())
    for key in data:
        if key != "runner":
            raise ConfigError(f"unknown key {key!r}", where=doc.where(key), hint="known keys: runner")
    section: dict[str, Any] = data["runner"]
    for key in section:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), list(_KEYS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(_KEYS)}"
            raise ConfigError(f"unknown key {key!r}", where=doc.where("runner", key), hint=hint)
    return {key: (value, doc.where("runner", key)) for key, value in section.items()}


def _fail(where: Where | str, message: str, hint: str | None = None) -> Exception:
    if isinstance(where, Where):
        return ConfigError(message, where=where, hint=hint)
    return UsageError(f"{where}: {message}", hint=hint)


def _check(key: str, value: Any, where: Where | str, runner: str) -> Any:
    if key in ("gpus_per_job", "max_wait"):
        return _number(key, value, where)
    if key == "gpu_types":
        return _gpu_types(value, where, runner)
    if key == "job_dir":
        return Path(_text(value, where))
    if key == "envkit_command":
        command = tuple(shlex.split(_text(value, where)))
        if not all(COMMAND_WORD.fullmatch(word) for word in command):
            raise _fail(where, f"{value!r} is not a command", "e.g. /shared/envkit/bin/envkit")
        return command
    text = _text(value, where)
    grammar = {
        "partition": (WORD, "letters, digits, '_', '.' or '-'"),
        "account": (WORD, "letters, digits, '_', '.' or '-'"),
        "time": (TIME, "Slurm's [days-]hours:minutes:seconds or minutes, e.g. 01:00:00"),
        "constraint": (CONSTRAINT, "a Slurm feature expression, e.g. h100|h200 or {gpu_type}"),
        "slurm_rest": (URL, "http(s)://host:port or unix:///path/to/slurmrestd.socket"),
        "namespace": (NAMESPACE, "a Kubernetes namespace name (lower-case, digits, '-')"),
    }
    if key == "container_runtime":
        if text not in CONTAINER_RUNTIMES:
            raise _fail(where, f"{text!r} is not a container runtime", f"use {', '.join(CONTAINER_RUNTIMES)}")
        return text
    pattern, expected = grammar[key]
    if not pattern.fullmatch(text):
        raise _fail(where, f"{text!r} is not valid", f"expected {expected}")
    return text


def _text(value: Any, where: Where | str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"expected text, got {value!r}")
    return value.strip()


def _number(key: str, value: Any, where: Where | str) -> int | float:
    try:
        number = float(value) if key == "max_wait" else int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0 or (key == "max_wait" and number == 0):
        what = "number of seconds" if key == "max_wait" else "count"
        raise _fail(where, f"{value!r} is not a valid {what}")
    return number


def _gpu_types(value: Any, where: Where | str, runner: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _fail(where, "expected a list of GPU types")
    pattern, what = (LABEL_VALUE, "a GPU product label") if runner == "kubernetes" else (WORD, "a GRES type")
    result = []
    for item in items:
        text = _text(item, where)
        if not pattern.fullmatch(text):
            raise _fail(where, f"{text!r} is not {what}", "e.g. h100 (Slurm) or NVIDIA-H100-80GB-HBM3")
        result.append(text)
    return list(dict.fromkeys(result))


def seconds(limit: str) -> int:
    """Slurm's time syntax (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in seconds."""
    days, _, rest = limit.rpartition("-")
    parts = [int(part) for part in rest.split(":")]
    if days:
        hours, minutes, secs = [*parts, 0, 0][:3]
    elif len(parts) == 1:
        hours, minutes, secs = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, secs = 0, parts[0], parts[1]
    else:
        hours, minutes, secs = parts
    return max(1, ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + secs)


__all__ = ["Resolved", "resolve", "seconds"]
