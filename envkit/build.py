"""Building a plan's cells: content-addressed, parallel with a cap, one log file per cell.

A cell is skipped when the image under its tag already carries the same content hash. A build runs
untagged; only a finished build whose labels check out is tagged (content-hash tag first, then the
cell tag), so an interrupted or failed build never leaves an image under a cell's tag.

With a push target (`build --push`), the registry is asked first: a cell whose `content-<hash16>` tag
is there is skipped without pulling or building anything. Otherwise the cell is built (or found
locally), pushed under its content tag, and only then its cell tag is pointed at that digest.

A cell that must be built with a push target reuses layers of the registry's image under its cell tag
(the cell's previous build) and of any `--cache-from` image. BuildKit reads their inline cache
metadata (written into every image it builds for a push) and pulls only the layers it reuses; the
classic builder (docker backend) uses only images on the engine, so envkit pulls each cache image
whole first and drops the name again after the build. The cell log and `build --dry-run` say which.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envkit import __version__
from envkit import labels as L
from envkit.engine import BuildEnvironmentFault, BuildFailed, BuildRequest, Engine, EngineInfo, ImageInfo
from envkit.errors import EngineUnavailable, EnvironmentFault, EnvkitError, RegistryError
from envkit.registry import RegistryRepository
from envkit.render import BuildContext
from envkit.scratch import cell_lock_path, exclusive, record_build, scratch_dir

BUILD_SCHEMA = "envkit.build/1"
LOG_TAIL_LINES = 30
HASH_LABEL = L.CONTENT_HASH
BASE_ID_LABEL = L.BASE_ID
# pip's words when a file does not match --require-hashes, and how it names each such requirement.
_PIP_HASH_MISMATCH = "THESE PACKAGES DO NOT MATCH THE HASHES"
_PIP_REQUIREMENT = re.compile(r"\s+(\S+==\S+) from ")
# " ---> 0123456789ab": the image the classic builder made for the step just finished.
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})\s*$")
# How often a worker waiting on a build looks at the cancel flag.
CANCEL_POLL_S = 0.2


class Cancelled(Exception):
    """Raised inside a worker when the run was interrupted."""


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """The outcome of one cell: what was built or skipped, how long it took, where its log is."""

    cell: str
    image: str
    tags: tuple[str, ...]
    content_hash: str
    status: str
    image_id: str | None = None
    size: int | None = None
    duration_s: float = 0.0
    log: str | None = None
    error: str | None = None
    log_tail: str | None = None
    environment_fault: bool = False  # the environment failed the build (exit 3), not the Dockerfile
    skipped_by: str | None = None  # "engine" or "registry" for a skipped cell
    digest: str | None = None  # the manifest digest in the push registry
    pushed: tuple[str, ...] = ()  # registry refs now pointing at `digest`
    cache_from: tuple[str, ...] = ()  # images the build was allowed to reuse layers of

    @property
    def label(self) -> str:
        """The status as people read it: `skipped (registry)` for a cell the registry already held."""
        return f"{self.status} (registry)" if self.skipped_by == "registry" else self.status


# Where `build --push` puts images: a registry and the repository path on it.
PushTarget = RegistryRepository


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """The JSON build report: one CellResult per cell, plus the engine and timing."""

    matrix: str
    engine: Mapping[str, str]
    started: str
    duration_s: float
    results: tuple[CellResult, ...]
    would_push: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[CellResult, ...]:
        return tuple(r for r in self.results if r.status in ("failed", "cancelled"))

    @property
    def exit_code(self) -> int:
        """0 all built or skipped, 1 a cell failed, 3 the environment failed a cell (DESIGN.md)."""
        if any(r.environment_fault for r in self.failed):
            return 3
        return 1 if self.failed else 0

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "schema": BUILD_SCHEMA,
            "envkit_version": __version__,
            "matrix": self.matrix,
            "engine": dict(self.engine),
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "cells": [
                asdict(r) | {"tags": list(r.tags), "pushed": list(r.pushed), "cache_from": list(r.cache_from)}
                for r in self.results
            ],
            "would_push": list(self.would_push),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


Progress = Callable[[str, str, str], None]  # (cell id, state, detail)


@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """How to build: parallelism, where logs and scratch contexts go, secrets, and whether to force."""

    jobs: int = 2
    log_dir: Path
    secrets: Mapping[str, Path] = field(default_factory=dict)
    force: bool = False
    no_cache: bool = False
    push: PushTarget | None = None
    # The .envkit folder whose build record lists every image built (gc removes only those); None: no record.
    state_root: Path | None = None
    # Build labels outside the content hash (envkit.provenance): created, source, revision.
    provenance: Mapping[str, str] = field(default_factory=dict)
    # Images (checked refs) every built cell may reuse layers of, besides its own cell tag in `push`.
    cache_from: tuple[str, ...] = ()
    # The network of the build's RUN steps ("host" on a runner whose bridge has no NAT); None: the
    # engine's default. BuildKit's cache keys include it: a registry cache matches builds that agree.
    network: str | None = None


def up_to_date(context: BuildContext, existing: ImageInfo | None, base: ImageInfo | None) -> bool:
    """True when the cell's image has the same content hash and was built on the base present now.

    The hash covers what envkit renders; the base image's bytes are not in it (a tag such as
    nvidia/cuda:12.8.1-base-ubuntu24.04 can move), so the base's id at build time is a label too.
    A base that is not on the engine (it will be pulled) cannot be compared and does not force a build.
    """
    if existing is None or existing.labels.get(HASH_LABEL) != context.content_hash:
        return False
    built_on = existing.labels.get(BASE_ID_LABEL)
    return base is None or built_on is None or built_on == base.id


def decide(
    contexts: Sequence[BuildContext], engine: Engine, force: bool = False, push: PushTarget | None = None
) -> dict[str, str]:
    """Per cell id: "skip (registry)" when the push registry holds its content tag, "skip" when its
    local image is up to date (see `up_to_date`), else "build"."""
    return {cell_id: action for cell_id, (action, _) in explain(contexts, engine, force, push).items()}


def explain(
    contexts: Sequence[BuildContext],
    engine: Engine,
    force: bool = False,
    push: PushTarget | None = None,
    cache_from: Sequence[str] = (),
    no_cache: bool = False,
) -> dict[str, tuple[str, str]]:
    """Per cell id: (action, why) — held by the registry, no image, which input changed, base moved, or
    forced; for a build, which images it may reuse layers of and how they reach the engine."""
    decisions = {}
    backend = engine.info().backend if (push is not None or cache_from) and not no_cache else ""
    for context in contexts:
        held = _in_registry(push, context) if push is not None and not force else None
        if held is not None:
            held_by = f"{context.hash_tag} is {held[:19]} in the registry"
            decisions[context.cell.id] = ("skip (registry)", held_by)
            continue
        existing, base = engine.image(context.cell.image), engine.image(context.from_ref)
        why = stale_reason(context, existing, base)
        if why is None and not force:
            decisions[context.cell.id] = ("skip", "up to date")
            continue
        local = _local_cache(backend, existing)
        sources = () if no_cache else cache_sources(context, push, cache_from, local_cache=local)
        cache = f"; {cache_note(backend, sources)}" if sources else ""
        decisions[context.cell.id] = ("build", (why or "forced") + cache)
    return decisions


def cache_sources(
    context: BuildContext,
    push: PushTarget | None,
    cache_from: Sequence[str] = (),
    *,
    local_cache: bool = False,
) -> tuple[str, ...]:
    """The images a build of `context` may reuse layers of: the `--cache-from` images, then the push
    registry's image under the cell's tag (its previous build) when the registry holds one.

    `local_cache`: a classic builder whose engine holds the cell's previous build. Given any cache
    image, the classic builder reuses only layers in those images' history and ignores the rest of its
    local cache (the dependency stage among them): moby's image/cache/cache.go, `ImageCache.GetCache`,
    takes a local hit only when it is a parent of a cache image. So the registry's image is left out
    there; an explicit `--cache-from` is the user's choice and stays."""
    sources = list(cache_from)
    if (
        push is not None
        and not local_cache
        and push.registry.head_manifest(push.repository, context.cell.tag) is not None
    ):
        sources.append(push.ref(context.cell.tag))
    return tuple(dict.fromkeys(sources))


def _local_cache(backend: str, existing: ImageInfo | None) -> bool:
    """True for a classic builder (not BuildKit) on an engine that holds the cell's previous build."""
    return backend != "buildkit" and existing is not None


def cache_note(backend: str, sources: Sequence[str]) -> str:
    """How the cache images reach the build on `backend`, as the dry run and the cell log say it."""
    refs = ", ".join(sources)
    if backend == "buildkit":
        return f"layer cache from {refs} (BuildKit pulls only the layers it reuses)"
    return (
        f"layer cache from {refs} (the docker backend's classic builder reuses only local images: "
        "each is pulled whole first; --buildkit pulls only the layers it reuses)"
    )


def _in_registry(push: PushTarget, context: BuildContext) -> str | None:
    """The digest under the cell's content tag in the push registry, or None when it is absent."""
    found = push.registry.head_manifest(push.repository, context.hash_tag)
    return found.digest if found is not None else None


def stale_reason(context: BuildContext, existing: ImageInfo | None, base: ImageInfo | None) -> str | None:
    """Why the cell's image is out of date (the converse of `up_to_date`), or None when it is not."""
    if existing is None:
        return f"no image {context.cell.image}"
    if existing.labels.get(HASH_LABEL) != context.content_hash:
        changed = [
            f"{key.removeprefix(L.PREFIX)} {existing.labels.get(key) or '-'} → {value or '-'}"
            for key, value in sorted(context.labels.items())
            if key.startswith(L.PREFIX) and key != HASH_LABEL and existing.labels.get(key, "") != value
        ]
        inputs = "; ".join(changed) or "the Dockerfile or build files (packages, wheels, templates)"
        return f"content hash differs: {inputs}"
    if not up_to_date(context, existing, base):
        was, now = existing.labels.get(BASE_ID_LABEL, ""), base.id if base else "?"
        return f"base {context.from_ref} moved: built on {was[:19]}, now {now[:19]}"
    return None


def build_contexts(
    matrix_file: str,
    contexts: Sequence[BuildContext],
    engine: Engine,
    settings: BuildSettings,
    progress: Progress | None = None,
) -> BuildReport:
    """Build every context (skipping unchanged ones); never raises for a failing cell.

    Raises EngineUnavailable when the engine goes away: the cells not finished are reported cancelled.
    KeyboardInterrupt stops the workers before they tag anything and is re-raised.
    """
    progress = progress or (lambda cell, state, detail: None)
    info = engine.info()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clock = time.monotonic()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    cancel = threading.Event()
    results: dict[str, CellResult] = {}
    fault: EnvkitError | None = None
    for context in contexts:
        progress(context.cell.id, "queued", "")
    with ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="envkit-build") as pool:
        futures: dict[Future[CellResult], BuildContext] = {
            pool.submit(_build_one, c, engine, settings, cancel, progress): c for c in contexts
        }
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    context = futures[future]
                    result = _result_of(future, context, settings)
                    if isinstance(future.exception(), EnvironmentFault) and fault is None:
                        fault = future.exception()  # type: ignore[assignment]
                        cancel.set()
                    results[context.cell.id] = result
                    progress(context.cell.id, result.status, result.error or "")
        except KeyboardInterrupt:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    report = BuildReport(
        matrix=matrix_file,
        engine=_engine_record(info),
        started=started,
        duration_s=time.monotonic() - clock,
        results=tuple(results[c.cell.id] for c in contexts),
        would_push=tuple(tag for c in contexts for tag in c.tags),
    )
    if fault is not None:
        raise BuildInterrupted(report, fault)
    return report


class BuildInterrupted(EngineUnavailable):
    """The engine went away during the build; carries the partial report (exit 3)."""

    def __init__(self, report: BuildReport, cause: EnvkitError) -> None:
        self.report = report
        super().__init__(cause.message, hint=(cause.hint or "") + "; rerun `envkit build` to finish the rest")


def _engine_record(info: EngineInfo) -> dict[str, str]:
    return {
        "host": info.host,
        "version": info.version,
        "api_version": info.api_version,
        "backend": info.backend,
    }


def _result_of(future: Future[CellResult], context: BuildContext, settings: BuildSettings) -> CellResult:
    error = future.exception()
    if error is None:
        return future.result()
    status = "cancelled" if isinstance(error, (Cancelled, EngineUnavailable)) else "failed"
    log = settings.log_dir / f"{context.cell.id}.log"
    return _result(
        context,
        status,
        log=str(log),
        error=str(error).splitlines()[0] if str(error) else type(error).__name__,
        log_tail=_tail(log),
    )


def _result(context: BuildContext, status: str, **outcome: Any) -> CellResult:
    """A CellResult for `context`: the cell's identity plus what happened to it."""
    return CellResult(
        cell=context.cell.id,
        image=context.cell.image,
        tags=context.tags,
        content_hash=context.content_hash,
        status=status,
        **outcome,
    )


def _build_one(
    context: BuildContext,
    engine: Engine,
    settings: BuildSettings,
    cancel: threading.Event,
    progress: Progress,
) -> CellResult:
    """One cell, holding its lock: two builds of the same cell (two `--force` runs) take turns, so
    neither tags over the other mid-build nor writes into the other's log."""

    def waiting() -> None:
        if cancel.is_set():
            raise Cancelled("interrupted while another build of this cell was running")
        progress(context.cell.id, "queued", "waiting for another build of this cell")

    with exclusive(cell_lock_path(context.cell.image), on_wait=waiting):
        return _build_locked(context, engine, settings, cancel, progress)


def _build_locked(
    context: BuildContext,
    engine: Engine,
    settings: BuildSettings,
    cancel: threading.Event,
    progress: Progress,
) -> CellResult:
    cell = context.cell
    log_path = settings.log_dir / f"{cell.id}.log"
    clock = time.monotonic()
    if cancel.is_set():
        raise Cancelled("interrupted before it started")
    push = settings.push
    held = _in_registry(push, context) if push is not None and not settings.force else None
    if push is not None and held is not None:
        pushed = _point_cell_tag(push, context, held)
        return _result(
            context,
            "skipped",
            skipped_by="registry",
            digest=held,
            pushed=pushed,
            duration_s=time.monotonic() - clock,
        )
    existing = engine.image(cell.image)
    base = engine.image(context.from_ref)
    if not settings.force and existing is not None and up_to_date(context, existing, base):
        engine.tag(existing.id, context.tags[1])  # a no-op when present; restores a deleted hash tag
        outcome = _push(push, context, engine, existing.id) if push is not None else {}
        return _result(
            context,
            "skipped",
            skipped_by="engine",
            image_id=existing.id,
            size=existing.size,
            duration_s=time.monotonic() - clock,
            **outcome,
        )
    progress(cell.id, "building", "")
    try:
        with scratch_dir(f"envkit-{cell.id}-") as scratch, log_path.open("w", encoding="utf-8") as log:
            base_label = {BASE_ID_LABEL: base.id} if base is not None else {}
            base_label = {**settings.provenance, **base_label}
            sources: tuple[str, ...] = ()
            backend, local = "", False
            if not settings.no_cache and (push is not None or settings.cache_from):
                backend = engine.info().backend
                local = push is not None and _local_cache(backend, existing)
                sources = cache_sources(context, push, settings.cache_from, local_cache=local)
            if local:
                log.write(
                    "envkit: the engine holds this cell's previous build: the classic builder uses its "
                    "local cache (given a registry image, it would ignore that cache)\n"
                )
            with _cache_images(engine, backend, sources, log) as reusable:
                image_id = _run_build(
                    context, engine, settings, scratch, log, cancel, progress, base_label, reusable
                )
        if settings.state_root is not None:
            record_build(image_id, cell.id, settings.state_root)
        if cancel.is_set():
            discard_untagged(engine, image_id)
            raise Cancelled("interrupted; the finished image was removed untagged")
        image = _verify_and_tag(context, engine, image_id)
        outcome = _push(push, context, engine, image.id) if push is not None else {}
    except BuildFailed as failure:
        error = hash_mismatch(log_path) or failure.message.splitlines()[0]
        return _result(
            context,
            "failed",
            duration_s=time.monotonic() - clock,
            log=str(log_path),
            error=f"{error} ({failure.hint})" if isinstance(failure, BuildEnvironmentFault) else error,
            log_tail=_tail(log_path),
            environment_fault=isinstance(failure, BuildEnvironmentFault),
        )
    return _result(
        context,
        "built",
        image_id=image.id,
        size=image.size,
        duration_s=time.monotonic() - clock,
        log=str(log_path),
        cache_from=sources,
        **outcome,
    )


def _push(push: PushTarget, context: BuildContext, engine: Engine, image_id: str) -> dict[str, Any]:
    """Push the image under its content tag, then point the cell tag at the digest (tags last)."""
    content_ref = push.ref(context.hash_tag)
    engine.tag(image_id, content_ref)
    try:
        digest = engine.push(content_ref)
    finally:
        # The registry name was only a handle for the push: the engine keeps the cell's own tags.
        engine.remove_image(content_ref)
    return {"digest": digest, "pushed": _point_cell_tag(push, context, digest)}


def _point_cell_tag(push: PushTarget, context: BuildContext, digest: str) -> tuple[str, ...]:
    """Make the registry's cell tag name `digest` (registry-side: the manifest is put again, nothing
    is pulled); returns the refs that now name it."""
    cell_tag = context.cell.tag
    current = push.registry.head_manifest(push.repository, cell_tag)
    if current is None or current.digest != digest:
        manifest = push.registry.get_manifest(push.repository, digest)
        if manifest is None:
            raise EnvironmentFault(
                f"registry {push.registry.host}: {push.digest_ref(digest)} vanished "
                "while its cell tag was being set",
                hint="rerun `envkit build --push`",
            )
        push.registry.put_manifest(push.repository, cell_tag, manifest)
    return (push.ref(context.hash_tag), push.ref(cell_tag))


def _run_build(
    context: BuildContext,
    engine: Engine,
    settings: BuildSettings,
    scratch: Path,
    log: Any,
    cancel: threading.Event,
    progress: Progress,
    extra_labels: Mapping[str, str],
    cache_from: tuple[str, ...] = (),
) -> str:
    context.write(scratch)
    missing = [s for s in context.secrets if s not in settings.secrets]
    if missing:
        raise BuildFailed(f"build secret(s) {', '.join(missing)} not given", hint="pass --secret ID=FILE")
    secrets = dict(settings.secrets)
    # Untagged on purpose: tags are set only once the finished image has been checked.
    request = BuildRequest(
        context_dir=scratch,
        tags=(),
        labels={**context.labels, **extra_labels},
        build_args={},
        secrets=secrets,
        no_cache=settings.no_cache,
        network_mode=settings.network,
        cache_from=cache_from,
        inline_cache=settings.push is not None,  # pushed images carry cache metadata for the next runner
    )

    after_from = False

    def on_line(line: str) -> None:
        nonlocal after_from
        if cancel.is_set():
            raise Cancelled("interrupted")
        log.write(line.rstrip("\n") + "\n")
        log.flush()
        # The classic builder leaves an image per stage ("---> <id>" after each step): recorded as
        # envkit's as they appear, so gc can remove them, also after a build that never finished.
        # The id after a FROM step is the base's, not ours.
        step = _STEP_IMAGE.match(line)
        if step and not after_from and settings.state_root is not None:
            record_build(step.group(1), context.cell.id, settings.state_root)
        if line.startswith("Step "):
            after_from = " : FROM " in line
        elif step:
            after_from = False
        if line.strip():
            progress(context.cell.id, "building", line.strip()[:100])

    return _cancellable_build(engine, request, on_line, cancel)


@contextmanager
def _cache_images(
    engine: Engine, backend: str, sources: tuple[str, ...], log: Any
) -> Iterator[tuple[str, ...]]:
    """The cache images the build can use, noted in the cell log. On a BuildKit engine, all of them
    (it fetches what it reuses from the registry); on the classic builder, those on the engine, after
    pulling the missing ones whole; the names pulled here are removed again afterwards. A cache image
    that cannot be pulled is left out: the build then runs without it."""
    if not sources:
        yield ()
        return
    log.write(f"envkit: {cache_note(backend, sources)}\n")
    if backend == "buildkit":
        yield sources
        return
    usable, pulled = [], []
    for ref in sources:
        if engine.image(ref) is None:
            try:
                engine.pull(ref)
            except RegistryError as error:
                log.write(f"envkit: not using {ref} as a layer cache: {error.message}\n")
                continue
            pulled.append(ref)
        usable.append(ref)
    try:
        yield tuple(usable)
    finally:
        for ref in pulled:
            with suppress(EnvkitError):  # `envkit gc` removes it later
                engine.remove_image(ref)  # the name only: layers the new image shares stay


def _cancellable_build(
    engine: Engine, request: BuildRequest, on_line: Callable[[str], None], cancel: threading.Event
) -> str:
    """engine.build in a daemon thread; raises Cancelled as soon as `cancel` is set.

    A build on a quiet step sends no log line for minutes, so `on_line` alone would hold Ctrl-C that
    long. The abandoned thread dies with the process; its connection closes and the engine stops the
    build. Should the build still finish first, its image is removed: nothing will tag it.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["image_id"] = engine.build(request, on_line)
            if cancel.is_set():
                discard_untagged(engine, outcome["image_id"])
        except BaseException as error:  # handed to the waiting worker (or dropped once it gave up)
            outcome["error"] = error

    thread = threading.Thread(target=work, name="envkit-build-stream", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(CANCEL_POLL_S)
        if cancel.is_set() and thread.is_alive():
            raise Cancelled("interrupted")
    if "error" in outcome:
        raise outcome["error"]
    return str(outcome["image_id"])


def discard_untagged(engine: Engine, image_id: str) -> None:
    """Remove a finished build's image that will not be tagged; never one that has a name meanwhile."""
    try:
        image = engine.image(image_id)
        if image is not None and not image.tags and not image.digests:
            engine.remove_image(image_id, force=False)
    except EnvkitError:
        pass  # the engine may be gone or refuse; `envkit gc` removes it later


def _verify_and_tag(context: BuildContext, engine: Engine, image_id: str) -> Any:
    image = engine.image(image_id)
    if image is None or image.labels.get(HASH_LABEL) != context.content_hash:
        discard_untagged(engine, image_id)
        raise BuildFailed(
            f"the built image {image_id[:19]} does not carry content hash {context.content_hash[:12]}"
        )
    hash_tag, cell_tag = context.tags[1], context.tags[0]
    engine.tag(image_id, hash_tag)
    engine.tag(image_id, cell_tag)  # the cell tag moves last: it is the commit point
    return image


def hash_mismatch(log: Path) -> str | None:
    """When pip refused files against a lock's hashes (a locked build), the packages it named."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if _PIP_HASH_MISMATCH not in text:
        return None
    packages = []
    for line in text.split(_PIP_HASH_MISMATCH, 1)[1].splitlines()[1:]:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        found = _PIP_REQUIREMENT.match(line)
        if found:
            packages.append(found.group(1))
    named = ", ".join(packages) or "a package"
    return f"pip refused {named}: the file does not match the lock's hashes (tampered, or the lock is stale)"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str | None:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return None
