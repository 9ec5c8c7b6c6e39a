"""Release policy: which checks must pass, metric thresholds per GPU model, regression tolerance, and
what applies to which cells.

Parsed once from YAML (docs/policy.md) into frozen dataclasses; every mistake is a ConfigError with
file:line:key and, for unknown keys, a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit import labels as L
from envkit.errors import ConfigError, Where
from envkit.probe import registry
from envkit.report import CHECK_ID, METRIC_NAME, PROFILES, STATUSES
from envkit.yamlsrc import SourceDoc, load_file

POLICY_VERSION = 1
DEFAULT_TOLERANCE = 0.05
# The metrics a baseline comparison looks at unless the policy names others: what users feel (decode
# speed, time per output token) and, on a GPU, how close to the memory roofline the decode runs.
DEFAULT_COMPARED = ("decode_tokens_per_s", "tpot_ms", "bandwidth_utilisation")
NOISY_CHOICES = ("skip", "compare")
# Checks that need a GPU: a SKIP of one of them is a failure under `require_gpu`.
GPU_CHECKS = ("gpu.*", "oom.gpu")
# Image labels a `cells` rule may match on (io.envkit.<name>).
CELL_KEYS = ("cell", "matrix", "torch", "torch-variant", "cuda", "cudnn", "python", "os", "flavor")
_TOP_KEYS = (
    "version",
    "strict",
    "require",
    "allow_skip",
    "ignore",
    "require_gpu",
    "thresholds",
    "baseline",
    "cells",
    "require_gpu_types",
)
_THRESHOLD_KEYS = ("check", "metric", "min", "max", "gpu", "profile")
_BASELINE_KEYS = ("path", "tolerance", "metrics", "noisy")
_CELL_RULE_KEYS = ("match", "not_applicable", "allow_skip", "require_gpu")
_PATTERN = re.compile(r"^[A-Za-z0-9 _.*?\[\]!:/()+-]{1,128}\Z")


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """A check that must be present in every report with one of the `allowed` statuses."""

    check: str
    allowed: tuple[str, ...]
    where: Where = field(compare=False)


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """A metric bound for a check, optionally only for some GPU models or one profile."""

    check: str
    metric: str
    min: float | None = None
    max: float | None = None
    gpu: str | None = None
    profile: str | None = None
    where: Where = field(compare=False)

    def matches(self, *, gpu_name: str, profile: str) -> bool:
        """Whether this rule applies to a record measured on `gpu_name` under `profile`."""
        if self.profile is not None and self.profile != profile:
            return False
        return self.gpu is None or gpu_matches(self.gpu, gpu_name)

    def specificity(self) -> tuple[int, int, int]:
        """Higher is more specific: a GPU pattern beats none, longer literal text wins; then profile."""
        literal = len(re.sub(r"\[[^\]]*\]|[*?]", "", self.gpu)) if self.gpu is not None else -1
        return (self.gpu is not None, literal, self.profile is not None)

    def describe(self) -> str:
        """`decode_tokens_per_s >= 800` / `itl_p99_ms <= 12` / `0.6 <= x <= 1`."""
        if self.min is not None and self.max is not None:
            return f"{_num(self.min)} <= {self.metric} <= {_num(self.max)}"
        if self.min is not None:
            return f"{self.metric} >= {_num(self.min)}"
        return f"{self.metric} <= {_num(self.max)}"


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Relative regression allowed against the baseline, per metric, with a default."""

    default: float = DEFAULT_TOLERANCE
    per_metric: dict[str, float] = field(default_factory=dict)

    def of(self, metric: str) -> float:
        """The tolerance that applies to `metric`."""
        return self.per_metric.get(metric, self.default)


@dataclass(frozen=True, kw_only=True)
class BaselineRule:
    """Where baseline reports live, how much regression is tolerated, which metrics are compared
    (glob patterns) and whether a noisy measurement is skipped or compared anyway."""

    path: Path
    tolerance: Tolerance
    metrics: tuple[str, ...] = DEFAULT_COMPARED
    noisy: str = "skip"

    def compares(self, metric: str) -> bool:
        """Whether `metric` is one the comparison looks at."""
        return any(fnmatch.fnmatchcase(metric, pattern) for pattern in self.metrics)


@dataclass(frozen=True, kw_only=True)
class CellRule:
    """What applies to the cells whose image labels match `match` (label name -> glob; `none` matches
    an empty label, e.g. `cuda: none` for CPU cells)."""

    match: Mapping[str, str]
    not_applicable: tuple[str, ...] = ()
    allow_skip: tuple[str, ...] = ()
    require_gpu: bool | None = None
    where: Where = field(compare=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a cell with these image labels is one this rule is about."""
        return all(
            _label_matches(labels.get(L.key(name), ""), pattern) for name, pattern in self.match.items()
        )


def _label_matches(value: str, pattern: str) -> bool:
    if pattern.lower() == "none":
        return value.strip().lower() in ("", "none")
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """What the policy expects of one cell: the global rules with every matching `cells` rule added."""

    not_applicable: tuple[str, ...] = ()
    allow_skip: tuple[str, ...] = ()
    require_gpu: bool = False
    rules: tuple[CellRule, ...] = ()

    def applies(self, check_id: str) -> bool:
        """False for a check the policy declares not applicable to this cell."""
        return not any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.not_applicable)

    def skip_allowed(self, check_id: str) -> bool:
        """Whether a SKIP of `check_id` is fine for this cell (never for a GPU check under require_gpu)."""
        if self.require_gpu and needs_gpu(check_id):
            return False
        return any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.allow_skip)


def needs_gpu(check_id: str) -> bool:
    """Whether `check_id` is a check that can only run with a GPU."""
    return any(fnmatch.fnmatchcase(check_id, pattern) for pattern in GPU_CHECKS)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A parsed release policy."""

    version: int = POLICY_VERSION
    strict: bool = False
    require: tuple[Requirement, ...] = ()
    allow_skip: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    baseline: BaselineRule | None = None
    require_gpu: bool = False
    cells: tuple[CellRule, ...] = ()
    # Every image must have a passing report on each of these GPU types (a scheduler's GRES type or
    # GPU product, or a pattern of the GPU model's name): `validate --runner ... --gpu-type` makes them.
    require_gpu_types: tuple[str, ...] = ()
    source: str = "<default>"

    def skip_allowed(self, check_id: str) -> bool:
        """Whether a SKIP of `check_id` is acceptable under the global `allow_skip`."""
        return any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.allow_skip)

    def expectations(self, labels: Mapping[str, str]) -> Expectations:
        """What this policy expects of the cell whose image has `labels` (the per-cell view that the
        gate and `envkit promote` apply): matching `cells` rules add to the global rules, and a rule's
        `require_gpu` overrides the global one (the last matching rule wins)."""
        rules = tuple(rule for rule in self.cells if rule.matches(labels))
        require_gpu = self.require_gpu
        for rule in rules:
            if rule.require_gpu is not None:
                require_gpu = rule.require_gpu
        return Expectations(
            not_applicable=tuple(pattern for rule in rules for pattern in rule.not_applicable),
            allow_skip=self.allow_skip + tuple(pattern for rule in rules for pattern in rule.allow_skip),
            require_gpu=require_gpu,
            rules=rules,
        )

    def ignored(self, check_id: str) -> bool:
        """Whether `check_id`'s outcome is shown but does not count."""
        return any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.ignore)

    def threshold_for(self, check: str, metric: str, *, gpu_name: str, profile: str) -> Threshold | None:
        """The most specific matching threshold rule (the first in the file on a tie), or None."""
        candidates = [
            rule
            for rule in self.thresholds
            if rule.check == check
            and rule.metric == metric
            and rule.matches(gpu_name=gpu_name, profile=profile)
        ]
        best: Threshold | None = None
        for rule in candidates:
            if best is None or rule.specificity() > best.specificity():
                best = rule
        return best

    def threshold_keys(self) -> list[tuple[str, str]]:
        """Distinct (check, metric) pairs that have rules, in file order."""
        return list(dict.fromkeys((rule.check, rule.metric) for rule in self.thresholds))


# The record `envkit validate` writes itself for the container's fate (envkit/validate.py).
RUNNER_CHECK = "runner.container"


USER_CHECK_PREFIX = "user."


def known_check_ids() -> tuple[str, ...]:
    """Every check id a report can hold: the probe's, in suite order, its self-tests, the runner's."""
    return (*(spec.id for spec in (*registry.CHECKS, *registry.SELFTESTS)), RUNNER_CHECK)


def check_id_hint(text: str) -> str:
    """'did you mean …?' for a misspelt check id, or the list of known ids."""
    close = difflib.get_close_matches(text, registry.public_ids(), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known checks: {', '.join(registry.public_ids())}"


def gpu_matches(pattern: str, gpu_name: str) -> bool:
    """Case-insensitive fnmatch on the GPU name, also tried without a leading "NVIDIA " ("H100*" works)."""
    pattern, name = pattern.lower(), gpu_name.lower()
    names = [name, name.removeprefix("nvidia ")]
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in names)


def load_policy(path: Path | str) -> Policy:
    """Read and check a policy file; any mistake is a ConfigError naming file, line and key."""
    return parse_policy(load_file(path))


def parse_policy(doc: SourceDoc) -> Policy:
    """Build a Policy from a loaded YAML document."""
    parser = _PolicyParser(doc)
    return parser.policy()


class _PolicyParser:
    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc

    def fail(self, path: tuple[Any, ...], message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, where=self.doc.where(*path), hint=hint)

    def mapping(self, value: Any, path: tuple[Any, ...], keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(keys)}"
                raise self.fail((*path, key), f"unknown key {str(key)!r}", hint)
        return value

    def policy(self) -> Policy:
        data = self.doc.data
        if data is None:
            raise self.fail((), "policy file is empty", f"start it with 'version: {POLICY_VERSION}'")
        data = self.mapping(data, (), _TOP_KEYS)
        self.version(data)
        strict = self.boolean(data.get("strict", False), ("strict",))
        return Policy(
            version=POLICY_VERSION,
            strict=strict,
            require=self.require(data.get("require"), strict),
            allow_skip=self.patterns(data.get("allow_skip"), ("allow_skip",)),
            ignore=self.patterns(data.get("ignore"), ("ignore",)),
            thresholds=self.thresholds(data.get("thresholds")),
            baseline=self.baseline(data.get("baseline")),
            require_gpu=self.boolean(data.get("require_gpu", False), ("require_gpu",)),
            cells=self.cells(data.get("cells")),
            require_gpu_types=self.gpu_types(data.get("require_gpu_types"), ("require_gpu_types",)),
            source=self.doc.file,
        )

    def version(self, data: dict[str, Any]) -> None:
        if "version" not in data:
            raise self.fail((), "missing 'version'", f"add 'version: {POLICY_VERSION}' at the top")
        if data["version"] != POLICY_VERSION or isinstance(data["version"], bool):
            raise self.fail(
                ("version",),
                f"policy version {data['version']!r} is not supported",
                f"this envkit reads version {POLICY_VERSION}",
            )

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def check_id(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not CHECK_ID.match(value):
            raise self.fail(path, f"{value!r} is not a check id", "check ids look like gpu.visibility")
        # user.* ids name the checks a matrix's author declares (envkit.userchecks): any is allowed.
        if value not in known_check_ids() and not value.startswith(USER_CHECK_PREFIX):
            raise self.fail(path, f"unknown check {value!r}", check_id_hint(value))
        return value

    def statuses(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        result = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(value, list) else path
            if item not in STATUSES:
                hint = f"did you mean {str(item).upper()!r}?" if str(item).upper() in STATUSES else None
                raise self.fail(where, f"{item!r} is not a status; use {', '.join(STATUSES)}", hint)
            result.append(item)
        if not result:
            raise self.fail(path, "the list of allowed statuses is empty")
        return tuple(dict.fromkeys(result))

    def require(self, value: Any, strict: bool) -> tuple[Requirement, ...]:
        default = ("PASS",) if strict else ("PASS", "WARN")
        if value is None:
            return ()
        if isinstance(value, list):
            value = {self.check_id(item, ("require", i)): None for i, item in enumerate(value)}
        elif not isinstance(value, dict):
            raise self.fail(("require",), f"expected a mapping of check id to statuses, got {_kind(value)}")
        result = []
        for check, allowed in value.items():
            path = ("require", check)
            self.check_id(check, path)
            statuses = default if allowed is None else self.statuses(allowed, path)
            result.append(Requirement(check=check, allowed=statuses, where=self.doc.where(*path)))
        return tuple(result)

    def patterns(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of glob patterns, got {_kind(value)}")
        return tuple(self.check_pattern(item, (*path, i)) for i, item in enumerate(value))

    def metric_patterns(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        """Globs over metric names (`decode_tokens_per_s`, `itl_*`): they name metrics, not checks."""
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of metric names or globs, got {_kind(value)}")
        return tuple(self.glob(item, (*path, i)) for i, item in enumerate(value))

    def gpu_types(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        """GPU type names (`h100`, `a100`): glob-safe strings; they name hardware, not checks."""
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of GPU types, got {_kind(value)}")
        return tuple(self.glob(item, (*path, i)) for i, item in enumerate(value))

    def check_pattern(self, value: Any, path: tuple[Any, ...]) -> str:
        pattern = self.glob(value, path)
        known = any(fnmatch.fnmatchcase(check, pattern) for check in known_check_ids())
        if not known and not pattern.startswith(USER_CHECK_PREFIX):
            raise self.fail(path, f"{pattern!r} matches no check", check_id_hint(pattern))
        return pattern

    def glob(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a glob pattern (a string), got {_kind(value)}")
        if not _PATTERN.match(value) or value.count("[") != value.count("]"):
            raise self.fail(
                path,
                f"{value!r} is not a usable glob pattern",
                "use letters, digits, spaces, . _ - and the wildcards * ? [...]",
            )
        return value

    def number(self, value: Any, path: tuple[Any, ...]) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        return value

    def thresholds(self, value: Any) -> tuple[Threshold, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(("thresholds",), f"expected a list of rules, got {_kind(value)}")
        rules = tuple(self.threshold(item, ("thresholds", i)) for i, item in enumerate(value))
        seen: dict[tuple[Any, ...], int] = {}
        for i, rule in enumerate(rules):
            key = (rule.check, rule.metric, rule.gpu, rule.profile)
            if key in seen:
                raise self.fail(
                    ("thresholds", i),
                    f"same check, metric, gpu and profile as thresholds[{seen[key]}]",
                    "merge the two rules into one",
                )
            seen[key] = i
        return rules

    def threshold(self, value: Any, path: tuple[Any, ...]) -> Threshold:
        data = self.mapping(value, path, _THRESHOLD_KEYS)
        for key in ("check", "metric"):
            if key not in data:
                raise self.fail(path, f"a threshold rule needs '{key}'")
        metric = data["metric"]
        if not isinstance(metric, str) or not METRIC_NAME.match(metric):
            raise self.fail((*path, "metric"), f"{metric!r} is not a metric name")
        low = None if data.get("min") is None else self.number(data["min"], (*path, "min"))
        high = None if data.get("max") is None else self.number(data["max"], (*path, "max"))
        if low is None and high is None:
            raise self.fail(path, "a threshold rule needs 'min', 'max' or both")
        if low is not None and high is not None and low > high:
            raise self.fail((*path, "min"), f"min {low} is above max {high}")
        profile = data.get("profile")
        if profile is not None and profile not in PROFILES:
            raise self.fail((*path, "profile"), f"{profile!r} is not a profile; use {' or '.join(PROFILES)}")
        gpu = None if data.get("gpu") is None else self.glob(data["gpu"], (*path, "gpu"))
        return Threshold(
            check=self.check_id(data["check"], (*path, "check")),
            metric=metric,
            min=low,
            max=high,
            gpu=gpu,
            profile=profile,
            where=self.doc.where(*path),
        )

    def baseline(self, value: Any) -> BaselineRule | None:
        if value is None:
            return None
        data = self.mapping(value, ("baseline",), _BASELINE_KEYS)
        raw_path = data.get("path")
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise self.fail(
                ("baseline", "path"), "baseline needs 'path': a report file or a folder of reports"
            )
        base = Path(raw_path)
        if not base.is_absolute():
            base = Path(self.doc.file).parent / base
        metrics: tuple[str, ...] = DEFAULT_COMPARED
        if data.get("metrics") is not None:
            metrics = self.metric_patterns(data["metrics"], ("baseline", "metrics"))
            if not metrics:
                raise self.fail(("baseline", "metrics"), "the list of compared metrics is empty")
        noisy = data.get("noisy", "skip")
        if noisy not in NOISY_CHOICES:
            raise self.fail(("baseline", "noisy"), f"{noisy!r} is not one of {', '.join(NOISY_CHOICES)}")
        return BaselineRule(
            path=base, tolerance=self.tolerance(data.get("tolerance")), metrics=metrics, noisy=noisy
        )

    def cells(self, value: Any) -> tuple[CellRule, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(("cells",), f"expected a list of cell rules, got {_kind(value)}")
        return tuple(self.cell_rule(item, ("cells", i)) for i, item in enumerate(value))

    def cell_rule(self, value: Any, path: tuple[Any, ...]) -> CellRule:
        data = self.mapping(value, path, _CELL_RULE_KEYS)
        if "match" not in data:
            raise self.fail(path, "a cell rule needs 'match' (e.g. match: {flavor: cpu})")
        match = self.mapping(data["match"], (*path, "match"), CELL_KEYS)
        if not match:
            raise self.fail(
                (*path, "match"), "'match' is empty; name at least one label (flavor, cuda, cell...)"
            )
        checked = {
            str(name): self.glob(
                str(pattern) if isinstance(pattern, int | float) else pattern, (*path, "match", name)
            )
            for name, pattern in match.items()
        }
        require_gpu = data.get("require_gpu")
        if require_gpu is not None:
            self.boolean(require_gpu, (*path, "require_gpu"))
        rule = CellRule(
            match=checked,
            not_applicable=self.patterns(data.get("not_applicable"), (*path, "not_applicable")),
            allow_skip=self.patterns(data.get("allow_skip"), (*path, "allow_skip")),
            require_gpu=require_gpu,
            where=self.doc.where(*path),
        )
        if not (rule.not_applicable or rule.allow_skip or rule.require_gpu is not None):
            raise self.fail(
                path, "this cell rule says nothing", "add not_applicable, allow_skip or require_gpu"
            )
        return rule

    def tolerance(self, value: Any) -> Tolerance:
        if value is None:
            return Tolerance()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Tolerance(default=self.fraction(value, ("baseline", "tolerance")))
        if not isinstance(value, dict):
            raise self.fail(("baseline", "tolerance"), f"expected a number or a mapping, got {_kind(value)}")
        per_metric: dict[str, float] = {}
        default = DEFAULT_TOLERANCE
        for metric, amount in value.items():
            path = ("baseline", "tolerance", metric)
            if metric == "default":
                default = self.fraction(amount, path)
            elif not isinstance(metric, str) or not METRIC_NAME.match(metric):
                raise self.fail(path, f"{metric!r} is not a metric name")
            else:
                per_metric[metric] = self.fraction(amount, path)
        return Tolerance(default=default, per_metric=per_metric)

    def fraction(self, value: Any, path: tuple[Any, ...]) -> float:
        number = self.number(value, path)
        if not 0 <= number <= 10:
            raise self.fail(path, f"tolerance {number} is out of range", "write 0.05 for 5 %")
        return number


def _finite(value: float) -> bool:
    # math.isfinite() of an int beyond float range raises OverflowError (YAML allows `0xfff...`).
    return abs(value) <= 1e300 and math.isfinite(value)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _kind(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)
