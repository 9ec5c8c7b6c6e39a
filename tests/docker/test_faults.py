"""Engine faults against the real engine: it dies mid-build, it is not there, a probe container is
killed from outside, the user presses Ctrl-C. envkit must say what happened and leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginefault import EngineProxy, real_engine_socket
from support import ROOT, DemoImages

from envkit.cli import build_parser, main
from envkit.commands._common import render_options
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.matrix import load_matrix
from envkit.render import render_plan
from envkit.report import load_report
from envkit.resolve import plan

# A Ctrl-C must end envkit within this many seconds, however long the step it interrupts.
INTERRUPT_BOUND_S = 15
# How long a test waits for envkit to reach the point where it is interrupted.
START_TIMEOUT_S = 300


def variant_matrix(demo: DemoImages, folder: Path, name: str, extra: str) -> Path:
    """The demo matrix under its own repository, with `extra` YAML appended (changes the content hash)."""
    matrix = folder / f"{name}.yaml"
    matrix.write_text(demo.matrix.read_text().replace(demo.repository, f"{demo.repository}-{name}") + extra)
    return matrix


def planned(matrix: Path, flags: list[str]) -> list[dict]:
    """Each cell's image, tags and content hash, as `envkit build` renders them."""
    args = build_parser().parse_args(["build", str(matrix), *flags])
    contexts = render_plan(plan(load_matrix(matrix)), render_options(args))
    return [{"image": c.cell.image, "tags": list(c.tags), "hash": c.content_hash} for c in contexts]


@pytest.fixture
def cleanup(engine: DockerSdkEngine) -> Iterator[list[str]]:
    """Image refs (tags, ids, or label filters as `label:K=V`) removed after the test."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        if ref.startswith("label:"):
            for image in engine.images(ref.removeprefix("label:")):
                engine.remove_image(image.id, force=True)
        else:
            engine.remove_image(ref, force=True)


def assert_no_cell_tag_has(engine: DockerSdkEngine, cells: list[dict]) -> None:
    for cell in cells:
        for tag in cell["tags"]:
            image = engine.image(tag)
            assert image is None or image.labels.get("io.envkit.content-hash") != cell["hash"], tag


def validate_containers(engine: DockerSdkEngine, image: str) -> list[str]:
    return sorted(
        set(engine.containers("io.envkit.role=validate")) & set(engine.containers(f"io.envkit.image={image}"))
    )


# --- the engine dies in the middle of a build --------------------------------------------------------


def test_engine_dying_mid_build_is_exit_3_tags_nothing_and_a_rerun_finishes(
    demo: DemoImages,
    engine: DockerSdkEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cleanup: list[str],
) -> None:
    target = real_engine_socket()
    if target is None:
        pytest.skip("the engine is reached over TCP; the fault proxy forwards a unix socket")
    run = uuid.uuid4().hex[:12]
    # Only a label changes: the build cache of the demo build makes the rerun quick.
    matrix = variant_matrix(demo, tmp_path, "dies", f'labels:\n  org.example.test-run: "{run}"\n')
    cells = planned(matrix, demo.flags)
    cleanup += [f"label:org.example.test-run={run}", *(tag for c in cells for tag in c["tags"])]
    old = engine.image(demo.images[0])
    assert old is not None
    for cell in cells:
        engine.tag(old.id, cell["image"])  # an older image under the cell tag: it must stay there
    report = tmp_path / "build.json"
    direct = os.environ.get("DOCKER_HOST")
    argv = ["build", str(matrix), *demo.flags, "--report", str(report), "--log-dir", str(tmp_path / "logs")]

    with EngineProxy(tmp_path / "engine.sock", target, cut_on=b'"stream":"Step ') as proxy:
        monkeypatch.setenv("DOCKER_HOST", proxy.url)
        code = main(argv)
        assert proxy.was_cut.is_set(), "the build never started streaming its log"

    err = capsys.readouterr().err
    assert code == 3, err
    assert proxy.url in err and "Traceback" not in err and "rerun `envkit build`" in err
    assert [c["status"] for c in json.loads(report.read_text())["cells"]] == ["cancelled", "cancelled"]
    assert_no_cell_tag_has(engine, cells)
    assert all(engine.image(c["image"]).id == old.id for c in cells)

    # The engine is back (straight to its socket): the same command finishes the work.
    if direct is None:
        monkeypatch.delenv("DOCKER_HOST")
    else:
        monkeypatch.setenv("DOCKER_HOST", direct)
    assert main(argv) == 0, capsys.readouterr()
    rebuilt = json.loads(report.read_text())["cells"]
    assert [c["status"] for c in rebuilt] == ["built", "built"]
    for cell in cells:
        image = engine.image(cell["image"])
        assert image is not None and image.labels["io.envkit.content-hash"] == cell["hash"]


# --- the engine is not there at all -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["build", "validate", "gc", "doctor"])
def test_unreachable_engine_at_start_is_exit_3_naming_the_host(
    command: str, demo: DemoImages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    argv = {
        "build": ["build", str(demo.matrix), *demo.flags, "--report", "/dev/null"],
        "validate": ["validate", demo.images[0]],
        "gc": ["gc"],
        "doctor": ["doctor"],
    }[command]
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "unix:///nonexistent" in captured.err + captured.out
    assert "Traceback" not in captured.err + captured.out


# --- a probe container killed from outside ------------------------------------------------------------


def kill_when_started(engine: DockerSdkEngine, image: str, killed: list[str], ready: threading.Event) -> None:
    """Kill the first validation container of `image` as soon as the engine reports it started."""
    until = int(time.time()) + START_TIMEOUT_S
    events = engine.api.events(
        decode=True,
        until=until,
        filters={
            "type": "container",
            "event": "start",
            "label": ["io.envkit.role=validate", f"io.envkit.image={image}"],
        },
    )
    ready.set()
    try:
        for event in events:
            engine.api.kill(event["id"])
            killed.append(event["id"])
            return
    finally:
        events.close()


def test_probe_container_killed_from_outside_is_an_error_and_the_next_image_is_still_validated(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    victim, survivor = demo.images
    killed: list[str] = []
    ready = threading.Event()
    killer = threading.Thread(target=kill_when_started, args=(engine, victim, killed, ready), daemon=True)
    killer.start()
    assert ready.wait(30)
    code = main(
        [
            "validate",
            victim,
            survivor,
            "--only",
            "env.python",
            "--only",
            "env.torch",
            "--out-dir",
            str(tmp_path),
        ]
    )
    killer.join(timeout=30)
    assert killed, "the validation container was never seen starting"
    assert code == 1
    reports = {load_report(p).image.ref: load_report(p) for p in tmp_path.glob("*.json")}
    assert set(reports) == {victim, survivor}
    [runner] = reports[victim].find("runner.container")
    assert runner.status == "ERROR" and "SIGKILL" in runner.summary and runner.hint
    assert {c.id: c.status for c in reports[survivor].checks} == {
        "env.python": "PASS",
        "env.torch": "PASS",
        "runner.container": "PASS",
    }
    assert validate_containers(engine, victim) == [] and validate_containers(engine, survivor) == []


# --- Ctrl-C ------------------------------------------------------------------------------------------


def start_envkit(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`python -m envkit ARGS` with SIGINT handled by Python (a shell may start children ignoring it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "envkit", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt(process: subprocess.Popen[str]) -> tuple[int, float, str]:
    """Send SIGINT; (exit code, seconds it took to exit, output). Kills it past INTERRUPT_BOUND_S."""
    process.send_signal(signal.SIGINT)
    clock = time.monotonic()
    try:
        output, _ = process.communicate(timeout=INTERRUPT_BOUND_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"envkit was still running {INTERRUPT_BOUND_S} s after Ctrl-C:\n{output[-3000:]}")
    return process.returncode, time.monotonic() - clock, output


def wait_for(condition: object, what: str, process: subprocess.Popen[str]) -> None:
    """Poll `condition()` until true; fail when the process ends first or START_TIMEOUT_S passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            pytest.fail(
                f"envkit ended (exit {process.returncode}) before {what}:\n{process.stdout.read()[-3000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_ctrl_c_during_a_build_step_exits_promptly_and_tags_nothing(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path, cleanup: list[str]
) -> None:
    run = uuid.uuid4().hex[:12]
    # A changed package list invalidates the install step: the build is mid-step, not finishing.
    matrix = variant_matrix(
        demo, tmp_path, "ctrlc", f'packages: ["six"]\nlabels:\n  org.example.test-run: "{run}"\n'
    )
    cells = planned(matrix, demo.flags)
    cleanup += [f"label:org.example.test-run={run}", *(tag for c in cells for tag in c["tags"])]
    logs = tmp_path / "logs"
    process = start_envkit(
        "build",
        str(matrix),
        *demo.flags,
        "--report",
        str(tmp_path / "b.json"),
        "--log-dir",
        str(logs),
        cwd=tmp_path,
    )

    def a_step_runs() -> bool:
        return any("Running in" in log.read_text(errors="replace") for log in logs.glob("*.log"))

    wait_for(a_step_runs, "a build step started", process)
    code, _, output = interrupt(process)
    assert code == 130, output[-3000:]
    assert "interrupted" in output and "Traceback" not in output
    assert_no_cell_tag_has(engine, cells)


def test_ctrl_c_during_validation_exits_promptly_and_removes_the_container(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    image = demo.images[0]
    before = set(validate_containers(engine, image))
    process = start_envkit(
        "validate", image, "--only", "throughput.generate", "--out", str(tmp_path / "r.json"), cwd=tmp_path
    )
    wait_for(
        lambda: set(engine.containers(f"io.envkit.image={image}", all=False)) - before,
        "the validation container runs",
        process,
    )
    code, _, output = interrupt(process)
    assert code == 130, output[-3000:]
    assert "interrupted" in output and "Traceback" not in output
    assert validate_containers(engine, image) == sorted(before)
    assert not (tmp_path / "r.json").exists()
