"""The probe's sandbox, proven from inside: containers made exactly as the runner makes them report
their network, capabilities, privileges, limits and user; and the probe works as a non-root user."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DemoImages

from envkit.cli import main
from envkit.engine import BuildRequest
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.probe.registry import CHECKS
from envkit.report import load_report
from envkit.validate import RunSettings, probe_container_spec

MiB = 2**20
# Reports key=value lines from inside; every probe is a plain file read or a failing syscall.
INSIDE = r"""
echo "uid=$(id -u)"
sed -n 's/^\(CapEff\|NoNewPrivs\):[[:space:]]*/\1=/p' /proc/self/status
echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | paste -sd, -)"
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
  [ -r "$f" ] && echo "memory=$(cat "$f")" && break
done
for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max; do
  [ -r "$f" ] && echo "pids=$(cat "$f")" && break
done
echo "shm_kib=$(df -k /dev/shm | tail -n 1 | awk '{print $2}')"
python3 -c '
import socket
try:
    socket.create_connection(("192.0.2.1", 80), timeout=5)
    print("connect=succeeded")
except OSError as error:
    print("connect=failed:", error.strerror or error)
'
"""


def inside(engine: DockerSdkEngine, ref: str, settings: RunSettings) -> dict[str, str]:
    """Run INSIDE in a container the runner would create for `ref` with `settings`; its key=value lines."""
    image = engine.image(ref)
    assert image is not None
    spec = dataclasses.replace(
        probe_container_spec(image, settings, ref), entrypoint=("/bin/sh", "-c", INSIDE), command=()
    )
    cid = engine.create(spec)
    try:
        engine.start(cid)
        status = engine.wait(cid, 120)
        output = engine.logs(cid)
    finally:
        engine.remove_container(cid)
    assert status.code == 0, output
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def user_image(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The demo CPU image with `USER 1234`, as a hardened image would declare it."""
    folder = tmp_path_factory.mktemp("user-image")
    (folder / "Dockerfile").write_text(f"FROM {demo.images[0]}\nUSER 1234\n")
    tag = f"envkit-test/user1234:{uuid.uuid4().hex[:8]}"
    engine.build(BuildRequest(context_dir=folder, tags=(tag,)), lambda line: None)
    yield tag
    engine.remove_image(tag, force=True)


def test_runner_container_has_no_network(demo: DemoImages, engine: DockerSdkEngine) -> None:
    seen = inside(engine, demo.images[0], RunSettings())
    assert seen["interfaces"] == "lo"
    assert seen["connect"].startswith("failed")


def test_runner_container_has_no_capabilities_and_no_new_privileges(
    demo: DemoImages, engine: DockerSdkEngine
) -> None:
    seen = inside(engine, demo.images[0], RunSettings())
    assert int(seen["CapEff"], 16) == 0
    assert seen["NoNewPrivs"] == "1"


@pytest.mark.parametrize(
    "settings",
    [
        RunSettings(),
        RunSettings(memory=256 * MiB, pids=128, shm=64 * MiB),
    ],
    ids=["defaults", "custom"],
)
def test_runner_container_limits_are_the_settings(
    settings: RunSettings, demo: DemoImages, engine: DockerSdkEngine
) -> None:
    seen = inside(engine, demo.images[0], settings)
    assert int(seen["memory"]) == settings.memory
    assert int(seen["pids"]) == settings.pids
    assert int(seen["shm_kib"]) * 1024 == settings.shm


def test_runner_uses_the_image_user_unless_told_otherwise(
    user_image: str, demo: DemoImages, engine: DockerSdkEngine
) -> None:
    assert inside(engine, user_image, RunSettings())["uid"] == "1234"
    assert inside(engine, user_image, RunSettings(user="4321"))["uid"] == "4321"
    assert inside(engine, demo.images[0], RunSettings())["uid"] == "0"  # no USER: the image's root, capless


def test_probe_runs_completely_as_a_non_root_image_user(user_image: str, tmp_path: Path) -> None:
    # Every quick check but the long throughput run: each writes results, temp files and children.
    # (service.* checks only run in images with a user layer: asked for by id here they would SKIP.)
    checks = [
        spec.id for spec in CHECKS if spec.id != "throughput.generate" and not spec.id.startswith("service.")
    ]
    out = tmp_path / "report.json"
    code = main(
        ["validate", user_image, *(arg for check in checks for arg in ("--only", check)), "--out", str(out)]
    )
    report = load_report(out)
    statuses = {check.id: check.status for check in report.checks}
    assert code == 0, report.checks
    assert set(statuses) == {*checks, "runner.container"}
    assert statuses["runner.container"] == "PASS"
    assert {status for check, status in statuses.items() if not check.startswith(("gpu.", "oom.gpu"))} == {
        "PASS"
    }


@pytest.fixture(scope="module")
def hostile_image(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The demo CPU image with a symlink planted where the probe once wrote its result, and /tmp
    itself a link into /proc/self."""
    folder = tmp_path_factory.mktemp("hostile-image")
    (folder / "Dockerfile").write_text(
        f"FROM {demo.images[0]}\n"
        "RUN mkdir -p /var/trap/envkit/out && ln -s /etc/hostname /var/trap/envkit/out/result.json"
        " && rm -rf /tmp && ln -s /var/trap /tmp\n"
    )
    tag = f"envkit-test/hostile:{uuid.uuid4().hex[:8]}"
    engine.build(BuildRequest(context_dir=folder, tags=(tag,)), lambda line: None)
    yield tag
    engine.remove_image(tag, force=True)


def test_links_an_image_planted_on_the_probes_old_path_cannot_redirect_it(
    hostile_image: str, demo: DemoImages, tmp_path: Path
) -> None:
    code = main(
        ["validate", hostile_image, demo.images[0], "--only", "env.python", "--out-dir", str(tmp_path)]
    )
    assert code == 0
    reports = {load_report(p).image.ref: load_report(p) for p in tmp_path.glob("*.json")}
    assert {c.id: c.status for c in reports[hostile_image].checks} == {
        "env.python": "PASS",
        "runner.container": "PASS",
    }
    assert {c.id: c.status for c in reports[demo.images[0]].checks} == {
        "env.python": "PASS",
        "runner.container": "PASS",
    }
