"""`envkit gc` against a fake engine and a temp folder: what goes, what stays, and why."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fakes import FakeEngine

from envkit import labels as L
from envkit.cli import main
from envkit.engine import ContainerSpec, EngineError, ImageInfo
from envkit.gc import MIN_AGE_S, collect, find_leftovers, probe_container_name
from envkit.scratch import record_build, scratch_dir

NOW = 1_900_000_000.0
OLD = "2024-01-01T00:00:00.123456789Z"
VALIDATE = {"io.envkit.role": "validate", "io.envkit.image": "acme/x:1"}


class RefusingEngine(FakeEngine):
    """Refuses to remove the images named, as Docker refuses the parent of a tagged image."""

    def __init__(self, refuse: dict[str, str]) -> None:
        super().__init__()
        self.refuse = refuse

    def remove_image(self, ref: str, force: bool = False) -> None:
        if ref in self.refuse and not force:
            raise EngineError(f"the Docker engine refused removing image {ref}: {self.refuse[ref]}")
        super().remove_image(ref, force)


def put_image(
    engine: FakeEngine,
    name: str,
    *,
    created: str = OLD,
    tags: tuple[str, ...] = (),
    digests: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
    recorded: bool = True,
) -> str:
    """An image on the fake engine; `recorded`: envkit's build record (in the current folder) lists it."""
    image_id = f"sha256:{name:0>64}"
    if recorded:
        record_build(image_id, "test-cell")
    engine.images_by_id[image_id] = ImageInfo(
        id=image_id,
        tags=tags,
        labels={"io.envkit.managed": "true"} if labels is None else labels,
        size=10**9,
        created=created,
        digests=digests,
    )
    for tag in tags:
        engine.refs[tag] = image_id
    return image_id


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build record lives in .envkit/ of the current folder: one per test."""
    monkeypatch.chdir(tmp_path)


def container(
    engine: FakeEngine, labels: dict[str, str], state: str, *, ours: bool = True, image: str = "acme/x:1"
) -> str:
    """A container; `ours`: named and labelled with a run id as validate creates them."""
    if engine.image(image) is None:
        engine.add_image(image)
    name = None
    if ours:
        run_id = os.urandom(8).hex()
        name, labels = probe_container_name(run_id), {**labels, L.RUN: run_id}
    cid = engine.create(ContainerSpec(image=image, labels=labels, name=name))
    if state in ("running", "exited"):
        engine.start(cid)
    if state == "exited":
        engine.wait(cid, 10)
    return cid


def scratch(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.mkdir()
    (path / "Dockerfile").write_text("FROM scratch\n")
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def by_ref(leftovers: list) -> dict[str, object]:
    return {item.ref: item for item in leftovers}


def test_validation_containers_go_in_any_state_but_running_ones_only_with_all(tmp_path: Path) -> None:
    engine = FakeEngine()
    created, exited = container(engine, VALIDATE, "created"), container(engine, VALIDATE, "exited")
    running = container(engine, VALIDATE, "running")
    other = container(engine, VALIDATE, "exited", ours=False)  # envkit's labels, but not made by envkit
    found = by_ref(find_leftovers(engine, now=NOW, temp_dir=tmp_path))
    assert set(found) == {created, exited, running}
    assert found[created].removable and found[exited].removable
    assert not found[running].removable and "--all" in found[running].keep_reason
    collect(engine, list(found.values()))
    assert set(engine.containers_by_id) == {running, other}
    leftovers = find_leftovers(engine, everything=True, now=NOW, temp_dir=tmp_path)
    collect(engine, leftovers)
    assert set(engine.containers_by_id) == {other}


def test_only_untagged_old_managed_images_go_never_a_tagged_base(tmp_path: Path) -> None:
    engine = FakeEngine()
    base = put_image(engine, "ba5e", tags=("envkit-local/debian:bookworm",))
    cell = put_image(engine, "ce11", tags=("acme/x:1", "acme/x:content-0123"))
    pulled = put_image(engine, "d16e57", digests=("acme/x@sha256:" + "1" * 64,))
    foreign = put_image(engine, "f0", labels={})
    stage = put_image(engine, "57a9e")
    unfinished = put_image(engine, "0ld", labels={"io.envkit.managed": "true", "io.envkit.cell": "c1"})
    young = put_image(engine, "y0un9", created=iso(MIN_AGE_S / 2))
    odd = put_image(engine, "0dd", created="yesterday")
    found = by_ref(find_leftovers(engine, now=NOW, temp_dir=tmp_path))
    assert set(found) == {stage, unfinished, young, odd}
    assert "cell c1" in found[unfinished].detail and "untagged build" in found[stage].detail
    assert not found[young].removable and "younger than an hour" in found[young].keep_reason
    assert not found[odd].removable and "unreadable" in found[odd].keep_reason
    outcomes = collect(engine, list(found.values()))
    assert [o.error for o in outcomes] == [None, None]
    assert set(engine.images_by_id) == {base, cell, pulled, foreign, young, odd}
    collect(engine, find_leftovers(engine, everything=True, now=NOW, temp_dir=tmp_path))
    assert set(engine.images_by_id) == {base, cell, pulled, foreign}


def test_an_image_the_engine_refuses_to_remove_is_reported_not_forced(tmp_path: Path) -> None:
    engine = RefusingEngine({})
    parent = put_image(engine, "9a4e47")
    engine.refuse[parent] = "conflict: image has dependent child images"
    [outcome] = collect(engine, find_leftovers(engine, now=NOW, temp_dir=tmp_path))
    assert outcome.error is not None and "dependent child images" in outcome.error
    assert parent in engine.images_by_id


def test_an_image_tagged_after_listing_is_left_alone(tmp_path: Path) -> None:
    engine = FakeEngine()
    image_id = put_image(engine, "1a7e")
    leftovers = find_leftovers(engine, now=NOW, temp_dir=tmp_path)
    engine.tag(image_id, "acme/x:1")  # a build finished and tagged it meanwhile
    [outcome] = collect(engine, leftovers)
    assert outcome.error is not None and "tagged meanwhile" in outcome.error
    assert engine.image("acme/x:1") is not None


def test_scratch_folders_old_unlocked_and_ours_go(tmp_path: Path) -> None:
    old = scratch(tmp_path, "envkit-2.13.0-cpu-abc", 2 * MIN_AGE_S)
    young = scratch(tmp_path, "envkit-probe-xyz", 60)
    unrelated = scratch(tmp_path, "pytest-of-someone", 2 * MIN_AGE_S)
    stray_file = tmp_path / "envkit-notes.txt"
    stray_file.write_text("not a folder")
    (tmp_path / "envkit-link").symlink_to(unrelated)
    found = by_ref(find_leftovers(FakeEngine(), now=NOW, temp_dir=tmp_path))
    assert set(found) == {str(old), str(young)}
    assert not found[str(young)].removable
    collect(FakeEngine(), list(found.values()))
    assert not old.exists() and young.exists() and unrelated.exists() and stray_file.exists()


def test_a_folder_locked_by_a_running_build_stays_even_with_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_dir("envkit-cell-") as busy:
        os.utime(busy, (NOW - 3 * MIN_AGE_S,) * 2)
        [item] = find_leftovers(FakeEngine(), everything=True, now=NOW)
        assert item.ref == str(busy) and item.keep_reason == "in use by a running envkit"
        assert collect(FakeEngine(), [item]) == []
        assert busy.is_dir()
    assert not busy.exists()  # scratch_dir cleans up after itself
    with pytest.raises(ValueError, match="must start with"), scratch_dir("other-"):
        pass


@pytest.fixture
def cli_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEngine:
    engine = FakeEngine()
    monkeypatch.setattr("envkit.commands.gc.get_engine", lambda: engine)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return engine


def test_cli_dry_run_lists_and_removes_nothing(
    cli_engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    stage = put_image(cli_engine, "57a9e")
    cid = container(cli_engine, VALIDATE, "exited")
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and cid[:12] in out and stage.removeprefix("sha256:")[:12] in out
    assert cid in cli_engine.containers_by_id and stage in cli_engine.images_by_id


def test_cli_removes_and_reports(cli_engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    stage = put_image(cli_engine, "57a9e")
    running = container(cli_engine, VALIDATE, "running")
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "1 removed, 0 failed" in out
    assert stage not in cli_engine.images_by_id and running in cli_engine.containers_by_id
    assert main(["gc", "--all"]) == 0
    assert running not in cli_engine.containers_by_id


def test_cli_exit_1_when_something_could_not_be_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = RefusingEngine({})
    engine.refuse[put_image(engine, "9a4e47")] = "conflict: image is being used by a container"
    monkeypatch.setattr("envkit.commands.gc.get_engine", lambda: engine)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["gc"]) == 1
    assert "could not remove" in capsys.readouterr().out


def test_cli_unreachable_engine_is_exit_3(cli_engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    cli_engine.go_down()
    assert main(["gc"]) == 3
    err = capsys.readouterr().err
    assert "fake://engine" in err and "Traceback" not in err


def test_ages_come_from_the_engine_timestamp_with_nanoseconds(tmp_path: Path) -> None:
    engine = FakeEngine()
    put_image(engine, "a", created="2030-03-17T17:46:40.999999999Z")  # 1_900_000_000 + 0.99 s
    put_image(engine, "b", created="2030-03-17T18:46:40+01:00")
    assert [item.removable for item in find_leftovers(engine, now=NOW + 10, temp_dir=tmp_path)] == [
        False,
        False,
    ]
    assert [
        item.removable for item in find_leftovers(engine, now=NOW + MIN_AGE_S + 2, temp_dir=tmp_path)
    ] == [True, True]


def test_a_users_container_from_an_image_with_envkit_labels_survives_gc_all(tmp_path: Path) -> None:
    engine = FakeEngine()
    # An image built FROM an envkit image inherits every io.envkit.* label, role and run id included.
    engine.add_image("user/app:1", labels={**VALIDATE, L.MANAGED: "true", L.RUN: "0" * 16})
    users = container(engine, {}, "running", ours=False, image="user/app:1")
    mimic = engine.create(ContainerSpec(image="user/app:1", name=probe_container_name("1" * 16)))
    ours = container(engine, VALIDATE, "exited", image="user/app:1")
    found = by_ref(find_leftovers(engine, everything=True, now=NOW, temp_dir=tmp_path))
    assert set(found) == {ours}  # the mimic's run label (inherited) does not match its name
    collect(engine, list(found.values()))
    assert set(engine.containers_by_id) == {users, mimic}


def test_a_users_untagged_image_built_from_an_envkit_image_survives_gc_all(tmp_path: Path) -> None:
    engine = FakeEngine()
    inherited = {L.MANAGED: "true", L.CELL: "c1", L.CONTENT_HASH: "0" * 64}
    users = put_image(engine, "05e5", labels=inherited, recorded=False)
    ours = put_image(engine, "0u5", labels=inherited)
    found = by_ref(find_leftovers(engine, everything=True, now=NOW, temp_dir=tmp_path))
    assert set(found) == {ours}
    collect(engine, list(found.values()))
    assert users in engine.images_by_id and ours not in engine.images_by_id


def test_stage_images_a_classic_build_printed_are_recorded_and_go_but_not_its_base(tmp_path: Path) -> None:
    from collections.abc import Callable

    from cells import cell

    from envkit.build import BuildSettings, build_contexts
    from envkit.engine import BuildRequest
    from envkit.render import RenderOptions, render_cell

    base = put_image(engine := FakeEngine(), "ba5e" * 16, recorded=False)
    stage = put_image(engine, "57a9" * 16, recorded=False)

    class Classic(FakeEngine):
        def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
            for line in (
                "Step 1/3 : FROM envkit-local/debian:bookworm AS builder",
                f" ---> {base[7:19]}",
                "Step 2/3 : RUN python3 -m venv /opt/venv",
                " ---> Running in 0123456789ab",
                f" ---> {stage[7:19]}",
                "Step 3/3 : FROM envkit-local/debian:bookworm",
                f" ---> {base[7:19]}",
            ):
                on_line(line)
            return super().build(req, on_line)

    builder = Classic()
    context = render_cell(cell(id="a"), "m.yaml", {}, RenderOptions())
    settings = BuildSettings(log_dir=tmp_path / "logs", state_root=tmp_path / ".envkit")
    [result] = build_contexts("m.yaml", [context], builder, settings).results
    found = by_ref(find_leftovers(engine, everything=True, now=NOW, temp_dir=tmp_path))
    assert set(found) == {stage}  # the base (its id followed a FROM) is not envkit's
    assert result.image_id is not None
