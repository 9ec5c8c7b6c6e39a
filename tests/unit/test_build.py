"""The build scheduler against a fake engine: skip-if-unchanged, failures, tagging discipline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cells import cell
from fakes import FakeEngine

from envkit.build import BuildInterrupted, BuildSettings, build_contexts, decide
from envkit.engine import BuildFailed, BuildRequest
from envkit.render import RenderOptions, render_cell


class CellFailingEngine(FakeEngine):
    """Fails the build of the cells named, by their io.envkit.cell label (builds are untagged)."""

    def __init__(self, failing: set[str] = frozenset(), die_on: str | None = None) -> None:
        super().__init__()
        self.failing = failing
        self.die_on = die_on
        self.seen_tags_at_build: list[tuple[str, ...]] = []

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        name = req.labels.get("io.envkit.cell", "")
        self.seen_tags_at_build.append(req.tags)
        if name == self.die_on:
            self.go_down("engine died")
        if name in self.failing:
            on_line("E: Unable to locate package nope")
            raise BuildFailed(
                "build failed: step 3 returned 100", log_tail="E: Unable to locate package nope"
            )
        return super().build(req, on_line)


def contexts(*ids: str, packages: tuple[str, ...] = ()):
    return [render_cell(cell(id=i, packages=packages), "m.yaml", {}, RenderOptions()) for i in ids]


@pytest.fixture
def settings(tmp_path: Path) -> BuildSettings:
    return BuildSettings(jobs=2, log_dir=tmp_path / "logs")


def test_builds_untagged_then_tags_cell_and_hash(settings: BuildSettings) -> None:
    engine = CellFailingEngine()
    [ctx] = contexts("a")
    report = build_contexts("m.yaml", [ctx], engine, settings)
    assert [r.status for r in report.results] == ["built"]
    assert engine.seen_tags_at_build == [()]
    image = engine.image(ctx.cell.image)
    assert image is not None and image.labels["io.envkit.content-hash"] == ctx.content_hash
    assert engine.image(ctx.tags[1]).id == image.id
    assert Path(report.results[0].log).read_text().startswith("Step 1/1")
    assert report.would_push == ctx.tags


def test_unchanged_cells_are_skipped_and_a_changed_cell_rebuilds_alone(settings: BuildSettings) -> None:
    engine = CellFailingEngine()
    first = contexts("a", "b")
    build_contexts("m.yaml", first, engine, settings)
    assert len(engine.builds) == 2
    again = build_contexts("m.yaml", contexts("a", "b"), engine, settings)
    assert [r.status for r in again.results] == ["skipped", "skipped"]
    assert len(engine.builds) == 2
    changed = [contexts("a")[0], contexts("b", packages=("numpy==2.1.3",))[0]]
    assert decide(changed, engine) == {"a": "skip", "b": "build"}
    third = build_contexts("m.yaml", changed, engine, settings)
    assert [r.status for r in third.results] == ["skipped", "built"]
    assert len(engine.builds) == 3


def test_force_rebuilds(settings: BuildSettings) -> None:
    engine = CellFailingEngine()
    build_contexts("m.yaml", contexts("a"), engine, settings)
    forced = BuildSettings(jobs=1, log_dir=settings.log_dir, force=True)
    assert build_contexts("m.yaml", contexts("a"), engine, forced).results[0].status == "built"


def test_a_failing_cell_leaves_the_others_built_and_nothing_under_its_tag(settings: BuildSettings) -> None:
    engine = CellFailingEngine(failing={"bad"})
    ctxs = contexts("good", "bad", "also-good")
    report = build_contexts("m.yaml", ctxs, engine, settings)
    assert {r.cell: r.status for r in report.results} == {
        "good": "built",
        "bad": "failed",
        "also-good": "built",
    }
    assert engine.image(ctxs[1].cell.image) is None and engine.image(ctxs[1].tags[1]) is None
    bad = report.results[1]
    assert "Unable to locate package" in (bad.log_tail or "") and bad.error
    assert [r.cell for r in report.failed] == ["bad"]


def test_engine_death_raises_with_a_partial_report(settings: BuildSettings) -> None:
    engine = CellFailingEngine(die_on="b")
    one_at_a_time = BuildSettings(jobs=1, log_dir=settings.log_dir)
    with pytest.raises(BuildInterrupted) as info:
        build_contexts("m.yaml", contexts("a", "b", "c"), engine, one_at_a_time)
    statuses = {r.cell: r.status for r in info.value.report.results}
    assert statuses == {"a": "built", "b": "cancelled", "c": "cancelled"}
    assert info.value.exit_code == 3
    assert "rerun" in (info.value.hint or "")


def test_report_json_lists_every_cell(settings: BuildSettings) -> None:
    import json

    report = build_contexts("m.yaml", contexts("a"), CellFailingEngine(), settings)
    data = json.loads(report.to_json())
    assert data["schema"] == "envkit.build/1"
    [row] = data["cells"]
    assert {"cell", "image", "tags", "image_id", "size", "duration_s", "status", "log"} <= set(row)


def test_a_moved_base_image_rebuilds_the_cell(settings: BuildSettings) -> None:
    engine = CellFailingEngine()
    engine.add_image("debian:bookworm-slim", labels={"release": "12.7"})
    [ctx] = contexts("a")
    build_contexts("m.yaml", [ctx], engine, settings)
    built = engine.image(ctx.cell.image)
    assert built is not None and built.labels["io.envkit.base-id"] == engine.image("debian:bookworm-slim").id
    assert decide([ctx], engine) == {"a": "skip"}
    engine.add_image("debian:bookworm-slim", labels={"release": "12.8"})  # the tag now names a new image
    assert decide([ctx], engine) == {"a": "build"}
    again = build_contexts("m.yaml", [ctx], engine, settings)
    assert again.results[0].status == "built"
    assert decide([ctx], engine) == {"a": "skip"}


def test_a_base_that_is_not_local_does_not_force_a_build(settings: BuildSettings) -> None:
    engine = CellFailingEngine()
    [ctx] = contexts("a")
    build_contexts("m.yaml", [ctx], engine, settings)
    assert "io.envkit.base-id" not in engine.image(ctx.cell.image).labels
    assert decide([ctx], engine) == {"a": "skip"}


def test_cancel_does_not_wait_for_a_silent_build_and_its_late_image_is_discarded(tmp_path: Path) -> None:
    import threading
    import time

    from envkit.build import Cancelled, _cancellable_build

    release = threading.Event()

    class SilentEngine(FakeEngine):
        def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
            release.wait(30)  # a long quiet step: no log line to notice the cancel by
            return super().build(req, on_line)

    engine = SilentEngine()
    cancel = threading.Event()
    request = BuildRequest(context_dir=tmp_path, labels={"io.envkit.cell": "a"})
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(Cancelled):
        _cancellable_build(engine, request, lambda line: None, cancel)
    release.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (engine.builds and not engine.images_by_id):
        time.sleep(0.05)
    assert engine.builds and not engine.images_by_id, "the late, untagged image must be removed"
