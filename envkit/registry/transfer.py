"""Copying an image between repositories registry-side: blobs mounted (or streamed), manifests by digest.

Nothing already in the target is sent again, so a copy that was cut off finishes on a rerun with only
what is missing. No tag is written here: the caller tags once every manifest it needs is in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from envkit.errors import RegistryError
from envkit.registry import INDEX_TYPES, Manifest, Reference, Registry


@dataclass(kw_only=True)
class CopyStats:
    """What a copy did with each blob and manifest (for the promote table and the tests)."""

    present: int = 0
    mounted: int = 0
    uploaded: int = 0
    manifests: int = 0
    uploaded_digests: list[str] = field(default_factory=list)


def manifest_json(manifest: Manifest, where: str) -> dict[str, Any]:
    """The manifest body as JSON; a RegistryError when it is not a JSON object."""
    try:
        data = json.loads(manifest.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: the manifest is not JSON")
    return data


def blobs_of(data: dict[str, Any]) -> list[str]:
    """Digests of the config and layer blobs of an image manifest."""
    found = [data["config"]["digest"]] if isinstance(data.get("config"), dict) else []
    return found + [layer["digest"] for layer in data.get("layers") or [] if isinstance(layer, dict)]


def copy_image(
    source: Registry, src: Reference, target: Registry, dst_repository: str, stats: CopyStats | None = None
) -> Manifest:
    """Copy the manifest `src` (by digest) and everything it points to into `dst_repository` of
    `target`; returns the manifest. Blobs are mounted when both repositories share a registry."""
    stats = stats if stats is not None else CopyStats()
    where = str(src)
    manifest = source.get_manifest(src.repository, src.reference)
    if manifest is None:
        raise RegistryError(
            f"registry {source.host}: {where} is not there",
            hint="build and push it first (envkit build --push)",
        )
    if target.head_manifest(dst_repository, manifest.digest) is not None:
        stats.present += 1
        return manifest
    data = manifest_json(manifest, where)
    if manifest.media_type in INDEX_TYPES or "manifests" in data:
        for child in data.get("manifests") or []:
            copy_image(source, src.with_digest(child["digest"]), target, dst_repository, stats)
    for digest in blobs_of(data):
        _copy_blob(source, src.repository, target, dst_repository, digest, stats)
    target.put_manifest(dst_repository, manifest.digest, manifest)
    stats.manifests += 1
    return manifest


def _copy_blob(
    source: Registry,
    src_repository: str,
    target: Registry,
    dst_repository: str,
    digest: str,
    stats: CopyStats,
) -> None:
    if target.has_blob(dst_repository, digest):
        stats.present += 1
        return
    if source.host == target.host and target.mount_blob(dst_repository, digest, src_repository):
        stats.mounted += 1
        return
    target.upload_blob(dst_repository, digest, source.get_blob(src_repository, digest))
    stats.uploaded += 1
    stats.uploaded_digests.append(digest)
