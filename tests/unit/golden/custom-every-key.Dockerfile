# Rendered by envkit from matrix custom-demo, cell 2.13.0-cpu-py3.11-debian12-cpu. Edit the matrix, not this file.
# torch 2.13.0 (cpu) · python 3.11 (distro) · debian12 · cpu
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
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir /tmp/envkit/wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl --find-links /tmp/envkit/wheelhouse \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

FROM python AS final
# System packages from the matrix (`apt`), in one layer; the package lists are not kept.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tree \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# Steps from the matrix (`steps`, at: after-system), run as root.
RUN tree --version > /etc/app-tree-version
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
# Environment from the matrix (`env`): literal values, no $ expansion.
ENV \
    APP_GREETING="hello from \$HOME" \
    APP_MODE="batch"
# The image's user (`user`): fixed ids; the image runs as it. A uid the base already uses is refused by name.
RUN taken="$(getent passwd 1001 || true)" \
 && if [ -n "$taken" ]; then echo "envkit: uid 1001 is already user '${taken%%:*}' in the base image; set another user.uid in the matrix" >&2; exit 1; fi \
 && (getent group 1001 >/dev/null || groupadd --gid 1001 app) \
 && useradd --uid 1001 --gid 1001 --home-dir /home/app --create-home --shell /bin/bash app
# Files from the matrix's folder (`copy`), owned by root; mode 0644, or 0755 for an executable source.
# copy/00: mode 0644
COPY copy/00 /etc/app/app.cfg
# Steps from the matrix (`steps`, at: after-python), run as root with the environment on PATH.
RUN python -c 'import torch; print(torch.__version__)' > /etc/app-torch-version
LABEL \
      io.envkit.apt="tree" \
      io.envkit.arch-list="" \
      io.envkit.cell="2.13.0-cpu-py3.11-debian12-cpu" \
      io.envkit.content-hash="e894ee08bc2b3b6e6064bd5583242fbdbdff2cd19325cac1a33a6e07fee31c9b" \
      io.envkit.copy="/etc/app/app.cfg" \
      io.envkit.cuda="" \
      io.envkit.cuda-full="" \
      io.envkit.cudnn="" \
      io.envkit.driver-floor="" \
      io.envkit.env="APP_GREETING APP_MODE" \
      io.envkit.flavor="cpu" \
      io.envkit.managed="true" \
      io.envkit.matrix="custom-demo" \
      io.envkit.nccl="" \
      io.envkit.os="debian12" \
      io.envkit.python="3.11" \
      io.envkit.python-source="distro" \
      io.envkit.steps="2" \
      io.envkit.torch="2.13.0" \
      io.envkit.torch-source="wheelhouse" \
      io.envkit.torch-variant="cpu" \
      io.envkit.user="app:1001:1001" \
      org.opencontainers.image.base.name="envkit-local/debian:bookworm" \
      org.opencontainers.image.description="PyTorch 2.13.0 (cpu), Python 3.11, debian12, cpu" \
      org.opencontainers.image.ref.name="2.13.0-cpu-py3.11-debian12-cpu" \
      org.opencontainers.image.title="custom" \
      org.opencontainers.image.version="2.13.0-cpu-py3.11-debian12-cpu"
USER 1001:1001
WORKDIR /home/app
CMD ["python"]
