"""envkit.scratch: scratch folders and their lock, per-cell build locks, the build record, and the
.envkit/ layout; and that the engine no longer imports gc."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envkit import scratch


def test_the_engine_and_build_do_not_import_gc() -> None:
    code = (
        "import sys, envkit.engine.buildkit, envkit.engine.docker_sdk, envkit.build, envkit.promote; "
        "print('envkit.gc' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_scratch_folder_is_locked_while_in_use_and_gone_after() -> None:
    with scratch.scratch_dir("envkit-test-") as folder:
        assert folder.name.startswith("envkit-test-") and scratch.is_locked(folder)
    assert not folder.exists()


def test_exclusive_waits_its_turn_and_may_give_up(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "cell.lock"
    lock.parent.mkdir()
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waits: list[int] = []

    def on_wait() -> None:
        waits.append(1)
        if len(waits) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), scratch.exclusive(lock, on_wait=on_wait):
        pass
    os.close(holder)  # released: the next taker gets it without waiting
    with scratch.exclusive(lock, on_wait=on_wait):
        pass
    assert len(waits) == 2


def test_the_build_record_keeps_ids_and_skips_lines_that_are_not_records(tmp_path: Path) -> None:
    root = tmp_path / ".envkit"
    scratch.record_build("sha256:" + "a" * 64, "cell-a", root)
    with scratch.builds_record_path(root).open("a") as record:
        record.write("not json\n[1, 2]\n")
    scratch.record_build("sha256:" + "b" * 64, "cell-b", root)
    assert scratch.recorded_builds(root) == {"sha256:" + "a" * 64, "sha256:" + "b" * 64}
    assert scratch.recorded_builds(tmp_path / "nowhere") == set()


def test_every_envkit_path_is_under_the_state_root() -> None:
    paths = [
        scratch.reports_dir(),
        scratch.build_logs_dir("m"),
        scratch.build_report_path("m"),
        scratch.promotion_record_path("m"),
        scratch.builds_record_path(),
    ]
    assert all(path.parts[0] == ".envkit" for path in paths)
    assert len(set(paths)) == len(paths)


def test_the_cell_lock_is_one_per_tag_outside_what_gc_takes() -> None:
    lock = scratch.cell_lock_path("acme/x:1")
    assert lock == scratch.cell_lock_path("acme/x:1") != scratch.cell_lock_path("acme/x:2")
    assert lock.parent.parent == scratch.temp_root() and not lock.parent.name.startswith(
        scratch.SCRATCH_PREFIX
    )
