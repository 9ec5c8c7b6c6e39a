"""Run each check in its own child process: a CUDA error poisons a process and a hang must not hang
the suite. The parent never imports torch; anything a child does wrong becomes an ERROR record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from .context import Context
from .outcome import ERROR, Outcome, to_record
from .registry import CheckSpec
from .supervise import DRAIN_S, Supervisor

_TAIL_CHARS = 2000


def package_name() -> str:
    """The importable name of this package: "envkit.probe" on a host, "envkit_probe" in an image."""
    return __name__.rpartition(".")[0]


def _package_root() -> str:
    # The directory that must be on sys.path for `package_name()` to import.
    here = os.path.dirname(os.path.abspath(__file__))
    for _ in package_name().split("."):
        here = os.path.dirname(here)
    return here


def child_env() -> dict[str, str]:
    """The parent's environment with the package root prepended to PYTHONPATH."""
    env = dict(os.environ)
    parts = [_package_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def run_isolated(
    spec: CheckSpec,
    ctx: Context,
    *,
    labels_path: str | None,
    timeout_s: float,
    supervisor: Supervisor | None = None,
) -> dict[str, Any]:
    """Run `spec` in a child within `timeout_s`; returns its report record: ERROR when the child failed,
    timed out or was interrupted (SIGTERM/SIGINT to the probe, seen through `supervisor`)."""
    supervisor = supervisor or Supervisor()
    with tempfile.TemporaryDirectory(prefix="envkit-probe-") as scratch:
        result_path = os.path.join(scratch, "result.json")
        argv = [sys.executable, "-m", package_name(), "--run-check", spec.id, "--result", result_path]
        argv += [*ctx.to_argv(), "--check-limit-s", f"{timeout_s:.3f}"]
        argv += ["--labels", labels_path] if labels_path else []
        started = time.monotonic()
        returncode, output, timed_out = _spawn(argv, timeout_s, supervisor)
        duration = time.monotonic() - started
        if supervisor.stopping and returncode != 0:  # a child that finished first keeps its result
            ran = (supervisor.stopped_at or time.monotonic()) - started
            outcome = interrupted_outcome(max(ran, 0.0), supervisor.stop_name(), output)
        else:
            outcome = _interpret(returncode, output, timed_out, timeout_s, result_path)
    return to_record(spec.id, outcome, duration)


def interrupted_outcome(duration_s: float, signal_name: str, output: str = "") -> Outcome:
    """ERROR for a check whose child was killed because the probe itself was told to stop."""
    return Outcome(
        status=ERROR,
        summary=f"interrupted after {duration_s:.0f} s ({signal_name} to the probe)",
        hint="something outside the probe stopped it (an outer timeout, docker stop, Ctrl-C): give the "
        "run more time, or a smaller --budget-s so the probe's own limits fire first",
        details={"signal": signal_name, "output_tail": output[-_TAIL_CHARS:]},
    )


def _spawn(argv: list[str], timeout_s: float, supervisor: Supervisor) -> tuple[int | None, str, bool]:
    # Own session so a timeout kills the child's whole process group (workers, compilers) too.
    process = supervisor.spawn(
        lambda: subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
    )
    timed_out = False
    try:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            supervisor.kill(process)
            output = _drain(process)
    finally:
        # Whatever the child left in its group (compile workers, a stuck grandchild) goes with it.
        supervisor.kill(process)
        if process.poll() is None:
            process.wait()
        supervisor.forget(process)
    return process.returncode, output.decode("utf-8", "replace"), timed_out


def _drain(process: subprocess.Popen) -> bytes:
    try:
        output, _ = process.communicate(timeout=DRAIN_S)
        return output or b""
    except subprocess.TimeoutExpired:
        return b""


def _interpret(
    returncode: int | None, output: str, timed_out: bool, timeout_s: float, result_path: str
) -> Outcome:
    tail = output[-_TAIL_CHARS:]
    if timed_out:
        return Outcome(
            status=ERROR,
            summary=f"check timed out after {timeout_s:.0f} s and was killed",
            hint="a hang (deadlocked kernel, NCCL wait, stuck I/O): rerun it alone with --only, or "
            "raise --timeout-scale if the machine is just slow",
            details={"output_tail": tail},
        )
    if returncode is not None and returncode < 0:
        name = _signal_name(-returncode)
        return Outcome(
            status=ERROR,
            summary=f"check process died by signal {name}",
            hint="a native crash (driver, CUDA, or a broken wheel); the output tail may say where",
            details={"signal": name, "output_tail": tail},
        )
    outcome = _read_result(result_path)
    if outcome is None:
        return Outcome(
            status=ERROR,
            summary=f"check process exited {returncode} without a readable result",
            hint="the child printed or wrote something that is not a probe result; see the output tail",
            details={"exit_code": returncode, "output_tail": tail},
        )
    return outcome


def _read_result(path: str) -> Outcome | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return Outcome.from_json(json.load(handle))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def run_in_child(spec: CheckSpec, ctx: Context, result_path: str) -> int:
    """Child side: run the check, write its outcome to `result_path`; an exception becomes ERROR."""
    try:
        outcome = spec.load()(ctx)
    except Exception as error:
        outcome = Outcome(
            status=ERROR,
            summary=f"check raised {type(error).__name__}: {_first_line(error)}",
            hint="a bug in the probe or an unexpected environment; the traceback is in details",
            details={"traceback": traceback.format_exc()[-_TAIL_CHARS:]},
        )
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(outcome.to_json(), handle, default=str)
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""
