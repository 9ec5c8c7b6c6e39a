# Rendered by envkit from matrix m, cell 2.13.0-cpu-py3.11-debian12-devel. Edit the matrix, not this file.
# torch 2.13.0 (cpu) · python 3.11 (distro) · debian12 · devel
FROM envkit-local/debian:bookworm AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The distribution's own Python 3.11.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"

# Dependencies are installed in a throw-away stage: wheels, CA bundles and pip's cache never reach
# the final image's layers or history; only the finished virtual environment is copied.
FROM python AS deps
COPY wheelhouse/ /tmp/envkit/wheelhouse/
COPY ca-bundle.pem /tmp/envkit/ca-bundle.pem
RUN python3 -m venv /opt/venv \
 && PIP_CERT=/tmp/envkit/ca-bundle.pem /opt/venv/bin/pip install --no-cache-dir /tmp/envkit/wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl --find-links /tmp/envkit/wheelhouse \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

FROM python AS final
# devel: compilers and headers for building extensions against this torch.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      io.envkit.arch-list="" \
      io.envkit.cell="2.13.0-cpu-py3.11-debian12-devel" \
      io.envkit.content-hash="1bd27ad1377c415b3d27ef8881a34240a2d670620c0e99c8ee6cce5953718b26" \
      io.envkit.cuda="" \
      io.envkit.cuda-full="" \
      io.envkit.cudnn="" \
      io.envkit.driver-floor="" \
      io.envkit.flavor="devel" \
      io.envkit.managed="true" \
      io.envkit.matrix="m" \
      io.envkit.nccl="" \
      io.envkit.os="debian12" \
      io.envkit.python="3.11" \
      io.envkit.python-source="distro" \
      io.envkit.torch="2.13.0" \
      io.envkit.torch-source="wheelhouse" \
      io.envkit.torch-variant="cpu" \
      org.opencontainers.image.base.name="envkit-local/debian:bookworm" \
      org.opencontainers.image.description="PyTorch 2.13.0 (cpu), Python 3.11, debian12, devel" \
      org.opencontainers.image.ref.name="2.13.0-cpu-py3.11-debian12-devel" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.13.0-cpu-py3.11-debian12-devel"
CMD ["python"]
