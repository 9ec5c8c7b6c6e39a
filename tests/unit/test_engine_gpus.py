"""`--gpus` strings become docker DeviceRequests exactly as `docker run --gpus` makes them."""

from __future__ import annotations

import pytest

from envkit.engine import ContainerSpec, GpuRequest, get_engine, parse_gpus
from envkit.engine.docker_sdk import _host_config_args, device_requests
from envkit.errors import UsageError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", GpuRequest(count=-1)),
        ("2", GpuRequest(count=2)),
        ("device=0,1", GpuRequest(device_ids=("0", "1"))),
        ('"device=GPU-3a1b2c"', GpuRequest(device_ids=("GPU-3a1b2c",))),
    ],
)
def test_parse_gpus(value: str, expected: GpuRequest) -> None:
    assert parse_gpus(value) == expected


@pytest.mark.parametrize("value", ["", "0", "-1", "some", "device=", "device=0;rm -rf /", "device=0,,1"])
def test_parse_gpus_rejects(value: str) -> None:
    with pytest.raises(UsageError, match="invalid GPU request"):
        parse_gpus(value)


def test_device_request_for_all_gpus() -> None:
    [req] = device_requests("all")
    assert req["Count"] == -1
    assert not req["DeviceIDs"]
    assert req["Capabilities"] == [["gpu"]]


def test_device_request_for_named_devices() -> None:
    [req] = device_requests("device=0,1")
    assert req["DeviceIDs"] == ["0", "1"]
    assert not req["Count"]


def test_no_gpus_no_device_requests() -> None:
    assert device_requests(None) == []


def test_host_config_defaults_are_locked_down() -> None:
    args = _host_config_args(ContainerSpec(image="x", mem_limit=64 * 2**20))
    assert args["network_mode"] == "none"
    assert args["cap_drop"] == ["ALL"]
    assert args["security_opt"] == ["no-new-privileges"]
    assert args["memswap_limit"] == args["mem_limit"]
    assert args["device_requests"] is None


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown engine backend"):
        get_engine("podman-ish")
