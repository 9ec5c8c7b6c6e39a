"""Registry-side promotion: STAGING to RELEASE with no container engine, all cells or none.

A cell is ready when its `content-<hash16>` tag is in STAGING and every validation report of that
digest (report `image.digest`) passes the policy. When every cell is ready: each image is copied into
RELEASE by digest (blobs mounted on the same registry, streamed between registries; nothing that is
already there is sent again), each verdict is attached to its digest as an OCI artifact, and only then,
after every manifest is in RELEASE, are the cell tags and content tags written. A fault before that
point leaves no tag in RELEASE, and a rerun finishes the copy. See docs/promote.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from envkit.errors import EnvkitError, RegistryError
from envkit.gate import ImageVerdict, run_gate
from envkit.policy import Policy
from envkit.promote import (
    CELL_LABEL,
    FAILED_GATE,
    NO_REPORT,
    NOT_BUILT,
    READY,
    STALE_REPORT,
    VERDICT_CELL_LABEL,
    Candidate,
    Context,
    Promotion,
    PromotionIncomplete,
    Target,
    failure_reason,
    promotion_record,
    published,
    report_names,
    utc_now,
    verdict_document,
)
from envkit.registry import Descriptor, RegistryRepository
from envkit.registry import referrers as artifacts
from envkit.registry.transfer import CopyStats, copy_image
from envkit.render import BuildContext
from envkit.report import Report

VERDICT_ARTIFACT_TYPE = "application/vnd.envkit.verdict.v1+json"
VERDICT_CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True, kw_only=True)
class Staged:
    """A cell, its rendered content hash and what STAGING holds under its content tag."""

    context: BuildContext
    descriptor: Descriptor | None


def policy_digest(policy: Policy) -> str:
    """sha256 of the policy file's bytes: `envkit verify --policy P` asks for verdicts made under P."""
    return "sha256:" + hashlib.sha256(Path(policy.source).read_bytes()).hexdigest()


def find_staged(contexts: Sequence[BuildContext], staging: RegistryRepository) -> tuple[Staged, ...]:
    """Every cell's content tag looked up in STAGING (one manifest HEAD each)."""
    return tuple(
        Staged(context=c, descriptor=staging.registry.head_manifest(staging.repository, c.hash_tag))
        for c in contexts
    )


def assess_staged(
    staged: Sequence[Staged],
    staging: RegistryRepository,
    reports: Sequence[Report],
    policy: Policy,
    *,
    baseline_path: Path | None = None,
) -> tuple[Candidate, ...]:
    """Every cell's readiness, matched to reports by digest (a report of another digest is stale)."""
    current: list[tuple[str, Report]] = []
    stale: dict[str, list[Report]] = {}
    for item in staged:
        cell_id = item.context.cell.id
        for report in reports:
            if report.cell != cell_id or item.descriptor is None:
                continue
            reported = report.image.digest if report.image else None
            if reported == item.descriptor.digest:
                current.append((cell_id, report))
            else:
                stale.setdefault(cell_id, []).append(report)
    gated = run_gate([r for _, r in current], policy, baseline_path=baseline_path).verdicts if current else ()
    verdicts: dict[str, list[ImageVerdict]] = {}
    for (cell_id, _), verdict in zip(current, gated, strict=True):
        verdicts.setdefault(cell_id, []).append(verdict)
    return tuple(
        _candidate(item, staging, verdicts.get(item.context.cell.id, []), stale.get(item.context.cell.id, []))
        for item in staged
    )


def _candidate(
    item: Staged, staging: RegistryRepository, verdicts: list[ImageVerdict], stale: list[Report]
) -> Candidate:
    cell = item.context.cell
    content_ref = staging.ref(item.context.hash_tag)
    if item.descriptor is None:
        return Candidate(
            cell=cell,
            state=NOT_BUILT,
            content_hash=item.context.content_hash,
            reason=f"{content_ref} is not in staging; run `envkit build --push`",
        )
    digest = item.descriptor.digest
    found = Candidate(
        cell=cell,
        state=NO_REPORT,
        digest=digest,
        content_hash=item.context.content_hash,
        verdicts=tuple(verdicts),
        reason=f"no report of {digest[:19]} with {CELL_LABEL}={cell.id}; run "
        f"`envkit validate {staging.digest_ref(digest)}`",
    )
    if not verdicts and stale:
        name = Path(stale[0].source).name
        other = (stale[0].image.digest if stale[0].image else None) or "no digest"
        return replace(
            found,
            state=STALE_REPORT,
            reason=f"stale: {name} validated {other[:19]}, staging holds {digest[:19]}; "
            f"validate {staging.digest_ref(digest)}",
        )
    if not verdicts:
        return found
    failed = [verdict for verdict in verdicts if not verdict.passed]
    if failed:
        return replace(found, state=FAILED_GATE, reason=failure_reason(failed[0]))
    return replace(found, state=READY, reason=f"passed: {report_names(verdicts)}")


def release(
    chosen: Sequence[Target],
    staging: RegistryRepository,
    target: RegistryRepository,
    context: Context,
    on_step: Callable[[str], None],
) -> Promotion:
    """Copy every ready cell into RELEASE, attach verdicts, then tag; PromotionIncomplete (exit 3)
    with the partial record when anything fails. No tag is written before every manifest is there."""
    created = utc_now()
    tagged: dict[str, list[str]] = {t.candidate.cell.id: [] for t in chosen}
    verdicts: dict[str, str] = {}
    stats = CopyStats()
    try:
        for item in chosen:
            digest = item.candidate.digest or ""
            copy_image(
                staging.registry, staging.reference(digest=digest), target.registry, target.repository, stats
            )
            on_step(f"copied {target.digest_ref(digest)}")
        for item in chosen:
            verdicts[item.candidate.cell.id] = _attach_verdict(item, target, context, created)
            on_step(f"verdict {verdicts[item.candidate.cell.id][:19]} attached to {item.candidate.digest}")
        for item in chosen:
            _tag(item, target, tagged[item.candidate.cell.id], on_step)
    except EnvkitError as error:
        partial = _record(chosen, target, context, created, tagged, verdicts, error=error.message)
        nothing = "" if partial.pushed else f"\nnothing was tagged in {context.registry}"
        raise PromotionIncomplete(
            f"promotion stopped: {error.message}{nothing}",
            promotion=partial,
            hint="fix the registry and rerun the same command: it sends only what is missing",
        ) from error
    on_step(f"blobs: {stats.mounted} mounted, {stats.uploaded} uploaded, {stats.present} already there")
    return _record(chosen, target, context, created, tagged, verdicts, error=None)


def _attach_verdict(item: Target, target: RegistryRepository, context: Context, created: str) -> str:
    digest = item.candidate.digest or ""
    subject = target.registry.head_manifest(target.repository, digest)
    if subject is None:
        raise RegistryError(
            f"registry {target.registry.host}: {target.digest_ref(digest)} vanished after it was copied"
        )
    document = verdict_document(item, digest, context, created)
    payload = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    annotations = {VERDICT_CREATED: created, VERDICT_CELL_LABEL: item.candidate.cell.id}
    attached = artifacts.attach(
        target.registry,
        target.repository,
        subject,
        payload,
        artifact_type=VERDICT_ARTIFACT_TYPE,
        annotations=annotations,
    )
    return attached.digest


def _tag(item: Target, target: RegistryRepository, done: list[str], on_step: Callable[[str], None]) -> None:
    manifest = target.registry.get_manifest(target.repository, item.candidate.digest or "")
    if manifest is None:
        raise RegistryError(
            f"registry {target.registry.host}: {item.candidate.digest} vanished before tagging"
        )
    for ref in (item.hash_ref, item.tag_ref):  # the cell tag last
        tag = ref.rpartition(":")[2]
        target.registry.put_manifest(target.repository, tag, manifest)
        done.append(ref)
        on_step(f"tagged {ref}")


def _verdict_ref(target: RegistryRepository, digest: str | None) -> str:
    return target.digest_ref(digest) if digest else ""


def _record(
    chosen: Sequence[Target],
    target: RegistryRepository,
    context: Context,
    created: str,
    tagged: dict[str, list[str]],
    verdicts: dict[str, str],
    *,
    error: str | None,
) -> Promotion:
    cells = tuple(
        published(
            t,
            source_image_id=t.candidate.digest or "",
            refs=tagged[t.candidate.cell.id],
            digest=t.candidate.digest,
            verdict_ref=_verdict_ref(target, verdicts.get(t.candidate.cell.id)),
            verdict_digest=verdicts.get(t.candidate.cell.id),
        )
        for t in chosen
    )
    return promotion_record(context, created, cells, error=error)
