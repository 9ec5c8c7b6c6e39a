"""Where envkit keeps things on disk: scratch folders (and their lock) and the `.envkit/` layout.

Scratch folders are fresh `envkit-*` folders in the temp folder, held under a shared `flock` while in
use: `envkit gc` removes only folders nobody holds. Build, the BuildKit backend, validate and promote
take theirs from `scratch_dir`; gc asks `is_locked`. Builds of one cell take turns through a lock file
per cell tag (`cell_lock_path`, in the temp folder).

`.envkit/` (in the current folder) is envkit's state; every path in it is named here and nowhere else:

    .envkit/reports/                 validate's reports (one per image)
    .envkit/<matrix>/logs/           build logs, one per cell
    .envkit/<matrix>/build-report.json
    .envkit/<matrix>/promotion.json  promote's record
    .envkit/state/builds.jsonl       the images envkit built (gc removes only untagged ones listed here)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SCRATCH_PREFIX = "envkit-"
STATE_ROOT = Path(".envkit")
LOCK_POLL_S = 0.2


# --- scratch folders ---------------------------------------------------------------------------------


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh temp folder (name starting with `prefix`, itself starting with "envkit-"), locked while
    in use so `envkit gc` leaves it alone, and removed afterwards."""
    if not prefix.startswith(SCRATCH_PREFIX):
        raise ValueError(f"scratch folder prefix {prefix!r} must start with {SCRATCH_PREFIX!r}")
    path = Path(tempfile.mkdtemp(prefix=prefix))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def temp_root() -> Path:
    """The folder scratch folders are made in."""
    return Path(tempfile.gettempdir())


def is_locked(path: Path) -> bool:
    """True when a running envkit holds `path` (a scratch folder) through `scratch_dir`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing also drops the lock just taken
    return False


@contextmanager
def exclusive(lock_file: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (made when missing) for the block, waiting for its turn.

    While another process holds it, `on_wait` is called about every LOCK_POLL_S seconds (it may
    raise to give up, e.g. on Ctrl-C)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)


# --- the .envkit/ layout -----------------------------------------------------------------------------


def reports_dir() -> Path:
    """Where `envkit validate` writes its reports by default."""
    return STATE_ROOT / "reports"


def matrix_dir(matrix: str) -> Path:
    """The state folder of one matrix (its name is checked to be a safe folder name on load)."""
    return STATE_ROOT / matrix


def build_logs_dir(matrix: str) -> Path:
    return matrix_dir(matrix) / "logs"


def build_report_path(matrix: str) -> Path:
    return matrix_dir(matrix) / "build-report.json"


def promotion_record_path(matrix: str) -> Path:
    return matrix_dir(matrix) / "promotion.json"


def cell_lock_path(image_ref: str) -> Path:
    """The lock file that makes builds of the cell tagged `image_ref` take turns, whatever folder or
    --log-dir each runs with: in the temp folder, one per user, named by a hash of the tag (not
    `envkit-*`, so gc never takes it for a scratch folder)."""
    name = hashlib.sha256(image_ref.encode("utf-8")).hexdigest()[:32]
    return temp_root() / f".envkit-locks-{os.getuid()}" / f"{name}.lock"


def builds_record_path(root: Path | None = None) -> Path:
    """The record of every image id envkit built, one JSON object a line."""
    return (STATE_ROOT if root is None else root) / "state" / "builds.jsonl"


def record_build(image_id: str, cell: str, root: Path | None = None) -> None:
    """Note that envkit built `image_id` (for `cell`): gc may remove it once nothing names it."""
    path = builds_record_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"id": image_id, "cell": cell}, sort_keys=True) + "\n"
    with exclusive(path.with_suffix(".lock")), path.open("a", encoding="utf-8") as record:
        record.write(line)


def recorded_builds(root: Path | None = None) -> set[str]:
    """The image ids `record_build` noted; lines that are not a record are skipped."""
    path = builds_record_path(root)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    found = set()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            found.add(entry["id"])
    return found
