#!/usr/bin/env bash
# A wheelhouse that `envkit lock --offline` can resolve torch from with no network: the torch wheel of
# WHEELHOUSE plus every dependency it needs on the target (CPython 3.11, manylinux_2_28 x86_64).
# The docker-tier lock tests use it; it is made once (this step needs the package index) and cached.
#
#   scripts/make-lock-wheelhouse.sh [WHEELHOUSE]     prints the folder; default WHEELHOUSE: $PIP_FIND_LINKS
# Environment: ENVKIT_STATE_DIR (where the folder is kept, default /tmp/envkit), PYTHON (default python3).
set -euo pipefail

SOURCE="${1:-${PIP_FIND_LINKS:-}}"
STATE_DIR="${ENVKIT_STATE_DIR:-/tmp/envkit}"
PYTHON="${PYTHON:-python3}"
TARGET="${STATE_DIR}/lock-wheelhouse"

say() { printf 'make-lock-wheelhouse: %s\n' "$*" >&2; }
die() { say "error: $*"; exit "${2:-3}"; }

[[ -n "$SOURCE" && -d "$SOURCE" ]] || die "no wheelhouse given (argument or \$PIP_FIND_LINKS)" 2
wheel="$(find "$SOURCE" -maxdepth 1 -name 'torch-*-cp311-cp311-*.whl' | sort | tail -n1)"
[[ -n "$wheel" ]] || die "no torch wheel for cp311 in ${SOURCE}" 2
version="$(basename "$wheel" | cut -d- -f2)"

mkdir -p "$STATE_DIR"
exec 9>"${STATE_DIR}/make-lock-wheelhouse.lock"
flock 9
if [[ -f "${TARGET}/.complete-${version}" ]]; then
    printf '%s\n' "$TARGET"
    exit 0
fi
rm -rf "$TARGET"
mkdir -p "$TARGET"
say "downloading torch ${version}'s dependencies for cp311 manylinux_2_28_x86_64 into ${TARGET}"
"$PYTHON" -m pip download --quiet --dest "$TARGET" --find-links "$SOURCE" \
    --only-binary=:all: --implementation cp --python-version 3.11 --platform manylinux_2_28_x86_64 \
    "torch==${version}" >&2 || die "pip download failed (is the package index reachable?)"
touch "${TARGET}/.complete-${version}"
printf '%s\n' "$TARGET"
