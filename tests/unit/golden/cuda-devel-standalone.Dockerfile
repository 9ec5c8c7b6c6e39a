# Rendered by envkit from matrix m, cell 2.6.0-cu124-py3.12-ubuntu22.04-devel. Edit the matrix, not this file.
# torch 2.6.0 (cu124) · python 3.12 (standalone) · ubuntu22.04 · devel
# A pinned CPython 3.12.7 (python-build-standalone 20241016),
# verified against the release's SHA256SUMS, fetched in a stage of its own.
FROM nvidia/cuda:12.4.1-devel-ubuntu22.04 AS fetch-python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/python
RUN curl -fsSLO "https://github.com/astral-sh/python-build-standalone/releases/download/20241016/cpython-3.12.7+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz" \
 && curl -fsSL "https://github.com/astral-sh/python-build-standalone/releases/download/20241016/SHA256SUMS" -o SHA256SUMS \
 && grep " cpython-3.12.7+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz$" SHA256SUMS | sha256sum -c - \
 && mkdir -p /opt/python \
 && tar -xzf "cpython-3.12.7+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz" -C /opt/python --strip-components=1 \
 && rm -rf /tmp/python

FROM nvidia/cuda:12.4.1-devel-ubuntu22.04 AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=fetch-python /opt/python /opt/python
RUN ln -s /opt/python/bin/python3 /usr/local/bin/python3 \
 && python3 -c "import sys; assert sys.version_info[:2] == (3, 12), sys.version"

# Dependencies are installed in a throw-away stage: wheels, CA bundles and pip's cache never reach
# the final image's layers or history; only the finished virtual environment is copied.
FROM python AS deps
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.6.0 --index-url https://example.org/whl/cu124 \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.6.0', torch.__version__"
# Extra packages in their own layer: cells that differ only here share the torch layer above.
RUN /opt/venv/bin/pip install --no-cache-dir numpy==2.1.3

FROM python AS final
# devel: compilers and headers for building extensions against this torch.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      com.example.team="ml \"infra\" \$HOME" \
      io.envkit.arch-list="5.0;6.0;7.0;7.5;8.0;8.6;9.0" \
      io.envkit.cell="2.6.0-cu124-py3.12-ubuntu22.04-devel" \
      io.envkit.content-hash="5d1a045733b974872ed94dbb28910b3caaf650194befaf7e5342442c46dd6a0d" \
      io.envkit.cuda="12.4" \
      io.envkit.cuda-full="12.4.1" \
      io.envkit.cudnn="9.1.0.70" \
      io.envkit.driver-floor="550.54.14" \
      io.envkit.flavor="devel" \
      io.envkit.managed="true" \
      io.envkit.matrix="m" \
      io.envkit.nccl="" \
      io.envkit.os="ubuntu22.04" \
      io.envkit.python="3.12" \
      io.envkit.python-source="standalone" \
      io.envkit.torch="2.6.0" \
      io.envkit.torch-source="index" \
      io.envkit.torch-variant="cu124" \
      org.opencontainers.image.base.name="nvidia/cuda:12.4.1-devel-ubuntu22.04" \
      org.opencontainers.image.description="PyTorch 2.6.0 (cu124), Python 3.12, ubuntu22.04, devel" \
      org.opencontainers.image.ref.name="2.6.0-cu124-py3.12-ubuntu22.04-devel" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.6.0-cu124-py3.12-ubuntu22.04-devel"
CMD ["python"]
