"""Build-time OCI labels: created (SOURCE_DATE_EPOCH or now), revision and source from git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from envkit.provenance import CREATED, REVISION, SOURCE, build_labels, created

GIT = shutil.which("git")


def test_source_date_epoch_fixes_created() -> None:
    assert created({"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20Z"
    assert created({"SOURCE_DATE_EPOCH": "not a number"}).endswith("Z")


def test_no_git_checkout_means_no_git_labels(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("x")
    labels = build_labels(str(matrix), {"SOURCE_DATE_EPOCH": "0"})
    assert labels == {CREATED: "1970-01-01T00:00:00Z"}


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_revision_and_source_come_from_the_checkout_without_credentials(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("remote", "add", "origin", "https://user:token@git.example.org/acme/images.git")
    (tmp_path / "m.yaml").write_text("x")
    git("add", "m.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "m")
    labels = build_labels(str(tmp_path / "m.yaml"), {})
    assert labels[REVISION] == git("rev-parse", "HEAD").strip()
    assert labels[SOURCE] == "https://git.example.org/acme/images.git"


def test_build_sets_the_labels_on_the_image_and_leaves_the_hash_alone(tmp_path: Path) -> None:
    from cells import cell
    from fakes import FakeEngine

    from envkit.build import BuildSettings, build_contexts
    from envkit.render import RenderOptions, render_cell

    engine = FakeEngine()
    context = render_cell(cell(id="a"), "m", {}, RenderOptions())
    labels = {CREATED: "2023-11-14T22:13:20Z", REVISION: "f" * 40}
    settings = BuildSettings(jobs=1, log_dir=tmp_path / "logs", provenance=labels)
    build_contexts("m.yaml", [context], engine, settings)
    (request,) = engine.builds
    assert request.labels[CREATED] == "2023-11-14T22:13:20Z" and request.labels[REVISION] == "f" * 40
    assert CREATED not in context.dockerfile and CREATED not in context.labels
