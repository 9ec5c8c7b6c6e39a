"""FakeEngine must follow the Engine interface exactly, so higher-layer tests cannot drift from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from fakes import FakeEngine, ScriptedRun

from envkit.engine import BuildFailed, BuildRequest, ContainerSpec, Engine, EngineError
from envkit.errors import EngineUnavailable, RegistryError


@pytest.mark.parametrize("name", sorted(Engine.__abstractmethods__))
def test_fake_implements_every_abstract_method_with_the_same_signature(name: str) -> None:
    fake_method = getattr(FakeEngine, name)
    assert name not in getattr(FakeEngine, "__abstractmethods__", frozenset())
    assert inspect.signature(fake_method) == inspect.signature(getattr(Engine, name))


def test_fake_is_instantiable() -> None:
    assert isinstance(FakeEngine(), Engine)


def test_build_records_request_tags_image_and_adds_managed_label(tmp_path: Path) -> None:
    engine = FakeEngine()
    lines: list[str] = []
    req = BuildRequest(context_dir=tmp_path, tags=("a/b:1", "a/b:latest"), labels={"io.envkit.cell": "c1"})
    image_id = engine.build(req, lines.append)
    assert engine.builds == [req]
    assert lines
    info = engine.image("a/b:latest")
    assert info is not None and info.id == image_id
    assert info.tags == ("a/b:1", "a/b:latest")
    assert info.labels == {"io.envkit.cell": "c1", "io.envkit.managed": "true"}
    assert [i.id for i in engine.images("io.envkit.cell=c1")] == [image_id]
    assert engine.images("io.envkit.cell=other") == []


def test_scripted_build_failure_raises_with_log_tail(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.fail_build("x:1", log="E: Unable to locate package nope")
    with pytest.raises(BuildFailed) as caught:
        engine.build(BuildRequest(context_dir=tmp_path, tags=("x:1",)), lambda line: None)
    assert "Unable to locate package nope" in caught.value.log_tail
    assert caught.value.exit_code == 1


def test_scripted_run_outputs_status_and_hook_see_put_files() -> None:
    engine = FakeEngine()
    engine.add_image("img:1")

    def probe(container) -> None:
        container.files["/out/echo"] = container.files["/in/arg"].upper()

    engine.script_run("img:1", ScriptedRun(exit_code=137, oom_killed=True, logs="killed\n", on_wait=probe))
    cid = engine.create(ContainerSpec(image="img:1", command=("python3", "-m", "probe")))
    engine.put_files(cid, "/in", {"arg": b"hi"})
    engine.start(cid)
    status = engine.wait(cid, timeout_s=5)
    assert (status.code, status.oom_killed, status.timed_out) == (137, True, False)
    assert engine.get_file(cid, "/out/echo") == b"HI"
    assert engine.get_file(cid, "/out/missing") is None
    assert engine.logs(cid) == "killed\n"
    assert engine.containers("io.envkit.managed=true") == [cid]
    engine.remove_container(cid)
    engine.remove_container(cid)
    assert engine.containers("io.envkit.managed=true") == []
    assert engine.removed_containers == [cid]


def test_remove_image_drops_one_tag_then_the_image() -> None:
    engine = FakeEngine()
    image_id = engine.add_image("x:1")
    engine.tag(image_id, "x:2")
    engine.remove_image("x:1")
    assert engine.image("x:1") is None
    assert engine.image("x:2") is not None
    engine.remove_image("x:2")
    assert engine.image(image_id) is None
    engine.remove_image("x:2")  # idempotent


def test_push_refusal_and_engine_down() -> None:
    engine = FakeEngine()
    engine.add_image("reg/x:1")
    assert engine.push("reg/x:1").startswith("sha256:")
    engine.refuse_push("reg/x:1")
    with pytest.raises(RegistryError):
        engine.push("reg/x:1")
    engine.go_down()
    with pytest.raises(EngineUnavailable):
        engine.info()


def test_create_from_unknown_image_is_an_engine_error() -> None:
    with pytest.raises(EngineError):
        FakeEngine().create(ContainerSpec(image="nope:1"))
