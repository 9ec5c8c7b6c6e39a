# Rendered by envkit from matrix m, cell 2.13.0-cpu-py3.11-debian12-cpu-jupyter-ssh. Edit the matrix, not this file.
# torch 2.13.0 (cpu) · python 3.11 (distro) · debian12 · cpu
FROM debian:bookworm-slim AS python
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
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://example.org/whl/cpu \
 && /opt/venv/bin/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"
# User layer: JupyterLab in the image's own environment, so its python3 kernel is the torch Python.
RUN /opt/venv/bin/pip install --no-cache-dir jupyterlab==4.6.6

FROM python AS final
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
LABEL \
      io.envkit.arch-list="" \
      io.envkit.cell="2.13.0-cpu-py3.11-debian12-cpu-jupyter-ssh" \
      io.envkit.content-hash="d54c4c1adc47367e802d7259fec1570ad33f1793c583da8cf79d2919601f01c5" \
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
      io.envkit.torch-source="index" \
      io.envkit.torch-variant="cpu" \
      io.envkit.user-layer="jupyter,ssh" \
      org.opencontainers.image.base.name="debian:bookworm-slim" \
      org.opencontainers.image.description="PyTorch 2.13.0 (cpu), Python 3.11, debian12, cpu" \
      org.opencontainers.image.ref.name="2.13.0-cpu-py3.11-debian12-cpu" \
      org.opencontainers.image.title="pytorch" \
      org.opencontainers.image.version="2.13.0-cpu-py3.11-debian12-cpu"
# User layer (jupyter, ssh): services run as the unprivileged user `envkit`,
# started by envkit-start (see the README's "User layers").
COPY user-layer/envkit-start /usr/local/bin/envkit-start
# sshd is key-only and runs as `envkit`; the image holds no host key: each container makes its own
# at first start (removing the keys the package generated at install).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/ssh/ssh_host_* \
 && useradd --create-home --shell /bin/bash envkit \
 && install -d -o envkit -g envkit -m 700 /etc/ssh/envkit /home/envkit/.ssh \
 && chmod 0755 /usr/local/bin/envkit-start
COPY user-layer/sshd_config /etc/ssh/sshd_config
USER envkit
WORKDIR /home/envkit
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8888/api', timeout=4)"]
EXPOSE 2222
CMD ["envkit-start"]
