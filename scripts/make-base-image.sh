#!/usr/bin/env bash
# Make sure a local Debian bookworm base image exists, for hosts that cannot pull from an image registry.
#
#   scripts/make-base-image.sh [TAG]        (default TAG: envkit-local/debian:bookworm)
#
# Order: TAG already present -> nothing to do; a pull of the real base works -> add python3 to it;
# otherwise debootstrap a minimal bookworm (with python3 + ca-certificates) and `docker import` it.
# Environment: DOCKER (client to use, default `docker`), ENVKIT_BASE_PULL (real base to try,
# default debian:bookworm-slim; empty skips the pull), ENVKIT_DEBIAN_MIRROR (debootstrap mirror,
# default: debootstrap's own), ENVKIT_STATE_DIR (lock file, default /tmp/envkit), TMPDIR.
set -euo pipefail

TAG="${1:-envkit-local/debian:bookworm}"
DOCKER="${DOCKER:-docker}"
PULL_REF="${ENVKIT_BASE_PULL-debian:bookworm-slim}"
SUITE="bookworm"
STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
DESCRIPTION="Debian ${SUITE} with python3, made by envkit scripts/make-base-image.sh"

say() { printf 'make-base-image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit "${2:-1}"; }

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

try_pull() {
    [[ -n "$PULL_REF" ]] || return 1
    say "trying to pull ${PULL_REF}"
    # A registry that cannot be reached can hang for minutes; a bounded wait keeps the fallback fast.
    timeout "${ENVKIT_PULL_TIMEOUT_S:-60}" "$DOCKER" pull --quiet "$PULL_REF" >/dev/null 2>&1 || return 1
    add_python "$PULL_REF"
}

# The pulled slim image has no python3; add what the debootstrap path includes, so both bases match.
add_python() {
    say "adding ${PACKAGES//,/ } to $1 as ${TAG}"
    # DOCKER_BUILDKIT=0: the classic builder works with every CLI (a new one without buildx refuses BuildKit).
    DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$TAG" \
        --label io.envkit.base=true --label "org.opencontainers.image.description=${DESCRIPTION}" - \
        >/dev/null <<EOF
FROM $1
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
    ${PACKAGES//,/ } && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
EOF
}

debootstrap_import() {
    command -v debootstrap >/dev/null \
        || die "debootstrap is not installed (apt-get install debootstrap, or run scripts/ensure-engine.sh)" 3
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root; run this script as root" 3
    local rootfs
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/envkit-rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "rm -rf --one-file-system '${rootfs}'" EXIT
    say "debootstrap ${SUITE} (minbase) into ${rootfs}; this takes about a minute"
    local mirror=()
    [[ -n "${ENVKIT_DEBIAN_MIRROR:-}" ]] && mirror=("$ENVKIT_DEBIAN_MIRROR")
    debootstrap --variant=minbase --include="$PACKAGES" \
        "$SUITE" "$rootfs" "${mirror[@]}" >"${STATE_DIR}/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see ${STATE_DIR}/debootstrap.log" 1
    # Downloaded .debs and apt lists are dead weight in a base image.
    rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
    say "importing as ${TAG}"
    tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change 'LABEL io.envkit.base=true' \
        --change "LABEL org.opencontainers.image.description=\"${DESCRIPTION}\"" \
        - "$TAG" >/dev/null
    say "imported ${TAG}"
}

main() {
    "$DOCKER" info >/dev/null 2>&1 || die "cannot reach the Docker engine (run scripts/ensure-engine.sh, or set DOCKER_HOST)" 3
    mkdir -p "$STATE_DIR"
    # Several test sessions may ask for the base at once; only one should build it.
    exec 9>"${STATE_DIR}/make-base-image.lock"
    flock 9
    if image_exists "$TAG"; then
        say "${TAG} already exists"
    elif ! try_pull; then
        say "pull not possible; building ${TAG} with debootstrap"
        debootstrap_import
    fi
    printf '%s\n' "$TAG"
}

main "$@"
