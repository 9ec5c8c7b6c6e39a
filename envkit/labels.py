"""Every image and container label envkit reads or writes: one name per label, nowhere else.

Image labels are inherited by anything built FROM an envkit image, so a label says what an image
claims to be; it never proves that envkit made a container or an image (gc decides ownership from
what envkit itself recorded, not from these).
"""

from __future__ import annotations

PREFIX = "io.envkit."
RESERVED_PREFIXES = (PREFIX, "org.opencontainers.")

# Set on every image envkit builds.
MANAGED = PREFIX + "managed"
MATRIX = PREFIX + "matrix"
CELL = PREFIX + "cell"
CONTENT_HASH = PREFIX + "content-hash"
BASE_ID = PREFIX + "base-id"
TORCH = PREFIX + "torch"
TORCH_VARIANT = PREFIX + "torch-variant"
TORCH_SOURCE = PREFIX + "torch-source"
CUDA = PREFIX + "cuda"
CUDA_FULL = PREFIX + "cuda-full"
CUDNN = PREFIX + "cudnn"
NCCL = PREFIX + "nccl"
PYTHON = PREFIX + "python"
PYTHON_SOURCE = PREFIX + "python-source"
OS = PREFIX + "os"
FLAVOR = PREFIX + "flavor"
DRIVER_FLOOR = PREFIX + "driver-floor"
ARCH_LIST = PREFIX + "arch-list"

# Set on the local base image that scripts/make-base-image.sh makes.
BASE = PREFIX + "base"

# Set on the containers envkit creates.
ROLE = PREFIX + "role"
IMAGE = PREFIX + "image"

# Set on the Kubernetes Jobs and ConfigMaps of one `validate --runner kubernetes` run (with MANAGED, ROLE).
RUN = PREFIX + "run"

# Set on the verdict companions that promote publishes.
VERDICT = PREFIX + "verdict"
VERDICT_SUBJECT = PREFIX + "verdict.subject"
VERDICT_CELL = PREFIX + "verdict.cell"


def key(name: str) -> str:
    """The full label for an io.envkit.* suffix such as "torch-variant"."""
    return PREFIX + name
