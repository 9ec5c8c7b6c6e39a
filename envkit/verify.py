"""`envkit verify`'s logic: is there a passing envkit verdict for exactly this image digest?

The verdicts are the OCI artifacts registry-side promotion attaches to each released digest
(envkit/release.py). A verdict counts only when its manifest names the digest as its `subject`, its
document says `pass` for that same digest, and, when a policy is asked for, it was made under a
policy file with the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from envkit.errors import RegistryError
from envkit.registry import Reference, Registry
from envkit.registry import referrers as artifacts
from envkit.release import VERDICT_ARTIFACT_TYPE

MAX_REASONS = 10


@dataclass(frozen=True, kw_only=True)
class Verification:
    """The digest REF resolved to, the passing verdict documents for it, and why others did not count."""

    ref: str
    digest: str
    passing: tuple[dict[str, object], ...]
    refused: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return bool(self.passing)


def resolve(registry: Registry, ref: Reference) -> str:
    """REF's manifest digest: the one it names, else what its tag points to now."""
    if ref.digest:
        return ref.digest
    found = registry.head_manifest(ref.repository, ref.reference)
    if found is None:
        raise RegistryError(f"registry {ref.host} has no {ref}", hint="check the name and tag")
    return found.digest


def verify(registry: Registry, ref: Reference, policy_sha256: str | None = None) -> Verification:
    """Every verdict attached to REF's digest, sorted into passing and refused (with reasons)."""
    digest = resolve(registry, ref)
    passing: list[dict[str, object]] = []
    refused: list[str] = []
    for artifact in artifacts.find(registry, ref.repository, digest, VERDICT_ARTIFACT_TYPE):
        try:
            document = json.loads(artifacts.read(registry, ref.repository, artifact, digest))
        except (RegistryError, ValueError) as error:
            cause = error.message if isinstance(error, RegistryError) else "not JSON"
            refused.append(f"{artifact.digest[:19]}: unreadable ({cause})")
            continue
        why = _why_not(document, digest, policy_sha256)
        if why is None:
            passing.append(document)
        else:
            refused.append(f"{artifact.digest[:19]}: {why}")
    return Verification(
        ref=str(ref), digest=digest, passing=tuple(passing), refused=tuple(refused[:MAX_REASONS])
    )


def _why_not(document: object, digest: str, policy_sha256: str | None) -> str | None:
    if not isinstance(document, dict):
        return "not an envkit verdict"
    subject = document.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        return "vouches for another digest"
    if document.get("verdict") != "pass":
        return f"verdict is {document.get('verdict')!r}"
    if policy_sha256 is not None and document.get("policy_sha256") != policy_sha256:
        return f"made under another policy ({document.get('policy')})"
    return None
