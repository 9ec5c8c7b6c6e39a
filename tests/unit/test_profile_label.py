"""A report says which profile really ran: `full` on a host without a GPU measures the tiny model."""

from __future__ import annotations

import json
from dataclasses import replace

import hostile

from envkit.report import Check, load_report
from envkit.views import display_name, reports_markdown


def _with_preset(profile: str, preset: object) -> object:
    report = load_report(hostile.GOOD_REPORT)
    details = {"preset": preset, "device": "cpu"}
    generate = Check(id="throughput.generate", status="PASS", summary="tok/s", details=details)
    others = tuple(check for check in report.checks if check.id != "throughput.generate")
    return replace(report, profile=profile, checks=(*others, generate))


def test_full_profile_on_a_cpu_host_is_labelled_with_the_model_it_ran() -> None:
    report = _with_preset("full", "tiny")
    assert report.profile_label == "full (tiny model)"
    assert "(full (tiny model))" in display_name(report)
    assert "full (tiny model)" in reports_markdown([report])


def test_a_profile_that_ran_its_own_model_is_shown_as_it_is() -> None:
    assert _with_preset("full", "1b").profile_label == "full"
    assert _with_preset("quick", "tiny").profile_label == "quick"


def test_the_preset_is_the_image_word_so_only_a_plain_name_is_shown() -> None:
    for hostile_preset in ("[red]x[/red]", "tiny\n::error::x", 7, "a" * 40, "llama-tiny-110m"):
        assert _with_preset("full", hostile_preset).profile_label == "full"
    assert json.dumps(_with_preset("quick", "1b").profile_label) == '"quick (1b model)"'
