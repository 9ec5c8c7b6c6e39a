"""The registry as a layer cache for `build --push` / `--cache-from`, against fakes of envkit's engine
and registry interfaces: which cache images reach the engine, and how (BuildKit fetches the layers it
reuses; the classic builder needs the image pulled first). The measurement is in benchmarks/ (`ci`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_registry import FakeRegistry
from fakes import FakeEngine

from envkit.build import BuildSettings, PushTarget, build_contexts, explain
from envkit.cli import main
from envkit.commands._common import render_selected
from envkit.engine import BuildRequest, EngineInfo
from envkit.engine.buildkit import build_argv
from envkit.errors import UnsafeValueError
from envkit.matrix import load_matrix
from envkit.render import BuildContext, RenderOptions
from envkit.resolve import plan

MATRIX = """\
version: 1
name: cachy
image:
  repository: acme/pytorch
base: envkit-local/debian:bookworm
axes:
  torch: ["2.6.0"]
  cuda: [none]
  python: ["3.11"]
  os: [debian12]
  flavor: [cpu, devel]
"""
STAGE = "stage/acme/pytorch"


class PushingEngine(FakeEngine):
    """A push lands the image in the fake registry; `backend` is what info() reports."""

    def __init__(self, registry: FakeRegistry, backend: str = "docker") -> None:
        super().__init__()
        self.registry = registry
        self.backend = backend

    def info(self) -> EngineInfo:
        return EngineInfo(host=self.host, version="0.0-fake", api_version="1.41", backend=self.backend)

    def push(self, ref: str) -> str:
        super().push(ref)
        name, _, tag = ref.rpartition(":")
        image = self.image(ref)
        assert image is not None
        return self.registry.add_image(name.split("/", 1)[1], tag, layers=[image.id.encode()])


@pytest.fixture
def cells(tmp_path: Path) -> list[BuildContext]:
    path = tmp_path / "cachy.yaml"
    path.write_text(MATRIX)
    return render_selected(plan(load_matrix(path)), RenderOptions(), [])


def previous_build(registry: FakeRegistry, engine: FakeEngine, cell: BuildContext) -> str:
    """The registry's image under the cell tag from an earlier build (another content hash); the
    engine can pull it. Returns its ref."""
    registry.add_image(STAGE, cell.cell.tag, layers=[b"old layers"])
    ref = f"{registry.host}/{STAGE}:{cell.cell.tag}"
    engine.publish_remote(ref, engine.add_image("elsewhere/old:1"))
    return ref


def staged(cell: BuildContext, backend: str) -> tuple[PushingEngine, PushTarget, str]:
    """An engine of `backend`, a push target whose registry holds the cell's previous build, and that
    build's registry ref."""
    registry = FakeRegistry()
    engine = PushingEngine(registry, backend=backend)
    ref = previous_build(registry, engine, cell)
    return engine, PushTarget(registry=registry, repository=STAGE), ref


def settings(tmp_path: Path, push: PushTarget | None = None, **more: object) -> BuildSettings:
    return BuildSettings(jobs=1, log_dir=tmp_path / "logs", push=push, **more)  # type: ignore[arg-type]


def test_buildkit_reuses_the_cells_previous_image_in_the_registry_without_pulling_it(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    cell = cells[0]
    engine, push, ref = staged(cell, "buildkit")

    [result] = build_contexts("cachy.yaml", [cell], engine, settings(tmp_path, push)).results

    [request] = engine.builds
    assert request.cache_from == (ref,)
    assert request.inline_cache  # the pushed image carries cache metadata for the next runner
    assert engine.pulled == []  # BuildKit fetches only the layers it reuses, during the build
    assert result.cache_from == (ref,)
    assert "BuildKit pulls only the layers it reuses" in Path(str(result.log)).read_text()


def test_classic_builder_pulls_the_previous_image_first_and_drops_its_name_afterwards(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    cell = cells[0]
    engine, push, ref = staged(cell, "docker")

    [result] = build_contexts("cachy.yaml", [cell], engine, settings(tmp_path, push)).results

    assert engine.pulled == [ref]
    assert engine.builds[0].cache_from == (ref,)
    assert engine.image(ref) is None  # the registry name was only a handle for the cache
    assert result.status == "built"
    assert "each is pulled whole first" in Path(str(result.log)).read_text()


def test_a_cache_image_that_cannot_be_pulled_is_left_out_and_the_build_goes_on(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    cell = cells[0]
    engine, push, ref = staged(cell, "docker")
    engine.refuse_push(ref, "pull access denied")  # the fake refuses pulls of refs it refuses to push

    [result] = build_contexts("cachy.yaml", [cell], engine, settings(tmp_path, push)).results

    assert result.status == "built" and result.digest is not None
    assert engine.builds[0].cache_from == ()
    assert f"not using {ref} as a layer cache" in Path(str(result.log)).read_text()


def test_no_cache_source_without_push_or_cache_from(cells: list[BuildContext], tmp_path: Path) -> None:
    engine = FakeEngine()
    [result] = build_contexts("cachy.yaml", cells[:1], engine, settings(tmp_path)).results
    [request] = engine.builds
    assert (request.cache_from, request.inline_cache, result.cache_from) == ((), False, ())
    assert engine.pulled == []


def test_a_new_cell_has_no_cache_image_and_nothing_is_pulled(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    registry = FakeRegistry()
    engine = PushingEngine(registry)
    push = PushTarget(registry=registry, repository=STAGE)
    build_contexts("cachy.yaml", cells[:1], engine, settings(tmp_path, push))
    assert engine.builds[0].cache_from == ()
    assert engine.pulled == []


def test_explicit_cache_from_reaches_every_built_cell_but_not_with_no_cache(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    engine = PushingEngine(FakeRegistry(), backend="buildkit")
    extra = "reg.test:5000/team/base:cache"
    build_contexts("cachy.yaml", cells, engine, settings(tmp_path, cache_from=(extra,)))
    assert [b.cache_from for b in engine.builds] == [(extra,), (extra,)]
    assert not any(b.inline_cache for b in engine.builds)  # nothing is pushed: no cache metadata

    engine.builds.clear()
    build_contexts(
        "cachy.yaml", cells, engine, settings(tmp_path, cache_from=(extra,), no_cache=True, force=True)
    )
    assert [b.cache_from for b in engine.builds] == [(), ()]


def test_a_cell_the_registry_holds_stays_skipped_and_pulls_no_cache(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    registry = FakeRegistry()
    engine = PushingEngine(registry)
    cell = cells[0]
    previous_build(registry, engine, cell)
    registry.add_image(STAGE, cell.hash_tag)
    push = PushTarget(registry=registry, repository=STAGE)
    extra = ("reg.test:5000/team/base:cache",)

    [result] = build_contexts(
        "cachy.yaml", [cell], engine, settings(tmp_path, push, cache_from=extra)
    ).results

    assert result.label == "skipped (registry)"
    assert (engine.builds, engine.pulled) == ([], [])


@pytest.mark.parametrize(
    ("backend", "how"), [("buildkit", "BuildKit pulls only"), ("docker", "pulled whole")]
)
def test_dry_run_names_the_cache_images_and_how_they_are_fetched(
    cells: list[BuildContext], backend: str, how: str
) -> None:
    registry = FakeRegistry()
    engine = PushingEngine(registry, backend=backend)
    ref = previous_build(registry, engine, cells[0])
    push = PushTarget(registry=registry, repository=STAGE)

    decisions = explain(cells, engine, push=push)

    action, why = decisions[cells[0].cell.id]
    assert action == "build" and f"layer cache from {ref}" in why and how in why
    assert "layer cache" not in decisions[cells[1].cell.id][1]  # no earlier image of that cell
    assert engine.pulled == []  # a dry run pulls nothing
    assert "layer cache" not in explain(cells, engine, push=push, no_cache=True)[cells[0].cell.id][1]


def test_buildkit_argv_passes_cache_images_and_inline_cache(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    req = BuildRequest(context_dir=context, cache_from=("reg.test:5000/a/b:c",), inline_cache=True)
    argv = build_argv("docker", req, tmp_path / "iid")
    assert argv[argv.index("--cache-from") + 1] == "reg.test:5000/a/b:c"
    assert argv[argv.index("BUILDKIT_INLINE_CACHE=1") - 1] == "--build-arg"
    plain = build_argv("docker", BuildRequest(context_dir=context), tmp_path / "iid")
    assert "--cache-from" not in plain and "BUILDKIT_INLINE_CACHE=1" not in plain


@pytest.mark.parametrize("ref", ["--push", "reg.test/a b", "Reg.Test/UPPER:x", "a/b:c;rm -rf /"])
def test_buildkit_argv_refuses_a_cache_ref_that_is_not_an_image_reference(tmp_path: Path, ref: str) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(UnsafeValueError):
        build_argv("docker", BuildRequest(context_dir=context, cache_from=(ref,)), tmp_path / "iid")


def test_cli_refuses_a_bad_cache_from_with_exit_2_before_reaching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cachy.yaml"
    path.write_text(MATRIX)
    assert main(["build", str(path), "--cache-from=--not-a-ref"]) == 2
    assert "is not a valid image reference" in capsys.readouterr().err


def test_the_build_network_reaches_the_engine_only_when_asked(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    engine = FakeEngine()
    build_contexts("cachy.yaml", cells[:1], engine, settings(tmp_path, network="host"))
    build_contexts("cachy.yaml", cells[1:], engine, settings(tmp_path))
    assert [b.network_mode for b in engine.builds] == ["host", None]


class RecordingApi:
    """Stands in for docker-py's APIClient.build: records its arguments, reports a finished image."""

    def __init__(self) -> None:
        self.kwargs: dict[str, object] = {}

    def build(self, **kwargs: object) -> list[dict[str, object]]:
        self.kwargs = kwargs
        return [{"stream": "Successfully built 0123456789ab\n"}, {"aux": {"ID": "sha256:" + "a" * 64}}]


def test_docker_backend_hands_the_cache_images_to_the_classic_builder(tmp_path: Path) -> None:
    from envkit.engine.docker_sdk import DockerSdkEngine

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    engine, api = DockerSdkEngine(host="unix:///nonexistent.sock"), RecordingApi()
    engine._client = api  # type: ignore[assignment]
    ref = "reg.test:5000/a/b:c"
    engine.build(BuildRequest(context_dir=context, cache_from=(ref,), inline_cache=True), lambda line: None)
    assert api.kwargs["cache_from"] == [ref]
    assert "BUILDKIT_INLINE_CACHE" not in dict(api.kwargs["buildargs"])  # type: ignore[call-overload]
    engine.build(BuildRequest(context_dir=context), lambda line: None)
    assert api.kwargs["cache_from"] is None


@pytest.mark.parametrize("backend", ["docker", "buildkit"])
def test_a_classic_builder_with_the_cells_previous_build_at_hand_keeps_its_local_cache(
    cells: list[BuildContext], tmp_path: Path, backend: str
) -> None:
    # Given a cache image, the classic builder would ignore its local cache (the dependency stage of
    # the previous build among it); BuildKit combines both, so it still gets the registry's image.
    cell = cells[0]
    engine, push, ref = staged(cell, backend)
    engine.add_image(cell.cell.image, labels={"io.envkit.content-hash": "an older hash"})

    dry = explain([cell], engine, push=push)[cell.cell.id]
    [result] = build_contexts("cachy.yaml", [cell], engine, settings(tmp_path, push)).results

    log = Path(str(result.log)).read_text()
    if backend == "docker":
        assert result.cache_from == () and engine.builds[0].cache_from == () and engine.pulled == []
        assert "the classic builder uses its local cache" in log
        assert "layer cache" not in dry[1]
    else:
        assert result.cache_from == (ref,) and engine.builds[0].cache_from == (ref,)
        assert "the classic builder" not in log
        assert f"layer cache from {ref}" in dry[1]


def test_an_explicit_cache_from_stays_with_the_previous_build_at_hand(
    cells: list[BuildContext], tmp_path: Path
) -> None:
    cell = cells[0]
    engine, push, _ = staged(cell, "docker")
    engine.add_image(cell.cell.image, labels={"io.envkit.content-hash": "an older hash"})
    engine.add_image("team/cache:latest")

    given = settings(tmp_path, push, cache_from=("team/cache:latest",))
    [result] = build_contexts("cachy.yaml", [cell], engine, given).results
    assert result.cache_from == ("team/cache:latest",)
