"""The probe's runner: every check in its own child; hangs, crashes and garbage become ERROR records;
the parent never imports torch; without torch the suite still runs and env.torch FAILs with a hint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envkit.probe import cli
from envkit.probe.outcome import Outcome, to_record

REPO = Path(__file__).resolve().parents[2]
RECORD_KEYS = {"id", "status", "summary", "metrics", "duration_s", "hint", "device", "details"}


def run_probe(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "probe.json"
    assert cli.main([*args, "--quiet", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def by_id(report: dict) -> dict:
    return {check["id"]: check for check in report["checks"]}


def test_hanging_check_becomes_error_after_its_timeout_and_the_suite_goes_on(tmp_path: Path) -> None:
    # selftest.hang's 20 s limit scaled by 0.1: killed after 2 s.
    report = run_probe(tmp_path, "--only", "selftest.hang", "env.python", "--timeout-scale", "0.1")
    hang, python = report["checks"]
    assert hang["status"] == "ERROR"
    assert "timed out after 2 s" in hang["summary"]
    assert hang["hint"]
    assert hang["duration_s"] < 15
    assert python["status"] == "PASS"


def test_check_killed_by_a_signal_becomes_error(tmp_path: Path) -> None:
    crash = by_id(run_probe(tmp_path, "--only", "selftest.crash"))["selftest.crash"]
    assert crash["status"] == "ERROR"
    assert "SIGSEGV" in crash["summary"]
    assert crash["hint"]


def test_unreadable_child_result_becomes_error(tmp_path: Path) -> None:
    garbage = by_id(run_probe(tmp_path, "--only", "selftest.garbage"))["selftest.garbage"]
    assert garbage["status"] == "ERROR"
    assert "without a readable result" in garbage["summary"]


def test_exception_inside_a_check_becomes_error_with_traceback(tmp_path: Path) -> None:
    raised = by_id(run_probe(tmp_path, "--only", "selftest.raise"))["selftest.raise"]
    assert raised["status"] == "ERROR"
    assert raised["summary"] == "check raised RuntimeError: selftest exception"
    assert "selftest exception" in raised["details"]["traceback"]


def test_report_shape(tmp_path: Path) -> None:
    report = run_probe(tmp_path, "--only", "env.python", "env.shm")
    assert set(report) == {"probe_version", "profile", "host", "run", "checks"}
    assert report["profile"] == "quick"
    assert report["run"]["state"] == "complete"
    assert {"hostname", "platform", "python", "driver", "cuda_driver", "gpus"} <= set(report["host"])
    for check in report["checks"]:
        assert set(check) == RECORD_KEYS
        assert isinstance(check["duration_s"], float)
        assert all(isinstance(v, (int, float)) for v in check["metrics"].values())


def test_parent_never_imports_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # env.torch passes only where torch is installed
    code = textwrap.dedent(f"""
        import sys
        from envkit.probe import cli
        assert cli.main(["--only", "env.torch", "--quiet", "--out", {str(tmp_path / "r.json")!r}]) == 0
        assert "torch" not in sys.modules, "the probe parent imported torch"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
    assert by_id(json.loads((tmp_path / "r.json").read_text()))["env.torch"]["status"] == "PASS"


def test_without_torch_the_suite_runs_and_env_torch_fails_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import sys

        class HideTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("No module named 'torch'", name=name)
                return None

        sys.meta_path.insert(0, HideTorch())
    """)
    )
    monkeypatch.setenv("PYTHONPATH", str(hider))
    checks = by_id(
        run_probe(tmp_path, "--only", "env.torch", "env.python", "oom.cpu", "throughput.generate", "gpu.arch")
    )
    torch_check = checks["env.torch"]
    assert torch_check["status"] == "FAIL"
    assert "No module named 'torch'" in torch_check["summary"]
    assert "pip install torch" in torch_check["hint"]
    assert checks["env.python"]["status"] == "PASS"
    for check_id in ("oom.cpu", "throughput.generate", "gpu.arch"):
        assert checks[check_id]["status"] == "SKIP", check_id


def test_without_torch_cuda_labels_fail_env_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "torch.py").write_text("raise ImportError('torch is broken in this image')\n")
    monkeypatch.setenv("PYTHONPATH", str(hider))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"io.envkit.torch": "2.6.0", "io.envkit.torch-variant": "cu124"}))
    checks = by_id(run_probe(tmp_path, "--only", "env.torch", "env.versions", "--labels", str(labels)))
    assert checks["env.torch"]["status"] == "FAIL"
    assert "torch is broken in this image" in checks["env.torch"]["summary"]
    assert checks["env.versions"]["status"] == "FAIL"


@pytest.mark.parametrize(
    "argv",
    [
        ["--only", "no.such-check"],
        ["--profile", "slow"],
        ["--timeout-scale", "0"],
        ["--labels", "/nonexistent.json"],
    ],
)
def test_usage_errors_exit_2(argv: list, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_labels_file_must_be_an_object(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text("[1, 2]")
    assert cli.main(["--labels", str(labels), "--only", "env.python"]) == 2


def test_list_prints_stable_ids(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--list"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids[0] == "env.python" and ids[-1] == "throughput.generate"
    assert not any(i.startswith("selftest") for i in ids)


def test_outcome_wire_format_drops_non_finite_numbers() -> None:
    outcome = Outcome.from_json(
        {
            "status": "PASS",
            "summary": "s",
            "metrics": {"a": 1.5, "b": float("nan"), "c": True, "d": "x"},
            "details": {"e": float("inf")},
        }
    )
    assert outcome.metrics == {"a": 1.5}
    record = to_record("x", outcome, 1.0)
    assert record["details"] == {"e": None}
    json.dumps(record, allow_nan=False)


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        Outcome(status="OK", summary="x")


def test_runs_as_a_top_level_package_copy(tmp_path: Path) -> None:
    # The runner copies the folder into images as `envkit_probe`; relative imports must make that work.
    import shutil

    shutil.copytree(REPO / "envkit" / "probe", tmp_path / "envkit_probe")
    result = subprocess.run(
        [sys.executable, "-m", "envkit_probe", "--only", "env.python", "env.shm", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    checks = by_id(json.loads(result.stdout))
    assert checks["env.python"]["status"] == "PASS"
