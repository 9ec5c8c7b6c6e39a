"""build --push, registry-side promote and verify against fakes of envkit's own engine and registry
interfaces. The real-registry proofs are in tests/docker/test_registry_pipeline.py."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_registry import FakeRegistry
from fakes import FakeEngine

import envkit.commands.promote as promote_command
import envkit.commands.verify as verify_command
from envkit.build import BuildSettings, PushTarget, build_contexts, decide
from envkit.cli import main
from envkit.commands._common import render_selected
from envkit.matrix import load_matrix
from envkit.registry import Registry, RegistryRepository, RegistrySettings
from envkit.release import VERDICT_ARTIFACT_TYPE
from envkit.render import BuildContext, RenderOptions
from envkit.report import dump_report, report_from_dict
from envkit.resolve import plan

MATRIX = """\
version: 1
name: promo
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
POLICY = "version: 1\nrequire:\n  env.torch: [PASS]\n"
STAGE = "stage/acme/pytorch"
RELEASE = "release/acme/pytorch"


@pytest.mark.parametrize("name", sorted(Registry.__abstractmethods__))
def test_fake_registry_follows_the_interface(name: str) -> None:
    assert inspect.signature(getattr(FakeRegistry, name)) == inspect.signature(getattr(Registry, name))


class PushingEngine(FakeEngine):
    """A push lands the image in the fake registry, as a real engine's push lands it in a real one."""

    def __init__(self, registry: FakeRegistry) -> None:
        super().__init__()
        self.registry = registry

    def push(self, ref: str) -> str:
        super().push(ref)
        name, _, tag = ref.rpartition(":")
        image = self.image(ref)
        assert image is not None
        return self.registry.add_image(name.split("/", 1)[1], tag, layers=[image.id.encode()])


def contexts(matrix: Path) -> list[BuildContext]:
    return render_selected(plan(load_matrix(matrix)), RenderOptions(), [])


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    path = tmp_path / "promo.yaml"
    path.write_text(MATRIX)
    return path


# --- build --push ------------------------------------------------------------------------------------


def test_a_cell_whose_content_tag_is_in_the_registry_is_neither_pulled_nor_built(
    matrix: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    engine = PushingEngine(registry)
    cells = contexts(matrix)
    held = registry.add_image(STAGE, cells[0].hash_tag)
    push = PushTarget(registry=registry, repository=STAGE)
    settings = BuildSettings(jobs=1, log_dir=tmp_path / "logs", push=push)
    assert decide(cells, engine, push=push)[cells[0].cell.id] == "skip (registry)"

    report = build_contexts("promo.yaml", cells, engine, settings)

    first, second = report.results
    assert (first.label, first.digest, first.image_id) == ("skipped (registry)", held, None)
    assert registry.manifests[(STAGE, cells[0].cell.tag)].digest == held  # cell tag points at it
    assert second.status == "built" and second.digest is not None
    assert [b.labels["io.envkit.cell"] for b in engine.builds] == [cells[1].cell.id]
    assert engine.pulled == []
    assert json.loads(report.to_json())["cells"][0]["digest"] == held


def test_a_built_cell_is_pushed_under_its_content_tag_before_its_cell_tag(
    matrix: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    engine = PushingEngine(registry)
    [cell] = contexts(matrix)[:1]
    settings = BuildSettings(
        jobs=1, log_dir=tmp_path / "logs", push=PushTarget(registry=registry, repository=STAGE)
    )
    [result] = build_contexts("promo.yaml", [cell], engine, settings).results
    assert engine.pushed == {
        f"reg.test:5000/{STAGE}:{cell.hash_tag}": engine.pushed[f"reg.test:5000/{STAGE}:{cell.hash_tag}"]
    }  # only the content tag goes through the engine
    assert engine.image(f"reg.test:5000/{STAGE}:{cell.hash_tag}") is None  # no local registry name left
    assert engine.image(cell.cell.image) is not None
    puts = [ref for method, _, ref in registry.calls if method == "PUT"]
    assert puts == [cell.cell.tag]  # the cell tag is set registry-side, after the push
    assert result.pushed == (
        f"reg.test:5000/{STAGE}:{cell.hash_tag}",
        f"reg.test:5000/{STAGE}:{cell.cell.tag}",
    )


def test_a_registry_fault_during_the_build_is_exit_3(matrix: Path, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.writes_left = 0
    engine = PushingEngine(registry)
    cells = contexts(matrix)
    registry.add_image(STAGE, cells[0].hash_tag)
    settings = BuildSettings(
        jobs=1, log_dir=tmp_path / "logs", push=PushTarget(registry=registry, repository=STAGE)
    )
    from envkit.build import BuildInterrupted

    with pytest.raises(BuildInterrupted) as caught:
        build_contexts("promo.yaml", cells, engine, settings)
    assert caught.value.exit_code == 3 and "reg.test:5000" in caught.value.message


# --- registry-side promote ---------------------------------------------------------------------------


@dataclass
class Pipeline:
    registry: FakeRegistry
    matrix: Path
    reports: Path
    policy: Path
    record: Path
    digests: dict[str, str]

    def argv(self, *extra: str) -> list[str]:
        return [
            "promote",
            str(self.matrix),
            "--from",
            "reg.test:5000/stage",
            "--to",
            "reg.test:5000/release",
            "--reports",
            str(self.reports),
            "--policy",
            str(self.policy),
            "--record",
            str(self.record),
            *extra,
        ]


def write_report(folder: Path, cell_id: str, digest: str | None, status: str = "PASS") -> None:
    data = {
        "schema": "envkit.report/1",
        "envkit_version": "0.1.0",
        "created": "2025-01-01T00:00:00Z",
        "profile": "quick",
        "mode": "container",
        "image": {
            "ref": f"reg.test:5000/{STAGE}@{digest}",
            "id": "sha256:" + "1" * 64,
            "labels": {"io.envkit.cell": cell_id},
            **({"digest": digest} if digest else {}),
        },
        "host": {"hostname": "ci", "platform": "linux", "python": "3.11", "gpus": []},
        "checks": [{"id": "env.torch", "status": status, "summary": status, "duration_s": 0.1}],
        "runner": None,
    }
    (folder / f"{cell_id}.json").write_text(dump_report(report_from_dict(data)))


@pytest.fixture
def pipeline(matrix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    registry = FakeRegistry()
    monkeypatch.setattr(promote_command, "get_registry", lambda host, settings: registry)
    monkeypatch.setattr(verify_command, "get_registry", lambda host, settings: registry)
    reports = tmp_path / "reports"
    reports.mkdir()
    digests = {}
    for number, context in enumerate(contexts(matrix)):
        digest = registry.add_image(STAGE, context.hash_tag, layers=[b"base", f"layer{number}".encode()])
        registry.add_image(STAGE, context.cell.tag, layers=[b"base", f"layer{number}".encode()])
        write_report(reports, context.cell.id, digest)
        digests[context.cell.id] = digest
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return Pipeline(registry, matrix, reports, policy, tmp_path / "record.json", digests)


def mounted_digests(writes: list[tuple[str, str, str]]) -> set[str]:
    return {ref for method, _, ref in writes if method == "MOUNT"}


def release_tags(registry: FakeRegistry) -> set[str]:
    return {tag for tag in registry.tags(RELEASE) if not tag.startswith("sha256-")}


def test_promote_copies_by_digest_mounts_blobs_and_tags_last(pipeline: Pipeline) -> None:
    assert main(pipeline.argv()) == 0
    registry = pipeline.registry
    for cell_id, digest in pipeline.digests.items():
        assert registry.manifests[(RELEASE, cell_id)].digest == digest
    writes = registry.writes()
    first_tag = next(i for i, (method, _, ref) in enumerate(writes) if method == "PUT" and ":" not in ref)
    assert all(method != "PUT" or ref.startswith("sha256") for method, _, ref in writes[:first_tag])
    assert not [w for w in writes if w[0] == "UPLOAD" and w[1] == RELEASE and w[2] in mounted_digests(writes)]
    mounted = {ref for method, repo, ref in writes if method == "MOUNT"}
    assert len(mounted) == 4  # one config and two layers per image, the shared base layer once
    record = json.loads(pipeline.record.read_text())
    assert record["complete"] and {c["digest"] for c in record["cells"]} == set(pipeline.digests.values())


def test_one_cell_not_ready_tags_nothing_and_says_why_for_every_cell(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    cell_id = next(iter(pipeline.digests))
    write_report(pipeline.reports, cell_id, "sha256:" + "2" * 64)  # validated another build
    assert main(pipeline.argv()) == 1
    out = capsys.readouterr().out
    assert f"stale report: {cell_id}" in out
    assert pipeline.registry.writes() == []


def test_a_failing_report_of_the_digest_refuses_promotion(pipeline: Pipeline) -> None:
    cell_id, digest = next(iter(pipeline.digests.items()))
    write_report(pipeline.reports, cell_id, digest, status="FAIL")
    assert main(pipeline.argv()) == 1
    assert pipeline.registry.writes() == []


def test_a_cell_missing_from_staging_refuses_promotion(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    context = contexts(pipeline.matrix)[1]
    del pipeline.registry.manifests[(STAGE, context.hash_tag)]
    assert main(pipeline.argv()) == 1
    out = capsys.readouterr().out
    assert f"not built: {context.cell.id}: reg.test:5000/{STAGE}:{context.hash_tag} is not in staging" in out
    assert pipeline.registry.writes() == []


def test_a_fault_midway_leaves_no_tag_and_the_rerun_sends_only_what_is_missing(pipeline: Pipeline) -> None:
    registry = pipeline.registry
    registry.writes_left = 5  # dies while copying the second image
    assert main(pipeline.argv()) == 3
    assert release_tags(registry) == set()
    record = json.loads(pipeline.record.read_text())
    assert not record["complete"] and all(not cell["refs"] for cell in record["cells"])
    before = len(registry.writes())
    registry.writes_left = None
    assert main(pipeline.argv()) == 0
    again = registry.writes()[before:]
    sent_before = {ref for method, _, ref in registry.writes()[:before] if method in ("MOUNT", "UPLOAD")}
    assert not sent_before & {ref for method, _, ref in again if method in ("MOUNT", "UPLOAD")}
    assert release_tags(registry) >= set(pipeline.digests)


def test_a_dry_run_writes_nothing_and_lists_the_tags_last(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(pipeline.argv("--dry-run")) == 0
    assert pipeline.registry.writes() == []
    out = capsys.readouterr().out
    assert out.index("would copy by digest") < out.index("tag in this order")


def test_promote_needs_either_registry_or_from_and_to(pipeline: Pipeline) -> None:
    assert main(pipeline.argv("--registry", "reg.test:5000/x")) == 2
    argv = pipeline.argv()
    assert main(argv[: argv.index("--to")] + argv[argv.index("--to") + 2 :]) == 2


# --- verify ------------------------------------------------------------------------------------------


def test_verify_passes_only_for_the_promoted_digest(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(pipeline.argv()) == 0
    cell_id, digest = next(iter(pipeline.digests.items()))
    assert main(["verify", f"reg.test:5000/{RELEASE}@{digest}"]) == 0
    assert main(["verify", f"reg.test:5000/{RELEASE}:{cell_id}", "--policy", str(pipeline.policy)]) == 0
    assert f"verified: reg.test:5000/{RELEASE}@{digest}" in capsys.readouterr().out
    other = pipeline.registry.add_image(RELEASE, "unvetted", layers=[b"other"])
    assert main(["verify", f"reg.test:5000/{RELEASE}@{other}"]) == 1
    # A verdict stays in staging's sibling only: the staging digest has none attached in staging.
    assert main(["verify", f"reg.test:5000/{STAGE}@{digest}"]) == 1


def test_verify_with_another_policy_does_not_count_the_verdict(pipeline: Pipeline, tmp_path: Path) -> None:
    assert main(pipeline.argv()) == 0
    digest = next(iter(pipeline.digests.values()))
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(POLICY + "  env.python: [PASS]\n")
    assert main(["verify", f"reg.test:5000/{RELEASE}@{digest}", "--policy", str(stricter)]) == 1


def test_verdicts_use_the_referrers_api_when_the_registry_has_it(pipeline: Pipeline) -> None:
    pipeline.registry.referrers_api = True
    assert main(pipeline.argv()) == 0
    assert not [tag for tag in pipeline.registry.tags(RELEASE) if tag.startswith("sha256-")]
    digest = next(iter(pipeline.digests.values()))
    found = pipeline.registry.referrers(RELEASE, digest)
    assert found and found[0].artifact_type == VERDICT_ARTIFACT_TYPE
    assert main(["verify", f"reg.test:5000/{RELEASE}@{digest}"]) == 0


def test_registry_repository_names() -> None:
    place = RegistryRepository(registry=FakeRegistry("h:1"), repository="a/b")
    assert (place.ref("t"), place.digest_ref("sha256:x")) == ("h:1/a/b:t", "h:1/a/b@sha256:x")
    assert RegistrySettings().ca_bundle is None


# --- validate by digest ------------------------------------------------------------------------------


PROBE_RESULT = json.dumps({"checks": [{"id": "env.torch", "status": "PASS", "summary": "ok"}]}).encode()


def test_validate_pulls_a_digest_ref_and_the_report_records_that_digest() -> None:
    from fakes import ScriptedRun

    from envkit.validate import RunSettings, validate_image

    engine = FakeEngine()
    image_id = engine.add_image("local/leftover:x", {"io.envkit.cell": "a"})
    digest = "sha256:" + "ab" * 32
    ref = f"reg.test:5000/{STAGE}@{digest}"
    engine.publish_remote(ref, image_id)
    engine.script_run(image_id, ScriptedRun(outputs={"/tmp/envkit/out/result.json": PROBE_RESULT}))
    report = validate_image(engine, ref, RunSettings())
    assert engine.pulled == [ref]
    assert report.image is not None and (report.image.digest, report.image.ref) == (digest, ref)
    assert json.loads(dump_report(report))["image"]["digest"] == digest


def test_a_tag_ref_is_never_pulled_and_an_unpushed_image_has_no_digest() -> None:
    from envkit.errors import ConfigError
    from envkit.validate import RunSettings, validate_image

    engine = FakeEngine()
    with pytest.raises(ConfigError):
        validate_image(engine, "reg.test:5000/acme/app:1", RunSettings())
    assert engine.pulled == []
    engine.add_image("acme/app:1")
    report = validate_image(engine, "acme/app:1", RunSettings())
    assert report.image is not None and report.image.digest is None
    assert json.loads(dump_report(report))["image"]["digest"] is None  # schema 2 writes every key


def test_validate_matrix_registry_names_each_cell_by_the_digest_of_its_cell_tag(
    matrix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import envkit.commands.validate as validate_command

    registry = FakeRegistry()
    monkeypatch.setattr(validate_command, "get_registry", lambda host, settings: registry)
    cells = contexts(matrix)
    digest = registry.add_image(STAGE, cells[0].cell.tag)
    args = argparse.Namespace(registry_ca_bundle=None, insecure_registry=[])
    refs = validate_command.registry_targets(matrix, "reg.test:5000/stage", args)
    assert refs == [f"reg.test:5000/{STAGE}@{digest}", f"reg.test:5000/{STAGE}:{cells[1].cell.tag}"]
    assert main(["validate", "--registry", "reg.test:5000/stage", "x"]) == 2


def test_local_promote_matches_a_report_by_digest_before_image_id() -> None:
    from dataclasses import replace

    from envkit.engine import ImageInfo
    from envkit.promote import same_build
    from envkit.report import ReportImage

    digest = "sha256:" + "c" * 64
    image = ImageInfo(
        id="sha256:" + "1" * 64,
        tags=("a:1",),
        labels={},
        size=1,
        created="",
        digests=(f"reg.test:5000/a@{digest}",),
    )
    report = report_from_dict(json.loads(dump_report_text(digest)))
    assert same_build(report, image)
    other = replace(report, image=ReportImage(ref="x", id=image.id, digest="sha256:" + "d" * 64))
    assert not same_build(other, image)  # same local id, but it validated another registry digest
    local = replace(report, image=ReportImage(ref="x", id=image.id))
    assert same_build(local, replace(image, digests=()))


def dump_report_text(digest: str) -> str:
    data = {
        "schema": "envkit.report/1",
        "envkit_version": "0.1.0",
        "created": "2025-01-01T00:00:00Z",
        "profile": "quick",
        "mode": "container",
        "image": {"ref": "r", "id": "sha256:" + "2" * 64, "digest": digest, "labels": {}},
        "host": {"hostname": "ci", "platform": "linux", "python": "3.11", "gpus": []},
        "checks": [{"id": "env.torch", "status": "PASS", "summary": "ok", "duration_s": 0.1}],
        "runner": None,
    }
    return json.dumps(data)
