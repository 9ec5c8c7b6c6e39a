"""The probe's children and the signals that stop them.

Each check runs in its own session (so a timeout kills its whole process group), which also means a
signal sent to the probe never reaches a check. The supervisor keeps every group the probe started
until it is reaped; SIGTERM or SIGINT kills those groups at once and makes the suite stop, write its
report and exit, instead of dying with no report and a GPU child still running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Any, Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a killed child's pipes may take to close before the probe stops reading them (a grandchild
# that escaped the group could hold them open forever).
DRAIN_S = 5.0


class Supervisor:
    """Live child process groups and the stop request; one per suite run."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}
        self.stop_signal: int | None = None
        self.stopped_at: float | None = None
        self._previous: dict[int, Any] = {}

    @property
    def stopping(self) -> bool:
        """True once SIGTERM or SIGINT arrived."""
        return self.stop_signal is not None

    def stop_name(self) -> str:
        """The name of the signal that stopped the run ("SIGTERM"), or "" when none did."""
        return "" if self.stop_signal is None else signal.Signals(self.stop_signal).name

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on; `restore` undoes it. Outside the main thread (where
        Python cannot set handlers: the suite was embedded in something else) it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers `install` replaced."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        # Only flags and kills here: the code that waits on the child sees it die and checks the flag.
        if self.stop_signal is None:
            self.stop_signal, self.stopped_at = number, time.monotonic()
        self.kill_all()

    def spawn(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        """Start a child with `start` (which must use start_new_session=True) and track its group.

        A stop that arrived while it started kills it straight away."""
        process = start()
        self.children[process.pid] = process
        if self.stopping:
            self.kill(process)
        return process

    def forget(self, process: subprocess.Popen) -> None:
        """Stop tracking a child that has been reaped."""
        self.children.pop(process.pid, None)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the child's whole process group (workers, compilers included)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(OSError):
                process.kill()

    def kill_all(self) -> None:
        """SIGKILL every tracked group."""
        for process in list(self.children.values()):
            self.kill(process)
