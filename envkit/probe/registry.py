"""The checks the probe knows: stable ids, where each lives, and its timeout per profile."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Sequence

from .context import Context
from .outcome import Outcome


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """A check: `module`.`function`(ctx) -> Outcome, run in a child within its timeout (seconds)."""

    id: str
    module: str
    function: str
    quick_timeout_s: float
    full_timeout_s: float
    hidden: bool = False

    def timeout_s(self, profile: str, scale: float) -> float:
        """The child's time limit for `profile`, multiplied by `scale` (--timeout-scale)."""
        base = self.full_timeout_s if profile == "full" else self.quick_timeout_s
        return base * scale

    def load(self) -> Callable[[Context], Outcome]:
        """Import the check's module (only ever in the child: it may import torch) and return it."""
        package = __name__.rpartition(".")[0]
        module = importlib.import_module("." + self.module, package=package)
        return getattr(module, self.function)


def _spec(check_id: str, module: str, function: str, quick: float, full: float) -> CheckSpec:
    return CheckSpec(
        id=check_id, module=module, function=function, quick_timeout_s=quick, full_timeout_s=full
    )


# Suite order: cheap environment facts first, the long throughput run last.
CHECKS = (
    _spec("env.python", "checks_env", "check_python", 30, 30),
    _spec("env.torch", "checks_env", "check_torch", 120, 120),
    _spec("env.versions", "checks_env", "check_versions", 120, 120),
    _spec("env.shm", "checks_env", "check_shm", 30, 30),
    _spec("env.nvidia-env", "checks_env", "check_nvidia_env", 30, 30),
    _spec("gpu.visibility", "checks_gpu", "check_visibility", 120, 120),
    _spec("gpu.driver", "checks_gpu", "check_driver", 120, 120),
    _spec("gpu.arch", "checks_gpu", "check_arch", 120, 120),
    _spec("gpu.kernels", "checks_gpu", "check_kernels", 180, 180),
    _spec("oom.gpu", "checks_oom", "check_oom_gpu", 180, 180),
    _spec("oom.cpu", "checks_oom", "check_oom_cpu", 120, 120),
    _spec("throughput.generate", "checks_throughput", "check_generate", 300, 900),
)

# Never in a profile; reachable with --only, so the isolation of the runner itself can be tested.
SELFTESTS = tuple(
    dataclasses.replace(_spec(check_id, "selftest", function, 20, 20), hidden=True)
    for check_id, function in (
        ("selftest.hang", "check_hang"),
        ("selftest.hang-tree", "check_hang_tree"),
        ("selftest.crash", "check_crash"),
        ("selftest.garbage", "check_garbage"),
        ("selftest.raise", "check_raise"),
    )
)

_BY_ID: dict[str, CheckSpec] = {spec.id: spec for spec in CHECKS + SELFTESTS}


def select(only: Sequence[str]) -> list[CheckSpec]:
    """The checks to run: all public ones in suite order, or exactly `only` (KeyError on unknown id)."""
    if not only:
        return list(CHECKS)
    return [_BY_ID[check_id] for check_id in only]


def get(check_id: str) -> CheckSpec:
    """The spec for `check_id`; KeyError when unknown."""
    return _BY_ID[check_id]


def public_ids() -> list[str]:
    """Every stable check id, in suite order."""
    return [spec.id for spec in CHECKS]
