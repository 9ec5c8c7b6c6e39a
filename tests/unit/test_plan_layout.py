"""`envkit plan` reads at 80 and 120 columns: rendered to fixed widths, no value is cut or split."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from envkit.cli import main
from envkit.commands._common import checked_plan
from envkit.commands.plan import print_plan_to
from envkit.resolve import Plan

ROOT = Path(__file__).resolve().parents[2]


def render(the_plan: Plan, width: int, *, wide: bool = False) -> list[str]:
    buffer = io.StringIO()
    out = Console(file=buffer, width=width, soft_wrap=True, color_system=None, highlight=False)
    print_plan_to(out, the_plan, wide=wide)
    return buffer.getvalue().splitlines()


@pytest.fixture(scope="module")
def pytorch() -> Plan:
    return checked_plan(ROOT / "images" / "pytorch.yaml")


@pytest.fixture(scope="module")
def with_drops(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    path = tmp_path_factory.mktemp("layout") / "m.yaml"
    path.write_text(
        "version: 1\nimage: {repository: acme/pytorch}\n"
        "axes: {torch: ['2.6', '2.99'], cuda: ['12.4', '12.8'], python: ['3.10', '3.13'], "
        "os: [ubuntu22.04, ubuntu24.04]}\n"
    )
    return checked_plan(path)


@pytest.mark.parametrize("width", [80, 120])
def test_every_line_fits_and_every_cell_id_is_whole(pytorch: Plan, width: int) -> None:
    lines = render(pytorch, width)
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert not any("…" in line for line in lines)
    for cell in pytorch.cells:
        [row] = [line for line in lines if line.startswith(cell.id + " ")]
        assert cell.driver_floor in row and cell.cuda_full in row


def test_at_80_columns_the_base_image_moves_to_wide_and_at_120_it_is_shown(pytorch: Plan) -> None:
    narrow, roomy = "\n".join(render(pytorch, 80)), "\n".join(render(pytorch, 120))
    assert all(cell.base not in narrow for cell in pytorch.cells)
    assert all(cell.base in roomy for cell in pytorch.cells)


def test_wide_shows_every_field_unsqueezed_even_on_a_narrow_console(pytorch: Plan) -> None:
    text = "\n".join(render(pytorch, 80, wide=True))
    assert "…" not in text
    for cell in pytorch.cells:
        for value in (cell.base, cell.cudnn, cell.compat_floor, f"{cell.torch} ({cell.torch_source})"):
            assert value and value in text
        assert cell.nccl is None or cell.nccl in text


@pytest.mark.parametrize("width", [80, 120])
def test_drop_reasons_wrap_between_words_and_are_given_once(with_drops: Plan, width: int) -> None:
    lines = render(with_drops, width)
    assert all(len(line) <= width for line in lines)
    words = {word for line in lines for word in line.split()}
    reasons = {item.reason for item in with_drops.dropped}
    for reason in reasons:
        assert set(reason.split()) <= words, reason  # no word (a version, a path) is split
    assert sum(line.lstrip().startswith("- torch=") for line in lines) == len(with_drops.dropped)
    heads = [line for line in lines if line.startswith("  ") and not line.startswith("    ")]
    assert (
        len([h for h in heads if h.strip().startswith("the knowledge base has no row for torch 2.99")]) == 1
    )


def test_cli_wide_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(ROOT / "images" / "pytorch.yaml"), "--wide"]) == 0
    assert "compat ≥" in capsys.readouterr().out
