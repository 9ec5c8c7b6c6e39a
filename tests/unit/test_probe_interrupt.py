"""The probe survives its own time limit: a report on disk at every moment, SIGTERM/SIGINT and an
outer `timeout` leave a complete report and no process behind, and --budget-s bounds the whole run.
Real processes on the CPU: the probe is started as `python -m envkit.probe`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from envkit.probe import registry
from envkit.probe.suite import FINISH_RESERVE_S, RESERVE_PER_CHECK_S, Limits, ReportFile

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


MARKER_VARIABLE = "ENVKIT_PROBE_TEST_MARKER"


def processes_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment carries `marker` (the probe, its check's
    child and anything that child started all inherit it)."""
    found = []
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def read_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_running(path: Path, check_id: str) -> bool:
    report = read_report(path)
    return bool(report) and any(
        c["id"] == check_id and c["summary"].startswith("not finished") for c in report["checks"]
    )


@pytest.fixture
def marker() -> str:
    """A value for MARKER_VARIABLE unique to this test; whatever still carries it is killed afterwards."""
    value = uuid.uuid4().hex
    yield value
    for pid in processes_with(value):  # nothing left behind, even when the test failed
        os.kill(pid, signal.SIGKILL)


def probe_command(out: Path, *checks: str) -> list[str]:
    return [sys.executable, "-m", "envkit.probe", "--quiet", "--out", str(out), "--only", *checks]


def start(command: list[str], marker: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), MARKER_VARIABLE: marker}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_mid_check_leaves_a_complete_report_and_no_process(
    tmp_path: Path, marker: str, stop: signal.Signals
) -> None:
    out = tmp_path / "report.json"
    probe = start(probe_command(out, "env.python", "selftest.hang-tree", "env.shm"), marker)
    # The probe, the check's child and the grandchild it started.
    wait_for(
        lambda: check_running(out, "selftest.hang-tree") and len(processes_with(marker)) == 3, "the hang"
    )
    probe.send_signal(stop)
    assert probe.wait(timeout=WAIT_S) == 128 + stop
    report = json.loads(out.read_text())
    python, hang, shm = report["checks"]
    assert python["status"] == "PASS"
    assert hang["status"] == "ERROR"
    assert hang["summary"].startswith("interrupted after ")
    assert stop.name in hang["summary"]
    assert shm["status"] == "ERROR"
    assert shm["summary"].startswith(f"not run: the probe was interrupted ({stop.name})")
    assert report["run"]["state"] == "interrupted"
    assert report["run"]["signal"] == stop.name
    assert processes_with(marker) == []


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_an_outer_timeout_leaves_a_complete_report_and_no_process(tmp_path: Path, marker: str) -> None:
    out = tmp_path / "report.json"
    command = ["timeout", "-k", "20", "10", *probe_command(out, "selftest.hang-tree", "env.python")]
    probe = start(command, marker)
    assert probe.wait(timeout=WAIT_S) == 124  # timeout's own status: it sent SIGTERM
    report = json.loads(out.read_text())
    assert report["run"]["state"] == "interrupted"
    assert report["run"]["signal"] == "SIGTERM"
    assert [c["status"] for c in report["checks"]] == ["ERROR", "ERROR"]
    assert report["checks"][1]["summary"].startswith("not run: the probe was interrupted")
    assert processes_with(marker) == []


def test_the_report_is_on_disk_while_the_run_goes_on(tmp_path: Path, marker: str) -> None:
    out = tmp_path / "report.json"
    probe = start(probe_command(out, "env.python", "selftest.hang-tree"), marker)
    try:
        wait_for(lambda: check_running(out, "selftest.hang-tree"), "the hang to start")
        report = json.loads(out.read_text())
        assert report["run"]["state"] == "running"
        assert report["checks"][0]["status"] == "PASS"
        assert report["checks"][1]["status"] == "ERROR"  # what SIGKILL would leave: says it did not finish
    finally:
        probe.send_signal(signal.SIGTERM)
        probe.wait(timeout=WAIT_S)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_budget_limits_a_hanging_check_so_the_next_one_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    # selftest.hang's own limit is 20 s; 25 s budget - 15 s kept for env.python - 3 s to finish = 7 s.
    command = [*probe_command(out, "selftest.hang", "env.python"), "--budget-s", "25"]
    assert start(command).wait(timeout=WAIT_S) == 0
    report = json.loads(out.read_text())
    hang, python = report["checks"]
    assert hang["status"] == "ERROR"
    assert "timed out after 7 s" in hang["summary"]
    assert python["status"] == "PASS"
    assert report["run"] == {
        "state": "complete",
        "budget_s": 25.0,
        "signal": None,
        "duration_s": pytest.approx(report["run"]["duration_s"]),
    }


def test_budget_shares_are_computed_from_what_is_left() -> None:
    specs = registry.select(["env.python", "selftest.hang", "throughput.generate"])
    limits = Limits(profile="quick", budget_s=100.0)
    # env.python: its own 30 s (less than 100 - 15 - 15 - 3).
    assert limits.for_check(0, specs, 0.0) == 30.0
    # selftest.hang: its own 20 s while plenty is left; less when only 30 s remain.
    assert limits.for_check(1, specs, 10.0) == 20.0
    assert limits.for_check(1, specs, 70.0) == 100.0 - 70.0 - RESERVE_PER_CHECK_S - FINISH_RESERVE_S
    # The last check gets everything left but the finishing reserve.
    assert limits.for_check(2, specs, 50.0) == 100.0 - 50.0 - FINISH_RESERVE_S
    assert Limits(profile="full", scale=2.0).for_check(2, specs, 1e6) == 1800.0  # no budget: own limit


def test_a_check_with_no_budget_left_is_not_started(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    command = [*probe_command(out, "env.python", "env.shm"), "--budget-s", "6"]
    assert start(command).wait(timeout=WAIT_S) == 0
    python, shm = json.loads(out.read_text())["checks"]
    assert python["status"] == "ERROR"
    assert python["summary"].startswith("not run: 0 s of the 6 s --budget-s spent")
    assert shm["status"] == "PASS"


def test_report_file_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    writer = ReportFile(str(out))
    writer.update({"checks": [1]})
    writer.update({"checks": [1, 2]})
    assert json.loads(out.read_text()) == {"checks": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_the_suite_runs_outside_the_main_thread(tmp_path: Path) -> None:
    # Signal handlers can only be set in the main thread: an embedding caller's thread still gets a report.
    import threading

    from envkit.probe import cli

    codes: list[int] = []
    out = tmp_path / "report.json"
    worker = threading.Thread(
        target=lambda: codes.append(cli.main(["--only", "env.python", "--quiet", "--out", str(out)]))
    )
    worker.start()
    worker.join(timeout=WAIT_S)
    assert codes == [0]
    assert json.loads(out.read_text())["checks"][0]["status"] == "PASS"


def test_an_embedding_program_gets_the_signal_after_the_report(tmp_path: Path, marker: str) -> None:
    # A test run (pytest under `timeout`) calling cli.main must stop too, not go on to the next test
    # while `timeout` waits to SIGKILL it.
    out = tmp_path / "report.json"
    code = (
        "from envkit.probe import cli\n"
        f"cli.main(['--quiet', '--out', {str(out)!r}, '--only', 'selftest.hang-tree'])\n"
        "print('carried on')\n"
    )
    embedder = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), MARKER_VARIABLE: marker},
        stdout=subprocess.PIPE,
    )
    wait_for(
        lambda: check_running(out, "selftest.hang-tree") and len(processes_with(marker)) == 3, "the hang"
    )
    embedder.send_signal(signal.SIGTERM)
    output, _ = embedder.communicate(timeout=WAIT_S)
    assert embedder.returncode == -signal.SIGTERM
    assert b"carried on" not in output
    assert json.loads(out.read_text())["run"]["state"] == "interrupted"
    assert processes_with(marker) == []
