"""Hostile inputs on the host side: special files named *.json, links in a wheelhouse, builds of one
cell racing each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envkit.errors import ConfigError
from envkit.report import load_report, load_reports
from envkit.yamlsrc import load_file

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
# Generous: a refused file answers at once; the guard only keeps a regression from hanging the suite.
GUARD_S = 120


def envkit(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *argv], cwd=cwd, capture_output=True, text=True, timeout=GUARD_S
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["gate", "{fifo}", "--policy", "{policy}"],
        ["report", "{fifo}"],
        ["diff", "{fifo}", "{good}"],
        ["gate", "{folder}", "--policy", "{policy}"],
    ],
    ids=["gate", "report", "diff", "gate-folder"],
)
def test_a_fifo_named_json_is_refused_not_waited_on(command: list[str], fifo: Path, tmp_path: Path) -> None:
    good = FIXTURES / "cpu-quick-pass.json"
    policy = tmp_path / "policy" / "policy.yml"
    policy.parent.mkdir()
    policy.write_text("version: 1\nrequire:\n  env.torch: [PASS]\n")
    argv = [arg.format(fifo=fifo, good=good, folder=fifo.parent, policy=policy) for arg in command]
    done = envkit(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr and "report.json" in done.stderr


def test_the_report_loader_refuses_devices_and_fifos_before_reading(fifo: Path) -> None:
    # promote reads its reports through load_reports, the same path.
    for path in (fifo, Path(os.devnull)):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_report(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_reports([fifo.parent])


def test_a_fifo_given_as_a_policy_or_matrix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_file(path)
