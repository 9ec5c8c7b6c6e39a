"""Policy files: every mistake names file:line:key; rules pick the most specific match."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.errors import ConfigError
from envkit.policy import Policy, gpu_matches, load_policy

EXAMPLE = """\
version: 1
strict: false
require:
  env.torch: [PASS]
  gpu.visibility: [PASS]
  throughput.generate: [PASS, WARN]
  gpu.kernels:
allow_skip: [gpu.*]
thresholds:
  - check: throughput.generate
    metric: decode_tokens_per_s
    min: 800
    gpu: "H100*"
    profile: full
  - {check: throughput.generate, metric: bandwidth_utilisation, min: 0.6, gpu: "*H100*"}
  - {check: throughput.generate, metric: itl_p99_ms, max: 12}
baseline:
  path: baselines/
  tolerance:
    default: 0.05
    decode_tokens_per_s: 0.10
"""


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _policy(tmp_path, text)
    assert caught.value.exit_code == 2
    return caught.value.render()


def test_example_policy_parses_into_rules(tmp_path: Path) -> None:
    policy = _policy(tmp_path, EXAMPLE)
    assert policy.strict is False
    assert {req.check: req.allowed for req in policy.require} == {
        "env.torch": ("PASS",),
        "gpu.visibility": ("PASS",),
        "throughput.generate": ("PASS", "WARN"),
        "gpu.kernels": ("PASS", "WARN"),
    }
    assert policy.allow_skip == ("gpu.*",)
    first = policy.thresholds[0]
    assert (first.metric, first.min, first.max, first.gpu, first.profile) == (
        "decode_tokens_per_s",
        800,
        None,
        "H100*",
        "full",
    )
    assert first.where.line == 10
    assert policy.baseline is not None and policy.baseline.path == tmp_path / "baselines"
    assert policy.baseline.tolerance.of("decode_tokens_per_s") == 0.10
    assert policy.baseline.tolerance.of("itl_p99_ms") == 0.05


def test_strict_makes_the_default_allowed_statuses_pass_only(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "version: 1\nstrict: true\nrequire: [env.torch, gpu.visibility]\n")
    assert [req.allowed for req in policy.require] == [("PASS",), ("PASS",)]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("version: 1\nthresold: []\n", "policy.yaml:2: thresold", "did you mean 'thresholds'?"),
        (
            "version: 1\nthresholds:\n  - {check: a.b, metric: x, mni: 3}\n",
            "policy.yaml:3: thresholds[0].mni",
            "did you mean 'min'?",
        ),
        (
            "version: 1\nbaseline:\n  path: b\n  tolerence: 0.1\n",
            "policy.yaml:4: baseline.tolerence",
            "did you mean 'tolerance'?",
        ),
        ("version: 1\nstrict: maybe\n", "policy.yaml:2: strict", "true or false"),
        (
            "version: 1\nrequire:\n  env.torch: [pass]\n",
            "policy.yaml:3: require.env.torch[0]",
            "did you mean 'PASS'?",
        ),
        ("version: 1\nrequire: env.torch\n", "policy.yaml:2: require", "expected a mapping"),
        ('version: 1\nallow_skip: ["gpu.["]\n', "policy.yaml:2: allow_skip[0]", "not a usable glob"),
        ("version: 1\nallow_skip: gpu.*\n", "policy.yaml:2: allow_skip", "a list of glob patterns"),
        (
            "version: 1\nthresholds:\n  - check: throughput.generate\n    metric: x\n    min: fast\n",
            "policy.yaml:5: thresholds[0].min",
            "finite number",
        ),
        (
            "version: 1\nthresholds:\n  - {check: throughput.generate, metric: x, min: .nan}\n",
            "policy.yaml:3: thresholds[0].min",
            "finite number",
        ),
        (
            "version: 1\nthresholds:\n  - {check: throughput.generate, metric: x}\n",
            "policy.yaml:3: thresholds[0]",
            "'min', 'max'",
        ),
        (
            "version: 1\nthresholds:\n  - {check: throughput.generate, metric: x, min: 5, max: 1}\n",
            "thresholds[0].min",
            "above max",
        ),
        (
            'version: 1\nthresholds:\n  - {check: throughput.generate, metric: x, min: 1, gpu: "H100["}\n',
            "thresholds[0].gpu",
            "not a usable glob",
        ),
        (
            "version: 1\nthresholds:\n  - {check: throughput.generate, metric: x, min: 1, profile: long}\n",
            "thresholds[0].profile",
            "not a profile",
        ),
        (
            "version: 1\nthresholds:\n  - {check: throughput.generate, metric: x, min: 1}\n"
            "  - {check: throughput.generate, metric: x, max: 9}\n",
            "policy.yaml:4: thresholds[1]",
            "same check, metric",
        ),
        (
            "version: 1\nbaseline:\n  path: b\n  tolerance: {default: -0.1}\n",
            "baseline.tolerance.default",
            "out of range",
        ),
        ("version: 1\nbaseline: {tolerance: 0.1}\n", "baseline.path", "needs 'path'"),
        ("version: 2\n", "policy.yaml:1: version", "not supported"),
        ("strict: true\n", "policy.yaml", "missing 'version'"),
        ("", "policy.yaml", "empty"),
        ("version: 1\nrequire: {env.torch: [PASS], env.torch: [WARN]}\n", "policy.yaml:2", "duplicate key"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, where: str, words: str) -> None:
    message = _error(tmp_path, text)
    assert where in message
    assert words in message


def test_require_list_form_and_null_mean_default_statuses(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "version: 1\nrequire: [env.torch]\n")
    assert policy.require[0].allowed == ("PASS", "WARN")


def test_most_specific_gpu_rule_wins_and_profile_filters(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        """\
version: 1
thresholds:
  - {check: throughput.generate, metric: tps, min: 100}
  - {check: throughput.generate, metric: tps, min: 500, gpu: "*"}
  - {check: throughput.generate, metric: tps, min: 800, gpu: "H100*"}
  - {check: throughput.generate, metric: tps, min: 900, gpu: "H100 80GB*"}
  - {check: throughput.generate, metric: tps, min: 950, gpu: "H100*", profile: full}
  - {check: throughput.generate, metric: tps, min: 10, gpu: cpu}
""",
    )

    def pick(gpu: str, profile: str) -> float | None:
        rule = policy.threshold_for("throughput.generate", "tps", gpu_name=gpu, profile=profile)
        return rule.min if rule else None

    assert pick("NVIDIA H100 80GB HBM3", "quick") == 900
    assert pick("NVIDIA H100 PCIe", "full") == 950
    assert pick("NVIDIA H100 PCIe", "quick") == 800
    assert pick("NVIDIA A100-SXM4-80GB", "full") == 500
    assert pick("cpu", "quick") == 10
    assert policy.threshold_for("throughput.generate", "other", gpu_name="cpu", profile="quick") is None


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("H100*", "NVIDIA H100 80GB HBM3", True),
        ("*h100*", "NVIDIA H100 80GB HBM3", True),
        ("H100*", "NVIDIA A100-SXM4-80GB", False),
        ("NVIDIA A100*", "NVIDIA A100-SXM4-80GB", True),
        ("cpu", "cpu", True),
        ("A100-SXM4-[48]0GB", "NVIDIA A100-SXM4-40GB", True),
    ],
)
def test_gpu_patterns_are_case_insensitive_and_ignore_the_vendor_prefix(
    pattern: str, name: str, matches: bool
) -> None:
    assert gpu_matches(pattern, name) is matches


def test_ignore_and_allow_skip_are_globs(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "version: 1\nallow_skip: [gpu.*, oom.gpu]\nignore: [env.shm]\n")
    assert policy.skip_allowed("gpu.kernels") and policy.skip_allowed("oom.gpu")
    assert not policy.skip_allowed("env.torch")
    assert policy.ignored("env.shm") and not policy.ignored("env.torch")


def test_every_policy_example_in_the_docs_parses(tmp_path: Path) -> None:
    import re

    docs = Path(__file__).parents[2] / "docs" / "policy.md"
    blocks = [
        b for b in re.findall(r"```yaml\n(.*?)```", docs.read_text(), re.S) if b.startswith("version: 1")
    ]
    assert len(blocks) >= 3
    for block in blocks:
        assert isinstance(_policy(tmp_path, block), Policy)


def test_cells_rules_and_baseline_options_parse(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        "version: 1\nrequire_gpu: true\ncells:\n  - match: {flavor: cpu, python: 3.11}\n"
        "    not_applicable: [gpu.*]\n    require_gpu: false\n"
        "baseline:\n  path: b/\n  metrics: [decode_tokens_per_s, 'itl_*']\n  noisy: compare\n",
    )
    assert policy.require_gpu and policy.cells[0].match == {"flavor": "cpu", "python": "3.11"}
    assert policy.baseline is not None and policy.baseline.noisy == "compare"
    assert policy.baseline.compares("itl_p99_ms") and not policy.baseline.compares("ttft_ms")
    cpu = policy.expectations({"io.envkit.flavor": "cpu", "io.envkit.python": "3.11"})
    assert not cpu.require_gpu and not cpu.applies("gpu.arch")
    assert policy.expectations({"io.envkit.flavor": "runtime"}).require_gpu


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("cells:\n  - match: {flavour: cpu}\n    not_applicable: [gpu.*]\n", "did you mean 'flavor'"),
        ("cells:\n  - not_applicable: [gpu.*]\n", "needs 'match'"),
        ("cells:\n  - match: {flavor: cpu}\n", "says nothing"),
        ("cells:\n  - match: {flavor: cpu}\n    require_gpu: maybe\n", "true or false"),
        ("baseline:\n  path: b/\n  noisy: ignore\n", "not one of skip, compare"),
        ("baseline:\n  path: b/\n  metrics: []\n", "empty"),
    ],
)
def test_bad_cells_and_baseline_options_name_the_key(tmp_path: Path, text: str, words: str) -> None:
    rendered = _error(tmp_path, "version: 1\n" + text)
    assert words in rendered and "policy.yaml:" in rendered
