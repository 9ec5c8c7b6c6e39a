"""envkit's own container-engine interface (DESIGN.md "Engine boundary").

Only this package talks to Docker. Higher layers see the frozen dataclasses and the `Engine` methods
below; docker-py types and exceptions never leave it. Backends: `DockerSdkEngine` (docker-py, the
default) and `BuildKitEngine` (same, but builds through a `docker build` CLI with BuildKit, for build
secrets and cache mounts).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envkit import labels as L
from envkit.errors import EnvironmentFault, EnvkitError, UsageError

MANAGED_LABEL = L.MANAGED
MANAGED_FILTER = f"{MANAGED_LABEL}=true"
# --gpus / DeviceRequests arrived with Docker 19.03 (API 1.40); envkit relies on them.
MIN_API_VERSION = "1.40"
BACKENDS = ("docker", "buildkit")


class BuildFailed(EnvkitError):
    """An image build failed (exit 1); `log_tail` holds the last lines of the build log."""

    exit_code = 1

    def __init__(self, message: str, *, log_tail: str = "", hint: str | None = None) -> None:
        self.log_tail = log_tail
        if log_tail:
            message = f"{message}\n--- last lines of the build log ---\n{log_tail}"
        super().__init__(message, hint=hint)


class BuildEnvironmentFault(BuildFailed):
    """A build the environment stopped, not the Dockerfile (exit 3): a registry that cannot be reached
    while the base image is pulled, or the engine's network bridge gone."""

    exit_code = 3


# What engines say when the environment, not the Dockerfile, failed a build; each with what to do.
_REGISTRY_HINT = (
    "no registry could be reached to pull the base image: make the base local first "
    "(`docker pull` where a registry is reachable, or scripts/make-base-image.sh), or fix the proxy/DNS"
)
_BRIDGE_HINT = (
    "the engine's network bridge is missing (a second dockerd started with `--bridge none` deletes "
    "docker0): restart the engine so it recreates its bridge"
)
_ENVIRONMENT_MARKERS = (
    ("could not find bridge", _BRIDGE_HINT),
    ("network bridge not found", _BRIDGE_HINT),
    ("no such host", _REGISTRY_HINT),
    ("dial tcp", _REGISTRY_HINT),
    ("i/o timeout", _REGISTRY_HINT),
    ("tls handshake timeout", _REGISTRY_HINT),
    ("temporary failure in name resolution", _REGISTRY_HINT),
    ("network is unreachable", _REGISTRY_HINT),
    ("client.timeout exceeded", _REGISTRY_HINT),
)


def build_failure(
    message: str, *, evidence: str = "", log_tail: str = "", hint: str | None = None
) -> BuildFailed:
    """A BuildFailed for `message`; a BuildEnvironmentFault (exit 3) with what to do when `message` or
    `evidence` (the engine's own error text) shows the environment failed the build."""
    text = f"{message}\n{evidence}".lower()
    found = next((fix for marker, fix in _ENVIRONMENT_MARKERS if marker in text), None)
    if found is not None:
        return BuildEnvironmentFault(message, log_tail=log_tail, hint=found)
    return BuildFailed(message, log_tail=log_tail, hint=hint)


class EngineError(EnvironmentFault):
    """The engine refused an operation that is not a build or a push (exit 3), e.g. an unknown image."""


@dataclass(frozen=True, kw_only=True)
class EngineInfo:
    host: str
    version: str
    api_version: str
    backend: str
    product: str = "Docker"  # which engine answered: "Docker" or "Podman" (its Docker-compatible API)


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    context_dir: Path
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Path] = field(default_factory=dict)  # id -> file; BuildKit backend only
    pull: bool = False
    network_mode: str | None = None
    no_cache: bool = False  # do not reuse layers from earlier builds
    # Images whose layers the build may reuse (`--cache-from`): BuildKit reads their inline cache
    # metadata from the registry and pulls only the layers it reuses; the classic builder uses only
    # images already on the engine.
    cache_from: tuple[str, ...] = ()
    inline_cache: bool = False  # write BuildKit inline cache metadata into the image (BuildKit only)


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    created: str
    digests: tuple[str, ...] = ()  # repository@sha256:... names; an image pulled by digest has no tag
    user: str = ""  # the image config's User ("" runs as root)
    exposed_ports: tuple[str, ...] = ()  # e.g. ("8080/tcp",)


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    image: str
    command: tuple[str, ...] = ()
    # Replaces the image's ENTRYPOINT (and with it, its CMD); None keeps the image's own.
    entrypoint: tuple[str, ...] | None = None
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    network_disabled: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    mem_limit: int | None = None
    pids_limit: int | None = None
    shm_size: int | None = None
    nano_cpus: int | None = None  # CPU quota in 1e-9 cores, as `docker run --cpus` (None: no quota)
    gpus: str | None = None  # "all" | "2" | "device=0,1", as `docker run --gpus`
    working_dir: str | None = None
    read_only: bool = False


@dataclass(frozen=True, kw_only=True)
class ContainerInfo:
    id: str
    name: str
    labels: Mapping[str, str]
    running: bool


class TooLarge(EngineError):
    """A file or log read from a container is larger than the caller allows."""


@dataclass(frozen=True, kw_only=True)
class ExitStatus:
    code: int | None
    oom_killed: bool
    timed_out: bool
    error: str | None


@dataclass(frozen=True, kw_only=True)
class GpuRequest:
    """A parsed `--gpus` value: count -1 means all GPUs; device_ids names them instead of a count."""

    count: int = 0
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("gpu",)


_DEVICE_ID = re.compile(r"^[A-Za-z0-9-]+$")


def parse_gpus(value: str) -> GpuRequest:
    """Parse a `docker run --gpus` value ("all", "2", "device=0,1"); raises UsageError on anything else."""
    text = value.strip().strip('"')
    if text == "all":
        return GpuRequest(count=-1)
    if text.isdigit() and int(text) > 0:
        return GpuRequest(count=int(text))
    if text.startswith("device="):
        ids = tuple(part.strip() for part in text.removeprefix("device=").split(","))
        if ids and all(_DEVICE_ID.match(i) for i in ids):
            return GpuRequest(device_ids=ids)
    raise UsageError(
        f"invalid GPU request {value!r}",
        hint='use "all", a positive count such as "2", or "device=0,1" (indexes or GPU UUIDs)',
    )


class Engine(abc.ABC):
    """A container engine: build, inspect, run with limits, copy files in and out, remove, push."""

    @abc.abstractmethod
    def info(self) -> EngineInfo:
        """Engine host, version and API version; raises EngineUnavailable when it cannot be reached."""

    @abc.abstractmethod
    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        """Build `req`, streaming log lines to `on_line`; returns the image id. Raises BuildFailed."""

    @abc.abstractmethod
    def image(self, ref: str) -> ImageInfo | None:
        """The image named by `ref` (tag or id), or None when the engine has no such image."""

    @abc.abstractmethod
    def tag(self, image_id: str, ref: str) -> None:
        """Give image `image_id` the name `ref` (repository[:tag])."""

    @abc.abstractmethod
    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove an image (or just this tag of it); a missing image is not an error."""

    @abc.abstractmethod
    def images(self, label: str) -> list[ImageInfo]:
        """Images carrying `label` ("key" or "key=value")."""

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its id. It always carries io.envkit.managed=true."""

    @abc.abstractmethod
    def put_files(self, cid: str, dest_dir: str, files: Mapping[str, bytes | Path]) -> None:
        """Copy files (relative name -> bytes, or a host file or folder) into `dest_dir` of a container."""

    @abc.abstractmethod
    def get_file(self, cid: str, path: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of one file in a container (running or stopped), or None when it does not exist.

        With `max_bytes`, a file larger than that raises TooLarge before its content is read."""

    @abc.abstractmethod
    def start(self, cid: str) -> None:
        """Start a created container."""

    @abc.abstractmethod
    def wait(self, cid: str, timeout_s: float) -> ExitStatus:
        """Wait for the container to stop; after `timeout_s` it is killed and reported timed_out."""

    @abc.abstractmethod
    def logs(self, cid: str, tail: int | None = None, max_bytes: int | None = None) -> str:
        """The container's stdout and stderr (the last `tail` lines when given; with `max_bytes`,
        at most the last that many bytes of them)."""

    @abc.abstractmethod
    def remove_container(self, cid: str) -> None:
        """Force-remove a container and its anonymous volumes; a missing container is not an error."""

    @abc.abstractmethod
    def containers(self, label: str, all: bool = True) -> list[str]:
        """Ids of containers carrying `label`, stopped ones included unless all=False."""

    @abc.abstractmethod
    def containers_named(self, prefix: str) -> list[ContainerInfo]:
        """Containers in any state whose name starts with `prefix`."""

    @abc.abstractmethod
    def push(self, ref: str) -> str:
        """Push `ref` to its registry; returns the pushed digest. Raises RegistryError on refusal."""

    @abc.abstractmethod
    def pull(self, ref: str) -> ImageInfo:
        """Pull `ref` (by tag or `repo@sha256:...`) from its registry; returns the image. RegistryError
        (exit 3) when the registry refuses or has no such image."""

    @abc.abstractmethod
    def history(self, ref: str) -> list[str]:
        """The `created_by` line of every layer of the image, newest first (as `docker history`)."""

    @abc.abstractmethod
    def save(self, ref: str) -> Iterator[bytes]:
        """The image as a `docker save` tarball, streamed in chunks (for layer scans)."""

    def runtimes(self) -> tuple[str, ...] | None:
        """Names of the container runtimes the engine offers (e.g. runc, nvidia); None when unknown."""
        return None


def get_engine(backend: str = "docker", host: str | None = None) -> Engine:
    """The engine for `backend` ("docker" or "buildkit") at `host` (default: DOCKER_HOST, else local)."""
    from envkit.engine.buildkit import BuildKitEngine
    from envkit.engine.docker_sdk import DockerSdkEngine

    if backend == "docker":
        return DockerSdkEngine(host=host)
    if backend == "buildkit":
        return BuildKitEngine(host=host)
    raise UsageError(f"unknown engine backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
