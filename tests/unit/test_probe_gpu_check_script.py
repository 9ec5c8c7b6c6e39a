"""scripts/gpu-check.sh as a CPU dry run: the steps run under their budgets, extra arguments reach the
probe, at most 8 flat files land in $OUT, and the summary is written even when steps fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu-check.sh"
CPU_BENCHMARK = (
    "--device cpu --preset tiny --skip-transformers --skip-compile --new-tokens 4 --repetitions 1 "
    "--prompt-len 32 --contexts 32"
)


def run_script(out: Path, *probe_args: str, gen_args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "BUDGET_S": "300",
        "EXPECT_GPU": "0",
        "GEN_ARGS": gen_args,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *probe_args], env=env, capture_output=True, text=True, timeout=400
    )


def assert_flat_and_few(out: Path) -> None:
    entries = list(out.iterdir())
    assert len(entries) <= 8, sorted(p.name for p in entries)
    assert all(entry.is_file() for entry in entries)


@pytest.mark.slow
def test_a_cpu_dry_run_passes_probe_arguments_through_and_summarises(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--only", "env.python", "env.shm", gen_args=CPU_BENCHMARK)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert_flat_and_few(tmp_path)
    summary = (tmp_path / "summary.txt").read_text()
    assert "ASSERTIONS: ok" in summary
    assert "env.python           PASS" in summary
    assert "throughput.generate" not in summary  # --only reached the probe
    assert {"probe-full.json", "gpu-generation.json", "gpu-tests.xml"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.slow
def test_the_summary_is_written_when_steps_fail(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--only", "no.such.check", gen_args="--no-such-benchmark-flag")
    assert done.returncode != 0
    assert_flat_and_few(tmp_path)
    summary = (tmp_path / "summary.txt").read_text()
    assert "probe rc=2" in summary
    assert "benchmark rc=2" in summary
    assert "probe-full.json:" in summary and "gpu-generation.json:" in summary
    assert "ASSERTIONS: " in summary and "ASSERTIONS: ok" not in summary
