# Rendered by envkit from matrix m, cell 2.13.0-cu130-py3.11-debian12-runtime. Edit the matrix, not this file.
# torch 2.13.0 (cu130) · python 3.11 (distro) · debian12 · runtime
FROM envkit-local/debian:bookworm AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A CUDA cell on a base that is not nvidia/cuda: what the NVIDIA Container Toolkit reads to give the
# container the GPUs and driver libraries (`--gpus all`), as nvidia/cuda images set it.
ENV \
    NVIDIA_VISIBLE_DEVICES="all" \
    NVIDIA_DRIVER_CAPABILITIES="compute,utility" \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"

# The distribution's own Python 3.11.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"

# Dependencies are installed in a throw-away stage: wheels, CA bundles and pip's cache never reach
# the final image's layers or history; only the finished virtual environment is copied.
FROM python AS deps
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

FROM python AS final
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      io.envkit.arch-list="7.5;8.0;8.6;9.0;10.0;12.0" \
      io.envkit.cell="2.13.0-cu130-py3.11-debian12-runtime" \
      io.envkit.content-hash="f9522f99bdc18768189c8f26062d263cc9b57d9ba4ff7addfa1021d767a7fe1a" \
      io.envkit.cuda="13.0" \
      io.envkit.cuda-full="13.0.3" \
      io.envkit.cudnn="9.20.0.48" \
      io.envkit.driver-floor="580.65.06" \
      io.envkit.flavor="runtime" \
      io.envkit.managed="true" \
      io.envkit.matrix="m" \
      io.envkit.nccl="2.29.7" \
      io.envkit.os="debian12" \
      io.envkit.python="3.11" \
      io.envkit.python-source="distro" \
      io.envkit.torch="2.13.0" \
      io.envkit.torch-source="pypi" \
      io.envkit.torch-variant="cu130" \
      org.opencontainers.image.base.name="envkit-local/debian:bookworm" \
      org.opencontainers.image.description="PyTorch 2.13.0 (cu130), Python 3.11, debian12, runtime" \
      org.opencontainers.image.ref.name="2.13.0-cu130-py3.11-debian12-runtime" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.13.0-cu130-py3.11-debian12-runtime"
CMD ["python"]
