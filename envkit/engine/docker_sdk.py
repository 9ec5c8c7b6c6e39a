"""The default engine backend: the Docker SDK for Python (docker-py), local socket or DOCKER_HOST.

Every docker-py / requests exception is translated here into envkit errors; nothing from docker-py
leaves this module.
"""

from __future__ import annotations

import io
import os
import re
import resource
import tarfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.types import DeviceRequest, Ulimit
from docker.utils import kwargs_from_env, parse_repository_tag, version_lt

from envkit.engine import (
    MANAGED_LABEL,
    MIN_API_VERSION,
    BuildFailed,
    BuildRequest,
    ContainerInfo,
    ContainerSpec,
    Engine,
    EngineError,
    EngineInfo,
    ExitStatus,
    ImageInfo,
    TooLarge,
    build_failure,
    parse_gpus,
)
from envkit.errors import EngineUnavailable, RegistryError, UsageError

DEFAULT_HOST = "unix:///var/run/docker.sock"
LOG_TAIL_LINES = 40
# Seconds for ordinary API calls; builds and waits set their own.
API_TIMEOUT_S = 120
# After a timeout kill, how long the engine gets to report the container stopped.
KILL_GRACE_S = 30
UNREACHABLE_HINT = "start dockerd (or run scripts/ensure-engine.sh), or set DOCKER_HOST"
PODMAN_CDI_HINT = (
    "Podman gives containers GPUs through CDI: generate the spec once (nvidia-ctk cdi generate "
    "--output=/etc/cdi/nvidia.yaml) and ask for --gpus all or --gpus device=0,1"
)


def device_requests(gpus: str | None) -> list[DeviceRequest]:
    """docker-py DeviceRequests for a `--gpus` value; empty when no GPU is asked for."""
    if gpus is None:
        return []
    req = parse_gpus(gpus)
    return [
        DeviceRequest(
            count=req.count if not req.device_ids else None,
            device_ids=list(req.device_ids) or None,
            capabilities=[list(req.capabilities)],
        )
    ]


def unreachable(host: str, cause: object) -> EngineUnavailable:
    """The error for an engine that cannot be reached at `host`."""
    return EngineUnavailable(f"cannot reach the Docker engine at {host} ({cause})", hint=UNREACHABLE_HINT)


# An engine that dies mid-stream (build log, push, save) surfaces as a broken chunked response.
_CONNECTION_LOST = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    ConnectionError,
)


# What dockerd says when a container asks for GPUs and no NVIDIA runtime is registered with it.
_NO_GPU_RUNTIME = "could not select device driver"
NO_GPU_RUNTIME_HINT = (
    "the engine has no NVIDIA container runtime: install the NVIDIA Container Toolkit "
    "(nvidia-container-toolkit), run `nvidia-ctk runtime configure --runtime=docker` and restart "
    "dockerd (`envkit doctor` checks it); or pass --gpus none"
)


@contextmanager
def translate(host: str, doing: str) -> Iterator[None]:
    """Turn connection failures into EngineUnavailable and other engine refusals into EngineError."""
    try:
        yield
    except _CONNECTION_LOST as error:
        raise EngineUnavailable(
            f"lost the connection to the Docker engine at {host} while {doing} ({describe_cause(error)})",
            hint=f"check that the engine is still running; {UNREACHABLE_HINT}",
        ) from error
    except docker.errors.APIError as error:
        explanation = str(error.explanation or error)
        hint = NO_GPU_RUNTIME_HINT if _NO_GPU_RUNTIME in explanation else None
        raise EngineError(f"the Docker engine refused {doing}: {explanation}", hint=hint) from error
    except docker.errors.DockerException as error:
        raise EngineError(f"{doing} failed: {error}") from error


class DockerSdkEngine(Engine):
    """Engine backed by docker-py; the client connects lazily, on the first call."""

    backend = "docker"

    def __init__(self, host: str | None = None, timeout_s: int = API_TIMEOUT_S) -> None:
        self._host_arg = host
        self._timeout_s = timeout_s
        self._client: docker.APIClient | None = None
        self._product: str | None = None

    @property
    def host(self) -> str:
        """The engine address this instance talks to."""
        return self._host_arg or os.environ.get("DOCKER_HOST") or DEFAULT_HOST

    @property
    def api(self) -> docker.APIClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> docker.APIClient:
        params: dict[str, Any] = kwargs_from_env()
        if self._host_arg:
            params["base_url"] = self._host_arg
        try:
            client = docker.APIClient(version="auto", timeout=self._timeout_s, **params)
        except docker.errors.DockerException as error:
            raise unreachable(self.host, describe_cause(error)) from error
        except requests.exceptions.RequestException as error:
            raise unreachable(self.host, describe_cause(error)) from error
        if version_lt(client.api_version, MIN_API_VERSION):
            raise EngineUnavailable(
                f"the Docker engine at {self.host} speaks API {client.api_version}; "
                f"envkit needs {MIN_API_VERSION} or newer (Docker 19.03+)",
                hint="upgrade the Docker engine",
            )
        return client

    def info(self) -> EngineInfo:
        with translate(self.host, "reading the engine version"):
            version = self.api.version()
        self._product = _product(version)
        return EngineInfo(
            host=self.host,
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            backend=self.backend,
            product=self._product,
        )

    @property
    def podman(self) -> bool:
        """Whether the engine is Podman's Docker-compatible API (asked once, on first use)."""
        if self._product is None:
            self.info()
        return self._product == "Podman"

    def runtimes(self) -> tuple[str, ...] | None:
        with translate(self.host, "reading the engine's runtimes"):
            info = self.api.info()
        return tuple(sorted(info.get("Runtimes") or {}))

    # -- images -----------------------------------------------------------------------------------

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        if req.secrets:
            raise UsageError(
                "build secrets need the BuildKit backend; docker-py cannot pass them",
                hint="use the 'buildkit' engine backend",
            )
        _check_context(req)
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

        def emit(line: str) -> None:
            tail.append(line)
            on_line(line)

        with translate(self.host, "building an image"):
            try:
                image_id = self._stream_build(req, emit, tail)
            except docker.errors.APIError as error:
                message = f"build failed: {error.explanation or error}"
                raise build_failure(message, log_tail=_tail(tail)) from error
        for ref in req.tags[1:]:
            self.tag(image_id, ref)
        return image_id

    def _stream_build(self, req: BuildRequest, emit: Callable[[str], None], tail: deque[str]) -> str:
        chunks = self.api.build(
            path=str(req.context_dir),
            dockerfile=req.dockerfile,
            tag=req.tags[0] if req.tags else None,
            labels={**req.labels, MANAGED_LABEL: "true"},
            buildargs=dict(req.build_args),
            pull=req.pull,
            network_mode=req.network_mode,
            rm=True,
            forcerm=True,
            nocache=req.no_cache,
            cache_from=list(req.cache_from) or None,
            decode=True,
        )
        image_id: str | None = None
        pending = ""
        for chunk in chunks:
            if "error" in chunk:
                for line in (pending + str(chunk["error"])).splitlines():
                    emit(line)
                raise build_failure(f"build failed: {chunk['error'].strip()}", log_tail=_tail(tail))
            pending += str(chunk.get("stream", ""))
            *lines, pending = pending.split("\n")
            for line in lines:
                emit(line.rstrip("\r"))
            image_id = chunk.get("aux", {}).get("ID", image_id)
            built = _BUILT.search(str(chunk.get("stream", "")))
            if built and image_id is None:
                # Podman's compatible API may end with this line and no aux ID.
                image_id = built[1]
        if pending:
            emit(pending)
        if image_id is None:
            raise BuildFailed("build finished without reporting an image id")
        return image_id

    def image(self, ref: str) -> ImageInfo | None:
        with translate(self.host, f"inspecting image {ref}"):
            try:
                info = _image_info(self.api.inspect_image(ref))
            except docker.errors.NotFound:
                return None
        if self.podman:
            tags = tuple(dict.fromkeys(normalise_name(tag) for tag in info.tags))
            digests = tuple(dict.fromkeys(normalise_name(digest) for digest in info.digests))
            info = replace(info, tags=tags, digests=digests)
        return info

    def tag(self, image_id: str, ref: str) -> None:
        repository, tag = parse_repository_tag(ref)
        with translate(self.host, f"tagging {image_id} as {ref}"):
            self.api.tag(image_id, repository, tag or "latest")

    def remove_image(self, ref: str, force: bool = False) -> None:
        with translate(self.host, f"removing image {ref}"), suppress(docker.errors.NotFound):
            self.api.remove_image(ref, force=force)

    def images(self, label: str) -> list[ImageInfo]:
        with translate(self.host, f"listing images labelled {label}"):
            ids = [row["Id"] for row in self.api.images(filters={"label": label})]
        return [info for info in map(self.image, ids) if info is not None]

    def history(self, ref: str) -> list[str]:
        with translate(self.host, f"reading the history of {ref}"):
            return [str(layer.get("CreatedBy", "")) for layer in self.api.history(ref)]

    def save(self, ref: str) -> Iterator[bytes]:
        with translate(self.host, f"saving image {ref}"):
            chunks = self.api.get_image(ref)
            yield from chunks

    def push(self, ref: str) -> str:
        repository, tag = parse_repository_tag(ref)
        digest: str | None = None
        try:
            with translate(self.host, f"pushing {ref}"):
                for chunk in self.api.push(repository, tag=tag or "latest", stream=True, decode=True):
                    if "error" in chunk:
                        raise RegistryError(f"the registry refused {ref}: {chunk['error'].strip()}")
                    digest = chunk.get("aux", {}).get("Digest", digest)
        except EngineError as error:
            raise RegistryError(f"pushing {ref} failed: {error.message}") from error
        if digest is None:
            raise RegistryError(f"pushing {ref} reported no digest")
        return digest

    def pull(self, ref: str) -> ImageInfo:
        repository, _, digest = ref.partition("@")
        tag = digest or parse_repository_tag(ref)[1] or "latest"
        name = repository if digest else parse_repository_tag(ref)[0]
        try:
            with translate(self.host, f"pulling {ref}"):
                for chunk in self.api.pull(name, tag=tag, stream=True, decode=True):
                    if "error" in chunk:
                        raise RegistryError(f"the registry refused {ref}: {chunk['error'].strip()}")
        except EngineError as error:
            raise RegistryError(f"pulling {ref} failed: {error.message}") from error
        image = self.image(ref)
        if image is None:
            raise RegistryError(f"pulling {ref} left no image on the engine")
        return image

    # -- containers -------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        with translate(self.host, f"creating a container from {spec.image}"):
            args = _host_config_args(spec)
            if self.podman:
                args.update(_podman_host_config(spec))
            host_config = self.api.create_host_config(**args)
            try:
                created = self.api.create_container(
                    image=spec.image,
                    command=list(spec.command) or None,
                    entrypoint=None if spec.entrypoint is None else list(spec.entrypoint),
                    name=spec.name,
                    labels={**spec.labels, MANAGED_LABEL: "true"},
                    environment=dict(spec.env),
                    user=spec.user,
                    working_dir=spec.working_dir,
                    host_config=host_config,
                )
            except docker.errors.ImageNotFound as error:
                raise EngineError(f"no image {spec.image!r} on the engine at {self.host}") from error
        return str(created["Id"])

    def put_files(self, cid: str, dest_dir: str, files: Mapping[str, bytes | Path]) -> None:
        archive = _tar_files(dest_dir, files)
        with translate(self.host, f"copying files into container {cid[:12]}"):
            self.api.put_archive(cid, "/", archive)

    def get_file(self, cid: str, path: str, max_bytes: int | None = None) -> bytes | None:
        with translate(self.host, f"reading {path} from container {cid[:12]}"):
            try:
                stream, stat = self.api.get_archive(cid, path)
            except docker.errors.NotFound:
                return None
            size = int(stat.get("size") or 0)
            if max_bytes is not None and size > max_bytes:
                _close(stream)
                raise TooLarge(f"{path} in the container is {size} bytes, more than the {max_bytes} allowed")
            data = _bounded(stream, None if max_bytes is None else max_bytes + _TAR_SLACK, path)
        return _single_file(data, path, max_bytes)

    def start(self, cid: str) -> None:
        with translate(self.host, f"starting container {cid[:12]}"):
            self.api.start(cid)

    def wait(self, cid: str, timeout_s: float) -> ExitStatus:
        timed_out = False
        with translate(self.host, f"waiting for container {cid[:12]}"):
            try:
                self.api.wait(cid, timeout=timeout_s)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                # docker-py reports a read timeout on a unix socket as a ConnectionError; the
                # inspect below tells a timeout (still running) from a dead engine (raises).
                timed_out = self._kill_if_running(cid)
            state = self.api.inspect_container(cid)["State"]
        return ExitStatus(
            code=None if state.get("Running") else state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            timed_out=timed_out,
            error=state.get("Error") or None,
        )

    def _kill_if_running(self, cid: str) -> bool:
        if not self.api.inspect_container(cid)["State"].get("Running"):
            return False
        with suppress(docker.errors.APIError):  # it may have stopped between inspect and kill
            self.api.kill(cid)
        self.api.wait(cid, timeout=KILL_GRACE_S)
        return True

    def logs(self, cid: str, tail: int | None = None, max_bytes: int | None = None) -> str:
        with translate(self.host, f"reading the logs of container {cid[:12]}"):
            chunks = self.api.logs(
                cid, stdout=True, stderr=True, tail="all" if tail is None else tail, stream=True, follow=False
            )
            kept = bytearray()
            for chunk in chunks:
                kept += chunk
                if max_bytes is not None and len(kept) > 2 * max_bytes:
                    del kept[: len(kept) - max_bytes]
        raw = bytes(kept if max_bytes is None else kept[-max_bytes:])
        return raw.decode("utf-8", errors="replace")

    def remove_container(self, cid: str) -> None:
        with translate(self.host, f"removing container {cid[:12]}"):
            try:
                self.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                if error.status_code != 409:  # 409: removal already in progress
                    raise

    def containers(self, label: str, all: bool = True) -> list[str]:
        with translate(self.host, f"listing containers labelled {label}"):
            return [str(row["Id"]) for row in self.api.containers(all=all, filters={"label": label})]

    def containers_named(self, prefix: str) -> list[ContainerInfo]:
        with translate(self.host, f"listing containers named {prefix}*"):
            rows = self.api.containers(all=True, filters={"name": prefix})
        found = []
        for row in rows:
            names = [str(n).lstrip("/") for n in row.get("Names") or ()]
            name = next((n for n in names if n.startswith(prefix)), None)
            if name is not None:
                found.append(
                    ContainerInfo(
                        id=str(row["Id"]),
                        name=name,
                        labels=dict(row.get("Labels") or {}),
                        running=row.get("State") == "running",
                    )
                )
        return found


_BUILT = re.compile(r"Successfully built ([0-9a-f]{12,64})")


def _product(version: Mapping[str, Any]) -> str:
    """ "Podman" when the version answer names a Podman component, else "Docker"."""
    names = [str(c.get("Name", "")) for c in version.get("Components") or () if isinstance(c, dict)]
    return "Podman" if any(name.startswith("Podman") for name in names) else "Docker"


def normalise_name(ref: str) -> str:
    """An image name as Docker writes it: Podman's `localhost/` and `docker.io/[library/]` dropped."""
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _podman_host_config(spec: ContainerSpec) -> dict[str, Any]:
    """What Podman needs beyond Docker's host config: explicit ulimits, and GPUs as CDI devices.

    Podman's default nofile/nproc limits can exceed the hard limits of the user running it, and the
    container then fails to start ("error setting rlimit"); the limits of this process are passed
    instead. Podman ignores Docker's device requests (`--gpus`); it takes CDI device names.
    """
    ulimits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        _soft, hard = resource.getrlimit(which)
        if which == resource.RLIMIT_NPROC:
            # Seen on Debian's podman 4.3: an nproc limit above the kernel's pid_max is refused
            # (EPERM) even within the hard limit; no container can reach it anyway.
            hard = min(hard, _pid_max()) if hard != resource.RLIM_INFINITY else _pid_max()
        if hard != resource.RLIM_INFINITY:
            ulimits.append(Ulimit(name=name, soft=hard, hard=hard))
    args: dict[str, Any] = {"ulimits": ulimits or None}
    if spec.gpus is not None:
        args["device_requests"] = None
        args["devices"] = cdi_devices(spec.gpus)
    return args


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except (OSError, ValueError):
        return 32768  # the kernel's default


def cdi_devices(gpus: str) -> list[str]:
    """CDI device names for a `--gpus` value (all, device=0,1); a bare count has no CDI form."""
    req = parse_gpus(gpus)
    if req.count == -1:
        return ["nvidia.com/gpu=all"]
    if req.device_ids:
        return [f"nvidia.com/gpu={device}" for device in req.device_ids]
    raise UsageError(f"Podman cannot give a container {req.count} GPUs by count", hint=PODMAN_CDI_HINT)


def describe_cause(error: BaseException) -> str:
    """A short reason for a connection failure: the OS error buried in the chain when there is one."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        pending += [a for a in current.args if isinstance(a, BaseException)]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return str(seen[-1])[:200]


def _tail(lines: deque[str]) -> str:
    return "\n".join(lines)


def _check_context(req: BuildRequest) -> None:
    if not req.context_dir.is_dir():
        raise BuildFailed(f"build context {req.context_dir} is not a directory")
    if not (req.context_dir / req.dockerfile).is_file():
        raise BuildFailed(f"no {req.dockerfile} in the build context {req.context_dir}")


def _image_info(raw: Mapping[str, Any]) -> ImageInfo:
    tags = tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>")
    digests = tuple(d for d in raw.get("RepoDigests") or () if d != "<none>@<none>")
    labels = (raw.get("Config") or {}).get("Labels") or {}
    return ImageInfo(
        id=str(raw["Id"]),
        tags=tags,
        labels=dict(labels),
        size=int(raw.get("Size") or 0),
        created=str(raw.get("Created", "")),
        digests=digests,
        user=str((raw.get("Config") or {}).get("User") or ""),
        exposed_ports=tuple(sorted((raw.get("Config") or {}).get("ExposedPorts") or {})),
    )


def _host_config_args(spec: ContainerSpec) -> dict[str, Any]:
    args: dict[str, Any] = {
        "cap_drop": list(spec.cap_drop),
        "security_opt": list(spec.security_opt),
        "read_only": spec.read_only,
        "device_requests": device_requests(spec.gpus) or None,
    }
    if spec.network_disabled:
        args["network_mode"] = "none"
    if spec.mem_limit is not None:
        # Same swap limit as memory limit: an over-limit container is OOM-killed instead of swapping.
        args["mem_limit"] = spec.mem_limit
        args["memswap_limit"] = spec.mem_limit
    if spec.pids_limit is not None:
        args["pids_limit"] = spec.pids_limit
    if spec.shm_size is not None:
        args["shm_size"] = spec.shm_size
    if spec.nano_cpus is not None:
        args["nano_cpus"] = spec.nano_cpus
    return args


def _safe_member(dest_dir: str, name: str) -> str:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UsageError(f"file name {name!r} must be a relative path inside {dest_dir}")
    return str(PurePosixPath(dest_dir.lstrip("/")) / rel)


def _tar_files(dest_dir: str, files: Mapping[str, bytes | Path]) -> bytes:
    """A tar whose members sit under `dest_dir` (relative to /); the engine creates missing parents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in sorted(files.items()):
            member = _safe_member(dest_dir, name)
            if isinstance(content, Path):
                tar.add(content, arcname=member, recursive=True, filter=_root_owned)
            else:
                info = tarfile.TarInfo(member)
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


# Tar headers and padding around one file's content.
_TAR_SLACK = 64 * 1024


def _close(stream: Any) -> None:
    with suppress(Exception):
        stream.close()


def _bounded(stream: Iterator[bytes], limit: int | None, path: str) -> bytes:
    """The chunks of `stream` joined; TooLarge as soon as they pass `limit` bytes."""
    data = bytearray()
    for chunk in stream:
        data += chunk
        if limit is not None and len(data) > limit:
            _close(stream)
            raise TooLarge(f"{path} in the container is more than the {limit - _TAR_SLACK} bytes allowed")
    return bytes(data)


def _single_file(archive: bytes, path: str, max_bytes: int | None = None) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                if max_bytes is not None and member.size > max_bytes:
                    raise TooLarge(f"{path} in the container is more than the {max_bytes} bytes allowed")
                extracted = tar.extractfile(member)
                return extracted.read() if extracted else b""
            if member.isdir():
                raise EngineError(f"{path} in the container is a directory, not a file")
    raise EngineError(f"{path} in the container is not a regular file")
