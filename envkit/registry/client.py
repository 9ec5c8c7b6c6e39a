"""The Docker Registry HTTP API v2 / OCI distribution client (requests), behind `envkit.registry.Registry`.

HTTPS is verified against the CA bundle given, else the system's store. Plain HTTP is used only for a
loopback host or one named in `insecure`, and only when that host does not speak TLS at all. The digest
a registry reports in Docker-Content-Digest is the one trusted (a client's re-serialised JSON would hash
differently); a manifest fetched by digest is checked against it. Spec:
https://github.com/opencontainers/distribution-spec/blob/main/spec.md
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from envkit.errors import RegistryError
from envkit.registry import (
    MANIFEST_TYPES,
    Descriptor,
    Manifest,
    Registry,
    RegistrySettings,
    is_digest,
)
from envkit.registry.auth import Authenticator, load_credentials, login_hint

USER_AGENT = "envkit-registry-client"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
MAX_ERROR_BODY = 200


def hostname(host: str) -> str:
    """`host[:port]` or `[v6]:port` without the port and brackets."""
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::\d+)?", host)
    if bracketed:
        return bracketed.group(1)
    return host.split(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    name = hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def system_ca_file() -> str | bool:
    """The system's CA bundle file (what `openssl` trusts), or True for requests' own default."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    return True


def reason(error: BaseException) -> str:
    """A short cause for a transport error (`Connection refused`), never the request's headers."""
    found = _ERRNO.search(str(error))
    if found:
        return found.group(1).strip()
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection was cut mid-transfer"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return type(error).__name__


class HttpRegistry(Registry):
    """One registry host over HTTP(S); see the module docstring for the transport rules."""

    def __init__(self, host: str, settings: RegistrySettings) -> None:
        self.host = host
        self.settings = settings
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # A loopback registry is reached directly: a proxy from the environment could not reach it.
        self.session.trust_env = not is_loopback(host)
        self.verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else system_ca_file()
        self._base: str | None = None
        self._auth: Authenticator | None = None

    # -- the interface ----------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        reply = self._call(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            reference,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if reply is None:
            return None
        digest = reply.headers.get("Docker-Content-Digest")
        if not digest or not is_digest(digest):
            manifest = self.get_manifest(repository, reference)
            return manifest.descriptor if manifest else None
        return Descriptor(
            media_type=_media_type(reply), digest=digest, size=int(reply.headers.get("Content-Length") or 0)
        )

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        reply = self._call(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            reference,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if reply is None:
            return None
        body = reply.content
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        if is_digest(reference) and computed != reference:
            raise RegistryError(
                f"registry {self.host}: the manifest of {repository}@{reference} does not "
                f"match its digest (got {computed})",
                hint="the registry or a proxy altered it",
            )
        digest = reply.headers.get("Docker-Content-Digest") or computed
        return Manifest(media_type=_media_type(reply), digest=digest, body=body)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        reply = self._call(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            reference,
            push=True,
            ok=(200, 201, 202),
            absent=(),
            headers={"Content-Type": manifest.media_type},
            data=manifest.body,
        )
        assert reply is not None
        return reply.headers.get("Docker-Content-Digest") or manifest.digest

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._call("HEAD", f"/v2/{repository}/blobs/{digest}", repository, digest) is not None

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        reply = self._call(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository,
            digest,
            push=True,
            ok=(201, 202),
            absent=(),
            params={"mount": digest, "from": source},
            also_pull=source,
        )
        assert reply is not None
        if reply.status_code == 201:
            return True
        self._cancel(reply, repository, digest)  # the registry opened an upload instead of mounting
        return False

    def get_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        reply = self._call(
            "GET", f"/v2/{repository}/blobs/{digest}", repository, digest, absent=(), stream=True
        )
        assert reply is not None
        try:
            yield from reply.iter_content(chunk_size=1024**2)
        except requests.RequestException as error:
            raise self._fault(error, f"{repository}@{digest}", "reading a blob") from None
        finally:
            reply.close()

    def upload_blob(self, repository: str, digest: str, chunks: Iterable[bytes]) -> None:
        ref = f"{repository}@{digest}"
        reply = self._call(
            "POST", f"/v2/{repository}/blobs/uploads/", repository, digest, push=True, ok=(202,), absent=()
        )
        assert reply is not None
        location = self._location(reply, ref)
        offset = 0
        pieces = _pieces(chunks, self.settings.chunk_size)
        piece = next(pieces, b"")
        for following in pieces:
            location, offset = self._patch(location, piece, offset, repository, ref), offset + len(piece)
            piece = following
        self._call(
            "PUT",
            location,
            repository,
            digest,
            push=True,
            ok=(201, 204),
            absent=(),
            params={"digest": digest},
            data=piece,
            headers={"Content-Type": "application/octet-stream"},
        )

    def referrers(self, repository: str, digest: str) -> Sequence[Descriptor] | None:
        reply = self._call(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            repository,
            digest,
            absent=(404, 405),
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        if reply is None:
            return None
        try:
            return [Descriptor.from_json(entry) for entry in reply.json().get("manifests") or []]
        except (ValueError, AttributeError, KeyError, TypeError):
            return None

    # -- transport --------------------------------------------------------------------------------

    def _patch(self, location: str, piece: bytes, offset: int, repository: str, ref: str) -> str:
        end = offset + len(piece) - 1
        reply = self._call(
            "PATCH",
            location,
            repository,
            ref,
            push=True,
            ok=(202,),
            absent=(),
            data=piece,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end}"},
        )
        assert reply is not None
        return self._location(reply, ref)

    def _location(self, reply: requests.Response, ref: str) -> str:
        location = reply.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host}: the upload of {ref} got no Location to send it to")
        return urljoin(self.base(), location)

    def _cancel(self, reply: requests.Response, repository: str, ref: str) -> None:
        location = reply.headers.get("Location")
        if location:
            # An abandoned upload session expires on the registry by itself: a refusal here is harmless.
            with contextlib.suppress(RegistryError):
                self._call(
                    "DELETE",
                    urljoin(self.base(), location),
                    repository,
                    ref,
                    push=True,
                    ok=(200, 202, 204),
                    absent=(404,),
                )

    def base(self) -> str:
        """`https://host` or, for a loopback/insecure host that does not speak TLS, `http://host`."""
        if self._base is None:
            self._base = self._choose_scheme()
        return self._base

    def _plain_http_allowed(self) -> bool:
        allowed = self.settings.insecure
        return is_loopback(self.host) or self.host in allowed or hostname(self.host) in allowed

    def _choose_scheme(self) -> str:
        try:
            self.session.get(f"https://{self.host}/v2/", verify=self.verify, timeout=self.settings.timeout_s)
            return f"https://{self.host}"
        except requests.exceptions.SSLError as error:
            if "CERTIFICATE_VERIFY_FAILED" in str(error) or not self._plain_http_allowed():
                raise RegistryError(
                    f"registry {self.host}: its TLS certificate could not be verified",
                    hint="pass the CA that signed it with --registry-ca-bundle FILE"
                    + (
                        ""
                        if self._plain_http_allowed()
                        else f", or --insecure-registry {self.host} for a plain-HTTP registry"
                    ),
                ) from None
        except requests.RequestException as error:
            if not self._plain_http_allowed():
                raise self._fault(error, "/v2/", "connecting") from None
        return f"http://{self.host}"

    def _authenticator(self) -> Authenticator:
        if self._auth is None:
            credentials = load_credentials(self.host, self.settings.docker_config)
            self._auth = Authenticator(
                self.host, self.session, credentials, self.verify, self.settings.timeout_s
            )
        return self._auth

    def _call(
        self,
        method: str,
        path: str,
        repository: str,
        ref: str,
        *,
        push: bool = False,
        ok: tuple[int, ...] = (200,),
        absent: tuple[int, ...] = (404,),
        also_pull: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response | None:
        """One API call with the challenge-answering retry; None for an `absent` status."""
        url = path if "://" in path else self.base() + path
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        if also_pull:
            scope += f" repository:{also_pull}:pull"
        what = f"{method} {repository}{'@' if is_digest(ref) else ':'}{ref}"
        auth = self._authenticator()
        for _attempt in range(3):
            try:
                reply = self.session.request(
                    method,
                    url,
                    headers={**(headers or {}), **auth.headers(scope)},
                    verify=self.verify,
                    timeout=self.settings.timeout_s,
                    allow_redirects=True,
                    **kwargs,
                )
            except requests.RequestException as error:
                raise self._fault(error, f"{repository}:{ref}", method) from None
            challenge = reply.headers.get("WWW-Authenticate", "")
            if reply.status_code == 401 and challenge and auth.answer(challenge, scope):
                reply.close()
                continue
            break
        return self._judge(reply, what, ok, absent, auth)

    def _judge(
        self,
        reply: requests.Response,
        what: str,
        ok: tuple[int, ...],
        absent: tuple[int, ...],
        auth: Authenticator,
    ) -> requests.Response | None:
        status = reply.status_code
        if status in ok:
            return reply
        if status in absent:
            reply.close()
            return None
        detail = _error_text(reply)
        reply.close()
        if status == 401:
            raise RegistryError(
                f"registry {self.host} refused the credentials for {what}",
                hint=login_hint(self.host, auth.credentials),
            )
        if status == 403:
            raise RegistryError(
                f"registry {self.host} denied {what} (403){detail}",
                hint="the account lacks the right for this repository; ask for push/pull access",
            )
        if status >= 500:
            raise RegistryError(
                f"registry {self.host} failed {what} ({status}){detail}",
                hint="the registry is in trouble (full storage, a crash); rerun once it is "
                "fixed: what is already there is not uploaded again",
            )
        raise RegistryError(f"registry {self.host} answered {status} to {what}{detail}")

    def _fault(self, error: BaseException, ref: str, doing: str) -> RegistryError:
        return RegistryError(
            f"registry {self.host}: {doing} {ref} failed: {reason(error)}",
            hint="check that the registry runs and is reachable; rerun to finish: "
            "what is already there is not uploaded again",
        )


def _media_type(reply: requests.Response) -> str:
    return reply.headers.get("Content-Type", "").split(";")[0].strip()


def _error_text(reply: requests.Response) -> str:
    """The registry's own error codes (`: BLOB_UNKNOWN blob unknown to registry`), bounded."""
    try:
        errors = json.loads(reply.content or b"{}").get("errors") or []
        text = "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError):
        text = (reply.text or "").strip()
    text = re.sub(r"[^\x20-\x7e]+", " ", text)[:MAX_ERROR_BODY]
    return f": {text}" if text else ""


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream of chunks into pieces of `size` bytes (the last one shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    yield bytes(buffer)
