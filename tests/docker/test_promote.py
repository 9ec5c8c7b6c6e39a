"""`envkit promote` against the real engine and a real local registry (Debian's docker-registry).

Two tiny cell images (the local base plus envkit labels, no torch) stand in for built cells.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envkit.cli import main
from envkit.engine import BuildRequest
from envkit.engine.docker_sdk import DockerSdkEngine
from envkit.matrix import load_matrix
from envkit.render import cell_labels
from envkit.report import dump_report, report_from_dict
from envkit.resolve import Cell, plan

POLICY = "version: 1\nrequire:\n  env.torch: [PASS]\n"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
)
# The registry is on loopback; a proxy from the environment must not be asked for it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Cells:
    matrix: Path
    repository: str
    reports: Path
    policy: Path
    cells: tuple[Cell, ...]
    image_ids: dict[str, str]


@pytest.fixture
def cells(engine: DockerSdkEngine, base_image: str, tmp_path: Path) -> Iterator[Cells]:
    repository = f"envkit-test/promote-{uuid.uuid4().hex[:8]}"
    matrix = tmp_path / "promo.yaml"
    matrix.write_text(
        f"version: 1\nname: promo\nimage:\n  repository: {repository}\nbase: {base_image}\n"
        "torch_source: wheelhouse\naxes:\n  torch: ['2.13.0']\n  cuda: [none]\n  python: ['3.11']\n"
        "  os: [debian12]\n  flavor: [cpu, devel]\n"
    )
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "reports").mkdir()
    the_cells = plan(load_matrix(matrix)).cells
    image_ids: dict[str, str] = {}
    try:
        for cell in the_cells:
            image_ids[cell.id] = build_cell_image(engine, cell, base_image, tmp_path / cell.id, repository)
        yield Cells(
            matrix=matrix,
            repository=repository,
            reports=tmp_path / "reports",
            policy=tmp_path / "policy.yaml",
            cells=the_cells,
            image_ids=image_ids,
        )
    finally:
        for image_id in image_ids.values():
            engine.remove_image(image_id, force=True)


def build_cell_image(engine: DockerSdkEngine, cell: Cell, base: str, folder: Path, salt: str) -> str:
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\n")
    labels = {
        **cell_labels(cell, "promo.yaml", {}),
        "io.envkit.content-hash": hashlib.sha256(f"{salt}/{cell.id}".encode()).hexdigest(),
    }
    request = BuildRequest(context_dir=folder, tags=(cell.image,), labels=labels)
    return engine.build(request, on_line=lambda _: None)


def write_report(folder: Path, cell: Cell, image_id: str, status: str = "PASS") -> None:
    data = {
        "schema": "envkit.report/1",
        "envkit_version": "0.1.0",
        "created": "2025-01-01T00:00:00Z",
        "profile": "quick",
        "mode": "container",
        "image": {"ref": cell.image, "id": image_id, "labels": {"io.envkit.cell": cell.id}},
        "host": {"hostname": "ci", "platform": "linux", "python": "3.11", "gpus": []},
        "checks": [
            {"id": "env.torch", "status": status, "summary": f"torch import {status}", "duration_s": 0.1}
        ],
        "runner": None,
    }
    (folder / f"{cell.id}.json").write_text(dump_report(report_from_dict(data)))


def promote(setup: Cells, registry: str, record: Path) -> int:
    return main(
        [
            "promote",
            str(setup.matrix),
            "--registry",
            registry,
            "--reports",
            str(setup.reports),
            "--policy",
            str(setup.policy),
            "--record",
            str(record),
        ]
    )


def http_get(url: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with _DIRECT.open(request, timeout=30) as response:
        return response.read(), dict(response.headers)


def registry_json(url: str, accept: str | None = None) -> Any:
    return json.loads(http_get(url, accept)[0])


def test_promote_pushes_images_and_verdicts_that_pull_back_by_digest(
    engine: DockerSdkEngine, registry: str, cells: Cells, tmp_path: Path
) -> None:
    for cell in cells.cells:
        write_report(cells.reports, cell, cells.image_ids[cell.id])
    record_path = tmp_path / "promotion.json"
    assert promote(cells, registry, record_path) == 0
    record = json.loads(record_path.read_text())
    assert record["complete"] is True
    name = f"{registry}/{cells.repository}"
    for cell, row in zip(cells.cells, record["cells"], strict=True):
        assert engine.image(f"{name}:{cell.tag}") is None, "promote removes its local registry tags"
        assert engine.image(f"{name}:{cell.tag}.verdict") is None
        digest = row["digest"]
        _, headers = http_get(f"http://{registry}/v2/{cells.repository}/manifests/{cell.tag}", MANIFEST_TYPES)
        assert headers["Docker-Content-Digest"] == digest, "the record names the digest the registry serves"
        check_verdict(registry, cells.repository, cell, digest)

        engine.remove_image(cells.image_ids[cell.id], force=True)
        assert engine.image(cells.image_ids[cell.id]) is None
        engine.api.pull(f"{name}@{digest}")
        pulled = engine.image(f"{name}@{digest}")
        assert pulled is not None and pulled.id == cells.image_ids[cell.id]
        assert pulled.labels["io.envkit.cell"] == cell.id


def check_verdict(registry: str, repository: str, cell: Cell, digest: str) -> None:
    """The verdict companion, read as docs/promote.md tells a deployment to: manifest, config, layer."""
    base = f"http://{registry}/v2/{repository}"
    manifest = registry_json(f"{base}/manifests/{cell.tag}.verdict", MANIFEST_TYPES)
    config = registry_json(f"{base}/blobs/{manifest['config']['digest']}")
    labels = config["config"]["Labels"]
    assert labels["io.envkit.verdict"] == "pass"
    assert labels["io.envkit.verdict.subject"] == digest
    assert labels["io.envkit.verdict.cell"] == cell.id
    [layer] = manifest["layers"]
    blob, _ = http_get(f"{base}/blobs/{layer['digest']}")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.extractfile("verdict.json")
        assert member is not None
        verdict = json.loads(member.read())
    assert verdict["verdict"] == "pass" and verdict["subject"]["digest"] == digest
    assert verdict["reports"][0]["checks"] == [
        {"id": "env.torch", "device": None, "status": "PASS", "summary": "torch import PASS"}
    ]


def test_one_failing_report_pushes_nothing(
    engine: DockerSdkEngine, registry: str, cells: Cells, tmp_path: Path
) -> None:
    first, second = cells.cells
    write_report(cells.reports, first, cells.image_ids[first.id])
    write_report(cells.reports, second, cells.image_ids[second.id], status="FAIL")
    record_path = tmp_path / "promotion.json"
    assert promote(cells, registry, record_path) == 1
    assert not record_path.exists()
    catalog = registry_json(f"http://{registry}/v2/_catalog")
    assert cells.repository not in catalog["repositories"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        http_get(f"http://{registry}/v2/{cells.repository}/tags/list")
    assert missing.value.code == 404
    assert engine.image(f"{registry}/{cells.repository}:{first.tag}") is None
