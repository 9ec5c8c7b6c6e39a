"""An in-memory `Engine` for unit tests of the layers above the engine (never a mock of docker-py).

It follows `envkit.engine.Engine` exactly (tests/unit/test_engine_fake.py checks the signatures), keeps
what was asked of it for assertions, and plays back outcomes a test scripts in advance:

    engine = FakeEngine()
    engine.script_run("envkit/torch:cpu", ScriptedRun(exit_code=0, outputs={"/out/result.json": b"{}"}))
    engine.fail_build("envkit/torch:bad", log="E: Unable to locate package nope")
    engine.refuse_push("reg.example/x:1", "denied")
    engine.go_down()                      # every later call raises EngineUnavailable

Containers run at `wait` (not `start`), so files put in before `start` are visible to a scripted
`on_wait` hook, which may compute the outputs from them (as a real probe would).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from envkit.engine import (
    MANAGED_LABEL,
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
    parse_gpus,
)
from envkit.errors import EngineUnavailable, RegistryError, UsageError


@dataclass(frozen=True, kw_only=True)
class ScriptedRun:
    """What a container of a given image does when waited on."""

    exit_code: int | None = 0
    oom_killed: bool = False
    timed_out: bool = False
    error: str | None = None
    logs: str = ""
    outputs: Mapping[str, bytes] = field(default_factory=dict)  # absolute path -> bytes it "writes"
    on_wait: Callable[[FakeContainer], None] | None = None  # may edit container.files / .log


@dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    labels: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)  # absolute path -> bytes
    log: str = ""
    started: bool = False
    status: ExitStatus | None = None
    wait_timeouts: list[float] = field(default_factory=list)


def _digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


class FakeEngine(Engine):
    """In-memory engine: images, tags, containers and pushes live in dicts the test can read."""

    def __init__(self, host: str = "fake://engine") -> None:
        self.host = host
        self.builds: list[BuildRequest] = []
        self.images_by_id: dict[str, ImageInfo] = {}
        self.refs: dict[str, str] = {}  # tag -> image id
        self.histories: dict[str, list[str]] = {}  # image id -> created_by lines
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.removed_containers: list[str] = []
        self.pushed: dict[str, str] = {}  # ref -> digest
        self.remote: dict[str, str] = {}  # ref a pull can fetch -> image id (see `publish_remote`)
        self.pulled: list[str] = []
        self._runs: dict[str, ScriptedRun] = {}
        self._build_failures: dict[str, str] = {}
        self._push_refusals: dict[str, str] = {}
        self._down: str | None = None
        self._counter = 0

    # -- scripting --------------------------------------------------------------------------------

    def add_image(
        self, ref: str, labels: Mapping[str, str] | None = None, history: list[str] | None = None
    ) -> str:
        """Put an image named `ref` on the engine, as if pulled or built earlier; returns its id."""
        image_id = _digest("image", ref, sorted((labels or {}).items()))
        self.images_by_id[image_id] = ImageInfo(
            id=image_id, tags=(), labels=dict(labels or {}), size=1000, created="2024-01-01T00:00:00Z"
        )
        self.histories[image_id] = list(history or [f"/bin/sh -c #(nop) fake {ref}"])
        self._set_tag(image_id, ref)
        return image_id

    def script_run(self, image_ref: str, run: ScriptedRun) -> None:
        """Containers of `image_ref` (a tag or an id) behave as `run` when waited on."""
        self._runs[image_ref] = run

    def fail_build(self, tag: str, log: str = "build step failed") -> None:
        """A build whose tags include `tag` fails with `log` as its output."""
        self._build_failures[tag] = log

    def publish_remote(self, ref: str, image_id: str) -> None:
        """Make `ref` (a tag or repo@digest) pullable as the image `image_id`, which stays on the engine."""
        self.remote[ref] = image_id

    def refuse_push(self, ref: str, reason: str = "denied") -> None:
        """Pushing `ref` raises RegistryError with `reason`."""
        self._push_refusals[ref] = reason

    def go_down(self, reason: str = "connection refused") -> None:
        """From now on every call raises EngineUnavailable, as when the engine dies."""
        self._down = reason

    # -- helpers ----------------------------------------------------------------------------------

    def _check_up(self) -> None:
        if self._down is not None:
            raise EngineUnavailable(
                f"cannot reach the Docker engine at {self.host} ({self._down})",
                hint="start dockerd (or run scripts/ensure-engine.sh), or set DOCKER_HOST",
            )

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return _digest(kind, self._counter).removeprefix("sha256:")

    def _resolve(self, ref: str) -> str | None:
        if ref in self.refs:
            return self.refs[ref]
        if ref in self.images_by_id:
            return ref
        matches = [i for i in self.images_by_id if i.removeprefix("sha256:").startswith(ref)]
        return matches[0] if len(matches) == 1 and len(ref) >= 12 else None

    def _set_tag(self, image_id: str, ref: str) -> None:
        old = self.refs.get(ref)
        if old is not None:
            self._replace_tags(old, tuple(t for t in self.images_by_id[old].tags if t != ref))
        self.refs[ref] = image_id
        self._replace_tags(image_id, (*self.images_by_id[image_id].tags, ref))

    def _replace_tags(self, image_id: str, tags: tuple[str, ...]) -> None:
        info = self.images_by_id[image_id]
        self.images_by_id[image_id] = ImageInfo(
            id=info.id, tags=tags, labels=info.labels, size=info.size, created=info.created
        )

    def _container(self, cid: str) -> FakeContainer:
        matches = [c for i, c in self.containers_by_id.items() if i.startswith(cid)]
        if len(matches) != 1:
            raise EngineError(f"no container {cid!r} on the engine at {self.host}")
        return matches[0]

    def _scripted(self, container: FakeContainer) -> ScriptedRun:
        image_id = self._resolve(container.spec.image)
        for key in (container.spec.image, image_id):
            if key in self._runs:
                return self._runs[key]
        return next((run for ref, run in self._runs.items() if self._resolve(ref) == image_id), ScriptedRun())

    # -- Engine -----------------------------------------------------------------------------------

    def info(self) -> EngineInfo:
        self._check_up()
        return EngineInfo(host=self.host, version="0.0-fake", api_version="1.41", backend="fake")

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        self._check_up()
        self.builds.append(req)
        on_line(f"Step 1/1 : fake build of {req.context_dir / req.dockerfile}")
        failure = next((log for tag, log in self._build_failures.items() if tag in req.tags), None)
        if failure is not None:
            for line in failure.splitlines():
                on_line(line)
            raise BuildFailed("build failed: fake failure", log_tail=failure)
        image_id = _digest("build", len(self.builds), req.tags, sorted(req.labels.items()))
        self.images_by_id[image_id] = ImageInfo(
            id=image_id,
            tags=(),
            labels={**req.labels, MANAGED_LABEL: "true"},
            size=1000,
            created="2024-01-01T00:00:00Z",
        )
        self.histories[image_id] = [f"/bin/sh -c #(nop) built from {req.dockerfile}"]
        for tag in req.tags:
            self._set_tag(image_id, tag)
        on_line(f"Successfully built {image_id}")
        return image_id

    def image(self, ref: str) -> ImageInfo | None:
        self._check_up()
        image_id = self._resolve(ref)
        return None if image_id is None else self.images_by_id[image_id]

    def tag(self, image_id: str, ref: str) -> None:
        self._check_up()
        resolved = self._resolve(image_id)
        if resolved is None:
            raise EngineError(f"the Docker engine refused tagging {image_id} as {ref}: no such image")
        self._set_tag(resolved, ref)

    def remove_image(self, ref: str, force: bool = False) -> None:
        self._check_up()
        image_id = self._resolve(ref)
        if image_id is None:
            return
        if ref in self.refs and len(self.images_by_id[image_id].tags) > 1 and not force:
            del self.refs[ref]
            self._replace_tags(image_id, tuple(t for t in self.images_by_id[image_id].tags if t != ref))
            return
        for tag in self.images_by_id[image_id].tags:
            self.refs.pop(tag, None)
        del self.images_by_id[image_id]

    def images(self, label: str) -> list[ImageInfo]:
        self._check_up()
        return [info for info in self.images_by_id.values() if _has_label(info.labels, label)]

    def create(self, spec: ContainerSpec) -> str:
        self._check_up()
        if self._resolve(spec.image) is None:
            raise EngineError(f"no image {spec.image!r} on the engine at {self.host}")
        if spec.gpus is not None:
            parse_gpus(spec.gpus)
        cid = self._next_id("container")
        # As Docker does: a container carries its image's labels, then those it was created with.
        image_labels = self.images_by_id[self._resolve(spec.image) or ""].labels
        labels = {**image_labels, **spec.labels, MANAGED_LABEL: "true"}
        self.containers_by_id[cid] = FakeContainer(id=cid, spec=spec, labels=labels)
        return cid

    def put_files(self, cid: str, dest_dir: str, files: Mapping[str, bytes | Path]) -> None:
        self._check_up()
        container = self._container(cid)
        for name, content in files.items():
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise UsageError(f"file name {name!r} must be a relative path inside {dest_dir}")
            target = PurePosixPath(dest_dir) / rel
            if isinstance(content, Path) and content.is_dir():
                for path in sorted(p for p in content.rglob("*") if p.is_file()):
                    container.files[str(target / path.relative_to(content).as_posix())] = path.read_bytes()
            else:
                data = content.read_bytes() if isinstance(content, Path) else content
                container.files[str(target)] = data

    def get_file(self, cid: str, path: str, max_bytes: int | None = None) -> bytes | None:
        self._check_up()
        data = self._container(cid).files.get(str(PurePosixPath(path)))
        if data is not None and max_bytes is not None and len(data) > max_bytes:
            raise TooLarge(f"{path} in the container is {len(data)} bytes, more than the {max_bytes} allowed")
        return data

    def start(self, cid: str) -> None:
        self._check_up()
        self._container(cid).started = True

    def wait(self, cid: str, timeout_s: float) -> ExitStatus:
        self._check_up()
        container = self._container(cid)
        container.wait_timeouts.append(timeout_s)
        if not container.started:
            raise EngineError(f"container {cid[:12]} was never started")
        if container.status is None:
            run = self._scripted(container)
            container.files.update(run.outputs)
            container.log += run.logs
            if run.on_wait is not None:
                run.on_wait(container)
            container.status = ExitStatus(
                code=run.exit_code, oom_killed=run.oom_killed, timed_out=run.timed_out, error=run.error
            )
        return container.status

    def logs(self, cid: str, tail: int | None = None, max_bytes: int | None = None) -> str:
        self._check_up()
        text = self._container(cid).log
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:] if tail > 0 else [])
        return text if max_bytes is None else text.encode()[-max_bytes:].decode(errors="replace")

    def remove_container(self, cid: str) -> None:
        self._check_up()
        matches = [i for i in self.containers_by_id if i.startswith(cid)]
        for full in matches:
            del self.containers_by_id[full]
            self.removed_containers.append(full)

    def containers(self, label: str, all: bool = True) -> list[str]:
        self._check_up()
        return [
            c.id
            for c in self.containers_by_id.values()
            if _has_label(c.labels, label) and (all or (c.started and c.status is None))
        ]

    def containers_named(self, prefix: str) -> list[ContainerInfo]:
        self._check_up()
        return [
            ContainerInfo(
                id=c.id, name=c.spec.name or "", labels=dict(c.labels), running=c.started and c.status is None
            )
            for c in self.containers_by_id.values()
            if (c.spec.name or "").startswith(prefix)
        ]

    def push(self, ref: str) -> str:
        self._check_up()
        if ref in self._push_refusals:
            raise RegistryError(f"the registry refused {ref}: {self._push_refusals[ref]}")
        image_id = self._resolve(ref)
        if image_id is None:
            raise RegistryError(f"the registry refused {ref}: An image does not exist locally with the tag")
        self.pushed[ref] = _digest("push", image_id)
        return self.pushed[ref]

    def pull(self, ref: str) -> ImageInfo:
        self._check_up()
        if ref in self._push_refusals:
            raise RegistryError(f"the registry refused {ref}: {self._push_refusals[ref]}")
        image_id = self.remote.get(ref)
        if image_id is None:
            raise RegistryError(f"the registry refused {ref}: manifest unknown")
        self.pulled.append(ref)
        if "@" in ref:
            self.refs[ref] = image_id  # docker keeps a digest as RepoDigests, not as a tag
        else:
            self._set_tag(image_id, ref)
        return self.images_by_id[image_id]

    def history(self, ref: str) -> list[str]:
        self._check_up()
        image_id = self._resolve(ref)
        if image_id is None:
            raise EngineError(f"the Docker engine refused reading the history of {ref}: no such image")
        return list(self.histories.get(image_id, []))

    def save(self, ref: str) -> Iterator[bytes]:
        self._check_up()
        image_id = self._resolve(ref)
        if image_id is None:
            raise EngineError(f"the Docker engine refused saving image {ref}: no such image")
        yield f"fake image tarball of {image_id}".encode()


def _has_label(labels: Mapping[str, str], selector: str) -> bool:
    key, sep, value = selector.partition("=")
    return key in labels and (not sep or labels[key] == value)
