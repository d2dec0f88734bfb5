#!/usr/bin/env bash
# Build the rumba-bids image from the repository's Dockerfile with podman (or docker).
#
#   bash tools/build_image.sh [TAG]          # default TAG: localhost/rumba-bids:dev
#
# Base image (the Dockerfile's BASE_IMAGE build argument), first that applies:
#   1. $BASE_IMAGE, when set;
#   2. the Dockerfile's default (python:X.Y.Z-slim-bookworm), when present locally or pullable;
#   3. a local stand-in made without any registry: Debian bookworm from debootstrap (the apt
#      mirror of this machine) + Debian's python3/pip, tagged $LOCAL_BASE. Built once, reused
#      while the image exists; the debootstrap tarball is kept in $RUMBA_IMAGE_CACHE.
#
# Environment: ENGINE (podman|docker, default podman), BASE_IMAGE, LOCAL_BASE, LOCAL_MINBASE,
# RUMBA_IMAGE_CACHE (default ~/.cache/rumba-bids), PULL_TIMEOUT (s, default 60),
# CONTAINERS_CONF (podman settings; tools/containers.conf for the CI VM, see .ci/run).
# The local base needs root (debootstrap). pip inside the build needs the package index:
# the build runs with --network host and the host's CA bundle mounted for RUN steps only.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost/rumba-bids:dev}
engine=${ENGINE:-podman}
local_base=${LOCAL_BASE:-localhost/rumba-bids-base:python3-bookworm}
minbase=${LOCAL_MINBASE:-localhost/rumba-bids-base:debian-bookworm-minbase}
cache=${RUMBA_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rumba-bids}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
seconds() { date +%s; }
log() { echo "build_image: $*" >&2; }

image_exists() { "$engine" image inspect "$1" >/dev/null 2>&1; }

build_args=(--network host)
[ "$engine" = podman ] && build_args+=(--pull=never)
# The host's CA bundle for pip's RUN steps (where a TLS proxy sits between pip and the
# index); not for the local base, whose ca-certificates package writes that very file.
# (podman only: docker build has no volumes.)
ca_mount=()
[ "$engine" = podman ] && [ -r "$ca_bundle" ] && ca_mount=(-v "$ca_bundle:$ca_bundle:ro")

debian_mirror() {
    # The first Debian mirror of this machine's apt sources (deb822 or one-line format).
    local mirror
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]]\+bookworm[[:space:]].*/\2/p' \
        /etc/apt/sources.list 2>/dev/null | head -n 1)
    echo "${mirror:-http://deb.debian.org/debian}"
}

make_local_base() {
    if image_exists "$local_base"; then
        log "local base $local_base exists; reusing it"
        return
    fi
    local start tarball rootfs
    start=$(seconds)
    tarball=$cache/debian-bookworm-minbase.tar
    if ! image_exists "$minbase"; then
        if [ ! -s "$tarball" ]; then
            command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
            [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
            mkdir -p "$cache"
            rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
            log "debootstrap --variant=minbase bookworm from $(debian_mirror)"
            debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >/dev/null
            tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
            mv "$tarball.tmp" "$tarball"
            rm -rf "$rootfs"
        fi
        "$engine" import --change 'CMD ["/bin/bash"]' "$tarball" "$minbase" >/dev/null
    fi
    # A stand-in for python:3.11-slim-bookworm: Debian's CPython 3.11 with pip, no PEP 668
    # marker (the image is a single-purpose environment, like the python image).
    "$engine" build "${build_args[@]}" --build-arg "MINBASE=$minbase" --tag "$local_base" - <<'EOF'
ARG MINBASE
FROM ${MINBASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED
EOF
    log "local base $local_base made in $(($(seconds) - start)) s"
}

if [ -z "${BASE_IMAGE:-}" ]; then
    default_base=$(sed -n 's/^ARG BASE_IMAGE=\(.*\)$/\1/p' "$repo/Dockerfile")
    if image_exists "$default_base"; then
        BASE_IMAGE=$default_base
    elif timeout "${PULL_TIMEOUT:-60}" "$engine" pull -q "$default_base" >/dev/null 2>&1; then
        BASE_IMAGE=$default_base
    else
        log "cannot pull $default_base (no registry?); using a local Debian base"
        make_local_base
        BASE_IMAGE=$local_base
    fi
fi

start=$(seconds)
log "building $tag from base $BASE_IMAGE"
"$engine" build "${build_args[@]}" "${ca_mount[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg "VCS_REF=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)" \
    --tag "$tag" "$repo"
log "image $tag built in $(($(seconds) - start)) s ($("$engine" image inspect --format '{{.Size}}' "$tag") bytes)"
