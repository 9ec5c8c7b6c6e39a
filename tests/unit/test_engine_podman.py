"""Podman's Docker-compatible API: which engine answered, qualified names, ulimits and CDI GPUs."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from envkit.engine import ContainerSpec
from envkit.engine.docker_sdk import _podman_host_config, _product, cdi_devices, normalise_name
from envkit.errors import UsageError


def test_podman_is_recognised_from_its_version_components() -> None:
    podman = {"Version": "4.3.1", "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}
    docker = {"Version": "27.0", "Components": [{"Name": "Engine", "Version": "27.0"}]}
    assert _product(podman) == "Podman"
    assert _product(docker) == "Docker"
    assert _product({"Version": "1"}) == "Docker"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("localhost/envkit-test/x:1", "envkit-test/x:1"),
        ("docker.io/library/debian:bookworm", "debian:bookworm"),
        ("docker.io/acme/pytorch:2.8", "acme/pytorch:2.8"),
        ("127.0.0.1:5000/acme/pytorch:2.8", "127.0.0.1:5000/acme/pytorch:2.8"),
        ("localhostish/x:1", "localhostish/x:1"),
    ],
)
def test_qualified_names_compare_as_docker_writes_them(name: str, expected: str) -> None:
    assert normalise_name(name) == expected


def test_gpus_become_cdi_device_names() -> None:
    assert cdi_devices("all") == ["nvidia.com/gpu=all"]
    assert cdi_devices("device=0,GPU-abc") == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-abc"]
    with pytest.raises(UsageError, match="by count") as info:
        cdi_devices("2")
    assert "nvidia-ctk cdi generate" in (info.value.hint or "")


def test_podman_containers_get_this_process_hard_limits_and_no_device_requests() -> None:
    args = _podman_host_config(ContainerSpec(image="x", gpus="all"))
    limits = {u["Name"]: (u["Soft"], u["Hard"]) for u in args["ulimits"] or []}
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile_hard != resource.RLIM_INFINITY:
        assert limits["nofile"] == (nofile_hard, nofile_hard)
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    expected = pid_max if nproc_hard == resource.RLIM_INFINITY else min(nproc_hard, pid_max)
    assert limits["nproc"] == (expected, expected)
    assert args["devices"] == ["nvidia.com/gpu=all"] and args["device_requests"] is None
    assert "devices" not in _podman_host_config(ContainerSpec(image="x"))


def test_buildkit_against_podman_is_refused_before_any_build(tmp_path) -> None:
    from envkit.engine import BuildRequest
    from envkit.engine.buildkit import BuildKitEngine

    engine = BuildKitEngine(host="unix:///nonexistent.sock", env={})
    engine._product = "Podman"
    with pytest.raises(UsageError, match="no BuildKit") as info:
        engine.build(BuildRequest(context_dir=tmp_path), lambda _: None)
    assert "without --buildkit" in (info.value.hint or "")
