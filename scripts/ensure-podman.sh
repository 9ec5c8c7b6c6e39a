#!/usr/bin/env bash
# Debian's podman for the podman test tier (tests marked `podman`): installs it when missing, as root,
# idempotently. The tests start their own `podman system service` on a socket in their own folder,
# with their own storage (--root/--runroot), and stop it by pid; nothing here starts a service.
set -euo pipefail

if command -v podman >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-podman: podman is missing; install it (apt-get install podman) or run as root" >&2
  exit 3
fi
echo "ensure-podman: installing podman"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# uidmap and slirp4netns/fuse-overlayfs come as podman's recommendations on Debian; the tests run
# podman as root with the vfs-free overlay driver, so only podman itself is required.
apt-get install -y -qq --no-install-recommends podman >/dev/null
podman --version
