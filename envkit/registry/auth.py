"""Registry credentials as `docker login` leaves them, and the challenge flows that use them.

Credentials come from the Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
`credHelpers[host]`, then `credsStore`, then `auths[host].auth` (base64 `user:password`), as the Docker
CLI reads them (https://docs.docker.com/reference/cli/docker/login/#credential-stores). A 401 answer
names the scheme in `WWW-Authenticate`: Basic gets the credentials directly; Bearer sends them to the
named token service and retries with the token it returns (the distribution token protocol,
https://distribution.github.io/distribution/spec/auth/token/). No secret ever reaches a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from envkit.errors import ConfigError, RegistryError

HELPER_TIMEOUT_S = 30
IDENTITY_TOKEN_USER = "<token>"
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A user name and its secret (a password, a token, or an OAuth refresh token); never printed."""

    username: str
    secret: str = field(repr=False)
    source: str  # where they came from, for messages: "config.json", "credential helper pass", ...

    @property
    def refresh_token(self) -> bool:
        """True when `secret` is an identity (refresh) token rather than a password."""
        return self.username == IDENTITY_TOKEN_USER


def config_dir(explicit: Path | None = None) -> Path:
    """The Docker config folder: `explicit`, else $DOCKER_CONFIG, else ~/.docker."""
    if explicit is not None:
        return explicit
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def load_credentials(host: str, folder: Path | None = None) -> Credentials | None:
    """The credentials for `host` from the Docker config, or None when it names none."""
    path = config_dir(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{path}: not a readable Docker config ({type(error).__name__})",
            hint="fix or remove the file, or run `docker login` again",
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a Docker config (expected a JSON object)")
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        return _from_helper(str(helper), host)
    entry = _auth_entry(config.get("auths") or {}, host)
    return _from_entry(entry, path, host) if entry else None


def _auth_entry(auths: Mapping[str, Any], host: str) -> Mapping[str, Any] | None:
    for key, entry in auths.items():
        bare = re.sub(r"^https?://", "", str(key)).split("/")[0]
        if bare == host and isinstance(entry, dict):
            return entry
    return None


def _from_entry(entry: Mapping[str, Any], path: Path, host: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(username=IDENTITY_TOKEN_USER, secret=str(entry["identitytoken"]), source=str(path))
    if entry.get("username") and entry.get("password"):
        return Credentials(username=str(entry["username"]), secret=str(entry["password"]), source=str(path))
    encoded = entry.get("auth")
    if not encoded:
        return None
    try:
        user, sep, secret = base64.b64decode(str(encoded), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, secret = "", "", ""
    if not sep or not user:
        raise ConfigError(
            f"{path}: the `auth` entry for {host} is not base64 of user:password",
            hint=f"run `docker login {host}` again",
        )
    return Credentials(username=user, secret=secret, source=str(path))


def _from_helper(helper: str, host: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=host,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RegistryError(
            f"the credential helper {program} for {host} could not run ({type(error).__name__})",
            hint=f"install {program} or fix the Docker config",
        ) from None
    if done.returncode != 0:
        # "credentials not found in native keychain": the helper knows nothing about this host.
        return None
    try:
        answer = json.loads(done.stdout)
        return Credentials(
            username=str(answer["Username"]),
            secret=str(answer["Secret"]),
            source=f"credential helper {helper}",
        )
    except (ValueError, KeyError, TypeError):
        raise RegistryError(
            f"the credential helper {program} gave no credentials for {host}",
            hint=f"run `docker login {host}` again",
        ) from None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` into ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class Authenticator:
    """Answers a registry's 401 challenges for one host; tokens are kept per scope for the session."""

    def __init__(
        self,
        host: str,
        session: requests.Session,
        credentials: Credentials | None,
        verify: bool | str,
        timeout_s: float,
    ) -> None:
        self.host = host
        self.session = session
        self.credentials = credentials
        self.verify = verify
        self.timeout_s = timeout_s
        self._tokens: dict[str, str] = {}
        self._basic = False

    def headers(self, scope: str) -> dict[str, str]:
        """The Authorization header to send first for `scope`, when a challenge already taught us one."""
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.credentials is not None:
            return {"Authorization": _basic_header(self.credentials)}
        return {}

    def answer(self, challenge: str, scope: str) -> bool:
        """Learn from a 401's WWW-Authenticate; True when a retry can carry new credentials."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme == "bearer" and params.get("realm"):
            if scope in self._tokens:
                return False  # the token we had was refused: retrying cannot help
            self._tokens[scope] = self._fetch_token(params, scope)
            return True
        return False

    def _fetch_token(self, params: Mapping[str, str], scope: str) -> str:
        realm = params["realm"]
        query = {"service": params.get("service", self.host)}
        scopes = [s for s in (params.get("scope"), scope) if s]
        creds = self.credentials
        try:
            if creds is not None and creds.refresh_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.secret,
                    "client_id": "envkit",
                    "service": query["service"],
                    "scope": " ".join(dict.fromkeys(scopes)),
                }
                reply = self.session.post(realm, data=form, verify=self.verify, timeout=self.timeout_s)
            else:
                auth = (creds.username, creds.secret) if creds is not None else None
                reply = self.session.get(
                    realm,
                    params={**query, "scope": list(dict.fromkeys(scopes))},
                    auth=auth,
                    verify=self.verify,
                    timeout=self.timeout_s,
                )
        except requests.RequestException as error:
            raise RegistryError(
                f"the token service of {self.host} could not be reached ({type(error).__name__})"
            ) from None
        if reply.status_code in (401, 403):
            raise RegistryError(
                f"the token service of {self.host} refused the credentials for {scope} ({reply.status_code})",
                hint=login_hint(self.host, creds),
            )
        try:
            body = reply.json()
            return str(body.get("token") or body["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(
                f"the token service of {self.host} answered {reply.status_code} without a token"
            ) from None


def _basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def login_hint(host: str, credentials: Credentials | None) -> str:
    """What to do about refused or missing credentials; names where they came from, never what they are."""
    if credentials is None:
        return (
            f"no credentials for {host} in the Docker config; "
            f"run `docker login {host}` (or set DOCKER_CONFIG)"
        )
    return (
        f"the credentials for {host} from {credentials.source} were refused; "
        f"run `docker login {host}` again, or check the account's rights on this repository"
    )
