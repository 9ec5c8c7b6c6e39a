"""Unit tests never reach a Docker engine: constructing a docker-py client fails loudly."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_docker_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit tests must not talk to a Docker engine; use tests/unit/fakes.FakeEngine")

    monkeypatch.setattr(docker, "DockerClient", refuse)
    monkeypatch.setattr(docker, "APIClient", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/envkit-unit-tests.sock")
