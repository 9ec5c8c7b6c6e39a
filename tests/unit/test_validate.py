"""The validation runner against a fake engine: hostile results become that image's ERROR, never the
whole run's; the host block is the runner's; the probe starts without a shell, entrypoint overridden."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeContainer, FakeEngine, ScriptedRun

from envkit import validate
from envkit.cli import main
from envkit.engine import ContainerSpec, EngineError
from envkit.report import Report, load_report
from envkit.validate import (
    DISCOVERY_DONE,
    DISCOVERY_FAILED_EXIT,
    DISCOVERY_STARTED,
    LAUNCH_PYTHONS,
    MAX_RESULT_BYTES,
    RunSettings,
    failed,
    validate_image,
)

IMAGE = "acme/x:1"
STARTED = f"{DISCOVERY_STARTED}\n{DISCOVERY_DONE}, running the probe with /usr/bin/python3\n"


def check(check_id: str, status: str = "PASS", **extra: Any) -> dict[str, Any]:
    return {
        "id": check_id,
        "status": status,
        "summary": f"{check_id} ok",
        "metrics": {},
        "duration_s": 0.0,
        "hint": None,
        "device": None,
        "details": {},
    } | extra


def result(*checks: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"checks": list(checks), **top}).encode()


def writes(data: bytes, logs: str = STARTED, **run: Any) -> ScriptedRun:
    """A run whose probe writes `data` as its result, where the runner told it to."""

    def write(container: FakeContainer) -> None:
        container.files[f"{container.spec.working_dir}/out/result.json"] = data

    return ScriptedRun(on_wait=write, logs=logs, **run)


def run_with(run: ScriptedRun, settings: RunSettings | None = None) -> Report:
    engine = FakeEngine()
    engine.add_image(IMAGE, labels={"io.envkit.torch": "2.13.0"})
    engine.script_run(IMAGE, run)
    return validate_image(engine, IMAGE, settings or RunSettings())


def by_id(report: Report) -> dict[str, Any]:
    return {c.id: c for c in report.checks}


# --- a lying image cannot pass -------------------------------------------------------------------------


def test_an_honest_result_passes_and_says_the_entrypoint_was_overridden() -> None:
    report = run_with(writes(result(check("env.python"), check("gpu.visibility", "SKIP"))))
    checks = by_id(report)
    assert {k: c.status for k, c in checks.items()} == {
        "env.python": "PASS",
        "gpu.visibility": "SKIP",
        "runner.container": "PASS",
    }
    assert "ENTRYPOINT and CMD did not run" in checks["runner.container"].details["entrypoint"]
    assert not failed(report)


def test_gpu_results_from_a_container_given_no_gpu_are_refused() -> None:
    lie = result(check("gpu.visibility"), check("gpu.kernels", device=0), check("oom.gpu", "WARN"))
    report = run_with(writes(lie))
    checks = by_id(report)
    assert "gpu.visibility" not in checks and "gpu.kernels" not in checks and "oom.gpu" not in checks
    assert checks["runner.result"].status == "ERROR" and "given no GPU" in checks["runner.result"].summary
    assert len(checks["runner.result"].details["refused"]) == 3
    assert failed(report)


def test_the_host_block_is_the_runners_never_the_containers() -> None:
    claimed = {
        "hostname": "gpu-host",
        "platform": "Linux",
        "python": "3.12",
        "driver": "999.1",
        "cuda_driver": "13.9",
        "gpus": [{"index": 0, "name": "NVIDIA H200"}],
    }
    report = run_with(writes(result(check("env.python"), host=claimed)))
    assert report.host.hostname == socket.gethostname()
    assert report.host.gpus == () and report.host.driver != "999.1"


def test_runner_records_cannot_come_from_the_image() -> None:
    forged = check("runner.container", details={"exit_code": 0})
    report = run_with(writes(result(check("env.python"), forged), exit_code=3))
    checks = [c for c in report.checks if c.id == "runner.container"]
    assert len(checks) == 1 and checks[0].status == "WARN"  # the runner's own record of exit 3
    assert "only the runner writes" in by_id(report)["runner.result"].summary


def test_durations_longer_than_the_runner_watched_are_refused() -> None:
    report = run_with(writes(result(check("env.python", duration_s=3600.0), check("env.torch"))))
    checks = by_id(report)
    assert "env.python" not in checks and checks["env.torch"].status == "PASS"
    assert "3600.0 s" in checks["runner.result"].summary and failed(report)


# --- one bad image never costs the others their reports ------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        result(check("no.such-check")),
        result(check("env.python", metrics={"x": "fast"})),
        result(check("env.python", status="GREAT")),
        result(check("env.python", details={"k": "x" * 70_000})),
        b'{"checks": [' * 100_000,
        b"\xff\xfe not utf-8",
        b'{"checks": 7}',
        b'{"checks": [{"id": "env.python", "status": "PASS", "summary": 1e999999}]}',
    ],
    ids=["unknown-id", "bad-metric", "bad-status", "long-string", "deep", "not-utf8", "no-list", "huge-num"],
)
def test_a_bad_result_is_an_error_for_that_image(data: bytes) -> None:
    report = run_with(writes(data))
    assert failed(report)
    errors = [c for c in report.checks if c.id.startswith("runner.") and c.status == "ERROR"]
    assert errors and all("\n" not in c.summary for c in errors)


def test_control_characters_in_a_result_are_cleaned() -> None:
    report = run_with(writes(result(check("env.python", summary="ok\x1b[2J\n::error::pwned\x07"))))
    [python] = report.find("env.python")
    assert "\x1b" not in python.summary and "\n" not in python.summary and "\x07" not in python.summary


def test_one_bad_image_among_several_still_gets_every_report_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = FakeEngine()
    engine.add_image("acme/bad:1", labels={"flavor": "bad"})
    engine.add_image("acme/good:1", labels={"flavor": "good"})
    engine.script_run("acme/bad:1", writes(result(check("runner.forged"), check("env.python", metrics=[1]))))
    engine.script_run("acme/good:1", writes(result(check("env.python"))))
    monkeypatch.setattr("envkit.commands.validate.get_engine", lambda: engine)
    code = main(["validate", "acme/bad:1", "acme/good:1", "--out-dir", str(tmp_path)])
    assert code == 1
    reports = {load_report(p).image.ref: load_report(p) for p in tmp_path.glob("*.json")}  # type: ignore[union-attr]
    assert set(reports) == {"acme/bad:1", "acme/good:1"}
    assert not failed(reports["acme/good:1"]) and failed(reports["acme/bad:1"])


# --- bounded reads -------------------------------------------------------------------------------------


def test_a_result_file_over_the_limit_is_refused_unread() -> None:
    report = run_with(writes(b" " * (MAX_RESULT_BYTES + 1)))
    [runner] = report.find("runner.container")
    assert runner.status == "ERROR" and "larger than" in runner.summary


def test_logs_are_read_with_a_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int | None] = []

    class Counting(FakeEngine):
        def logs(self, cid: str, tail: int | None = None, max_bytes: int | None = None) -> str:
            asked.append(max_bytes)
            return super().logs(cid, tail, max_bytes)

    engine = Counting()
    engine.add_image(IMAGE)
    engine.script_run(IMAGE, writes(result(check("env.python")), logs=STARTED + "x" * 10**6))
    report = validate_image(engine, IMAGE, RunSettings())
    assert asked and all(limit is not None and limit <= validate.MAX_LOG_BYTES for limit in asked)
    assert len(report.find("runner.container")[0].details["log_tail"]) <= validate.MAX_LOG_BYTES


# --- no shell, entrypoint overridden, the image's traps ---------------------------------------------------


class NoPython3(FakeEngine):
    """An image without python3 on PATH: the runtime refuses to start it, as runc does."""

    def __init__(self, missing: tuple[str, ...]) -> None:
        super().__init__()
        self.missing = missing
        self.started_with: list[tuple[str, ...] | None] = []

    def start(self, cid: str) -> None:
        entrypoint = self.containers_by_id[cid].spec.entrypoint
        self.started_with.append(entrypoint)
        if entrypoint and entrypoint[0] in self.missing:
            raise EngineError(
                f"the Docker engine refused starting container {cid[:12]}: failed to create task: exec: "
                f'"{entrypoint[0]}": executable file not found in $PATH: unknown'
            )
        super().start(cid)


def test_the_probe_starts_without_a_shell_and_the_next_python_is_tried() -> None:
    engine = NoPython3(missing=LAUNCH_PYTHONS[:2])
    engine.add_image(IMAGE)
    engine.script_run(IMAGE, writes(result(check("env.python"))))
    report = validate_image(engine, IMAGE, RunSettings())
    assert [e[0] for e in engine.started_with if e] == list(LAUNCH_PYTHONS[:3])
    assert not failed(report)
    assert engine.containers_by_id == {}  # every attempt's container was removed


def test_an_image_with_no_python_at_all_fails_with_a_hint() -> None:
    engine = NoPython3(missing=LAUNCH_PYTHONS)
    engine.add_image(IMAGE)
    report = validate_image(engine, IMAGE, RunSettings())
    [runner] = report.find("runner.container")
    assert runner.status == "FAIL" and "no Python" in runner.summary
    assert engine.containers_by_id == {}


def test_the_container_spec_has_no_shell_and_a_fresh_folder_at_the_root() -> None:
    engine = FakeEngine()
    image_id = engine.add_image(IMAGE)
    image = engine.image(image_id)
    assert image is not None
    spec: ContainerSpec = validate.probe_container_spec(
        image, RunSettings(), IMAGE, run_id="0123456789abcdef"
    )
    assert spec.entrypoint == ("python3",) and "/bin/sh" not in spec.command
    assert spec.working_dir == "/envkit-0123456789abcdef" and spec.command[0].startswith(spec.working_dir)
    assert spec.name == "envkit-probe-0123456789abcdef" and spec.env["TMPDIR"].startswith(spec.working_dir)


def test_an_entrypoint_that_exits_at_once_without_running_the_launcher_moves_on() -> None:
    # A python3 that is really a wrapper script which exits: no launcher line, no result.
    calls: list[str] = []

    def exits(container: FakeContainer) -> None:
        calls.append(container.spec.entrypoint[0] if container.spec.entrypoint else "")
        if container.spec.entrypoint != (LAUNCH_PYTHONS[1],):
            return
        container.log += STARTED
        container.files[f"{container.spec.working_dir}/out/result.json"] = result(check("env.python"))

    report = run_with(ScriptedRun(on_wait=exits, exit_code=0))
    assert calls[:2] == list(LAUNCH_PYTHONS[:2]) and not failed(report)


# --- diagnostics that tell the truth ---------------------------------------------------------------------


def test_a_discovery_failure_is_not_reported_as_missing_torch() -> None:
    logs = f"{DISCOVERY_STARTED}\nenvkit-discovery: failed: /opt/venv/bin/python was killed (SIGKILL)\n"
    report = run_with(ScriptedRun(exit_code=DISCOVERY_FAILED_EXIT, logs=logs))
    [runner] = report.find("runner.container")
    assert runner.status == "ERROR" and "looked for the one with torch" in runner.summary
    assert "does not fall back" in (runner.hint or "")
    assert not report.find("env.torch")


def test_a_timeout_during_discovery_is_not_blamed_on_the_gpu() -> None:
    report = run_with(ScriptedRun(exit_code=None, timed_out=True, logs=f"{DISCOVERY_STARTED}\n"))
    [runner] = report.find("runner.container")
    assert "GPU" not in (runner.hint or "") and "looked for the image's Python" in (runner.hint or "")
    report = run_with(ScriptedRun(exit_code=None, timed_out=True, logs=STARTED))
    assert "stuck GPU" in (report.find("runner.container")[0].hint or "")


def test_with_gpus_given_the_host_block_and_device_indexes_come_from_this_hosts_nvml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from envkit.probe import nvml

    gpu = nvml.NvmlGpu(
        index=0,
        name="NVIDIA H200",
        uuid="GPU-1",
        memory_total_mib=143_771,
        compute_capability="9.0",
        mem_clock_max_mhz=None,
        bus_width_bits=None,
        sm_clock_max_mhz=None,
    )
    info = nvml.NvmlInfo(
        driver="570.86.15", cuda_driver="12.8", gpus=(gpu, dataclasses.replace(gpu, index=1))
    )
    monkeypatch.setattr(nvml, "query", lambda: (info, ""))
    claims = result(check("gpu.kernels", device=0), check("gpu.kernels", device=5), check("gpu.visibility"))
    report = run_with(writes(claims), RunSettings(gpus="1"))
    assert [g.name for g in report.host.gpus] == ["NVIDIA H200"] and report.host.driver == "570.86.15"
    kept = {c.name: c.status for c in report.checks}
    assert kept["gpu.kernels[gpu0]"] == "PASS" and kept["gpu.visibility"] == "PASS"
    assert "gpu.kernels[gpu5]" not in kept and "given 1" in report.find("runner.result")[0].summary


# --- launch.py: interpreter discovery inside the image ------------------------------------------------


def launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, candidates: dict[str, str], each_s: float = 30.0
) -> dict[str, Any]:
    """launch.py's code with its candidates replaced by shell scripts; os.execve recorded, not run.
    `each_s` is how long one candidate may take to answer (short only where a hang is the point)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    names = []
    for name, script in candidates.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        names.append(str(path))
    namespace: dict[str, Any] = {"__name__": "launch", "__file__": str(tmp_path / "launch.py")}
    exec(compile(validate.LAUNCHER, "launch.py", "exec"), namespace)
    namespace["NAMES"] = names
    namespace["EACH_S"] = each_s
    namespace["TOTAL_S"] = 10.0 * each_s
    execs: list[list[str]] = []
    monkeypatch.setattr(namespace["os"], "execve", lambda path, argv, env: execs.append(argv))
    monkeypatch.setattr(namespace["os"], "chdir", lambda path: None)
    namespace["execs"] = execs
    return namespace


def run_launcher(namespace: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        namespace["main"]()
    except SystemExit as stop:
        return int(stop.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_launch_runs_the_probe_with_the_first_interpreter_that_has_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = launcher(monkeypatch, tmp_path, {"plain": "exit 1\n", "torch": "exit 0\n"})
    code, err = run_launcher(found, capsys)
    assert code == 0 and found["execs"][0][1:3] == ["-m", "envkit_probe"]
    assert found["execs"][0][0].endswith("/torch") and DISCOVERY_DONE in err


# A killed interpreter gets a minute to be seen dying: on a loaded host, 1 s can pass before it starts.
@pytest.mark.parametrize(
    ("script", "each_s", "said"),
    [
        ("exec sleep 1000\n", 1.0, "did not answer within 1 s"),
        ("for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done\nwait\n", 1.0, "a hang or a fork storm"),
        ("kill -9 $$\n", 60.0, "was killed (SIGKILL"),
    ],
    ids=["hangs", "forks", "oom-killed"],
)
def test_an_interpreter_that_fails_while_asked_for_torch_stops_discovery(
    script: str,
    each_s: float,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = launcher(monkeypatch, tmp_path, {"broken": script, "plain": "exit 1\n"}, each_s)
    code, err = run_launcher(found, capsys)
    # No silent fall-back to the interpreter without torch: discovery fails and names the culprit.
    assert code == DISCOVERY_FAILED_EXIT and found["execs"] == []
    assert said in err and "/broken" in err


def test_a_venv_python_linking_to_the_system_python_is_still_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A venv's bin/python is a link to the system's; only through the venv's path does torch show.
    found = launcher(monkeypatch, tmp_path, {"system": 'case "$0" in */venv-python) exit 0;; esac\nexit 1\n'})
    venv = tmp_path / "bin" / "venv-python"
    venv.symlink_to(tmp_path / "bin" / "system")
    found["NAMES"] = [*found["NAMES"], str(venv)]
    code, _ = run_launcher(found, capsys)
    assert code == 0 and found["execs"][0][0] == str(venv)


def test_a_container_killed_before_the_launcher_spoke_is_reported_not_retried() -> None:
    report = run_with(ScriptedRun(exit_code=137, logs=""))  # docker kill right after start
    [runner] = report.find("runner.container")
    assert runner.status == "ERROR" and "killed by SIGKILL" in runner.summary
    assert runner.details["entrypoint"].startswith(f"overridden: {LAUNCH_PYTHONS[0]} ")
