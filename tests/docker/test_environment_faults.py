"""A build the environment stops is exit 3 with what to do, on the real engine, and leaves no image."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine

# `.invalid` never resolves (RFC 2606): pulling from it is what an engine without a registry sees.
UNREACHABLE_BASE = "envkit-unreachable.invalid/debian:bookworm-slim"


def test_a_base_no_registry_can_serve_is_exit_3_and_tags_nothing(
    engine: DockerSdkEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "version: 1\nname: envkit-env-fault\nimage: {repository: envkit-test/env-fault}\n"
        f"base: {UNREACHABLE_BASE}\naxes: {{torch: ['2.8'], cuda: [none], python: ['3.11']}}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(matrix), "--jobs", "1"]) == 3
    out = capsys.readouterr().out
    assert "no registry could be reached to pull the base image" in out
    assert engine.image("envkit-test/env-fault:2.8.0-cpu-py3.11-debian12-cpu") is None
