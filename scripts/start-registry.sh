#!/usr/bin/env bash
# A throw-away local image registry for push tests (Debian's `docker-registry`, distribution v2).
#
#   scripts/start-registry.sh [PORT]        start on 127.0.0.1:PORT (default 5000); prints the address
#   scripts/start-registry.sh tls [PORT]    the same over TLS with htpasswd basic auth (default 5443)
#   scripts/start-registry.sh stop [PORT]   stop it (by its pid) and delete its storage
#
# The engine treats 127.0.0.0/8 registries as insecure by default, so no daemon setting is needed.
# The TLS setup makes, in $ENVKIT_STATE_DIR/registry-PORT/: a throw-away CA (ca.crt) that signed the
# server's certificate for 127.0.0.1 and localhost, an htpasswd file with one user and a random
# password, and docker-config/config.json holding that login as `docker login` leaves it (point
# DOCKER_CONFIG at that folder).
# Environment: ENVKIT_STATE_DIR (config, pid, log; default /tmp/envkit), ENVKIT_REGISTRY_WAIT_S (30).
set -euo pipefail

STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
WAIT_S="${ENVKIT_REGISTRY_WAIT_S:-30}"

say() { printf 'start-registry: %s\n' "$*" >&2; }
die() { say "error: $*"; exit "${2:-3}"; }

answers() { curl --noproxy '*' -fsS -o /dev/null "http://$1/v2/" 2>/dev/null; }

# A registry with auth answers /v2/ with 401 until one logs in: that is an answer too.
answers_tls() {
    local code
    code=$(curl --noproxy '*' -sS -o /dev/null -w '%{http_code}' --cacert "$2/ca.crt" "https://$1/v2/" \
        2>/dev/null) || return 1
    [[ "$code" == 200 || "$code" == 401 ]]
}

up() {
    if [[ "$3" == tls ]]; then answers_tls "$1" "$2"; else answers "$1"; fi
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_registry() {
    local missing=()
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v htpasswd >/dev/null || missing+=(apache2-utils)
    command -v openssl >/dev/null || missing+=(openssl)
    ((${#missing[@]} == 0)) && return 0
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run 'sudo apt-get install ${missing[*]}'"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

make_tls() {
    local dir="$1" addr="$2" user="envkit" password auth
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=envkit test CA" \
        -keyout "${dir}/ca.key" -out "${dir}/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "${dir}/server.key" -out "${dir}/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"${dir}/san.ext"
    openssl x509 -req -in "${dir}/server.csr" -CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" \
        -CAcreateserial -days 2 -extfile "${dir}/san.ext" -out "${dir}/server.crt" 2>/dev/null
    password=$(openssl rand -hex 16)
    htpasswd -Bbn "$user" "$password" >"${dir}/htpasswd" 2>/dev/null
    auth=$(printf '%s:%s' "$user" "$password" | base64 -w0)
    mkdir -p "${dir}/docker-config"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$addr" "$auth" >"${dir}/docker-config/config.json"
    chmod 600 "${dir}/docker-config/config.json" "${dir}/ca.key" "${dir}/server.key"
    cat >>"${dir}/config.yml" <<EOF
  tls:
    certificate: ${dir}/server.crt
    key: ${dir}/server.key
auth:
  htpasswd:
    realm: envkit-test
    path: ${dir}/htpasswd
EOF
}

start() {
    local port="$1" mode="$2" addr="127.0.0.1:$1" dir="${STATE_DIR}/registry-$1"
    if { [[ "$mode" == plain ]] || [[ -f "${dir}/ca.crt" ]]; } && up "$addr" "$dir" "$mode"; then
        say "a ${mode} registry already answers at ${addr}"
        printf '%s\n' "$addr"
        return 0
    fi
    install_registry
    mkdir -p "${dir}/storage"
    write_config "$dir" "$addr"
    if [[ "$mode" == tls ]]; then make_tls "$dir" "$addr"; fi
    say "starting docker-registry on ${addr} (${mode}; log: ${dir}/registry.log)"
    nohup docker-registry serve "${dir}/config.yml" >>"${dir}/registry.log" 2>&1 </dev/null &
    echo $! >"${dir}/pid"
    local waited=0
    until up "$addr" "$dir" "$mode"; do
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
    tls) start "${2:-5443}" tls ;;
    "" | [0-9]*) start "${1:-5000}" plain ;;
    *) die "usage: $0 [PORT] | tls [PORT] | stop [PORT]" 2 ;;
esac
