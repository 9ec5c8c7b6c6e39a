"""Unit tests never reach a Docker engine: constructing a docker-py client fails loudly."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Fuzz budgets (tests/unit/test_hostile_documents.py): each test names its example count for the
# `thorough` profile; the default `quick` profile runs a quarter of it, derandomized like the full run.
# `make fuzz` (HYPOTHESIS_PROFILE=thorough) runs every example.
settings.register_profile("quick", max_examples=25)
settings.register_profile("thorough", max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture(autouse=True)
def _no_docker_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit tests must not talk to a Docker engine; use tests/unit/fakes.FakeEngine")

    monkeypatch.setattr(docker, "DockerClient", refuse)
    monkeypatch.setattr(docker, "APIClient", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/envkit-unit-tests.sock")
