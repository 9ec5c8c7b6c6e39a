# Rendered by envkit from matrix m, cell 2.13.0-cpu-py3.11-debian12-cpu. Edit the matrix, not this file.
# torch 2.13.0 (cpu) · python 3.11 (distro) · debian12 · cpu
# Locked: base local sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, 2 packages with hashes (requirements.lock).
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
COPY requirements.lock /tmp/envkit/requirements.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/envkit/requirements.lock --find-links /tmp/envkit/wheelhouse \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

FROM python AS final
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      io.envkit.arch-list="" \
      io.envkit.cell="2.13.0-cpu-py3.11-debian12-cpu" \
      io.envkit.content-hash="3bd521136460453ef6216a8d58d3aad826117c6922cdd21076fa469d7d5b4186" \
      io.envkit.cuda="" \
      io.envkit.cuda-full="" \
      io.envkit.cudnn="" \
      io.envkit.driver-floor="" \
      io.envkit.flavor="cpu" \
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
      org.opencontainers.image.description="PyTorch 2.13.0 (cpu), Python 3.11, debian12, cpu" \
      org.opencontainers.image.ref.name="2.13.0-cpu-py3.11-debian12-cpu" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.13.0-cpu-py3.11-debian12-cpu"
CMD ["python"]
