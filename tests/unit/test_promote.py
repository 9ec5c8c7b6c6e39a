"""`envkit promote` against a fake engine: all or nothing, images before verdicts, honest partial records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes import FakeEngine

from envkit.cli import main
from envkit.engine import BuildRequest
from envkit.errors import RegistryError, UsageError
from envkit.matrix import load_matrix
from envkit.policy import load_policy
from envkit.promote import Context, PromotionIncomplete, assess, publish, registry_root, targets
from envkit.render import cell_labels
from envkit.report import dump_report, load_reports, report_from_dict
from envkit.resolve import Cell, plan

REGISTRY = "127.0.0.1:5999/ml"
MATRIX = """\
version: 1
name: promo
image:
  repository: acme/pytorch
  registry: 10.0.0.7
base: envkit-local/debian:bookworm
torch_source: wheelhouse
axes:
  torch: ["2.13.0"]
  cuda: [none]
  python: ["3.11"]
  os: [debian12]
  flavor: [cpu, devel]
"""
POLICY = """\
version: 1
require:
  env.torch: [PASS]
"""


class RecordingEngine(FakeEngine):
    """Keeps every push in call order and reads each build's verdict.json before the context goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.push_calls: list[str] = []
        self.contexts: list[dict[str, str]] = []

    def push(self, ref: str) -> str:
        self.push_calls.append(ref)
        return super().push(ref)

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        self.contexts.append({p.name: p.read_text() for p in req.context_dir.iterdir()})
        return super().build(req, on_line)


@dataclass
class Setup:
    engine: RecordingEngine
    matrix: Path
    reports: Path
    policy: Path
    record: Path
    cells: tuple[Cell, ...]
    image_ids: dict[str, str]

    def argv(self, *extra: str) -> list[str]:
        return [
            "promote",
            str(self.matrix),
            "--registry",
            REGISTRY,
            "--reports",
            str(self.reports),
            "--policy",
            str(self.policy),
            "--record",
            str(self.record),
            *extra,
        ]

    def ref(self, cell: Cell, tag: str | None = None) -> str:
        return f"{REGISTRY}/acme/pytorch:{tag or cell.tag}"


def content_hash(cell: Cell) -> str:
    return hashlib.sha256(cell.id.encode()).hexdigest()


def add_cell_image(engine: FakeEngine, cell: Cell, **label_changes: str) -> str:
    labels = {**cell_labels(cell, "promo.yaml", {}), "io.envkit.content-hash": content_hash(cell)}
    labels.update(label_changes)
    return engine.add_image(cell.image, labels)


def write_report(
    folder: Path, cell: Cell, image_id: str | None, status: str = "PASS", name: str = ""
) -> Path:
    check = {"id": "env.torch", "status": status, "summary": f"torch 2.13.0 ({status})", "duration_s": 0.1}
    data = {
        "schema": "envkit.report/1",
        "envkit_version": "0.1.0",
        "created": "2025-01-01T00:00:00Z",
        "profile": "quick",
        "mode": "container",
        "image": {"ref": cell.image, "id": image_id, "labels": {"io.envkit.cell": cell.id}},
        "host": {"hostname": "ci", "platform": "linux", "python": "3.11", "gpus": []},
        "checks": [check],
        "runner": None,
    }
    path = folder / f"{name or cell.id}.json"
    path.write_text(dump_report(report_from_dict(data)))
    return path


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    matrix = tmp_path / "promo.yaml"
    matrix.write_text(MATRIX)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    reports = tmp_path / "reports"
    reports.mkdir()
    engine = RecordingEngine()
    cells = plan(load_matrix(matrix)).cells
    assert len(cells) == 2
    image_ids = {}
    for cell in cells:
        image_ids[cell.id] = add_cell_image(engine, cell)
        write_report(reports, cell, image_ids[cell.id])
    monkeypatch.setattr("envkit.commands.promote.get_engine", lambda backend="docker": engine)
    return Setup(
        engine=engine,
        matrix=matrix,
        reports=reports,
        policy=policy,
        record=tmp_path / "rec.json",
        cells=cells,
        image_ids=image_ids,
    )


def registry_refs_left(setup: Setup) -> list[str]:
    return [ref for ref in setup.engine.refs if ref.startswith(REGISTRY)]


def test_all_pass_pushes_every_image_before_any_verdict(setup: Setup) -> None:
    a, b = setup.cells
    assert main(setup.argv()) == 0
    hash_a, hash_b = (f"content-{content_hash(c)[:16]}" for c in (a, b))
    assert setup.engine.push_calls == [
        setup.ref(a),
        setup.ref(a, hash_a),
        setup.ref(b),
        setup.ref(b, hash_b),
        setup.ref(a, f"{a.tag}.verdict"),
        setup.ref(b, f"{b.tag}.verdict"),
    ]
    assert not any("10.0.0.7" in ref for ref in setup.engine.push_calls), "the matrix's registry is replaced"


def test_verdict_companion_names_the_pushed_digest(setup: Setup) -> None:
    a, b = setup.cells
    assert main(setup.argv()) == 0
    assert [req.tags for req in setup.engine.builds] == [(setup.ref(c, f"{c.tag}.verdict"),) for c in (a, b)]
    for cell, req, context in zip((a, b), setup.engine.builds, setup.engine.contexts, strict=True):
        digest = setup.engine.pushed[setup.ref(cell)]
        assert req.labels["io.envkit.verdict"] == "pass"
        assert req.labels["io.envkit.verdict.subject"] == digest
        assert req.labels["io.envkit.verdict.cell"] == cell.id
        assert context["Dockerfile"].startswith("FROM scratch\n")
        verdict = json.loads(context["verdict.json"])
        assert verdict["verdict"] == "pass"
        assert verdict["subject"] == {
            "name": f"{REGISTRY}/acme/pytorch",
            "tag": cell.tag,
            "digest": digest,
            "image_id": setup.image_ids[cell.id],
        }
        assert verdict["reports"][0]["file"] == f"{cell.id}.json"
        assert verdict["reports"][0]["checks"][0]["status"] == "PASS"
        assert verdict["reports"][0]["findings"]["fail"] == 0


def test_record_lists_every_cell_and_local_registry_tags_are_removed(setup: Setup) -> None:
    assert main(setup.argv()) == 0
    record = json.loads(setup.record.read_text())
    assert record["schema"] == "envkit.promotion/1"
    assert record["registry"] == REGISTRY and record["complete"] is True and record["error"] is None
    assert record["envkit_version"] and record["created"].endswith("Z")
    for cell, row in zip(setup.cells, record["cells"], strict=True):
        digest = setup.engine.pushed[setup.ref(cell)]
        assert row["cell"] == cell.id
        assert row["source_image_id"] == setup.image_ids[cell.id]
        assert row["digest"] == digest
        assert row["refs"] == [
            setup.ref(cell),
            setup.ref(cell, f"content-{content_hash(cell)[:16]}"),
            setup.ref(cell, f"{cell.tag}.verdict"),
        ]
        assert row["verdict"] == "pass"
        assert row["verdict_digest"] == setup.engine.pushed[setup.ref(cell, f"{cell.tag}.verdict")]
        assert row["reports"] == [str(setup.reports / f"{cell.id}.json")]
    assert registry_refs_left(setup) == []
    assert all(setup.engine.image(cell.image) for cell in setup.cells), "the cell images themselves stay"


def test_default_record_goes_under_dot_envkit(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = setup.argv()
    argv = argv[: argv.index("--record")]
    assert main(argv) == 0
    assert json.loads((tmp_path / ".envkit" / "promo" / "promotion.json").read_text())["complete"] is True


def _fail_b(setup: Setup) -> str:
    b = setup.cells[1]
    write_report(setup.reports, b, setup.image_ids[b.id], status="FAIL")
    return f"failed gate: {b.id}: gate failed ({b.id}.json): env.torch"


def _no_report_b(setup: Setup) -> str:
    (setup.reports / f"{setup.cells[1].id}.json").unlink()
    return f"no report with io.envkit.cell={setup.cells[1].id}"


def _stale_b(setup: Setup) -> str:
    b = setup.cells[1]
    write_report(setup.reports, b, "sha256:" + "0" * 64)
    return (
        f"stale: {b.id}.json validated image 000000000000, but the local image is "
        f"{setup.image_ids[b.id].removeprefix('sha256:')[:12]}"
    )


def _unbuilt_b(setup: Setup) -> str:
    setup.engine.remove_image(setup.cells[1].image, force=True)
    return f"no local image {setup.cells[1].image}"


def _foreign_b(setup: Setup) -> str:
    b = setup.cells[1]
    setup.engine.remove_image(b.image, force=True)
    add_cell_image(setup.engine, b, **{"io.envkit.cell": "someone-else"})
    return "carries io.envkit.cell=someone-else"


@pytest.mark.parametrize("break_b", [_fail_b, _no_report_b, _stale_b, _unbuilt_b, _foreign_b])
def test_one_cell_not_ready_pushes_nothing_and_names_why(
    setup: Setup, break_b: Callable[[Setup], str], capsys: pytest.CaptureFixture[str]
) -> None:
    why = break_b(setup)
    assert main(setup.argv()) == 1
    out = capsys.readouterr().out
    assert why in out
    assert setup.cells[0].id in out and "passed:" in out, "the ready cell is listed too"
    assert "nothing was pushed" in out
    assert setup.engine.push_calls == [] and setup.engine.builds == []
    assert registry_refs_left(setup) == []
    assert not setup.record.exists()


def test_a_stale_report_beside_a_current_one_does_not_count(setup: Setup) -> None:
    b = setup.cells[1]
    write_report(setup.reports, b, "sha256:" + "0" * 64, status="FAIL", name="old-build")
    assert main(setup.argv()) == 0


def test_every_current_report_of_a_cell_must_pass(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    b = setup.cells[1]
    write_report(setup.reports, b, setup.image_ids[b.id], status="FAIL", name="second-gpu")
    assert main(setup.argv()) == 1
    assert f"failed gate: {b.id}: gate failed (second-gpu.json): env.torch" in capsys.readouterr().out


def test_push_refused_midway_stops_reports_what_was_pushed_and_exits_3(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = setup.cells
    setup.engine.refuse_push(setup.ref(b), "denied: quota exceeded")
    assert main(setup.argv()) == 3
    err = capsys.readouterr().err
    hash_a = setup.ref(a, f"content-{content_hash(a)[:16]}")
    assert "denied: quota exceeded" in err
    assert f"  {setup.ref(a)}\n  {hash_a}" in err
    assert "cannot take a push back" in err
    assert setup.engine.builds == [], "no verdict is built for an incomplete set"
    record = json.loads(setup.record.read_text())
    assert record["complete"] is False and "quota exceeded" in record["error"]
    assert "cannot take a push back" in record["note"]
    assert [row["refs"] for row in record["cells"]] == [[setup.ref(a), hash_a], []]
    assert [row["verdict_digest"] for row in record["cells"]] == [None, None]
    assert registry_refs_left(setup) == []


def test_verdict_push_refused_records_which_verdicts_went_out(setup: Setup) -> None:
    b = setup.cells[1]
    setup.engine.refuse_push(setup.ref(b, f"{b.tag}.verdict"), "denied")
    assert main(setup.argv()) == 3
    record = json.loads(setup.record.read_text())
    assert [row["verdict_digest"] is not None for row in record["cells"]] == [True, False]
    assert record["cells"][1]["digest"] == setup.engine.pushed[setup.ref(b)]
    assert registry_refs_left(setup) == [], "verdict images are removed locally too"


def test_publish_raises_a_registry_error_carrying_the_partial_promotion(setup: Setup) -> None:
    the_plan = plan(load_matrix(setup.matrix))
    candidates = assess(the_plan, setup.engine, load_reports([setup.reports]), load_policy(setup.policy))
    chosen = targets(candidates, REGISTRY, "acme/pytorch")
    setup.engine.refuse_push(chosen[0].tag_ref, "denied")
    with pytest.raises(PromotionIncomplete) as caught:
        publish(chosen, setup.engine, Context(registry=REGISTRY, matrix="m", policy="p"), on_step=print)
    assert isinstance(caught.value, RegistryError) and caught.value.exit_code == 3
    assert caught.value.promotion.pushed == ()
    assert "nothing was pushed to 127.0.0.1:5999/ml" in caught.value.message
    assert caught.value.hint is None, "nothing pushed: no un-push note"


def test_dry_run_pushes_and_tags_nothing(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = setup.cells
    assert main(setup.argv("--dry-run")) == 0
    out = capsys.readouterr().out
    assert setup.engine.push_calls == [] and setup.engine.builds == []
    assert registry_refs_left(setup) == []
    assert not setup.record.exists()
    lines = [line.split(". ", 1)[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert lines[-2:] == [setup.ref(a, f"{a.tag}.verdict"), setup.ref(b, f"{b.tag}.verdict")]
    assert lines[0] == setup.ref(a) and len(lines) == 6
    assert "ready" in out and "passed:" in out


def test_dry_run_of_a_matrix_that_is_not_ready_exits_1(setup: Setup) -> None:
    _fail_b(setup)
    assert main(setup.argv("--dry-run")) == 1
    assert setup.engine.push_calls == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:5000/ml/", "127.0.0.1:5000/ml"),
        ("localhost", "localhost"),
        ("registry.internal/team/sub", "registry.internal/team/sub"),
    ],
)
def test_registry_root_accepts_host_port_prefix(given: str, expected: str) -> None:
    assert registry_root(given) == expected


@pytest.mark.parametrize("given", ["acme", "acme/ml", "http://127.0.0.1:5000", "127.0.0.1:5000/ML", "a b:1"])
def test_registry_root_refuses_what_is_not_a_registry_host(given: str) -> None:
    with pytest.raises(UsageError):
        registry_root(given)


def test_bad_registry_is_a_usage_error_before_the_engine_is_asked(setup: Setup) -> None:
    setup.engine.go_down()
    argv = setup.argv()
    argv[argv.index(REGISTRY)] = "acme"
    assert main(argv) == 2


def test_unreachable_engine_exits_3(setup: Setup) -> None:
    setup.engine.go_down()
    assert main(setup.argv()) == 3


def test_a_registry_name_that_already_pointed_at_the_image_is_left_alone(setup: Setup) -> None:
    a = setup.cells[0]
    setup.engine.tag(setup.image_ids[a.id], setup.ref(a))
    assert main(setup.argv()) == 0
    assert registry_refs_left(setup) == [setup.ref(a)]
