"""envkit's own image-registry interface (DESIGN.md "Registry boundary").

A Docker Registry HTTP API v2 / OCI distribution client behind a small interface, as the engine is:
manifests by tag or digest, blob presence, cross-repository mount, upload, referrers. Higher layers
(build --push, validate by digest, registry-side promote, verify) see the dataclasses and `Registry`
methods below; HTTP, auth and TLS stay in the backend (`client.py`, `auth.py`), which this module
never imports at load time.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envkit.errors import UsageError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?")
REFERENCE_HINT = "write HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:<64 hex digits>"


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A parsed image reference: registry host, repository, and a tag or a digest (or both)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`host/repository`, without tag or digest."""
        return f"{self.host}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the registry API takes after /manifests/: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """This repository at `digest` (the tag dropped)."""
        return Reference(host=self.host, repository=self.repository, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        """This repository under `tag`."""
        return Reference(host=self.host, repository=self.repository, tag=tag)

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"


def is_digest(text: str) -> bool:
    """True for `sha256:` and 64 lower-case hex digits."""
    return bool(_DIGEST.fullmatch(text))


def parse_reference(text: str) -> Reference:
    """`host[:port]/repo[:tag][@sha256:...]` into a Reference; a UsageError (exit 2) names what is wrong.

    The host part is required (a first part with a dot or a port, or `localhost`): envkit never guesses
    a default registry, so a typo cannot send an image somewhere nobody asked for.
    """
    value = text.strip()
    rest, _, digest = value.partition("@")
    host, _, path = rest.partition("/")
    if not path or not _HOST.fullmatch(host) or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"{text!r} does not start with a registry host", hint=REFERENCE_HINT)
    repository, tag = path, None
    last = path.rpartition("/")[2]
    if ":" in last:
        repository, _, tag = path.rpartition(":")
    if digest and not is_digest(digest):
        raise UsageError(f"{text!r}: {digest!r} is not a sha256 digest", hint=REFERENCE_HINT)
    if not _REPOSITORY.fullmatch(repository) or (tag is not None and not _TAG.fullmatch(tag)):
        raise UsageError(f"{text!r} is not a valid image reference", hint=REFERENCE_HINT)
    return Reference(host=host, repository=repository, tag=tag, digest=digest or None)


def parse_root(text: str, flag: str = "--registry") -> tuple[str, str]:
    """`host[:port][/prefix]` into (host, prefix); a UsageError for a scheme or a missing host."""
    value = text.strip().rstrip("/")
    if "://" in value:
        raise UsageError(
            f"{flag} {text!r}: give host[:port][/prefix], without a scheme",
            hint=f"e.g. {flag} 127.0.0.1:5000/ml",
        )
    host, _, prefix = value.partition("/")
    if not _HOST.fullmatch(host) or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(
            f"{flag} {text!r} does not start with a registry host",
            hint="write host[:port][/prefix]; a host has a dot or a port, or is localhost",
        )
    if prefix and not _REPOSITORY.fullmatch(prefix):
        raise UsageError(
            f"{flag} {text!r}: the prefix is not a valid repository path",
            hint="lower-case path parts of letters, digits and . _ -",
        )
    return host, prefix


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """An OCI content descriptor: what a manifest HEAD answers, and what manifests point to."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Descriptor:
        """A Descriptor from OCI JSON (KeyError/ValueError/TypeError on a malformed one)."""
        annotations = entry.get("annotations") or {}
        return cls(
            media_type=str(entry["mediaType"]),
            digest=str(entry["digest"]),
            size=int(entry["size"]),
            artifact_type=entry.get("artifactType"),
            annotations=tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
        )

    def to_json(self) -> dict[str, object]:
        """The descriptor as OCI JSON."""
        data: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A manifest as the registry stored it: its bytes (hashed as-is), media type and digest."""

    media_type: str
    digest: str
    body: bytes

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.body))


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """How to reach registries: a CA bundle, hosts allowed over plain HTTP, the Docker config folder."""

    ca_bundle: Path | None = None
    insecure: tuple[str, ...] = ()
    docker_config: Path | None = None  # a folder holding config.json; default $DOCKER_CONFIG or ~/.docker
    timeout_s: float = 60.0
    chunk_size: int = 16 * 1024**2


class Registry(abc.ABC):
    """One registry host. Every method raises RegistryError (exit 3) naming the host and the ref when
    the registry cannot be reached, refuses credentials, or answers with a server error."""

    host: str

    @abc.abstractmethod
    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor (digest from Docker-Content-Digest), or None when it is absent."""

    @abc.abstractmethod
    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest under a tag or digest, as stored; None when absent."""

    @abc.abstractmethod
    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """Store `manifest` under a tag or its digest; returns the digest the registry reports."""

    @abc.abstractmethod
    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository holds the blob."""

    @abc.abstractmethod
    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Mount a blob from repository `source` on the same registry; False when the registry refused."""

    @abc.abstractmethod
    def get_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """The blob's bytes, streamed in chunks."""

    @abc.abstractmethod
    def upload_blob(self, repository: str, digest: str, chunks: Iterable[bytes]) -> None:
        """Upload a blob (chunked when larger than one chunk); the registry checks it against `digest`."""

    @abc.abstractmethod
    def referrers(self, repository: str, digest: str) -> Sequence[Descriptor] | None:
        """Manifests whose `subject` is `digest` via the referrers API; None when the registry lacks it."""


@dataclass(frozen=True, kw_only=True)
class RegistryRepository:
    """One repository on one registry: where build pushes, promote copies from and to, verify reads."""

    registry: Registry
    repository: str

    def ref(self, tag: str) -> str:
        """`host/repository:tag`."""
        return f"{self.registry.host}/{self.repository}:{tag}"

    def digest_ref(self, digest: str) -> str:
        """`host/repository@digest`: what `envkit validate` and `envkit verify` take."""
        return f"{self.registry.host}/{self.repository}@{digest}"

    def reference(self, *, tag: str | None = None, digest: str | None = None) -> Reference:
        """A Reference into this repository."""
        return Reference(host=self.registry.host, repository=self.repository, tag=tag, digest=digest)


def get_registry(host: str, settings: RegistrySettings | None = None) -> Registry:
    """The registry client for `host` (host[:port]); nothing is contacted until the first call."""
    from envkit.registry.client import HttpRegistry

    return HttpRegistry(host, settings or RegistrySettings())
