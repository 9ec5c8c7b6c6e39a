"""The built wheel carries templates, data files and the probe: envkit works from an installed copy."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_a_working_envkit(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # `envkit` on the package index is another project: the distribution is envkit-gpu.
    [wheel] = wheels.glob("envkit_gpu-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"\nName: envkit-gpu\n" in metadata and b"\nLicense-Expression: Apache-2.0\n" in metadata
    assert "deprecated" not in built.stdout + built.stderr  # e.g. a TOML-table project.license
    assert "envkit/templates/Dockerfile.j2" in names and "envkit/data/torch_variants.csv" in names
    assert "envkit/probe/__main__.py" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        f"import sys; sys.path.insert(0, {str(target)!r}); import envkit; "
        f"assert envkit.__file__.startswith({str(target)!r}), envkit.__file__; "
        "from envkit.cli import main; "
        f"raise SystemExit(main(['render', {str(ROOT / 'images' / 'pytorch.yaml')!r}, '-o', 'out']))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*/Dockerfile"))) >= 6


def test_extras_refer_to_this_distribution_not_the_unrelated_envkit() -> None:
    # `envkit` on the package index is someone else's project: an extra written `envkit[x]` would
    # install it instead of pulling in this project's own extra.
    import re

    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    name = project["project"]["name"]
    requirements = [req for reqs in project["project"]["optional-dependencies"].values() for req in reqs]
    requirements += project["project"]["dependencies"]
    self_refs = [req for req in requirements if re.match(r"envkit[-_a-z]*\[", req)]
    assert self_refs, "no extra pulls in another extra: the pattern no longer matches pyproject"
    assert all(req.startswith(name + "[") for req in self_refs), self_refs
