# Rendered by envkit from matrix m, cell 2.6.0-cu124-py3.11-ubuntu22.04-runtime. Edit the matrix, not this file.
# torch 2.6.0 (cu124) · python 3.10 (distro) · ubuntu22.04 · runtime
FROM nvidia/cuda:12.4.1-base-ubuntu22.04 AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The distribution's own Python 3.10.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"

# Dependencies are installed in a throw-away stage: wheels, CA bundles and pip's cache never reach
# the final image's layers or history; only the finished virtual environment is copied.
FROM python AS deps
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.6.0 --index-url https://example.org/whl/cu124 \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.6.0', torch.__version__"

FROM python AS final
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      io.envkit.arch-list="5.0;6.0;7.0;7.5;8.0;8.6;9.0" \
      io.envkit.cell="2.6.0-cu124-py3.11-ubuntu22.04-runtime" \
      io.envkit.content-hash="ca3c52963a49498a14f518890173d6149ebed4fc4b1b1ab04f62bb484a1fd6ad" \
      io.envkit.cuda="12.4" \
      io.envkit.cuda-full="12.4.1" \
      io.envkit.cudnn="9.1.0.70" \
      io.envkit.driver-floor="550.54.14" \
      io.envkit.flavor="runtime" \
      io.envkit.managed="true" \
      io.envkit.matrix="m" \
      io.envkit.nccl="" \
      io.envkit.os="ubuntu22.04" \
      io.envkit.python="3.10" \
      io.envkit.python-source="distro" \
      io.envkit.torch="2.6.0" \
      io.envkit.torch-source="index" \
      io.envkit.torch-variant="cu124" \
      org.opencontainers.image.base.name="nvidia/cuda:12.4.1-base-ubuntu22.04" \
      org.opencontainers.image.description="PyTorch 2.6.0 (cu124), Python 3.10, ubuntu22.04, runtime" \
      org.opencontainers.image.ref.name="2.6.0-cu124-py3.10-ubuntu22.04-runtime" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.6.0-cu124-py3.10-ubuntu22.04-runtime"
CMD ["python"]
