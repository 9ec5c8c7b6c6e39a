"""user.* checks: the acceptance tests a matrix's author declared (envkit/userchecks.py writes them as JSON,
the runner passes the file with `--user-checks FILE`).

Each runs in its own child like every probe check (registry timeout: its own timeout plus a margin);
commands and Python code run in a further process group that is killed at the check's own timeout.
Kinds: command, file, python, env. (`metadata` checks read the image config on the host, not here.)
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
from typing import Any, Callable

from .context import Context, ProbeUsageError
from .outcome import ERROR, FAIL, PASS, Outcome
from .registry import CheckSpec

PREFIX = "user."
KINDS = ("command", "file", "python", "env")
# Time for the child itself (start, import, report) on top of the check's own timeout.
CHILD_MARGIN_S = 20.0
_TAIL = 2000

# Runs a user expression or script with the image's Python (the one the probe runs with).
_PY_RUNNER = r"""
import importlib, re, sys
mode, code = sys.argv[1], sys.argv[2]
if mode == "expression":
    names = {}
    for name in sorted(set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\.", code))):
        try:
            names[name] = importlib.import_module(name)
        except Exception:
            pass
    try:
        value = eval(code, names)
    except Exception:
        import traceback
        traceback.print_exc()
        sys.exit(2)
    print(repr(value)[:500])
    sys.exit(0 if value else 1)
exec(compile(code, "<user script>", "exec"), {"__name__": "__main__"})
"""
# The expression runner's exit status for a false value (an exception exits 2).
_FALSE = 1


def load(path: str) -> list[dict[str, Any]]:
    """The declared in-image checks of a `--user-checks` file; ProbeUsageError when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise ProbeUsageError(f"cannot read user checks {path}: {error}") from error
    checks = data.get("checks") if isinstance(data, dict) else None
    if not isinstance(checks, list) or not all(
        isinstance(c, dict) and str(c.get("id", "")).startswith(PREFIX) and c.get("kind") in KINDS
        for c in checks
    ):
        raise ProbeUsageError(f"user checks {path}: expected {{'checks': [{{'id': 'user.…', 'kind': …}}]}}")
    return checks


def specs(path: str) -> list[CheckSpec]:
    """One registry spec per declared check, with the check's timeout plus the child's margin."""
    out = []
    for check in load(path):
        limit = float(check.get("timeout_s") or 30.0) + CHILD_MARGIN_S
        out.append(
            CheckSpec(
                id=check["id"],
                module="checks_user",
                function="check_user",
                quick_timeout_s=limit,
                full_timeout_s=limit,
            )
        )
    return out


def check_user(ctx: Context) -> Outcome:
    """Run the declared check named by ctx.check_id from ctx.user_checks."""
    if not ctx.user_checks or not ctx.check_id:
        return Outcome(status=ERROR, summary="no user checks file or check id given to the child")
    by_id = {check["id"]: check for check in load(ctx.user_checks)}
    check = by_id.get(ctx.check_id)
    if check is None:
        return Outcome(status=ERROR, summary=f"{ctx.check_id} is not in {ctx.user_checks}")
    runner: Callable[[dict[str, Any]], Outcome] = _KINDS[check["kind"]]
    return runner(check)


# --- command ---------------------------------------------------------------------------------------------


def _command(check: dict[str, Any]) -> Outcome:
    argv = [str(a) for a in check["argv"]]
    timeout = float(check.get("timeout_s") or 30.0)
    ran = _run(argv, timeout)
    details: dict[str, Any] = {"kind": "command", "argv": argv, **ran}
    if ran["timed_out"]:
        return Outcome(
            status=ERROR,
            summary=f"{argv[0]} did not finish within {timeout:g} s and was killed",
            hint="a hang in the command (waiting for input or the network?): fix it or raise timeout_s",
            details=details,
        )
    if ran["error"]:
        return Outcome(
            status=FAIL, summary=f"{argv[0]} could not be started: {ran['error']}", details=details
        )
    problems = []
    want = int(check.get("exit_code", 0))
    if ran["exit_code"] != want:
        problems.append(f"exit code {ran['exit_code']}, expected {want}")
    for stream in ("stdout", "stderr"):
        pattern = check.get(stream)
        if pattern is not None and not re.search(pattern, ran[stream], re.MULTILINE):
            problems.append(f"{stream} does not match /{pattern}/")
    if problems:
        return Outcome(status=FAIL, summary=f"{' '.join(argv)[:80]}: " + "; ".join(problems), details=details)
    return Outcome(status=PASS, summary=f"{' '.join(argv)[:80]}: exit {ran['exit_code']}", details=details)


def _run(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run argv in its own process group; kill the group at `timeout`."""
    result: dict[str, Any] = {
        "exit_code": None,
        "stdout": "",
        "stderr": "",
        "timed_out": False,
        "error": None,
    }
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        result["error"] = str(error)
        return result
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        result["timed_out"] = True
        _kill_group(process)
        try:
            out, err = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
    finally:
        _kill_group(process)
    result.update(
        exit_code=process.returncode,
        stdout=(out or b"").decode("utf-8", "replace")[-_TAIL:],
        stderr=(err or b"").decode("utf-8", "replace")[-_TAIL:],
    )
    return result


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# --- file ------------------------------------------------------------------------------------------------


def _file(check: dict[str, Any]) -> Outcome:
    pattern = check["path"]
    matches = (
        sorted(glob.glob(pattern))
        if glob.has_magic(pattern)
        else ([pattern] if os.path.lexists(pattern) else [])
    )
    details: dict[str, Any] = {"kind": "file", "path": pattern, "found": matches[:20]}
    if not check.get("exists", True):
        if matches:
            return Outcome(status=FAIL, summary=f"{', '.join(matches[:3])} must not exist", details=details)
        return Outcome(status=PASS, summary=f"{pattern} is absent", details=details)
    if not matches:
        return Outcome(status=FAIL, summary=f"{pattern} does not exist", details=details)
    problems = []
    for path in matches:
        problems += _file_problems(path, check)
    if problems:
        return Outcome(status=FAIL, summary="; ".join(problems)[:300], details=details)
    return Outcome(status=PASS, summary=f"{pattern}: as declared", details=details)


def _file_problems(path: str, check: dict[str, Any]) -> list[str]:
    info = os.lstat(path)
    problems = []
    kind = "link" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode) else "file"
    if "type" in check and kind != check["type"]:
        problems.append(f"{path} is a {kind}, not a {check['type']}")
    if "mode" in check and stat.S_IMODE(info.st_mode) != int(check["mode"]):
        problems.append(f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, not {int(check['mode']):04o}")
    if "owner" in check:
        owner = _owner_name(info.st_uid)
        if check["owner"] not in (owner, str(info.st_uid)):
            problems.append(f"{path} is owned by {owner or info.st_uid}, not {check['owner']}")
    return problems


def _owner_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


# --- python ----------------------------------------------------------------------------------------------


def _python(check: dict[str, Any]) -> Outcome:
    mode = "expression" if "expression" in check else "script"
    code = check[mode]
    timeout = float(check.get("timeout_s") or 30.0)
    ran = _run([sys.executable, "-c", _PY_RUNNER, mode, code], timeout)
    details: dict[str, Any] = {"kind": "python", mode: code, "python": sys.executable, **ran}
    if ran["timed_out"]:
        return Outcome(
            status=ERROR,
            summary=f"the Python {mode} did not finish within {timeout:g} s and was killed",
            hint="raise timeout_s, or look for a hang in the code",
            details=details,
        )
    shown_code = " ".join(code.split())[:80]
    if ran["exit_code"] == 0:
        shown = ran["stdout"].strip()[:60] if mode == "expression" else "exit 0"
        return Outcome(status=PASS, summary=f"{shown_code} -> {shown}", details=details)
    if mode == "expression" and ran["exit_code"] == _FALSE:
        why = f"false ({ran['stdout'].strip()[:60]})"
    else:
        lines = ran["stderr"].strip().splitlines()
        why = lines[-1] if lines else f"exit {ran['exit_code']}"
        if mode == "script" and not lines:
            why = f"exit {ran['exit_code']}"
    return Outcome(status=FAIL, summary=f"{shown_code}: {why[:160]}", details=details)


# --- env -------------------------------------------------------------------------------------------------


def _env(check: dict[str, Any]) -> Outcome:
    name = check["name"]
    value = os.environ.get(name)
    details: dict[str, Any] = {"kind": "env", "name": name, "value": value}
    if not check.get("set", True):
        if value is None:
            return Outcome(status=PASS, summary=f"{name} is not set", details=details)
        return Outcome(status=FAIL, summary=f"{name} is set and must not be", details=details)
    if value is None:
        return Outcome(status=FAIL, summary=f"{name} is not set", details=details)
    if "equals" in check and value != check["equals"]:
        return Outcome(
            status=FAIL, summary=f"{name}={value[:60]!r}, expected {check['equals'][:60]!r}", details=details
        )
    if "matches" in check and not re.search(check["matches"], value):
        return Outcome(
            status=FAIL, summary=f"{name}={value[:60]!r} does not match /{check['matches']}/", details=details
        )
    return Outcome(status=PASS, summary=f"{name}={value[:60]!r}", details=details)


_KINDS: dict[str, Callable[[dict[str, Any]], Outcome]] = {
    "command": _command,
    "file": _file,
    "python": _python,
    "env": _env,
}

__all__ = ["check_user", "load", "specs"]
