"""Slurm through slurmrestd (`--slurm-rest URL`) instead of the command-line tools.

Speaks the `v0.0.38` OpenAPI plugin (Slurm 22.05; `slurmrestd -s openapi/v0.0.38`): POST
/slurm/v0.0.38/job/submit, GET and DELETE /slurm/v0.0.38/job/{id}. Authentication: over a unix socket
(`unix:///run/slurmrestd.socket`) slurmrestd's `rest_auth/local` trusts the socket's peer; over HTTP,
the JWT in $SLURM_JWT is sent with the user name ($SLURM_USER, else the login name), as slurmrestd's
`rest_auth/jwt` expects (https://slurm.schedmd.com/rest.html, https://slurm.schedmd.com/jwt.html).

Unlike sbatch, slurmrestd does not read `#SBATCH` lines: the same options go into the job's JSON.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from envkit.errors import EnvironmentFault
from envkit.runners import DONE, JobState, SubmitRefused
from envkit.runners.config import seconds
from envkit.runners.slurm import BatchJob, SlurmClient, state_from_json

API = "/slurm/v0.0.38"
TIMEOUT_S = 30.0
# Passed to the job (slurmrestd gives it no environment of its own).
ENVIRONMENT = ("PATH", "HOME", "LANG", "DOCKER_HOST", "CONTAINER_HOST", "SLURM_CONF")


class RestClient(SlurmClient):
    """A SlurmClient over slurmrestd; `session` may be given (tests), else one is made for `url`."""

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.session = session or requests.Session()
        if url.startswith("unix:"):
            path = "/" + url.removeprefix("unix:").lstrip("/")
            self.session.mount("http://slurmrestd/", _UnixAdapter(path))
            self.base = "http://slurmrestd"
        else:
            self.base = url.rstrip("/")
            token = os.environ.get("SLURM_JWT")
            if token:
                user = os.environ.get("SLURM_USER") or getpass.getuser()
                self.session.headers.update({"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token})

    def submit(self, job: BatchJob, folder: Path) -> str:
        (folder / "job.sh").write_text(job.script, encoding="utf-8")
        body = {"script": job.script, "job": job_properties(job.options, folder)}
        answer = self._call("POST", f"{API}/job/submit", json=body)
        errors = _errors(answer)
        job_id = answer.get("job_id")
        if errors or not isinstance(job_id, int):
            raise SubmitRefused(f"slurmrestd: {errors or 'no job id in the answer'}")
        return str(job_id)

    def check(self) -> None:
        """Raise EnvironmentFault unless slurmrestd answers its ping with a controller that is UP."""
        answer = self._call("GET", f"{API}/ping")
        pings = answer.get("pings") or []
        if _errors(answer) or not any(isinstance(p, dict) and p.get("ping") == "UP" for p in pings):
            raise EnvironmentFault(f"slurmrestd: slurmctld does not answer: {_errors(answer) or pings}")

    def states(self, ids: Sequence[str]) -> dict[str, JobState]:
        found = {}
        for job_id in ids:
            answer = self._call("GET", f"{API}/job/{job_id}")
            jobs = [job for job in answer.get("jobs") or [] if str(job.get("job_id")) == job_id]
            found[job_id] = (
                state_from_json(jobs[0])
                if jobs
                else JobState(phase=DONE, state="GONE", reason="slurmctld no longer knows the job")
            )
        return found

    def cancel(self, ids: Sequence[str]) -> list[str]:
        cancelled = []
        for job_id in ids:
            try:
                answer = self._call("DELETE", f"{API}/job/{job_id}")
            except EnvironmentFault:
                continue
            if not _errors(answer):
                cancelled.append(job_id)
        return cancelled

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.base + path, timeout=TIMEOUT_S, **kwargs)
        except requests.RequestException as error:
            raise EnvironmentFault(
                f"slurmrestd at {self.base} did not answer: {type(error).__name__}",
                hint="check --slurm-rest and that slurmrestd runs",
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise EnvironmentFault(f"slurmrestd: {method} {path}: HTTP {response.status_code}, not JSON")
        if response.status_code in (401, 403):
            raise EnvironmentFault(
                f"slurmrestd refused envkit (HTTP {response.status_code})",
                hint="set SLURM_JWT (scontrol token) for rest_auth/jwt, or use its unix socket",
            )
        return answer


def job_properties(options: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """sbatch's long options as v0.0.38 job properties."""
    properties: dict[str, Any] = {
        "name": options["job-name"],
        "comment": options["comment"],
        "standard_output": options["output"],
        "current_working_directory": str(folder),
        "nodes": [1, 1],
        "tasks": int(options["ntasks"]),
        "time_limit": _minutes(options["time"]),
        "requeue": "no-requeue" not in options,
        "environment": {key: os.environ[key] for key in ENVIRONMENT if key in os.environ},
    }
    renamed = {"gres": "gres", "constraint": "constraints", "partition": "partition", "account": "account"}
    for option, key in renamed.items():
        if option in options:
            properties[key] = options[option]
    return properties


def _minutes(limit: str) -> int:
    """Slurm's time syntax in whole minutes (v0.0.38's time_limit), rounded up."""
    return max(1, math.ceil(seconds(limit) / 60))


def _errors(answer: Mapping[str, Any]) -> str:
    errors = answer.get("errors") or []
    texts = [str(e.get("error") or e.get("description")) for e in errors if isinstance(e, dict)]
    return "; ".join(" ".join(text.split())[:300] for text in texts)


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__("localhost", *args, **kwargs)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        sock.connect(self.socket_path)
        self.sock = sock


class _UnixPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.socket_path = path

    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self.socket_path)


class _UnixAdapter(HTTPAdapter):
    """requests over a unix socket (slurmrestd's rest_auth/local listens on one)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.socket_path = path

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        return _UnixPool(self.socket_path)

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        return _UnixPool(self.socket_path)


__all__ = ["RestClient", "job_properties"]
