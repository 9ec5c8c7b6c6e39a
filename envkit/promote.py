"""Promotion: publish every cell of a matrix to a registry, and only when every cell passed its gate.

A cell is ready when its local image is an envkit build of that cell and every validation report of
*that* build (same image id) passes the policy. One cell that is not ready refuses the whole matrix.
When all are ready, each image is pushed as `R/<repository>:<tag>` and `:content-<hash16>`; then, after
every image is in the registry, each cell's verdict companion `:<tag>.verdict` (a FROM-scratch image
holding /verdict.json, labelled with the digest it vouches for) is pushed. A consumer that requires a
verdict therefore never sees one for a set that is still being pushed. See docs/promote.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envkit import __version__, safety
from envkit import labels as L
from envkit.engine import MANAGED_LABEL, BuildRequest, Engine, ImageInfo
from envkit.errors import ConfigError, EnvkitError, RegistryError, UnsafeValueError, UsageError
from envkit.gate import FAIL, PASS, SKIP, ImageVerdict, run_gate
from envkit.policy import Policy
from envkit.render import hash_tag
from envkit.report import Report
from envkit.resolve import Cell, Plan
from envkit.scratch import scratch_dir

RECORD_SCHEMA = "envkit.promotion/1"
VERDICT_SCHEMA = "envkit.verdict/1"
VERDICT_SUFFIX = ".verdict"
VERDICT_FILE = "verdict.json"
VERDICT_DOCKERFILE = f"FROM scratch\nCOPY {VERDICT_FILE} /{VERDICT_FILE}\n"
CELL_LABEL = L.CELL
HASH_LABEL = L.CONTENT_HASH
VERDICT_LABEL = L.VERDICT
SUBJECT_LABEL = L.VERDICT_SUBJECT
VERDICT_CELL_LABEL = L.VERDICT_CELL
MAX_SUMMARY_CHARS = 200

READY, NOT_BUILT, NO_REPORT, STALE_REPORT, FAILED_GATE = (
    "ready",
    "not built",
    "no report",
    "stale report",
    "failed gate",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class PromotionIncomplete(RegistryError):
    """Publication stopped midway (exit 3); `promotion` says what reached the registry before it did."""

    def __init__(self, message: str, *, promotion: Promotion, hint: str | None = None) -> None:
        self.promotion = promotion
        super().__init__(message, hint=hint)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One cell's readiness: `state` is READY or why not, `reason` one line for people."""

    cell: Cell
    state: str
    reason: str
    image_id: str | None = None
    content_hash: str | None = None
    digest: str | None = None  # the staging registry's digest (registry-side promotion)
    verdicts: tuple[ImageVerdict, ...] = ()

    @property
    def ready(self) -> bool:
        """True when the cell may be published."""
        return self.state == READY

    @property
    def report_files(self) -> tuple[str, ...]:
        """The report files whose verdicts vouch for this cell."""
        return tuple(verdict.report.source for verdict in self.verdicts)


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where one ready cell goes: its tag, its content-hash tag and its verdict companion tag."""

    candidate: Candidate
    tag_ref: str
    hash_ref: str
    verdict_ref: str

    @property
    def image_refs(self) -> tuple[str, str]:
        """The two names the cell's image is pushed under, in push order."""
        return (self.tag_ref, self.hash_ref)


@dataclass(frozen=True, kw_only=True)
class Published:
    """What promotion did for one cell; a partial record when it stopped midway."""

    cell: str
    source_image_id: str
    refs: tuple[str, ...]
    digest: str | None
    verdict: str
    verdict_ref: str
    verdict_digest: str | None
    reports: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Promotion:
    """The outcome of a publication: every target cell, what reached the registry, and any error."""

    registry: str
    matrix: str
    policy: str
    created: str
    cells: tuple[Published, ...]
    complete: bool
    error: str | None = None
    envkit_version: str = field(default=__version__)

    @property
    def pushed(self) -> tuple[str, ...]:
        """Every ref that reached the registry, in push order within each cell."""
        return tuple(ref for cell in self.cells for ref in cell.refs)

    def to_dict(self) -> dict[str, Any]:
        """The promotion record as JSON values (schema envkit.promotion/1)."""
        return {
            "schema": RECORD_SCHEMA,
            "envkit_version": self.envkit_version,
            "created": self.created,
            "matrix": self.matrix,
            "registry": self.registry,
            "policy": self.policy,
            "complete": self.complete,
            "error": self.error,
            "note": None if self.complete or not self.pushed else unpush_note(self.registry),
            "cells": [
                {
                    "cell": cell.cell,
                    "source_image_id": cell.source_image_id,
                    "refs": list(cell.refs),
                    "digest": cell.digest,
                    "verdict": cell.verdict,
                    "verdict_ref": cell.verdict_ref,
                    "verdict_digest": cell.verdict_digest,
                    "reports": list(cell.reports),
                }
                for cell in self.cells
            ],
        }


# --- inputs ------------------------------------------------------------------------------------------


def registry_root(text: str) -> str:
    """`host[:port][/prefix]`, checked; a first part that is not a host is refused, because Docker
    would read `acme/x` as a path on its default registry and push somewhere nobody asked for."""
    value = text.strip().rstrip("/")
    if "://" in value:
        raise UsageError(
            f"--registry {text!r}: give host[:port][/prefix], without a scheme",
            hint="e.g. --registry 127.0.0.1:5000/ml",
        )
    host = value.partition("/")[0]
    if not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(
            f"--registry {text!r} does not start with a registry host",
            hint="write host[:port][/prefix]; a host has a dot or a port, or is localhost",
        )
    try:
        safety.repository(f"{value}/x")
    except UnsafeValueError:
        raise UsageError(
            f"--registry {text!r} is not a valid host[:port][/prefix]",
            hint="lower-case path parts of letters, digits and . _ -",
        ) from None
    return value


def verdict_tag(cell: Cell) -> str:
    """The verdict companion tag of a cell's tag; a ConfigError when it would exceed Docker's 128 chars."""
    try:
        return safety.tag(cell.tag + VERDICT_SUFFIX, cell.where)
    except UnsafeValueError as error:
        raise UnsafeValueError(
            f"the verdict tag {cell.tag}{VERDICT_SUFFIX} is not a valid image tag",
            where=cell.where,
            hint=f"tags are at most 128 characters; shorten `image.tag` so {VERDICT_SUFFIX!r} fits",
        ) from error


# --- assessment --------------------------------------------------------------------------------------


def assess(
    the_plan: Plan,
    engine: Engine,
    reports: Sequence[Report],
    policy: Policy,
    *,
    baseline_path: Path | None = None,
) -> tuple[Candidate, ...]:
    """Every planned cell's readiness, in plan order; reports are gated with envkit.gate."""
    images = {cell.id: engine.image(cell.image) for cell in the_plan.cells}
    current: list[tuple[str, Report]] = []
    stale: dict[str, list[Report]] = {}
    for cell in the_plan.cells:
        image = images[cell.id]
        for report in reports:
            if report.cell != cell.id or image is None:
                continue
            if same_build(report, image):
                current.append((cell.id, report))
            else:
                stale.setdefault(cell.id, []).append(report)
    # One gate run for all cells, so a policy baseline is loaded once; verdicts come back in report order.
    gated = run_gate([r for _, r in current], policy, baseline_path=baseline_path).verdicts if current else ()
    verdicts: dict[str, list[ImageVerdict]] = {}
    for (cell_id, _), verdict in zip(current, gated, strict=True):
        verdicts.setdefault(cell_id, []).append(verdict)
    return tuple(
        _candidate(cell, images[cell.id], verdicts.get(cell.id, []), stale.get(cell.id, []))
        for cell in the_plan.cells
    )


def same_build(report: Report, image: ImageInfo) -> bool:
    """Whether the report validated exactly this local image: the registry digest it validated is one
    the engine records for the image, or (a purely local validation) the same image id."""
    if report.image is None:
        return False
    digest = report.image.digest
    if digest is not None and image.digests:
        return digest in {name.rpartition("@")[2] for name in image.digests}
    return report.image.id is not None and _bare_id(report.image.id) == _bare_id(image.id)


def _candidate(
    cell: Cell, image: ImageInfo | None, verdicts: list[ImageVerdict], stale: list[Report]
) -> Candidate:
    not_built = _not_built(cell, image)
    if image is None or not_built is not None:
        return Candidate(cell=cell, state=NOT_BUILT, reason=not_built or "")
    found = Candidate(
        cell=cell,
        state=NO_REPORT,
        reason=f"no report with {CELL_LABEL}={cell.id}; run `envkit validate {cell.image}`",
        image_id=image.id,
        content_hash=image.labels[HASH_LABEL],
        verdicts=tuple(verdicts),
    )
    if not verdicts and stale:
        return replace(found, state=STALE_REPORT, reason=_stale_reason(stale[0], image))
    if not verdicts:
        return found
    failed = [verdict for verdict in verdicts if not verdict.passed]
    if failed:
        return replace(found, state=FAILED_GATE, reason=failure_reason(failed[0]))
    return replace(found, state=READY, reason=f"passed: {report_names(verdicts)}")


def _not_built(cell: Cell, image: ImageInfo | None) -> str | None:
    if image is None:
        return f"no local image {cell.image}; run `envkit build`"
    label = image.labels.get(CELL_LABEL)
    if label != cell.id:
        found = label or "(none)"
        return f"{cell.image} carries {CELL_LABEL}={found}, not {cell.id}: not envkit's build of this cell"
    if not _HEX64.fullmatch(image.labels.get(HASH_LABEL, "")):
        return f"{cell.image} has no {HASH_LABEL} label; rebuild it with `envkit build`"
    return None


def _stale_reason(report: Report, image: ImageInfo) -> str:
    reported = report.image.id if report.image else None
    name = Path(report.source).name
    if reported is None:
        return f"{name} does not record which image id it validated; re-run `envkit validate`"
    return (
        f"stale: {name} validated image {_short_id(reported)}, but the local image is "
        f"{_short_id(image.id)} (rebuilt since); re-run `envkit validate` on this build"
    )


def failure_reason(verdict: ImageVerdict) -> str:
    names = ", ".join(finding.name for finding in verdict.failures[:3])
    more = f" and {len(verdict.failures) - 3} more" if len(verdict.failures) > 3 else ""
    return f"gate failed ({Path(verdict.report.source).name}): {names}{more}"


def report_names(verdicts: Sequence[ImageVerdict]) -> str:
    return ", ".join(Path(verdict.report.source).name for verdict in verdicts)


def _bare_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def _short_id(image_id: str) -> str:
    return _bare_id(image_id)[:12]


# --- targets -----------------------------------------------------------------------------------------


def targets(candidates: Sequence[Candidate], registry: str, repository: str) -> tuple[Target, ...]:
    """Registry names for the ready cells: `registry/repository` (the matrix's registry host dropped).
    Two cells that would share a name are a ConfigError: one would silently overwrite the other."""
    name = f"{registry}/{repository}"
    safety.repository(name)
    chosen = tuple(
        Target(
            candidate=candidate,
            tag_ref=f"{name}:{candidate.cell.tag}",
            hash_ref=f"{name}:{hash_tag(candidate.content_hash or '')}",
            verdict_ref=f"{name}:{verdict_tag(candidate.cell)}",
        )
        for candidate in candidates
        if candidate.ready
    )
    owner: dict[str, str] = {}
    for target in chosen:
        for ref in (*target.image_refs, target.verdict_ref):
            other = owner.setdefault(ref, target.candidate.cell.id)
            if other != target.candidate.cell.id:
                raise ConfigError(
                    f"cells {other} and {target.candidate.cell.id} would both be pushed as {ref}",
                    where=target.candidate.cell.where,
                    hint="their images carry the same content hash; rebuild them with `envkit build --force`",
                )
    return chosen


def push_order(chosen: Sequence[Target]) -> list[str]:
    """Every ref in the order `publish` pushes them: all images first, then all verdict companions."""
    return [ref for target in chosen for ref in target.image_refs] + [t.verdict_ref for t in chosen]


# --- publication -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Context:
    """What the record and the verdict documents name besides the cells."""

    registry: str
    matrix: str
    policy: str
    policy_sha256: str | None = None  # recorded in verdicts, so `envkit verify --policy` can ask for it


def publish(
    chosen: Sequence[Target], engine: Engine, context: Context, on_step: Callable[[str], None]
) -> Promotion:
    """Tag, push the images, then build and push the verdict companions; local registry tags are removed
    afterwards. Raises PromotionIncomplete (exit 3) with the partial record when anything fails midway."""
    created = utc_now()
    pushed: dict[str, list[str]] = {target.candidate.cell.id: [] for target in chosen}
    digests: dict[str, str] = {}  # cell id -> digest of its image
    verdict_digests: dict[str, str] = {}  # cell id -> digest of its verdict companion
    ours: list[str] = []
    try:
        _tag_images(chosen, engine, ours)
        for target in chosen:
            for ref in target.image_refs:
                digest = engine.push(ref)
                # The verdict vouches for the digest of the cell's own tag.
                digests.setdefault(target.candidate.cell.id, digest)
                pushed[target.candidate.cell.id].append(ref)
                on_step(f"pushed {ref} {digest}")
        for target in chosen:
            document = verdict_document(target, digests[target.candidate.cell.id], context, created)
            _build_verdict(engine, target, document, ours)
        for target in chosen:
            digest = engine.push(target.verdict_ref)
            verdict_digests[target.candidate.cell.id] = digest
            pushed[target.candidate.cell.id].append(target.verdict_ref)
            on_step(f"pushed {target.verdict_ref} {digest}")
    except EnvkitError as error:
        partial = _promotion(
            chosen, context, created, pushed, (digests, verdict_digests), error=error.message
        )
        hint = unpush_note(context.registry) if partial.pushed else None
        raise PromotionIncomplete(_stopped_message(partial, error), promotion=partial, hint=hint) from error
    finally:
        _untag(engine, ours, on_step)
    return _promotion(chosen, context, created, pushed, (digests, verdict_digests), error=None)


def _tag_images(chosen: Sequence[Target], engine: Engine, ours: list[str]) -> None:
    for target in chosen:
        image_id = target.candidate.image_id or ""
        for ref in target.image_refs:
            existing = engine.image(ref)
            if existing is None or existing.id != image_id:
                ours.append(ref)
            engine.tag(image_id, ref)


def verdict_document(target: Target, digest: str, context: Context, created: str) -> dict[str, Any]:
    """The /verdict.json a verdict companion carries: what was gated, under which policy, for which digest."""
    candidate = target.candidate
    return {
        "schema": VERDICT_SCHEMA,
        "verdict": "pass",
        "subject": {
            "name": target.tag_ref.rpartition(":")[0],
            "tag": candidate.cell.tag,
            "digest": digest,
            "image_id": candidate.image_id,
        },
        "cell": candidate.cell.id,
        "policy": Path(context.policy).name,
        "policy_sha256": context.policy_sha256,
        "created": created,
        "envkit_version": __version__,
        "reports": [_report_summary(verdict) for verdict in candidate.verdicts],
    }


def _report_summary(verdict: ImageVerdict) -> dict[str, Any]:
    report = verdict.report
    return {
        "file": Path(report.source).name,
        "created": report.created,
        "profile": report.profile,
        "gpu": report.gpu_model,
        "driver": report.host.driver,
        "findings": {outcome: verdict.count(outcome) for outcome in (PASS, FAIL, SKIP)},
        "checks": [
            {
                "id": check.id,
                "device": check.device,
                "status": check.status,
                "summary": check.summary[:MAX_SUMMARY_CHARS],
            }
            for check in report.checks
        ],
    }


def verdict_labels(target: Target, digest: str) -> dict[str, str]:
    """Labels of a verdict companion image: a consumer can decide from these without reading the file."""
    return {
        VERDICT_LABEL: "pass",
        SUBJECT_LABEL: digest,
        VERDICT_CELL_LABEL: target.candidate.cell.id,
        MANAGED_LABEL: "true",
    }


def _build_verdict(engine: Engine, target: Target, document: dict[str, Any], ours: list[str]) -> None:
    with scratch_dir("envkit-verdict-") as context_dir:  # locked: `gc --all` leaves it alone
        (context_dir / VERDICT_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        (context_dir / "Dockerfile").write_text(VERDICT_DOCKERFILE)
        request = BuildRequest(
            context_dir=context_dir,
            tags=(target.verdict_ref,),
            labels=verdict_labels(target, document["subject"]["digest"]),
        )
        ours.append(target.verdict_ref)
        engine.build(request, on_line=lambda _line: None)


def _untag(engine: Engine, refs: list[str], on_step: Callable[[str], None]) -> None:
    """Remove the local names promotion created; an engine that fails here must not hide the real error."""
    for ref in refs:
        try:
            engine.remove_image(ref)
        except EnvkitError as error:
            on_step(f"warning: could not remove the local tag {ref}: {error.message}")


def _promotion(
    chosen: Sequence[Target],
    context: Context,
    created: str,
    pushed: dict[str, list[str]],
    digests: tuple[dict[str, str], dict[str, str]],
    *,
    error: str | None,
) -> Promotion:
    images, verdicts = digests
    cells = tuple(
        published(
            target,
            source_image_id=target.candidate.image_id or "",
            refs=pushed[target.candidate.cell.id],
            digest=images.get(target.candidate.cell.id),
            verdict_ref=target.verdict_ref,
            verdict_digest=verdicts.get(target.candidate.cell.id),
        )
        for target in chosen
    )
    return promotion_record(context, created, cells, error=error)


def published(
    target: Target,
    *,
    source_image_id: str,
    refs: Sequence[str],
    digest: str | None,
    verdict_ref: str,
    verdict_digest: str | None,
) -> Published:
    """One promoted cell as the record keeps it (engine-side and registry-side promote alike)."""
    return Published(
        cell=target.candidate.cell.id,
        source_image_id=source_image_id,
        refs=tuple(refs),
        digest=digest,
        verdict="pass",
        verdict_ref=verdict_ref,
        verdict_digest=verdict_digest,
        reports=target.candidate.report_files,
    )


def promotion_record(
    context: Context, created: str, cells: tuple[Published, ...], *, error: str | None
) -> Promotion:
    """The promotion record: complete only when nothing stopped it."""
    return Promotion(
        registry=context.registry,
        matrix=context.matrix,
        policy=context.policy,
        created=created,
        cells=cells,
        complete=error is None,
        error=error,
    )


def _stopped_message(partial: Promotion, error: EnvkitError) -> str:
    pushed = partial.pushed
    if not pushed:
        return f"promotion stopped: {error.message}\nnothing was pushed to {partial.registry}"
    verdicts = sum(1 for cell in partial.cells if cell.verdict_digest)
    listed = "\n".join(f"  {ref}" for ref in pushed)
    return (
        f"promotion stopped: {error.message}\n"
        f"pushed to {partial.registry} before it stopped "
        f"({verdicts} verdict companion(s) among them):\n{listed}"
    )


def unpush_note(registry: str) -> str:
    """The honest word on a partial push: envkit cannot take it back."""
    return (
        f"a plain v2 registry cannot take a push back: the refs above stay in {registry} until someone "
        "deletes them there (DELETE /v2/<name>/manifests/<digest>, only where the registry enables "
        "deletion); cells without a .verdict companion were not vouched for"
    )


def write_record(promotion: Promotion, path: Path) -> None:
    """Write the promotion record (JSON) to `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(promotion.to_dict(), indent=2) + "\n", encoding="utf-8")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
