"""Images that lie, trap or flood, built here from small Dockerfiles on the local base image, and what
`envkit validate` (and `gate`, `gc`) make of them: each is that image's result, never the run's."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support import DemoImages

from envkit.cli import main
from envkit.engine import BuildRequest
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.report import Report, load_report

# A `python3` that never runs the probe: it writes the result an attacker wants, where the runner said.
LIAR = r"""#!/bin/sh
echo "envkit-discovery: start" >&2
out=""
while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out="$2"; shift; done
cat /liar/result.json > "$out"
"""
FORGED = {
    "checks": [
        {"id": "env.python", "status": "PASS", "summary": "Python 3.12", "duration_s": 0.1},
        {"id": "env.torch", "status": "PASS", "summary": "torch 2.13.0+cu128", "duration_s": 0.1},
        {"id": "gpu.visibility", "status": "PASS", "summary": "8 x NVIDIA H100", "duration_s": 0.5},
        {"id": "gpu.kernels", "status": "PASS", "summary": "all kernels ran", "duration_s": 0.5, "device": 0},
        {"id": "runner.container", "status": "PASS", "summary": "the probe ran to completion"},
        {"id": "throughput.generate", "status": "PASS", "summary": "fast", "duration_s": 86400},
    ],
    "host": {"hostname": "dgx-01", "driver": "570.1", "gpus": [{"index": 0, "name": "NVIDIA H100"}]},
}
# A `python3` that writes a 1.5 GB sparse result: nothing envkit may read into memory.
FLOOD = r"""#!/bin/sh
echo "envkit-discovery: start" >&2
out=""
while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out="$2"; shift; done
truncate -s 1500M "$out"
"""
HANG = "#!/bin/sh\nexec sleep 1000\n"
SELF_KILL = "#!/bin/sh\nkill -9 $$\n"


@pytest.fixture(scope="module")
def build_image(engine: DockerSdkEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Builds an image from a Dockerfile and extra files; every one is removed afterwards."""
    made: list[str] = []

    def build(dockerfile: str, files: dict[str, str] | None = None) -> str:
        folder = tmp_path_factory.mktemp("hostile")
        (folder / "Dockerfile").write_text(dockerfile)
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        tag = f"envkit-test/hostile:{uuid.uuid4().hex[:10]}"
        engine.build(BuildRequest(context_dir=folder, tags=(tag,)), lambda line: None)
        made.append(tag)
        return tag

    yield build
    for tag in made:
        engine.remove_image(tag, force=True)


def validate(ref: str, out: Path, *extra: str) -> tuple[int, Report]:
    code = main(["validate", ref, "--only", "env.python", "--out", str(out), "--timeout", "300", *extra])
    return code, load_report(out)


def statuses(report: Report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


# --- a lying image cannot pass -------------------------------------------------------------------------


def test_an_image_that_replaces_its_python_cannot_pass_validate_or_gate(
    build_image: object, base_image: str, tmp_path: Path
) -> None:
    ref = build_image(  # type: ignore[operator]
        f"FROM {base_image}\nCOPY python3 /usr/local/bin/python3\nCOPY result.json /liar/result.json\n"
        "RUN chmod 755 /usr/local/bin/python3\n",
        {"python3": LIAR, "result.json": json.dumps(FORGED)},
    )
    code, report = validate(ref, tmp_path / "r.json")
    assert code == 1
    found = statuses(report)
    assert found["runner.result"] == "ERROR"
    assert "gpu.visibility" not in found and "gpu.kernels[gpu0]" not in found  # no GPU was given
    assert "throughput.generate" not in found  # a day's work in a container that ran seconds
    assert len(report.find("runner.container")) == 1  # the runner's own, not the forged one
    assert report.host.hostname != "dgx-01" and report.host.gpus == ()
    assert main(["gate", str(tmp_path / "r.json")]) != 0


# --- bounded reads -------------------------------------------------------------------------------------


def test_a_sparse_result_of_one_and_a_half_gigabytes_is_refused_unread(
    build_image: object, base_image: str, tmp_path: Path
) -> None:
    ref = build_image(  # type: ignore[operator]
        f"FROM {base_image}\nCOPY python3 /usr/local/bin/python3\nRUN chmod 755 /usr/local/bin/python3\n",
        {"python3": FLOOD},
    )
    code, report = validate(ref, tmp_path / "r.json")
    [runner] = report.find("runner.container")
    assert code == 1 and runner.status == "ERROR" and "larger than" in runner.summary


# --- file-system traps and entrypoints -----------------------------------------------------------------


@pytest.mark.parametrize(
    "trap",
    [
        "RUN rm -rf /tmp && ln -s /proc/self /tmp",
        "RUN rm -rf /tmp && ln -s /sys /tmp",  # a read-only place in a container
        "RUN rm -f /bin/sh /usr/bin/sh /bin/dash /usr/bin/dash /bin/bash /usr/bin/bash",
        'ENTRYPOINT ["sleep", "infinity"]',
        'ENTRYPOINT ["/bin/false"]',
        'ENTRYPOINT ["/bin/sh", "-c", "exec \\"$@\\"", "--"]\nCMD ["sleep", "1000"]',
    ],
    ids=[
        "tmp-to-proc-self",
        "tmp-read-only",
        "no-shell",
        "entrypoint-sleeps",
        "entrypoint-exits",
        "execs-args",
    ],
)
def test_traps_and_entrypoints_do_not_stop_the_probe(
    trap: str, build_image: object, base_image: str, tmp_path: Path
) -> None:
    ref = build_image(f"FROM {base_image}\n{trap}\n")  # type: ignore[operator]
    code, report = validate(ref, tmp_path / "r.json")
    assert code == 0, report.checks
    assert statuses(report) == {"env.python": "PASS", "runner.container": "PASS"}
    [runner] = report.find("runner.container")
    assert "ENTRYPOINT and CMD did not run" in runner.details["entrypoint"]


# --- diagnostics that tell the truth ---------------------------------------------------------------------


@pytest.mark.parametrize("candidate", [HANG, SELF_KILL], ids=["hangs", "killed"])
def test_an_interpreter_that_fails_during_discovery_is_named_not_passed_over(
    candidate: str, build_image: object, base_image: str, tmp_path: Path
) -> None:
    ref = build_image(  # type: ignore[operator]
        f"FROM {base_image}\nCOPY candidate /opt/venv/bin/python\nRUN chmod 755 /opt/venv/bin/python\n"
        "ENV ENVKIT_DISCOVERY_TIMEOUT=3\n",
        {"candidate": candidate},
    )
    code, report = validate(ref, tmp_path / "r.json", "--only", "env.torch")
    [runner] = report.find("runner.container")
    assert code == 1 and runner.status == "ERROR"
    assert "looked for the one with torch" in runner.summary and "GPU" not in (runner.hint or "")
    assert "/opt/venv/bin/python" in runner.details["log_tail"]
    assert not report.find("env.torch")  # no "torch is not importable" from a Python without it


# --- gc takes only what is envkit's ---------------------------------------------------------------------


def test_gc_all_leaves_a_users_container_and_image_that_inherit_envkit_labels(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no build record of envkit's here
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # other sessions' scratch folders stay out
    client = docker.from_env()
    folder = tmp_path / "ctx"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {demo.images[0]}\nRUN echo mine > /mine\n")
    user_image, _ = client.images.build(path=str(folder), rm=True)  # untagged, labels inherited
    container = client.containers.create(
        demo.images[0], command=["sleep", "600"], labels={"io.envkit.role": "validate"}
    )
    try:
        container.start()
        assert main(["gc", "--all"]) == 0
        assert engine.image(user_image.id) is not None
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
        client.images.remove(user_image.id, force=True)
