"""`envkit build` against the real engine: the CPU demo matrix from a wheelhouse, through a CA bundle."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from support import DemoImages, canary_in_image, run_in_image

from envkit.cli import main
from envkit.engine.docker_sdk import DockerSdkEngine


def test_demo_cells_are_built_with_their_labels_and_torch_imports(
    demo: DemoImages, engine: DockerSdkEngine
) -> None:
    assert demo.first_exit == 0
    report = json.loads(demo.report.read_text())
    assert [c["status"] for c in report["cells"]] == ["built", "built"]
    for cell in report["cells"]:
        image = engine.image(cell["image"])
        assert image is not None and image.id == cell["image_id"]
        assert image.labels["io.envkit.torch"] == "2.13.0"
        assert image.labels["io.envkit.torch-variant"] == "cpu"
        assert image.labels["io.envkit.python"] == "3.11"
        assert image.labels["io.envkit.content-hash"] == cell["content_hash"]
        assert engine.image(cell["tags"][1]).id == image.id  # the content-hash tag
        assert Path(cell["log"]).stat().st_size > 0
        code, out = run_in_image(engine, cell["image"], "python -c 'import torch; print(torch.__version__)'")
        assert code == 0 and out.strip().splitlines()[-1] == "2.13.0+cpu"
    devel = report["cells"][1]
    code, out = run_in_image(engine, devel["image"], "gcc --version | head -n1")
    assert code == 0 and "gcc" in out


def test_unchanged_matrix_rebuild_does_no_build_work(demo: DemoImages) -> None:
    clock = time.monotonic()
    code = main(
        ["build", str(demo.matrix), *demo.flags, "--report", str(demo.report.with_name("again.json"))]
    )
    elapsed = time.monotonic() - clock
    assert code == 0
    again = json.loads(demo.report.with_name("again.json").read_text())
    assert [c["status"] for c in again["cells"]] == ["skipped", "skipped"]
    # Not a timing test: a no-op must not approach the real build (benchmarks/ measures the ratio).
    assert elapsed < demo.first_duration / 4


def test_ca_bundle_is_in_neither_history_nor_any_layer(demo: DemoImages, engine: DockerSdkEngine) -> None:
    for image in demo.images:
        history = "\n".join(engine.history(image))
        assert demo.canary not in history and "ca-bundle" not in history
        assert not canary_in_image(engine, image, demo.canary.encode())


def test_a_failing_cell_leaves_the_other_built_and_nothing_under_its_tag(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    matrix = tmp_path / "mixed.yaml"
    matrix.write_text(
        demo.matrix.read_text()
        + textwrap.dedent("""
        include:
          - {flavor: devel, packages: ["envkit-no-such-package-anywhere==0.0.1"]}
    """)
    )
    report = tmp_path / "mixed.json"
    code = main(
        ["build", str(matrix), *demo.flags, "--report", str(report), "--log-dir", str(tmp_path / "logs")]
    )
    assert code == 1
    cells = {c["cell"]: c for c in json.loads(report.read_text())["cells"]}
    cpu, devel = cells[demo.cell_ids[0]], cells[demo.cell_ids[1]]
    assert cpu["status"] == "skipped"
    assert devel["status"] == "failed"
    assert "envkit-no-such-package-anywhere" in devel["log_tail"]
    # The devel tag still names the good image from before; the failed build tagged nothing.
    image = engine.image(devel["image"])
    assert image is not None and image.labels["io.envkit.content-hash"] != devel["content_hash"]
    assert engine.image(devel["tags"][1]) is None


def test_buildkit_backend_builds_with_the_ca_bundle_as_a_secret(
    demo: DemoImages, engine: DockerSdkEngine, tmp_path: Path
) -> None:
    matrix = tmp_path / "bk.yaml"
    matrix.write_text(
        demo.matrix.read_text()
        .replace(demo.repository, demo.repository + "-bk")
        .replace("flavor: [cpu, devel]", "flavor: [cpu]")
    )
    report = tmp_path / "bk.json"
    code = main(["build", str(matrix), *demo.flags, "--buildkit", "--cache-mounts", "--report", str(report)])
    assert code == 0, Path(json.loads(report.read_text())["cells"][0]["log"]).read_text()[-3000:]
    [cell] = json.loads(report.read_text())["cells"]
    demo.extra_images.extend(cell["tags"])
    assert json.loads(report.read_text())["engine"]["backend"] == "buildkit"
    history = "\n".join(engine.history(cell["image"]))
    assert demo.canary not in history
    assert not canary_in_image(engine, cell["image"], demo.canary.encode())
    code, out = run_in_image(engine, cell["image"], "python -c 'import torch; print(torch.__version__)'")
    assert code == 0 and out.strip().splitlines()[-1] == "2.13.0+cpu"


@pytest.mark.parametrize("flag", ["--dry-run"])
def test_dry_run_builds_nothing(demo: DemoImages, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert main(["build", str(demo.matrix), *demo.flags, flag]) == 0
    out = capsys.readouterr().out
    assert out.count("skip") == 2
