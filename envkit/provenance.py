"""The OCI labels that say when and from what an image was built: created, source and revision.

They are build labels, set on `docker build` next to the Dockerfile's own labels and kept out of the
rendered Dockerfile, so they never change the content hash: a rebuild of an unchanged matrix at another
time or from another commit is the same image content under the same content-hash tag.

- `org.opencontainers.image.created`: the build's start in UTC (RFC 3339), or SOURCE_DATE_EPOCH when set
  (https://reproducible-builds.org/specs/source-date-epoch/), so reproducible pipelines get a fixed date.
- `org.opencontainers.image.revision`: the commit of the git checkout that holds the matrix file.
- `org.opencontainers.image.source`: that checkout's `origin` remote, without any user or password.
Both git labels are left out when the matrix is not in a git checkout or git is missing.
`org.opencontainers.image.version` is the cell's tag and sits in the Dockerfile (see render.cell_labels).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from envkit import labels as L
from envkit import safety

CREATED = L.OCI_CREATED
SOURCE = L.OCI_SOURCE
REVISION = L.OCI_REVISION
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_CREDENTIALS = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@]*@")


def build_labels(matrix_file: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """created, and revision and source when the matrix file is in a git checkout."""
    environ = os.environ if environ is None else environ
    labels = {CREATED: created(environ)}
    folder = Path(matrix_file).resolve().parent
    revision = _git(folder, "rev-parse", "HEAD")
    if revision and _COMMIT.fullmatch(revision):
        labels[REVISION] = revision
        source = _git(folder, "remote", "get-url", "origin")
        if source:
            source = _CREDENTIALS.sub(r"\g<scheme>", source)
            if source.isprintable() and len(source) <= safety.MAX_LABEL_VALUE:
                labels[SOURCE] = source
    return labels


def created(environ: Mapping[str, str]) -> str:
    """SOURCE_DATE_EPOCH (seconds since 1970, UTC) when set and valid, else now; RFC 3339, seconds."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = (
        datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    )
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
