"""Report loading is strict (reports are untrusted input) and dumping is deterministic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envkit import report as report_module
from envkit.errors import ConfigError
from envkit.report import dump_report, load_report, load_reports, metric_direction, report_from_dict

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
H100 = FIXTURES / "h100-full-pass.json"


def _raw() -> dict[str, Any]:
    return json.loads(H100.read_text())


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "report.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_schema_1_fixtures_load_and_dump_as_schema_2_byte_for_byte(fixture: Path, tmp_path: Path) -> None:
    report = load_report(fixture)
    assert json.loads(fixture.read_text())["schema"] == "envkit.report/1"  # old reports still load
    text = dump_report(report)
    assert json.loads(text)["schema"] == "envkit.report/2"
    again = load_report(_write(tmp_path, text))
    assert again == report and dump_report(again) == text
    old = json.loads(fixture.read_text())
    new = json.loads(text)
    assert {k: v for k, v in new["host"].items() if k in old["host"] and k != "gpus"} == {
        k: v for k, v in old["host"].items() if k != "gpus"
    }
    assert [
        {k: gpu[k] for k in before}
        for gpu, before in zip(new["host"]["gpus"], old["host"]["gpus"], strict=True)
    ] == (old["host"]["gpus"])
    assert new["checks"] == old["checks"]


def test_key_lists_and_writer_come_from_the_dataclasses() -> None:
    from dataclasses import fields

    from envkit.report import GpuInfo, Host, Report, optional_keys, schema_keys

    assert schema_keys(Report) == tuple(f.name for f in fields(Report) if f.name != "source")
    data = json.loads(dump_report(load_report(H100)))
    assert tuple(data) == schema_keys(Report)
    assert tuple(data["host"]) == schema_keys(Host)
    assert tuple(data["host"]["gpus"][0]) == schema_keys(GpuInfo)
    assert "hostname" not in optional_keys(Host) and "cpu_model" in optional_keys(Host)
    assert not hasattr(report_module, "_HOST_KEYS")  # no second, hand-written key list


def test_schema_2_host_facts_round_trip(tmp_path: Path) -> None:
    data = _raw()
    data["schema"] = "envkit.report/2"
    data["host"].update(
        cpu_model="AMD EPYC 9654",
        cpu_count=192,
        cpus_available=16,
        cgroup_cpu_quota=8.0,
        loadavg_before=[0.5, 0.4, 0.3],
        loadavg_after=[1.5, 0.6, 0.35],
    )
    for gpu in data["host"]["gpus"]:
        gpu.update(sm_clock_mhz=1980, mem_clock_mhz=2619, power_limit_w=700.0)
    data["runner"]["cpus"] = 2.5
    data["image"]["digest"] = "sha256:" + "e" * 64
    report = load_report(_write(tmp_path, json.dumps(data)))
    assert report.host.loadavg_before == (0.5, 0.4, 0.3) and report.host.cgroup_cpu_quota == 8.0
    assert report.host.gpus[0].power_limit_w == 700.0 and report.runner and report.runner.cpus == 2.5
    assert json.loads(dump_report(report)) == data
    data["host"]["loadavg_after"] = [1.0, 2.0]
    with pytest.raises(ConfigError, match=r"\$\.host\.loadavg_after: expected the 1, 5 and 15"):
        load_report(_write(tmp_path, json.dumps(data)))


def test_hardware_class_is_gpu_models_or_cpu_model_and_cores() -> None:
    import dataclasses

    report = load_report(H100)
    assert report.host.hardware_class() == "gpu: NVIDIA H100 80GB HBM3"
    cpu = load_report(FIXTURES / "cpu-quick-pass.json").host
    assert cpu.hardware_class() is None  # schema 1 CPU reports do not say
    cpu = dataclasses.replace(cpu, cpu_model="Xeon", cpus_available=8)
    assert cpu.hardware_class() == "cpu: Xeon x8"
    assert dataclasses.replace(cpu, cpus_available=4).hardware_class() != cpu.hardware_class()


def test_report_properties_come_from_image_host_and_checks() -> None:
    report = load_report(H100)
    assert report.label.startswith("envkit/pytorch:torch2.6.0-cu124")
    assert report.cell == "torch2.6.0-cu124-py3.11-ubuntu22.04-runtime"
    assert report.gpu_model == "NVIDIA H100 80GB HBM3"
    assert [check.name for check in report.find("gpu.kernels")] == ["gpu.kernels[gpu0]", "gpu.kernels[gpu1]"]
    assert report.worst_status() == "PASS"
    assert report.versions()["cudnn"] == "9.1.0.70"


def test_failing_fixture_is_cpu_torch_in_cuda_image_and_oom_killed() -> None:
    report = load_report(FIXTURES / "h100-cpu-torch-oom-fail.json")
    assert report.find("env.torch")[0].status == "FAIL"
    assert report.runner is not None and report.runner.oom_killed and report.runner.exit_code == 137
    assert report.find("throughput.generate") == ()
    assert report.worst_status() == "FAIL"


def test_cpu_report_has_no_gpus() -> None:
    report = load_report(FIXTURES / "cpu-quick-pass.json")
    assert report.gpu_model == "cpu" and report.gpu_name(0) == "cpu"
    assert report.profile == "quick"


def test_dump_sorts_maps_so_equal_reports_give_equal_bytes() -> None:
    data = _raw()
    data["image"]["labels"] = dict(reversed(list(data["image"]["labels"].items())))
    assert dump_report(report_from_dict(data)) == dump_report(load_report(H100))


def test_local_report_without_image_or_runner_is_labelled_by_host() -> None:
    data = _raw()
    data.update(image=None, runner=None, mode="local")
    report = report_from_dict(data)
    assert report.label == "local:gpu-h100-07"
    assert json.loads(dump_report(report))["runner"] is None


def _mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = _raw()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "where", "words"),
    [
        (("schema",), "envkit.report/9", "$.schema", "unknown report schema"),
        (("checks", 0, "status"), 1, "$.checks[0].status", "expected a string"),
        (("checks", 0, "status"), "pass", "$.checks[0].status", "not one of"),
        (("checks", 1, "metrics", "gpu"), True, "$.checks[1].metrics.gpu", "expected a number"),
        (("checks", 2, "summary"), "ok\x1b[2Jpwned", "$.checks[2].summary", "control characters"),
        (("checks", 2, "summary"), "two\nlines", "$.checks[2].summary", "control characters"),
        (("checks", 0, "id"), "GPU Vis", "$.checks[0].id", "not a valid id"),
        (("checks", 0, "duration_s"), -1, "$.checks[0].duration_s", "below 0"),
        (("host", "gpus", 0, "index"), "0", "$.host.gpus[0].index", "expected an integer"),
        (("host", "gpus"), {}, "$.host.gpus", "expected a JSON array"),
        (("created",), "2025-03-14T09:26:53+02:00", "$.created", "UTC"),
        (("created",), "yesterday", "$.created", "ISO-8601"),
        (("profile",), "ful", "$.profile", "did you mean"),
        (("runner", "oom_killed"), "no", "$.runner.oom_killed", "true or false"),
        (("image", "labels", "io.envkit.torch"), 2.6, "$.image.labels.io.envkit.torch", "expected a string"),
    ],
)
def test_bad_values_name_file_and_json_path(
    tmp_path: Path, path: tuple[Any, ...], value: Any, where: str, words: str
) -> None:
    file = _write(tmp_path, json.dumps(_mutate(path, value)))
    with pytest.raises(ConfigError) as caught:
        load_report(file)
    assert caught.value.exit_code == 2
    assert str(file) in caught.value.render() and where in caught.value.render()
    assert words in caught.value.render()


def test_unknown_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    data = _raw()
    data["checks"][0]["summry"] = data["checks"][0].pop("summary")
    with pytest.raises(
        ConfigError, match=r"\$\.checks\[0\]\.summry.*unknown key(?s:.*)did you mean 'summary'"
    ):
        load_report(_write(tmp_path, json.dumps(data)))


def test_missing_required_key_is_refused(tmp_path: Path) -> None:
    data = _raw()
    del data["host"]["hostname"]
    with pytest.raises(ConfigError, match=r"\$\.host\.hostname: required key is missing"):
        load_report(_write(tmp_path, json.dumps(data)))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(tmp_path: Path, literal: str) -> None:
    text = H100.read_text().replace('"decode_tokens_per_s": 1462.8', f'"decode_tokens_per_s": {literal}')
    assert literal in text
    with pytest.raises(ConfigError, match="finite"):
        load_report(_write(tmp_path, text))


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = H100.read_text().replace('"profile": "full",', '"profile": "full", "profile": "quick",')
    with pytest.raises(ConfigError, match="duplicate key 'profile'"):
        load_report(_write(tmp_path, text))


def test_huge_file_is_refused_without_reading_it_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "MAX_REPORT_BYTES", 1024)
    with pytest.raises(ConfigError, match="larger than 1024 bytes"):
        load_report(H100)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ("\udcff", "not UTF-8"),
        ('{"schema": "envkit.report/1", "checks": ' + "[" * 5000 + "]" * 5000 + "}", "JSON"),
    ],
)
def test_not_a_report_at_all(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match=words):
        load_report(path)


def test_details_may_hold_multiline_text_but_not_escape_codes(tmp_path: Path) -> None:
    data = _raw()
    data["checks"][0]["details"] = {"traceback": "line 1\n\tline 2"}
    assert load_report(_write(tmp_path, json.dumps(data))).checks[0].details["traceback"].count("\n") == 1
    data["checks"][0]["details"] = {"nested": [{"x": "\x07bell"}]}
    with pytest.raises(ConfigError, match=r"\$\.checks\[0\]\.details\.nested\[0\]\.x"):
        load_report(_write(tmp_path, json.dumps(data)))


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_report(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"no \*\.json reports"):
        load_reports([tmp_path])
    assert len(load_reports([FIXTURES])) == 4


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("decode_tokens_per_s", "higher"),
        ("kv_speedup", "higher"),
        ("bandwidth_utilisation", "higher"),
        ("tokens_per_s_nocache", "higher"),
        ("itl_p99_ms", "lower"),
        ("ttft_ms", "lower"),
        ("peak_memory_mib", "lower"),
        ("gpu_count", None),
        ("shm_mib", None),
    ],
)
def test_metric_direction(name: str, direction: str | None) -> None:
    assert metric_direction(name) == direction


def test_clean_text_makes_log_tails_acceptable(tmp_path: Path) -> None:
    from envkit.report import clean_text

    log = "\x1b[31merror\x1b[0m: boom\r\nprogress\r50%\x07\n\x1b]0;title\x07done"
    assert clean_text(log, multiline=True) == "error: boom\nprogress?50%?\ndone"
    assert clean_text("a\nb\x00") == "a b?"
    data = _raw()
    data["checks"][0]["summary"] = clean_text("first\nsecond \x1b[1mbold\x1b[0m")
    data["checks"][0]["details"] = {"log_tail": clean_text(log, multiline=True)}
    assert load_report(_write(tmp_path, json.dumps(data))).checks[0].summary == "first second bold"


def test_the_probes_check_records_have_the_schemas_keys() -> None:
    from envkit.probe.outcome import Outcome, to_record
    from envkit.report import Check, schema_keys

    record = to_record("env.python", Outcome(status="N/A", summary="not applicable"), 0.5)
    assert tuple(record) == schema_keys(Check)
    assert report_from_dict({**_raw(), "checks": [record]}).checks[0].status == "N/A"
