"""Artifacts attached to an image digest: OCI 1.1 `subject` manifests, found through the referrers API
or, on registries without it (Debian's docker-registry 2.8), through the referrers tag schema: an OCI
index under the tag `sha256-<hex of the subject digest>` listing them. Spec:
https://github.com/opencontainers/distribution-spec/blob/main/spec.md#referrers-tag-schema
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from envkit.errors import RegistryError
from envkit.registry import OCI_EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, Registry
from envkit.registry.transfer import manifest_json

EMPTY_JSON = b"{}"
MAX_ARTIFACT_BYTES = 4 * 1024**2


def sha256(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject digest: `sha256-<hex>`."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}"


def _canonical(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def attach(
    registry: Registry,
    repository: str,
    subject: Descriptor,
    payload: bytes,
    *,
    artifact_type: str,
    annotations: Mapping[str, str],
) -> Descriptor:
    """Push `payload` as an artifact whose subject is `subject`; returns the artifact's descriptor.

    The artifact is pushed by digest; where the registry has no referrers API, the fallback index is
    updated too (read, add, write back: two writers racing on one subject can drop an entry, which a
    rerun of the slower one restores).
    """
    for blob in (EMPTY_JSON, payload):
        digest = sha256(blob)
        if not registry.has_blob(repository, digest):
            registry.upload_blob(repository, digest, [blob])
    body = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY_CONFIG, "digest": sha256(EMPTY_JSON), "size": len(EMPTY_JSON)},
            "layers": [{"mediaType": artifact_type, "digest": sha256(payload), "size": len(payload)}],
            "subject": subject.to_json(),
            "annotations": dict(annotations),
        }
    )
    manifest = Manifest(media_type=OCI_MANIFEST, digest=sha256(body), body=body)
    digest = registry.put_manifest(repository, manifest.digest, manifest)
    descriptor = Descriptor(
        media_type=OCI_MANIFEST,
        digest=digest,
        size=len(body),
        artifact_type=artifact_type,
        annotations=tuple(sorted(annotations.items())),
    )
    if registry.referrers(repository, subject.digest) is None:
        _add_to_fallback(registry, repository, subject.digest, descriptor)
    return descriptor


def _add_to_fallback(registry: Registry, repository: str, subject: str, descriptor: Descriptor) -> None:
    tag = fallback_tag(subject)
    existing = registry.get_manifest(repository, tag)
    entries = manifest_json(existing, f"{repository}:{tag}").get("manifests") or [] if existing else []
    if any(entry.get("digest") == descriptor.digest for entry in entries):
        return
    body = _canonical(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*entries, descriptor.to_json()]}
    )
    registry.put_manifest(repository, tag, Manifest(media_type=OCI_INDEX, digest=sha256(body), body=body))


def find(registry: Registry, repository: str, subject: str, artifact_type: str) -> Sequence[Descriptor]:
    """Artifacts of `artifact_type` whose subject is `subject`: referrers API, else the fallback tag."""
    found = registry.referrers(repository, subject)
    if found is None:
        index = registry.get_manifest(repository, fallback_tag(subject))
        if index is None:
            return ()
        entries = manifest_json(index, f"{repository}:{fallback_tag(subject)}").get("manifests") or []
        found = [Descriptor.from_json(entry) for entry in entries if isinstance(entry, dict)]
    return tuple(d for d in found if d.artifact_type == artifact_type)


def read(registry: Registry, repository: str, artifact: Descriptor, subject: str) -> bytes:
    """The payload of an artifact, after checking that its manifest really names `subject`."""
    manifest = registry.get_manifest(repository, artifact.digest)
    where = f"{repository}@{artifact.digest}"
    if manifest is None:
        raise RegistryError(f"registry {registry.host}: the artifact {where} is listed but not there")
    data = manifest_json(manifest, where)
    if (data.get("subject") or {}).get("digest") != subject or not data.get("layers"):
        raise RegistryError(f"registry {registry.host}: {where} does not refer to {subject}")
    layer = data["layers"][0]
    if int(layer.get("size", 0)) > MAX_ARTIFACT_BYTES:
        raise RegistryError(f"registry {registry.host}: {where} is larger than an envkit verdict can be")
    payload = b"".join(registry.get_blob(repository, layer["digest"]))
    if sha256(payload) != layer["digest"]:
        raise RegistryError(f"registry {registry.host}: the payload of {where} does not match its digest")
    return payload
