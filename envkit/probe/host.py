"""The report's "host" object: where the probe ran, and the driver/GPUs when NVML is available."""

from __future__ import annotations

import dataclasses
import platform
import socket
from typing import Any

from . import nvml


def collect_host() -> dict[str, Any]:
    """{"hostname", "platform", "python", "driver", "cuda_driver", "gpus": [...]} per envkit.report/1."""
    info, _why = nvml.query()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "driver": info.driver if info else None,
        "cuda_driver": info.cuda_driver if info else None,
        "gpus": [dataclasses.asdict(gpu) for gpu in info.gpus] if info else [],
    }
