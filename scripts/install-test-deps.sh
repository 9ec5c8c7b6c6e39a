#!/usr/bin/env bash
# System packages the test suite drives for real: Chromium (the HTML report test), Debian's
# docker-registry (push/promote tests), htpasswd and openssl (the TLS + basic-auth registry that
# scripts/start-registry.sh makes) and iproute2 (the second engine's bridge, scripts/runner-engine.sh).
# Python test tools come from pyproject's [test] extra. The tests start and stop the registries and
# the second engine themselves, by pid.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
  exit 3
fi
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
