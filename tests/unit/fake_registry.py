"""An in-memory `envkit.registry.Registry` for unit tests of the stages above it (build --push,
registry-side promote, verify). It follows the interface exactly (test_registry_fake.py checks the
signatures), keeps every call for assertions, and can be told to fail after a number of writes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence

from envkit.errors import RegistryError
from envkit.registry import OCI_MANIFEST, Descriptor, Manifest, Registry


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(Registry):
    """Manifests and blobs per repository in dicts; no referrers API unless `referrers_api`."""

    def __init__(self, host: str = "reg.test:5000", *, referrers_api: bool = False) -> None:
        self.host = host
        self.manifests: dict[tuple[str, str], Manifest] = {}  # (repository, tag or digest) -> manifest
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.calls: list[tuple[str, str, str]] = []  # (method, repository, reference)
        self.referrers_api = referrers_api
        self.writes_left: int | None = None  # fail every write once this reaches 0

    # -- scripting --------------------------------------------------------------------------------

    def add_image(
        self,
        repository: str,
        tag: str,
        layers: Sequence[bytes] = (b"layer",),
        config: bytes = b'{"config": {}}',
    ) -> str:
        """Store an image (config + layers) under `tag` and its digest; returns the digest."""
        for blob in (config, *layers):
            self.blobs[(repository, sha256(blob))] = blob
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer),
                        "size": len(layer),
                    }
                    for layer in layers
                ],
            }
        ).encode()
        manifest = Manifest(media_type=OCI_MANIFEST, digest=sha256(body), body=body)
        self.manifests[(repository, manifest.digest)] = manifest
        self.manifests[(repository, tag)] = manifest
        return manifest.digest

    def tags(self, repository: str) -> set[str]:
        return {ref for (repo, ref) in self.manifests if repo == repository and not ref.startswith("sha256:")}

    def writes(self) -> list[tuple[str, str, str]]:
        return [call for call in self.calls if call[0] in ("PUT", "MOUNT", "UPLOAD")]

    def _write(self, method: str, repository: str, reference: str) -> None:
        if self.writes_left is not None:
            if self.writes_left <= 0:
                raise RegistryError(f"registry {self.host} failed {method} {repository}:{reference} (500)")
            self.writes_left -= 1
        self.calls.append((method, repository, reference))

    # -- the interface ----------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        self.calls.append(("HEAD", repository, reference))
        found = self.manifests.get((repository, reference))
        return found.descriptor if found else None

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        self.calls.append(("GET", repository, reference))
        return self.manifests.get((repository, reference))

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        self._write("PUT", repository, reference)
        data = json.loads(manifest.body)
        for entry in [data.get("config"), *(data.get("layers") or [])]:
            if entry and (repository, entry["digest"]) not in self.blobs:
                raise RegistryError(f"registry {self.host}: blob unknown {entry['digest']}")
        self.manifests[(repository, reference)] = manifest
        self.manifests[(repository, manifest.digest)] = manifest
        return manifest.digest

    def has_blob(self, repository: str, digest: str) -> bool:
        self.calls.append(("HEADBLOB", repository, digest))
        return (repository, digest) in self.blobs

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        self._write("MOUNT", repository, digest)
        if (source, digest) not in self.blobs:
            return False
        self.blobs[(repository, digest)] = self.blobs[(source, digest)]
        return True

    def get_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        self.calls.append(("GETBLOB", repository, digest))
        if (repository, digest) not in self.blobs:
            raise RegistryError(f"registry {self.host}: no blob {digest}")
        yield self.blobs[(repository, digest)]

    def upload_blob(self, repository: str, digest: str, chunks: Iterable[bytes]) -> None:
        self._write("UPLOAD", repository, digest)
        data = b"".join(chunks)
        if sha256(data) != digest:
            raise RegistryError(f"registry {self.host}: digest mismatch for {digest}")
        self.blobs[(repository, digest)] = data

    def referrers(self, repository: str, digest: str) -> Sequence[Descriptor] | None:
        if not self.referrers_api:
            return None
        found = []
        for (repo, ref), manifest in self.manifests.items():
            if repo != repository or ref != manifest.digest:
                continue
            data = json.loads(manifest.body)
            if (data.get("subject") or {}).get("digest") == digest:
                found.append(
                    Descriptor(
                        media_type=manifest.media_type,
                        digest=manifest.digest,
                        size=len(manifest.body),
                        artifact_type=data.get("artifactType"),
                    )
                )
        return found
