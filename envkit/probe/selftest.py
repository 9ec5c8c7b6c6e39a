"""Misbehaving checks that exist only to prove the runner isolates children (--only selftest.*)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .context import Context
from .outcome import Outcome


def check_hang(ctx: Context) -> Outcome:
    """Never returns (until the runner kills it)."""
    while True:
        time.sleep(1)


def check_hang_tree(ctx: Context) -> Outcome:
    """Starts a grandchild (which inherits the environment, so a test can find it), then never returns."""
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    while True:
        time.sleep(1)


def check_crash(ctx: Context) -> Outcome:
    """Dies by SIGSEGV, like a faulting native extension."""
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5)
    raise AssertionError("unreachable")


def check_garbage(ctx: Context) -> Outcome:
    """Exits 0 having written a result that is not a JSON outcome."""
    result_path = sys.argv[sys.argv.index("--result") + 1]
    with open(result_path, "w", encoding="utf-8") as handle:
        handle.write("this is not json {")
    os._exit(0)


def check_raise(ctx: Context) -> Outcome:
    """Raises an ordinary exception inside the check."""
    raise RuntimeError("selftest exception")
