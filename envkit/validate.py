"""The validation runner: the probe inside an image (through the engine) or on this host (`--local`).

In a container, the probe package (and the host's pynvml module, when installed) is copied into a
created container, which then runs with no network, all capabilities dropped, no new privileges,
memory/pids/shm limits and a timeout. The container is always removed, also on error or Ctrl-C; its
own fate (OOM-killed, timed out, crashed) becomes a `runner.container` check, never a crash of envkit.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from envkit import __version__, hostfacts
from envkit import labels as L
from envkit.engine import ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo
from envkit.errors import ConfigError, EnvkitError
from envkit.gc import scratch_dir
from envkit.report import SCHEMA, Report, ReportImage, clean_text, report_from_dict

PROBE_PACKAGE = "envkit_probe"
WORKDIR = "/tmp/envkit"
RESULT = f"{WORKDIR}/out/result.json"
PROFILE_TIMEOUT_S = {"quick": 600.0, "full": 1800.0}
LOG_TAIL = 40
DIGEST_REF = re.compile(r"@(sha256:[0-9a-f]{64})$")

# Finds the image's Python: the first candidate with torch installed (found, not imported: cheap),
# else the first that runs at all.
FIND_PYTHON = r"""
first=""; chosen=""
for p in "$ENVKIT_PYTHON" python3 python /opt/venv/bin/python /opt/conda/bin/python \
         /usr/local/bin/python3 /usr/bin/python3; do
  [ -n "$p" ] || continue
  command -v "$p" >/dev/null 2>&1 || continue
  "$p" -c 'import sys' >/dev/null 2>&1 || continue
  [ -n "$first" ] || first="$p"
  if "$p" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' >/dev/null 2>&1; then
    chosen="$p"; break
  fi
done
chosen="${chosen:-$first}"
if [ -z "$chosen" ]; then echo "envkit: no Python interpreter in this image" >&2; exit 97; fi
cd /tmp/envkit && PYTHONPATH=/tmp/envkit exec "$chosen" -m envkit_probe "$@"
"""
NO_PYTHON_EXIT = 97


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How to run the probe: profile, GPUs, limits and timeout."""

    profile: str = "quick"
    gpus: str | None = None
    memory: int | None = 8 * 1024**3
    pids: int | None = 4096
    shm: int | None = 1024**3
    cpus: float | None = None
    timeout_s: float | None = None
    user: str | None = None
    only: tuple[str, ...] = ()
    require_gpu: bool = False

    @property
    def timeout(self) -> float:
        return self.timeout_s or PROFILE_TIMEOUT_S[self.profile]


def validate_image(engine: Engine, ref: str, settings: RunSettings) -> Report:
    """Run the probe inside image `ref`; returns the report (check failures are in it, not raised)."""
    image = engine.image(ref)
    if image is None and DIGEST_REF.search(ref):
        image = engine.pull(ref)  # by digest: exactly the bytes the registry holds under that digest
    if image is None:
        raise ConfigError(f"no image {ref!r} on the engine", hint="build it (envkit build) or pull it first")
    clock, load_before = time.monotonic(), hostfacts.load_average()
    probe = _run_container(engine, ref, image, settings)
    return _assemble(
        probe.result,
        settings,
        mode="container",
        image=image,
        ref=ref,
        runner=_fate(probe.status, time.monotonic() - clock, probe.logs, settings),
        load_before=load_before,
    )


def validate_local(settings: RunSettings, python: str | None = None) -> Report:
    """Run the probe on this host with `python` (default: this interpreter), without Docker."""
    clock, load_before = time.monotonic(), hostfacts.load_average()
    with scratch_dir("envkit-local-") as tmp:
        out = tmp / "result.json"
        command = [
            python or sys.executable,
            "-m",
            "envkit.probe",
            "--profile",
            settings.profile,
            "--out",
            str(out),
            *_only_args(settings),
        ]
        env = {**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run(command, env=env, timeout=settings.timeout, capture_output=True, text=True)
            status = ExitStatus(code=done.returncode, oom_killed=False, timed_out=False, error=None)
            logs = done.stderr
        except subprocess.TimeoutExpired as expired:
            status = ExitStatus(code=None, oom_killed=False, timed_out=True, error=None)
            logs = str(expired.stderr or "")
        result = _parse_result(out.read_bytes() if out.exists() else None)
    return _assemble(
        result,
        settings,
        mode="local",
        image=None,
        ref=None,
        runner=_fate(status, time.monotonic() - clock, logs, settings),
        load_before=load_before,
    )


# --- container ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _ProbeRun:
    status: ExitStatus
    result: dict[str, Any] | None
    logs: str


def probe_container_spec(image: ImageInfo, settings: RunSettings, ref: str | None = None) -> ContainerSpec:
    """The container the runner creates for `image` (named `ref`): the probe command, its labels, the
    user (the image's own unless settings.user), and the sandbox: no network, no capabilities, no new
    privileges, memory/pids/shm limits."""
    return ContainerSpec(
        image=image.id,
        command=(
            "/bin/sh",
            "-c",
            FIND_PYTHON,
            "envkit-probe",
            "--profile",
            settings.profile,
            "--out",
            RESULT,
            "--labels",
            f"{WORKDIR}/labels.json",
            *_only_args(settings),
        ),
        labels={
            L.MANAGED: "true",
            L.ROLE: "validate",
            L.IMAGE: (ref or image.id)[:200],
        },
        user=settings.user,
        network_disabled=True,
        mem_limit=settings.memory,
        pids_limit=settings.pids,
        shm_size=settings.shm,
        nano_cpus=None if settings.cpus is None else round(settings.cpus * 1e9),
        gpus=settings.gpus,
    )


def _run_container(engine: Engine, ref: str, image: ImageInfo, settings: RunSettings) -> _ProbeRun:
    cid = engine.create(probe_container_spec(image, settings, ref))
    try:
        with scratch_dir("envkit-probe-") as tmp:
            engine.put_files(cid, "/tmp", {"envkit": _stage_probe(tmp, image.labels)})
        engine.start(cid)
        status = engine.wait(cid, settings.timeout)
        try:
            raw = engine.get_file(cid, RESULT)
        except EngineError as refused:
            # The image's own files may stand in the way (a link or folder at the result's path):
            # that image has no result; the run goes on with the next one.
            raw, status = None, replace(status, error=status.error or refused.message)
        logs = engine.logs(cid, tail=LOG_TAIL)
    finally:
        engine.remove_container(cid)
    return _ProbeRun(status=status, result=_parse_result(raw), logs=logs)


def _stage_probe(folder: Path, labels: Mapping[str, str]) -> Path:
    """Lay out /tmp/envkit: the probe as a package, pynvml if we have it, labels, a writable out/."""
    root = folder / "envkit"
    shutil.copytree(
        _probe_source(), root / PROBE_PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    nvml = _host_pynvml()
    if nvml is not None:
        shutil.copy(nvml, root / "pynvml.py")
    (root / "labels.json").write_text(json.dumps(dict(labels), sort_keys=True), encoding="utf-8")
    out = root / "out"
    out.mkdir()
    out.chmod(0o1777)  # the image's own user, whoever it is, writes the result here
    for path in [root, *root.rglob("*")]:
        if path != out:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def _probe_source() -> Path:
    return Path(str(resources.files("envkit.probe")))


def _package_root() -> str:
    return str(_probe_source().parent.parent)


def _host_pynvml() -> Path | None:
    try:
        import pynvml
    except ImportError:
        return None
    path = Path(pynvml.__file__)
    return path if path.suffix == ".py" else None


def _only_args(settings: RunSettings) -> list[str]:
    return ["--only", *settings.only] if settings.only else []


def _parse_result(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("checks"), list) else None


# --- assembling the report ---------------------------------------------------------------------------


def _fate(status: ExitStatus, duration: float, logs: str, settings: RunSettings) -> dict[str, Any]:
    return {
        "exit_code": status.code,
        "oom_killed": status.oom_killed,
        "timed_out": status.timed_out,
        "duration_s": round(duration, 3),
        "cpus": settings.cpus,
        "_logs": logs,
        "_error": status.error,
        "_limit": settings.memory,
        "_timeout": settings.timeout,
    }


def _runner_check(result: dict[str, Any] | None, fate: dict[str, Any]) -> dict[str, Any]:
    tail = clean_text("\n".join(str(fate["_logs"]).splitlines()[-10:]), multiline=True)
    base = {
        "id": "runner.container",
        "metrics": {"duration_s": fate["duration_s"]},
        "duration_s": fate["duration_s"],
        "device": None,
        "details": {"exit_code": fate["exit_code"], "log_tail": tail},
    }
    if fate["oom_killed"]:
        limit = f"{fate['_limit'] / 1024**3:.1f} GiB" if fate["_limit"] else "the host's memory"
        return base | {
            "status": "ERROR",
            "summary": f"the probe container was killed by the OOM killer ({limit})",
            "hint": "raise the limit with --memory, or use a smaller --preset",
        }
    if fate["timed_out"]:
        return base | {
            "status": "ERROR",
            "summary": f"the probe did not finish within {fate['_timeout']:.0f} s",
            "hint": "raise --timeout; a hang in a check usually means a stuck GPU or driver",
        }
    if fate["exit_code"] == NO_PYTHON_EXIT:
        return base | {
            "status": "FAIL",
            "summary": "no Python interpreter found in the image",
            "hint": "install Python (python3 on PATH, or /opt/venv, /opt/conda) in the image",
        }
    if result is None:
        killer = _signal_name(fate["exit_code"])
        what = fate["_error"] or f"exit code {fate['exit_code']}"
        if killer and not fate["_error"]:
            what += f": killed by {killer}"
        hint = "see details.log_tail; an image without /bin/sh cannot run the probe"
        if killer:
            hint = "something outside the probe killed its container (docker kill or stop, a CI timeout)"
        return base | {"status": "ERROR", "summary": f"the probe produced no result ({what})", "hint": hint}
    if fate["exit_code"] not in (0, None):
        return base | {
            "status": "WARN",
            "summary": f"the probe exited with {fate['exit_code']} after writing its result",
            "hint": None,
        }
    return base | {"status": "PASS", "summary": "the probe ran to completion", "hint": None}


def _signal_name(exit_code: int | None) -> str | None:
    """SIGKILL for 137: a shell-style exit status of a process a signal ended, else None."""
    if exit_code is None or not 128 < exit_code < 128 + 65:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None


def _assemble(
    result: dict[str, Any] | None,
    settings: RunSettings,
    *,
    mode: str,
    image: ImageInfo | None,
    ref: str | None,
    runner: dict[str, Any],
    load_before: tuple[float, float, float] | None = None,
) -> Report:
    checks = [_clean_check(c) for c in (result or {}).get("checks", []) if isinstance(c, dict)]
    checks.append(_runner_check(result, runner))
    if settings.require_gpu:
        checks = [_require_gpu(c) for c in checks]
    data = {
        "schema": SCHEMA,
        "envkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "profile": settings.profile,
        "mode": mode,
        "image": None if image is None else _image_record(image, ref),
        "host": _host(result) | _host_facts(result, load_before),
        "checks": checks,
        "runner": {k: v for k, v in runner.items() if not k.startswith("_")},
    }
    return report_from_dict(data, source=f"probe result of {ref or 'this host'}")


def manifest_digest(image: ImageInfo, ref: str | None) -> str | None:
    """The registry digest validated: the one in `ref`, else the one digest the engine recorded for
    the image when it was pushed or pulled (None when there is none, or several)."""
    named = DIGEST_REF.search(ref or "")
    if named:
        return named.group(1)
    known = {name.rpartition("@")[2] for name in image.digests}
    return known.pop() if len(known) == 1 else None


def _image_record(image: ImageInfo, ref: str | None) -> dict[str, Any]:
    record = {"ref": ref, "id": image.id, "labels": dict(image.labels)}
    digest = manifest_digest(image, ref)
    return record | ({"digest": digest} if digest else {})


_CHECK_KEYS = ("id", "status", "summary", "metrics", "duration_s", "hint", "device", "details")


def _clean_check(check: dict[str, Any]) -> dict[str, Any]:
    # The probe ran inside an image we do not trust: one-line texts stay one line, no terminal escapes.
    hint = check.get("hint")
    return {key: check.get(key) for key in _CHECK_KEYS} | {
        "summary": clean_text(str(check.get("summary") or "")),
        "hint": clean_text(str(hint)) if hint else None,
        "metrics": check.get("metrics") or {},
        "details": check.get("details") or {},
        "duration_s": check.get("duration_s") or 0.0,
    }


def _require_gpu(check: dict[str, Any]) -> dict[str, Any]:
    if check["id"].startswith(("gpu.", "oom.gpu")) and check["status"] == "SKIP":
        return check | {
            "status": "FAIL",
            "summary": f"{check['summary']} (--require-gpu)",
            "hint": check.get("hint") or "run on a GPU host with --gpus all",
        }
    return check


def _host(result: dict[str, Any] | None) -> dict[str, Any]:
    probe_host = (result or {}).get("host") or {}
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "driver": probe_host.get("driver"),
        "cuda_driver": probe_host.get("cuda_driver"),
        "gpus": probe_host.get("gpus") or [],
    }


def _host_facts(
    result: dict[str, Any] | None, load_before: tuple[float, float, float] | None
) -> dict[str, Any]:
    # Collected here, on the host: what moves the numbers (report schema 2).
    gpus = ((result or {}).get("host") or {}).get("gpus") or []
    return {
        **hostfacts.cpu_facts(),
        "loadavg_before": _listed(load_before),
        "loadavg_after": _listed(hostfacts.load_average()),
        "gpus": hostfacts.with_gpu_facts(gpus, hostfacts.host_gpu_facts()) if gpus else [],
    }


def _listed(load: tuple[float, float, float] | None) -> list[float] | None:
    return None if load is None else list(load)


def host_has_gpu() -> bool:
    """True when NVML sees at least one GPU on this host."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return bool(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


def failed(report: Report) -> bool:
    """True when any check FAILed or ERRORed."""
    return any(check.status in ("FAIL", "ERROR") for check in report.checks)


@dataclass(frozen=True)
class JobProbe:
    """The probe as a scheduler's job runs it (envkit.runners.ProbeKit): staged for a read-only mount,
    started by FIND_PYTHON, its result made into a report here, with the node named by the runner."""

    settings: RunSettings

    def stage(self, folder: Path) -> None:
        """Lay out the probe package (and pynvml, when this host has it) as `folder`."""
        _stage_probe(folder.parent, {}).rename(folder)

    def command(self, result: str) -> tuple[str, ...]:
        """The probe's command inside an image, with the package at WORKDIR and the result at `result`."""
        options = ("--profile", self.settings.profile, "--out", result, *_only_args(self.settings))
        return ("/bin/sh", "-c", FIND_PYTHON, "envkit-probe", *options)

    def report(self, target: Any, raw: bytes | None, *, exit_code: int | None, logs: str) -> Report:
        """The report of a result made on another machine; its host block names only that machine's GPUs."""
        status = ExitStatus(code=exit_code, oom_killed=False, timed_out=False, error=None)
        result = _parse_result(raw)
        report = _assemble(
            result,
            self.settings,
            mode="container",
            image=None,
            ref=target.image,
            runner=_fate(status, 0.0, logs, self.settings),
        )
        host = replace(report.host, hostname="", platform="", python="")
        return replace(report, image=ReportImage(ref=target.image), host=host)


__all__ = ["EnvkitError", "RunSettings", "failed", "host_has_gpu", "validate_image", "validate_local"]
