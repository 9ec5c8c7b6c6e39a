"""Garbage collection: what a killed or interrupted envkit left on the engine and on disk.

Three kinds of leftover, each recognised by what envkit itself recorded creating, never by a label
(labels are inherited by anything built FROM an envkit image, so they prove nothing about who made
a container or an image):
- validation containers: named `envkit-probe-<run id>` and labelled with that same run id when
  validate created them, in any state;
- dangling images envkit built: no tag and no digest, so nothing names them, and their id is in
  `.envkit/state/builds.jsonl` (the record build keeps; gc reads the one in the current folder);
- scratch folders `envkit-*` in the temp folder, older than an hour and not locked.

Never a tagged image, never an image the
engine refuses to delete (the parent of a tagged image, one a container uses). By default gc leaves
alone what a running envkit may still be using: running containers, and images and folders younger
than an hour; `everything` (`--all`) drops that guard. A folder locked by a running build is never
removed: `envkit.scratch.scratch_dir` holds that lock.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from envkit import labels as L
from envkit.engine import MANAGED_FILTER, Engine, EngineError, ImageInfo
from envkit.scratch import SCRATCH_PREFIX, is_locked, recorded_builds, temp_root

PROBE_NAME_PREFIX = "envkit-probe-"
_PROBE_NAME = re.compile(r"^/?envkit-probe-([0-9a-f]{16})$")
MIN_AGE_S = 3600.0
KINDS = ("container", "image", "scratch")
_CREATED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True, kw_only=True)
class Leftover:
    """One thing gc found: what it is, whether it goes, and why it stays when it stays."""

    kind: str  # one of KINDS
    ref: str  # container id, image id, or folder path
    detail: str
    keep_reason: str | None = None

    @property
    def removable(self) -> bool:
        return self.keep_reason is None


@dataclass(frozen=True, kw_only=True)
class Removal:
    """What happened to one removable leftover: removed, or the reason it could not be."""

    leftover: Leftover
    error: str | None = None


def find_leftovers(
    engine: Engine,
    *,
    everything: bool = False,
    now: float | None = None,
    temp_dir: Path | None = None,
    state_root: Path | None = None,
) -> list[Leftover]:
    """Every leftover gc knows about, containers first (removing them frees the images they use).

    `state_root` is the `.envkit` folder whose build record says which images envkit built.
    """
    now = time.time() if now is None else now
    folder = temp_root() if temp_dir is None else temp_dir
    return [
        *_containers(engine, everything),
        *_images(engine, everything, now, recorded_builds(state_root)),
        *_scratch_dirs(folder, everything, now),
    ]


def collect(engine: Engine, leftovers: list[Leftover]) -> list[Removal]:
    """Remove every removable leftover, in order; EngineUnavailable propagates, refusals are recorded."""
    return [_remove(engine, item) for item in leftovers if item.removable]


def _remove(engine: Engine, item: Leftover) -> Removal:
    try:
        if item.kind == "container":
            engine.remove_container(item.ref)
        elif item.kind == "image":
            return _remove_image(engine, item)
        else:
            shutil.rmtree(item.ref)
    except EngineError as error:
        return Removal(leftover=item, error=f"the engine refused: {error.message}")
    except OSError as error:
        return Removal(leftover=item, error=str(error))
    return Removal(leftover=item)


def _remove_image(engine: Engine, item: Leftover) -> Removal:
    # Looked up again: a build may have tagged it since it was listed. Without force, the engine
    # refuses the parent of another image and an image a container still uses.
    current = engine.image(item.ref)
    if current is not None and _named(current):
        return Removal(leftover=item, error=f"it was tagged meanwhile ({', '.join(current.tags)})")
    if current is not None:
        engine.remove_image(item.ref, force=False)
    return Removal(leftover=item)


# --- finding -----------------------------------------------------------------------------------------


def probe_container_name(run_id: str) -> str:
    """The name validate gives the container of run `run_id` (16 hex digits); gc takes only these."""
    name = PROBE_NAME_PREFIX + run_id
    if not _PROBE_NAME.match(name):
        raise ValueError(f"run id {run_id!r} must be 16 lower-case hex digits")
    return name


def _containers(engine: Engine, everything: bool) -> list[Leftover]:
    found = []
    for container in engine.containers_named(PROBE_NAME_PREFIX):
        match = _PROBE_NAME.match(container.name)
        # The name is set at create time and cannot be inherited; the run label must agree with it.
        if not match or container.labels.get(L.RUN) != match.group(1):
            continue
        keep = None
        if container.running and not everything:
            keep = "still running: an envkit validate may be using it (--all removes it)"
        state = "running" if container.running else "stopped"
        found.append(
            Leftover(
                kind="container", ref=container.id, detail=f"validation container ({state})", keep_reason=keep
            )
        )
    return found


def _images(engine: Engine, everything: bool, now: float, built: set[str]) -> list[Leftover]:
    found = []
    for image in engine.images(MANAGED_FILTER):
        if _named(image) or not _recorded(image.id, built):
            continue  # named, or not a build envkit recorded (a user's image FROM an envkit image)
        age = _age_s(image.created, now)
        keep = None
        if not everything and age is None:
            keep = f"its creation time {image.created!r} is unreadable (--all removes it)"
        elif not everything and age is not None and age < MIN_AGE_S:
            keep = "younger than an hour: a running build may still tag it (--all removes it)"
        found.append(
            Leftover(kind="image", ref=image.id, detail=_describe_image(image, age), keep_reason=keep)
        )
    return found


def _scratch_dirs(folder: Path, everything: bool, now: float) -> list[Leftover]:
    found = []
    for path in sorted(folder.glob(SCRATCH_PREFIX + "*")):
        try:
            stat = path.lstat()
        except OSError:
            continue  # removed meanwhile
        if not path.is_dir() or path.is_symlink() or stat.st_uid != os.getuid():
            continue  # another user's folders are theirs to clean
        age = now - stat.st_mtime
        keep = None
        if is_locked(path):
            keep = "in use by a running envkit"
        elif not everything and age < MIN_AGE_S:
            keep = "younger than an hour: a running envkit may still use it (--all removes it)"
        found.append(
            Leftover(
                kind="scratch", ref=str(path), detail=f"scratch folder, made {_ago(age)}", keep_reason=keep
            )
        )
    return found


def _recorded(image_id: str, built: set[str]) -> bool:
    """Whether the build record lists `image_id`: in full, or by the 12-digit short id a classic
    build prints for each stage."""
    return image_id in built or image_id.removeprefix("sha256:")[:12] in built


def _named(image: ImageInfo) -> bool:
    return bool(image.tags or image.digests)


def _age_s(created: str, now: float) -> float | None:
    """Seconds since an engine timestamp ("2024-05-01T10:00:00.123456789Z"), None when unreadable."""
    match = _CREATED.match(created.strip())
    if not match:
        return None
    stamp, fraction, zone = match.groups()
    text = f"{stamp}.{(fraction or '0')[:6]}{'+00:00' if zone == 'Z' else zone}"
    return now - datetime.fromisoformat(text).timestamp()


def _ago(age: float | None) -> str:
    if age is None:
        return "at an unknown time"
    if age < 120:
        return f"{max(age, 0):.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"


def _describe_image(image: ImageInfo, age: float | None) -> str:
    cell = image.labels.get(L.CELL)
    what = f"untagged build of cell {cell}" if cell else "untagged build"
    return f"{what}, {image.size / 1e6:.0f} MB, made {_ago(age)}"
