#!/usr/bin/env bash
# Make sure a Docker engine answers: do nothing when `docker info` works; otherwise (as root) install
# Debian's docker.io + debootstrap when missing and start dockerd in the background.
#
# Environment: DOCKER (client, default `docker`), DOCKER_HOST (a unix:// socket is started there),
# ENVKIT_STATE_DIR (dockerd log, default /tmp/envkit), ENVKIT_DOCKERD_PIDFILE (default dockerd's own,
# /var/run/docker.pid), ENVKIT_ENGINE_WAIT_S (default 60).
# Exit status: 0 engine reachable, 3 it could not be made reachable.
set -euo pipefail

DOCKER="${DOCKER:-docker}"
STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
PIDFILE="${ENVKIT_DOCKERD_PIDFILE:-/var/run/docker.pid}"
WAIT_S="${ENVKIT_ENGINE_WAIT_S:-60}"
LOG="${STATE_DIR}/dockerd.log"

say() { printf 'ensure-engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 3; }

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

check_local_host() {
    case "${DOCKER_HOST:-unix://}" in
        unix://*) ;;
        *) die "DOCKER_HOST=${DOCKER_HOST} is not a local unix socket; start the engine on that host instead" ;;
    esac
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# dockerd refuses to start while its pid file names a live process; a file left by a dead dockerd
# whose pid now belongs to something else would block it forever.
clear_stale_pidfile() {
    [[ -f "$PIDFILE" ]] || return 0
    local pid
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    if [[ -n "$pid" && "$(cat "/proc/${pid}/comm" 2>/dev/null)" == dockerd ]]; then
        say "dockerd (pid ${pid}) is already running; waiting for it to answer"
        return 1
    fi
    say "removing stale pid file ${PIDFILE}"
    rm -f "$PIDFILE"
}

start_dockerd() {
    mkdir -p "$STATE_DIR"
    if clear_stale_pidfile; then
        local args=(--pidfile "$PIDFILE")
        [[ -n "${DOCKER_HOST:-}" ]] && args+=(-H "$DOCKER_HOST")
        say "starting dockerd (log: ${LOG})"
        nohup dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
    fi
}

wait_for_engine() {
    local waited=0
    until engine_up; do
        ((waited < WAIT_S)) || die "dockerd did not answer within ${WAIT_S}s; see ${LOG}"
        sleep 1
        waited=$((waited + 1))
    done
    say "engine is up ($("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null || echo unknown version))"
}

main() {
    if engine_up; then
        say "engine already reachable"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        die "no Docker engine answers and this is not root. Start one (e.g. 'sudo scripts/ensure-engine.sh'
  or 'sudo systemctl start docker'), make sure your user may use its socket, or set DOCKER_HOST."
    fi
    check_local_host
    install_packages
    start_dockerd
    wait_for_engine
}

main "$@"
