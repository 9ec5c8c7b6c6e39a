#!/usr/bin/env bash
# A second, empty Docker engine beside the first: an "ephemeral CI runner" for the registry tests.
#
#   scripts/runner-engine.sh start NAME   start it; prints its DOCKER_HOST (unix://.../docker.sock)
#   scripts/runner-engine.sh stop NAME    stop it by its pid, delete its bridge and its folders
#
# It has its own --data-root, --exec-root, --pidfile, socket and bridge (`ip link add NAME type
# bridge`, then `--bridge NAME --iptables=false --ip-masq=false`), so it shares nothing with the first
# engine. Never `--bridge none`: at start-up that makes a second dockerd delete the first engine's
# docker0 (dockerd's own start-up clean-up of the default bridge). Needs root, like dockerd.
# Environment: ENVKIT_STATE_DIR (default /tmp/envkit), ENVKIT_RUNNER_WAIT_S (60).
set -euo pipefail

STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
WAIT_S="${ENVKIT_RUNNER_WAIT_S:-60}"

say() { printf 'runner-engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit "${2:-3}"; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Interface names are at most 15 characters; the /24 is picked from the name so two runners differ.
bridge_of() { printf 'ekr-%s' "$(printf '%s' "$1" | md5sum | cut -c1-8)"; }
subnet_of() { printf '172.31.%d' "$((16#$(printf '%s' "$1" | md5sum | cut -c1-2) % 200 + 20))"; }

start() {
    local name="$1" dir="${STATE_DIR}/runner-$1" bridge subnet
    bridge=$(bridge_of "$name")
    subnet=$(subnet_of "$name")
    [[ "$(id -u)" == 0 ]] || die "a second dockerd needs root"
    command -v dockerd >/dev/null || die "dockerd is not installed; run scripts/ensure-engine.sh first"
    if pid_alive "${dir}/dockerd.pid"; then
        say "runner ${name} already runs"
        printf 'unix://%s/docker.sock\n' "$dir"
        return 0
    fi
    mkdir -p "${dir}/data" "${dir}/exec"
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
        ip addr add "${subnet}.1/24" dev "$bridge"
    fi
    ip link set "$bridge" up
    say "starting dockerd for runner ${name} (bridge ${bridge}, log ${dir}/dockerd.log)"
    nohup dockerd --data-root "${dir}/data" --exec-root "${dir}/exec" --pidfile "${dir}/dockerd.pid" \
        -H "unix://${dir}/docker.sock" --bridge "$bridge" --iptables=false --ip-masq=false \
        >>"${dir}/dockerd.log" 2>&1 </dev/null &
    local waited=0
    until DOCKER_HOST="unix://${dir}/docker.sock" docker version >/dev/null 2>&1; do
        ((waited < WAIT_S * 10)) || die "runner ${name} did not answer within ${WAIT_S}s; see ${dir}/dockerd.log"
        sleep 0.1
        waited=$((waited + 1))
    done
    printf 'unix://%s/docker.sock\n' "$dir"
}

stop() {
    local name="$1" dir="${STATE_DIR}/runner-$1" bridge pid
    bridge=$(bridge_of "$name")
    if pid_alive "${dir}/dockerd.pid"; then
        pid=$(cat "${dir}/dockerd.pid")
        kill "$pid"
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        say "stopped runner ${name}"
    else
        say "runner ${name} does not run"
    fi
    if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
    # Mounts a daemon leaves under its roots must go before the folder can.
    if [[ -d "$dir" ]]; then
        { grep -o " ${dir}/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mount; do
            umount -l "$mount" || true
        done
        rm -rf "$dir"
    fi
}

case "${1:-}" in
    start) start "${2:?usage: $0 start NAME}" ;;
    stop) stop "${2:?usage: $0 stop NAME}" ;;
    *) die "usage: $0 start NAME | stop NAME" 2 ;;
esac
