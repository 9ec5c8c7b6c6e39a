"""The validation runner: the probe inside an image (through the engine) or on this host (`--local`).

In a container, the probe package (and the host's pynvml module, when installed) is copied into a
created container, which then runs with no network, all capabilities dropped, no new privileges,
memory/pids/shm limits and a timeout. The container is always removed, also on error or Ctrl-C; its
own fate (OOM-killed, timed out, crashed) becomes a `runner.container` check, never a crash of envkit.

The image is not trusted (SECURITY.md). The probe goes into a fresh folder at the root of the
container's file system, named by a random run id, so no link the image planted can redirect it; it
is started without a shell, with the image's ENTRYPOINT and CMD overridden, by the image's own Python
running `launch.py`, which finds the interpreter that has torch. Its result is read with a size
limit, and every claim in it is checked against what the runner saw from outside (`_vet`): a claim
that does not fit becomes a `runner.result` ERROR for that image, never a crash of the whole run. The
report's host block is the runner's own (`host_block`), never the container's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import secrets
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
from envkit.engine import ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo, TooLarge, parse_gpus
from envkit.errors import ConfigError, EnvkitError
from envkit.gc import probe_container_name
from envkit.probe import nvml
from envkit.probe.registry import CHECKS, SELFTESTS
from envkit.report import MAX_REPORT_BYTES, SCHEMA, Report, ReportImage, clean_text, report_from_dict
from envkit.scratch import scratch_dir
from envkit.userchecks import NO_IMAGE_HERE, UserChecks, metadata_records

PROBE_PACKAGE = "envkit_probe"
USER_CHECKS = "user-checks.json"
PROFILE_TIMEOUT_S = {"quick": 600.0, "full": 1800.0}
LOG_TAIL = 40
DIGEST_REF = re.compile(r"@(sha256:[0-9a-f]{64})$")
# What envkit reads out of a container at most: the result file, and the tail of its logs.
MAX_RESULT_BYTES = MAX_REPORT_BYTES
MAX_LOG_BYTES = 64 * 1024
# The interpreters tried, in order, as the container's entrypoint to run launch.py (no shell: an
# image may have none). A bare name is looked up on the image's PATH by the container runtime.
LAUNCH_PYTHONS = (
    "python3",
    "/usr/bin/python3",
    "/usr/local/bin/python3",
    "/opt/venv/bin/python",
    "/opt/conda/bin/python",
    "python",
)
# Check ids the probe may report; anything else in a result is refused (runner.* are the runner's).
PROBE_CHECK_IDS = frozenset(spec.id for spec in CHECKS + SELFTESTS)
GPU_CHECK_PREFIXES = ("gpu.", "oom.gpu")
# Slack for clocks: the probe's own timings against the runner's wall clock around the container.
DURATION_SLACK_S = 2.0

# Runs in the image with whichever Python started it (kept to syntax a Python 2 still parses, so an
# old `python` reports clearly instead of failing to compile). It asks every candidate interpreter
# whether torch is installed (found, not imported: cheap), each in its own process group with a
# deadline, then execs the probe with the first that has torch, else the first that runs at all.
# A candidate that hangs, forks without end or is killed (the OOM killer) is not passed over in
# silence: discovery stops with DISCOVERY_FAILED_EXIT and says which, on stderr.
LAUNCHER = r"""
import os, signal, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.stderr.write("envkit-discovery: start\n"); sys.stderr.flush()
NAMES = [os.environ.get("ENVKIT_PYTHON"), sys.executable, "python3", "python", "/opt/venv/bin/python",
         "/opt/conda/bin/python", "/usr/local/bin/python3", "/usr/bin/python3"]
ASK = "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"
EACH_S = float(os.environ.get("ENVKIT_DISCOVERY_TIMEOUT", "60"))
TOTAL_S = 3 * EACH_S

def which(name):
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None

def ask(path, deadline):
    devnull = open(os.devnull, "wb")
    try:
        child = subprocess.Popen([path, "-c", ASK], stdin=devnull, stdout=devnull, stderr=devnull,
                                 preexec_fn=os.setsid)
    except OSError as error:
        return None, "%s could not be started (%s)" % (path, error.strerror or error)
    while child.poll() is None:
        if time.time() > deadline:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
            return None, "%s did not answer within %.0f s (a hang or a fork storm)" % (path, EACH_S)
        time.sleep(0.05)
    if child.returncode < 0:
        killer = "signal %d" % -child.returncode
        if child.returncode == -9:
            killer = "SIGKILL: the OOM killer or a limit"
        return None, "%s was killed (%s) while envkit looked for torch" % (path, killer)
    return child.returncode == 0, None

def main():
    started = time.time()
    seen, first, chosen, troubles = set(), None, None, []
    for name in NAMES:
        path = which(name) if name else None
        # The same path once; not the same real file: a venv's python links to the system's, yet
        # sees other packages.
        if not path or os.path.abspath(path) in seen:
            continue
        seen.add(os.path.abspath(path))
        if time.time() - started > TOTAL_S:
            troubles.append("discovery took longer than %.0f s" % TOTAL_S)
            break
        has_torch, trouble = ask(path, min(time.time() + EACH_S, started + TOTAL_S))
        if trouble:
            troubles.append(trouble)
            continue
        first = first or path
        if has_torch:
            chosen = path
            break
    if chosen is None and troubles:
        sys.stderr.write("envkit-discovery: failed: %s\n" % "; ".join(troubles))
        sys.exit(98)
    chosen = chosen or first
    if chosen is None:
        sys.stderr.write("envkit-discovery: no Python interpreter in this image\n")
        sys.exit(97)
    sys.stderr.write("envkit-discovery: done, running the probe with %s\n" % chosen)
    sys.stderr.flush()
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE
    os.chdir(HERE)
    os.execve(chosen, [chosen, "-m", "envkit_probe"] + sys.argv[1:], env)

if __name__ == "__main__":
    main()
"""
NO_PYTHON_EXIT = 97
DISCOVERY_FAILED_EXIT = 98
DISCOVERY_STARTED = "envkit-discovery: start"
DISCOVERY_DONE = "envkit-discovery: done"


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
    user_checks: UserChecks | None = None

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
    runner = _fate(probe.status, time.monotonic() - clock, probe.logs, settings)
    runner["_problem"] = probe.problem
    runner["_python"] = probe.python
    runner["_run_id"] = probe.run_id
    return _assemble(
        probe.result,
        settings,
        mode="container",
        image=image,
        ref=ref,
        runner=runner,
        extra=_metadata_checks(settings, image),
        load_before=load_before,
    )


def _metadata_checks(
    settings: RunSettings, image: ImageInfo | None, why_not: str = NO_IMAGE_HERE
) -> list[dict[str, Any]]:
    """The user's metadata checks, judged here from the engine's view of the image (`--only` applies);
    SKIP without an image (`--local`, a cluster job), saying `why_not`."""
    if settings.user_checks is None:
        return []
    records = metadata_records(settings.user_checks, image, why_not)
    return [r for r in records if not settings.only or r["id"] in settings.only]


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
        if settings.user_checks and settings.user_checks.in_image():
            (tmp / USER_CHECKS).write_text(settings.user_checks.probe_json(), encoding="utf-8")
            command += ["--user-checks", str(tmp / USER_CHECKS)]
        env = {**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run(command, env=env, timeout=settings.timeout, capture_output=True, text=True)
            status = ExitStatus(code=done.returncode, oom_killed=False, timed_out=False, error=None)
            logs = done.stderr
        except subprocess.TimeoutExpired as expired:
            status = ExitStatus(code=None, oom_killed=False, timed_out=True, error=None)
            logs = str(expired.stderr or "")
        result, problem = _parse_result(out.read_bytes() if out.exists() else None)
    runner = _fate(status, time.monotonic() - clock, logs, settings)
    runner["_problem"] = problem
    return _assemble(
        result,
        settings,
        mode="local",
        image=None,
        ref=None,
        runner=runner,
        extra=_metadata_checks(settings, None),
        load_before=load_before,
    )


# --- container ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _ProbeRun:
    status: ExitStatus
    result: dict[str, Any] | None
    logs: str
    problem: str | None = None  # why the result was refused, when it was
    python: str | None = None  # the entrypoint that ran launch.py
    run_id: str | None = None  # in the container's name: envkit-probe-<run id>


def new_run_id() -> str:
    """A fresh random run id: 16 hex digits, in the probe container's name, label and folder."""
    return secrets.token_hex(8)


def probe_dir(run_id: str) -> str:
    """The folder the probe is copied to: new at the root of the file system, so no link the image
    planted (a /tmp pointing elsewhere) lies on its path."""
    return f"/envkit-{run_id}"


def probe_container_spec(
    image: ImageInfo,
    settings: RunSettings,
    ref: str | None = None,
    *,
    run_id: str | None = None,
    python: str = LAUNCH_PYTHONS[0],
) -> ContainerSpec:
    """The container the runner creates for `image` (named `ref`): `python launch.py` as entrypoint
    (the image's ENTRYPOINT and CMD do not run), its name and labels, the user (the image's own
    unless settings.user), and the sandbox: no network, no capabilities, no new privileges,
    memory/pids/shm limits."""
    run_id = run_id or new_run_id()
    workdir = probe_dir(run_id)
    return ContainerSpec(
        image=image.id,
        entrypoint=(python,),
        command=(
            f"{workdir}/launch.py",
            "--profile",
            settings.profile,
            "--out",
            f"{workdir}/out/result.json",
            "--labels",
            f"{workdir}/labels.json",
            *_only_args(settings),
            *_user_checks_args(settings, workdir),
        ),
        name=probe_container_name(run_id),
        labels={
            L.MANAGED: "true",
            L.ROLE: "validate",
            L.RUN: run_id,
            L.IMAGE: (ref or image.id)[:200],
        },
        env={"TMPDIR": f"{workdir}/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
        working_dir=workdir,
        user=settings.user,
        network_disabled=True,
        mem_limit=settings.memory,
        pids_limit=settings.pids,
        shm_size=settings.shm,
        nano_cpus=None if settings.cpus is None else round(settings.cpus * 1e9),
        gpus=settings.gpus,
    )


def _run_container(engine: Engine, ref: str, image: ImageInfo, settings: RunSettings) -> _ProbeRun:
    """The probe run in `image`, started by the first of LAUNCH_PYTHONS the image can execute."""
    with scratch_dir("envkit-probe-") as tmp:
        staged = _stage_probe(tmp, image.labels, settings.user_checks)
        for python in LAUNCH_PYTHONS:
            probe = _try_container(engine, image, settings, ref, staged, python)
            if probe is not None:
                return probe
    no_python = ExitStatus(code=NO_PYTHON_EXIT, oom_killed=False, timed_out=False, error=None)
    return _ProbeRun(status=no_python, result=None, logs="")


def _try_container(
    engine: Engine, image: ImageInfo, settings: RunSettings, ref: str, staged: Path, python: str
) -> _ProbeRun | None:
    """One container started with `python` as entrypoint; None when the image cannot run `python`
    (no such executable, or it could not even start launch.py): the next candidate is tried."""
    run_id = new_run_id()
    spec = probe_container_spec(image, settings, ref, run_id=run_id, python=python)
    workdir = probe_dir(run_id)
    cid = engine.create(spec)
    try:
        try:
            engine.put_files(cid, "/", {workdir.lstrip("/"): staged})
        except EngineError as refused:
            # Not the engine's fault: this image's file system would not take the probe.
            no_files = ExitStatus(code=None, oom_killed=False, timed_out=False, error=refused.message)
            why = "the image's file system refused the probe's files"
            return _ProbeRun(status=no_files, result=None, logs="", problem=why, python=python, run_id=run_id)
        try:
            engine.start(cid)
        except EngineError as refused:
            if _not_executable(refused.message, python):
                return None
            raise
        status = engine.wait(cid, settings.timeout)
        raw: bytes | None = None
        problem: str | None = None
        try:
            raw = engine.get_file(cid, f"{workdir}/out/result.json", max_bytes=MAX_RESULT_BYTES)
        except TooLarge as big:
            problem = f"the result file is larger than {MAX_RESULT_BYTES} bytes ({big.message})"
        except EngineError as refused:
            # The image's own files may stand in the way (a link or folder at the result's path):
            # that image has no result; the run goes on with the next one.
            status = replace(status, error=status.error or refused.message)
        logs = engine.logs(cid, tail=LOG_TAIL, max_bytes=MAX_LOG_BYTES)
    finally:
        engine.remove_container(cid)
    # `python` exited by itself without starting launch.py (a wrapper, an old Python): try the next.
    # A container killed (by a signal, OOM, the timeout) is reported, not retried.
    ended_by_itself = not (status.timed_out or status.oom_killed or _signal_name(status.code))
    spoke = DISCOVERY_STARTED in logs
    if raw is None and problem is None and status.error is None and ended_by_itself and not spoke:
        return None
    result, refused_why = _parse_result(raw)
    return _ProbeRun(
        status=status, result=result, logs=logs, problem=problem or refused_why, python=python, run_id=run_id
    )


def _not_executable(message: str, python: str) -> bool:
    """True when the engine refused to start because `python` is not an executable in the image."""
    lowered = message.lower()
    return python.lower() in lowered and any(
        marker in lowered for marker in ("not found", "no such file", "permission denied", "not a directory")
    )


def _stage_probe(folder: Path, labels: Mapping[str, str], user_checks: UserChecks | None = None) -> Path:
    """Lay out the probe folder: the probe as a package, launch.py, pynvml if we have it, labels, the
    user's in-image checks, and writable out/ and tmp/."""
    root = folder / "envkit"
    shutil.copytree(
        _probe_source(), root / PROBE_PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    nvml = _host_pynvml()
    if nvml is not None:
        shutil.copy(nvml, root / "pynvml.py")
    (root / "launch.py").write_text(LAUNCHER, encoding="utf-8")
    (root / "labels.json").write_text(json.dumps(dict(labels), sort_keys=True), encoding="utf-8")
    if user_checks and user_checks.in_image():
        (root / USER_CHECKS).write_text(user_checks.probe_json(), encoding="utf-8")
    writable = [root / "out", root / "tmp"]
    for path in writable:
        path.mkdir()
        path.chmod(0o1777)  # the image's own user, whoever it is, writes here
    for path in [root, *root.rglob("*")]:
        if path not in writable:
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


def _user_checks_args(settings: RunSettings, workdir: str) -> list[str]:
    if settings.user_checks is None or not settings.user_checks.in_image():
        return []
    return ["--user-checks", f"{workdir}/{USER_CHECKS}"]


def _parse_result(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The probe's result and None, or None and why it was refused (None, None: there was none)."""
    if not raw:
        return None, None
    if len(raw) > MAX_RESULT_BYTES:
        return None, f"the result file is larger than {MAX_RESULT_BYTES} bytes"
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        return None, "the result file is not UTF-8"
    except (ValueError, RecursionError):  # JSONDecodeError, huge numbers, nesting past the stack
        return None, "the result file is not valid JSON"
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        return None, "the result file is not a probe result (no list of checks)"
    return data, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


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
    details: dict[str, Any] = {"exit_code": fate["exit_code"], "log_tail": tail}
    if fate.get("_run_id"):
        details["run_id"] = fate["_run_id"]
    if fate.get("_python"):
        details["entrypoint"] = (
            f"overridden: {fate['_python']} ran envkit's launch.py; "
            "the image's ENTRYPOINT and CMD did not run"
        )
    base = {
        "id": "runner.container",
        "metrics": {"duration_s": fate["duration_s"]},
        "duration_s": fate["duration_s"],
        "device": None,
        "details": details,
    }
    # Whether launch.py got as far as starting the probe (the log is the image's word: it only
    # chooses between two hints, never a status).
    in_discovery = fate.get("_python") is not None and DISCOVERY_DONE not in str(fate["_logs"])
    if fate["oom_killed"]:
        limit = f"{fate['_limit'] / 1024**3:.1f} GiB" if fate["_limit"] else "the host's memory"
        when = " while envkit looked for the image's Python" if in_discovery else ""
        return base | {
            "status": "ERROR",
            "summary": f"the probe container was killed by the OOM killer ({limit}){when}",
            "hint": "raise the limit with --memory, or use a smaller --preset",
        }
    if fate["timed_out"]:
        hint = "raise --timeout; a hang in a check usually means a stuck GPU or driver"
        if in_discovery:
            hint = (
                "the time ran out while envkit looked for the image's Python (before any check ran): "
                "an interpreter in the image hangs or forks without end when started; see details.log_tail"
            )
        return base | {
            "status": "ERROR",
            "summary": f"the probe did not finish within {fate['_timeout']:.0f} s",
            "hint": hint,
        }
    if fate["exit_code"] == NO_PYTHON_EXIT:
        return base | {
            "status": "FAIL",
            "summary": "no Python interpreter found in the image",
            "hint": "install Python (python3 on PATH, or /opt/venv, /opt/conda) in the image",
        }
    if fate["exit_code"] == DISCOVERY_FAILED_EXIT and result is None:
        return base | {
            "status": "ERROR",
            "summary": "an interpreter in the image failed while envkit looked for the one with torch",
            "hint": "see details.log_tail: one hung, forked without end or was killed (out of memory?) "
            "when asked whether torch is installed; envkit does not fall back to another Python",
        }
    if result is None and fate.get("_problem"):
        return base | {
            "status": "ERROR",
            "summary": f"the probe's result was refused: {clean_text(str(fate['_problem']))}",
            "hint": "the image wrote a result envkit cannot accept; see details.log_tail",
        }
    if result is None:
        killer = _signal_name(fate["exit_code"])
        what = fate["_error"] or f"exit code {fate['exit_code']}"
        if killer and not fate["_error"]:
            what += f": killed by {killer}"
        hint = "see details.log_tail"
        if killer:
            hint = "something outside the probe killed its container (docker kill or stop, a CI timeout)"
        summary = f"the probe produced no result ({clean_text(what)})"
        return base | {"status": "ERROR", "summary": summary, "hint": hint}
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
    extra: list[dict[str, Any]] | None = None,
    load_before: tuple[float, float, float] | None = None,
) -> Report:
    host = host_block(settings, mode)
    host |= _host_facts(host["gpus"], load_before)
    # How many GPUs the container was given, when this host's NVML can tell (else None: unchecked).
    given = len(host["gpus"]) if host["driver"] is not None else None
    # A scheduler's job is watched by the scheduler (its time limit bounds it), not by this runner.
    observed = runner.get("_observed_s", runner["duration_s"])
    checks, refusals = _vet(result, settings, mode, observed, given)
    checks += extra or []  # judged on the host (user metadata checks): the runner's own records
    data = _report_data(
        checks, refusals, result, settings, host, mode=mode, image=image, ref=ref, runner=runner
    )
    source = f"probe result of {ref or 'this host'}"
    try:
        return report_from_dict(data, source=source)
    except ConfigError as bad:
        # Something in the image's checks passed the vetting but not the report's schema: that image's
        # report holds only what the runner itself knows, and says why.
        why = [*refusals, bad.render()]
        data = _report_data([], why, result, settings, host, mode=mode, image=image, ref=ref, runner=runner)
        return report_from_dict(data, source=source)


def _report_data(
    checks: list[dict[str, Any]],
    refusals: list[str],
    result: dict[str, Any] | None,
    settings: RunSettings,
    host: dict[str, Any],
    *,
    mode: str,
    image: ImageInfo | None,
    ref: str | None,
    runner: dict[str, Any],
) -> dict[str, Any]:
    checks = [*checks, _runner_check(result, runner)]
    if refusals:
        checks.append(_refused_check(refusals))
    if settings.require_gpu:
        checks = [_require_gpu(c) for c in checks]
    return {
        "schema": SCHEMA,
        "envkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "profile": settings.profile,
        "mode": mode,
        "image": None if image is None else _image_record(image, ref),
        "host": host,
        "checks": checks,
        "runner": {k: v for k, v in runner.items() if not k.startswith("_")},
    }


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


def _vet(
    result: dict[str, Any] | None,
    settings: RunSettings,
    mode: str,
    observed_s: float,
    given_gpus: int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The probe's checks that fit what the runner knows, and why each of the others was refused.

    Refused: ids the probe does not have (runner.* records are the runner's alone), GPU results from a
    container given no GPU, records for a GPU index past the `given_gpus` the container got (when
    known), durations longer than the runner watched the container run.
    """
    kept: list[dict[str, Any]] = []
    refusals: list[str] = []
    gpu_given = mode == "local" or settings.gpus is not None
    declared = settings.user_checks.in_image() if settings.user_checks else ()
    known = PROBE_CHECK_IDS | {check.id for check in declared}
    total = 0.0
    for index, raw in enumerate((result or {}).get("checks", [])):
        if not isinstance(raw, dict):
            refusals.append(f"checks[{index}] is not an object")
            continue
        check_id = raw.get("id")
        shown = clean_text(str(check_id))[:80]
        if not isinstance(check_id, str) or check_id not in known:
            whose = "not a check of the probe"
            if shown.startswith("runner."):
                whose = "a record only the runner writes"
            refusals.append(f"checks[{index}]: {shown!r} is {whose}")
            continue
        bad = _bad_field(raw)
        if bad is not None:
            refusals.append(f"{shown}: {bad}")
            continue
        check = _clean_check(raw)
        status = check["status"]
        if check_id.startswith(GPU_CHECK_PREFIXES) and not gpu_given and status not in ("SKIP", "N/A"):
            refusals.append(f"{shown} claims {clean_text(str(status))[:10]} in a container given no GPU")
            continue
        device = check["device"]
        if device is not None and given_gpus is not None and not 0 <= device < given_gpus:
            refusals.append(f"{shown} reports GPU {device}; the container was given {given_gpus}")
            continue
        duration = check["duration_s"]
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            refusals.append(f"{shown} has a duration that is not a number")
            continue
        if not 0 <= duration <= observed_s + DURATION_SLACK_S:
            refusals.append(f"{shown} claims {duration:.1f} s in a container that ran {observed_s:.1f} s")
            continue
        total += duration
        kept.append(check)
    if total > observed_s + DURATION_SLACK_S:
        refusals.append(f"the checks claim {total:.1f} s together in a container that ran {observed_s:.1f} s")
    return kept, refusals


def _bad_field(check: dict[str, Any]) -> str | None:
    """Why one of the probe's check records has a field of the wrong kind, or None."""
    if not isinstance(check.get("status"), str):
        return "its status is not a string"
    for key in ("summary", "hint"):
        value = check.get(key)
        if value is not None and not isinstance(value, str):
            return f"its {key} is not a string"
    for key in ("metrics", "details"):
        if not isinstance(check.get(key) or {}, dict):
            return f"its {key} is not an object"
    device = check.get("device")
    if device is not None and (isinstance(device, bool) or not isinstance(device, int)):
        return "its device is not a GPU index"
    return None


def _refused_check(refusals: list[str]) -> dict[str, Any]:
    """The runner's ERROR record for a result whose claims do not hold up."""
    reasons = [clean_text(r)[:300] for r in refusals[:20]]
    return {
        "id": "runner.result",
        "status": "ERROR",
        "summary": f"the probe's result was refused: {reasons[0]}"
        + (f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""),
        "metrics": {},
        "duration_s": 0.0,
        "hint": "the image reported what envkit cannot accept or does not match what envkit saw from "
        "outside; see details.refused (SECURITY.md: what validate cross-checks)",
        "device": None,
        "details": {"refused": reasons},
    }


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


def host_block(settings: RunSettings, mode: str) -> dict[str, Any]:
    """The report's host block, all of it from this host (never from the container): its name and
    platform, the driver NVML reports here, and the GPUs the container was given (all of this host's
    for --local; none when no --gpus)."""
    info, _why = nvml.query()
    gpus = [] if info is None else [dataclasses.asdict(gpu) for gpu in info.gpus]
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "driver": info.driver if info else None,
        "cuda_driver": info.cuda_driver if info else None,
        "gpus": gpus if mode == "local" else _given(gpus, settings.gpus),
    }


def _given(gpus: list[dict[str, Any]], request: str | None) -> list[dict[str, Any]]:
    """The GPUs of this host a `--gpus` value hands to the container."""
    if request is None:
        return []
    wanted = parse_gpus(request)
    if wanted.device_ids:
        ids = set(wanted.device_ids)
        return [gpu for gpu in gpus if str(gpu.get("index")) in ids or gpu.get("uuid") in ids]
    return gpus if wanted.count < 0 else gpus[: wanted.count]


def _host_facts(gpus: list[dict[str, Any]], load_before: tuple[float, float, float] | None) -> dict[str, Any]:
    # Collected here, on the host: what moves the numbers (report schema 2), for the GPUs the runner
    # itself found and gave the container (never the container's own account of them).
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


JOB_HAS_THE_IMAGE = "no image configuration to read here (the image ran on a cluster node)"


@dataclass(frozen=True)
class JobProbe:
    """The probe as a scheduler's job runs it (envkit.runners.ProbeKit): staged for a read-only mount,
    started by the image's Python running launch.py (no shell), its result made into a report here,
    with the node named by the runner."""

    settings: RunSettings
    probe_dir: str = "/tmp/envkit"  # where the job mounts the staged probe (envkit.runners.PROBE_DIR)

    def stage(self, folder: Path) -> None:
        """Lay out the probe package (and pynvml, when this host has it, and the user's in-image
        checks) as `folder`."""
        _stage_probe(folder.parent, {}, self.settings.user_checks).rename(folder)

    def command(self, result: str) -> tuple[str, ...]:
        """The probe's command inside an image, with the package at WORKDIR and the result at `result`."""
        options = (
            "--profile",
            self.settings.profile,
            "--out",
            result,
            *_only_args(self.settings),
            *_user_checks_args(self.settings, self.probe_dir),
        )
        return (LAUNCH_PYTHONS[0], f"{self.probe_dir}/launch.py", *options)

    def write_checks(self, path: Path) -> bool:
        """The user's checks, every kind, as a checks file the node's `envkit validate --checks` reads."""
        if self.settings.user_checks is None or not self.settings.user_checks.checks:
            return False
        path.write_text(self.settings.user_checks.checks_file(), encoding="utf-8")
        return True

    def report(self, target: Any, raw: bytes | None, *, exit_code: int | None, logs: str) -> Report:
        """The report of a result made on another machine; its host block names only that machine's GPUs."""
        status = ExitStatus(code=exit_code, oom_killed=False, timed_out=False, error=None)
        result, problem = _parse_result(raw)
        runner = _fate(status, 0.0, logs, self.settings)
        runner["_problem"] = problem
        runner["_observed_s"] = math.inf
        report = _assemble(
            result,
            self.settings,
            mode="container",
            image=None,
            ref=target.image,
            runner=runner,
            extra=_metadata_checks(self.settings, None, JOB_HAS_THE_IMAGE),
        )
        host = replace(report.host, hostname="", platform="", python="")
        return replace(report, image=ReportImage(ref=target.image), host=host)


__all__ = ["EnvkitError", "RunSettings", "failed", "host_has_gpu", "validate_image", "validate_local"]
