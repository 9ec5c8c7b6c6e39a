"""The injection corpus (hostile.INJECTIONS) aimed at apt, env, user, copy and steps.

Each case ends as in test_injection_corpus.py: a ConfigError (exit 2) naming the file and the key, or a
render that keeps the instruction skeleton of the clean render (no value started a Dockerfile line),
whose labels round-trip, and where the value lands only in its safe form.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile
import pytest

from envkit.errors import ConfigError
from envkit.matrix import load_matrix
from envkit.render import BuildContext, RenderOptions, render_plan
from envkit.resolve import plan

SHELL_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./~-]+", re.ASCII)
BASE: dict[str, Any] = {
    **hostile.VALID_MATRIX,
    "apt": ["git"],
    "env": {"APP_MODE": "batch"},
    "user": {"name": "app", "uid": 1001, "gid": 1001, "home": "/home/app"},
    "copy": [{"src": "a.cfg", "dest": "/etc/app/a.cfg"}],
    "steps": [{"at": "after-system", "run": "echo ok"}],
}


@dataclass(frozen=True, kw_only=True)
class Field:
    name: str
    ok: str
    put: Callable[[dict[str, Any], str], None]
    key: str


FIELDS = (
    Field(name="apt", ok="git", put=lambda m, v: m.update(apt=[v]), key="apt[0]"),
    Field(name="env.value", ok="batch", put=lambda m, v: m.update(env={"APP_MODE": v}), key="env.APP_MODE"),
    Field(name="user.name", ok="app", put=lambda m, v: m["user"].update(name=v), key="user.name"),
    Field(name="user.home", ok="/home/app", put=lambda m, v: m["user"].update(home=v), key="user.home"),
    Field(name="copy.src", ok="a.cfg", put=lambda m, v: m["copy"][0].update(src=v), key="copy[0].src"),
    Field(
        name="copy.dest",
        ok="/etc/app/a.cfg",
        put=lambda m, v: m["copy"][0].update(dest=v),
        key="copy[0].dest",
    ),
    Field(name="steps.run", ok="echo ok", put=lambda m, v: m["steps"][0].update(run=v), key="steps[0].run"),
)
CASES = [pytest.param(f, case, id=f"{f.name}-{case}") for f in FIELDS for case in hostile.INJECTIONS]


def _render(folder: Path, data: dict[str, Any]) -> tuple[Path, list[BuildContext]]:
    path = folder / "matrix.yaml"
    path.write_bytes(hostile.to_json_yaml(data))
    (folder / "a.cfg").write_text("a")
    with hostile.time_limit(20):
        return path, render_plan(plan(load_matrix(path)), RenderOptions())


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    _, (context,) = _render(tmp_path_factory.mktemp("clean"), BASE)
    return context


@pytest.mark.parametrize(("field", "case"), CASES)
def test_custom_field(tmp_path: Path, clean: BuildContext, field: Field, case: str) -> None:
    value = hostile.injection(case, field.ok)
    data = copy.deepcopy(BASE)
    field.put(data, value)
    try:
        _, contexts = _render(tmp_path, data)
    except ConfigError as error:
        assert error.exit_code == 2
        assert error.where is not None and error.where.file == str(tmp_path / "matrix.yaml"), error.render()
        assert error.where.key == field.key, error.render()
        hostile.assert_one_line_error(error, str(tmp_path / "matrix.yaml"))
        return
    (context,) = contexts
    text = context.dockerfile
    assert hostile.dockerfile_skeleton(text) == hostile.dockerfile_skeleton(clean.dockerfile)
    assert hostile.label_values(text) == dict(context.labels)
    assert all(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*", rel)
        for rel in context.files
    )
    if field.name == "env.value":
        # One quoted ENV value in which ", \ and $ are escaped.
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        assert f'    APP_MODE="{escaped}"' in text.split("\n")
    elif field.name == "steps.run":
        # Trusted shell, but on its own one RUN line, exactly as written.
        assert f"RUN {value.strip()}" in text.split("\n")
    elif field.name == "copy.src":
        # Accepted only as a file inside the folder; its name never reaches the Dockerfile.
        assert (tmp_path / value).resolve().parent == tmp_path.resolve() and value not in text
    else:
        assert SHELL_SAFE.fullmatch(value), value
