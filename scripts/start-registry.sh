#!/usr/bin/env bash
# A throw-away local image registry for push tests (Debian's `docker-registry`, distribution v2).
#
#   scripts/start-registry.sh [PORT]        start on 127.0.0.1:PORT (default 5000); prints the address
#   scripts/start-registry.sh stop [PORT]   stop it and delete its storage
#
# The engine treats 127.0.0.0/8 registries as insecure by default, so no daemon setting is needed.
# Environment: ENVKIT_STATE_DIR (config, pid, log; default /tmp/envkit), ENVKIT_REGISTRY_WAIT_S (30).
set -euo pipefail

STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
WAIT_S="${ENVKIT_REGISTRY_WAIT_S:-30}"

say() { printf 'start-registry: %s\n' "$*" >&2; }
die() { say "error: $*"; exit "${2:-3}"; }

answers() { curl --noproxy '*' -fsS -o /dev/null "http://$1/v2/" 2>/dev/null; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_registry() {
    command -v docker-registry >/dev/null && return 0
    [[ "$(id -u)" == 0 ]] || die "docker-registry is not installed; run 'sudo apt-get install docker-registry'"
    say "installing docker-registry"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
}

write_config() {
    local dir="$1" addr="$2"
    cat >"${dir}/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${dir}/storage
  delete:
    enabled: true
http:
  addr: ${addr}
EOF
}

start() {
    local port="$1" addr="127.0.0.1:$1" dir="${STATE_DIR}/registry-$1"
    if answers "$addr"; then
        say "a registry already answers at ${addr}"
        printf '%s\n' "$addr"
        return 0
    fi
    install_registry
    mkdir -p "${dir}/storage"
    write_config "$dir" "$addr"
    say "starting docker-registry on ${addr} (log: ${dir}/registry.log)"
    nohup docker-registry serve "${dir}/config.yml" >>"${dir}/registry.log" 2>&1 </dev/null &
    echo $! >"${dir}/pid"
    local waited=0
    until answers "$addr"; do
        pid_alive "${dir}/pid" || die "docker-registry exited; see ${dir}/registry.log"
        ((waited < WAIT_S * 10)) || die "docker-registry did not answer on ${addr} within ${WAIT_S}s"
        sleep 0.1
        waited=$((waited + 1))
    done
    printf '%s\n' "$addr"
}

stop() {
    local port="$1" dir="${STATE_DIR}/registry-$1"
    if pid_alive "${dir}/pid"; then
        kill "$(cat "${dir}/pid")"
        say "stopped the registry on 127.0.0.1:${port}"
    else
        say "no registry started by this script runs on port ${port}"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    stop) stop "${2:-5000}" ;;
    "" | [0-9]*) start "${1:-5000}" ;;
    *) die "usage: $0 [PORT] | stop [PORT]" 2 ;;
esac
