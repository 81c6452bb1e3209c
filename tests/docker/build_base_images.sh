#!/usr/bin/env bash
# Build the local stand-ins for the project's base images (no image registry is reachable in
# CI): a Debian bookworm image from debootstrap, a python image on top (the master's base),
# and a "pytorch-like" image with torch + torchvision from a host wheelhouse (the worker's base).
#
# Each step is skipped when its image (or cached file) already exists, so a second run takes
# seconds. Caches live in $HPO_CI_CACHE (default /var/cache/hpo-ci). Prints nothing on stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${HPO_CI_CACHE:-/var/cache/hpo-ci}"
DEBIAN_IMAGE="${HPO_CI_DEBIAN_IMAGE:-hpo-ci/debian:bookworm}"
PYTHON_IMAGE="${HPO_CI_PYTHON_IMAGE:-hpo-ci/python:3.11}"
PYTORCH_IMAGE="${HPO_CI_PYTORCH_IMAGE:-hpo-ci/pytorch:2.14.1}"
TORCH_VERSION="${HPO_CI_TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${HPO_CI_TORCHVISION_VERSION:-0.29.1}"
DEBIAN_MIRROR="${HPO_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DOCKER_BUILDKIT=0

log() { echo "[build_base_images] $(date +%T) $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

mkdir -p "$CACHE_DIR"

# 1. Debian bookworm (minbase) from debootstrap, cached as a tarball.
if ! have_image "$DEBIAN_IMAGE"; then
    tarball="$CACHE_DIR/bookworm-minbase.tar"
    if [ ! -s "$tarball" ]; then
        log "debootstrap bookworm (about a minute)"
        rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
        debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" \
            >"$CACHE_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE_DIR/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    log "docker import -> $DEBIAN_IMAGE"
    docker import "$tarball" "$DEBIAN_IMAGE" >/dev/null
fi

# 2. Python 3.11 in a venv on PATH, with the host's CA bundle for pip.
if ! have_image "$PYTHON_IMAGE"; then
    log "building $PYTHON_IMAGE"
    context="$(mktemp -d)"
    cp "$HERE/base-python.Dockerfile" "$context/Dockerfile"
    cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
    docker build -q --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        -t "$PYTHON_IMAGE" "$context" >/dev/null
    rm -rf "$context"
fi

# 3. torch + torchvision from a wheelhouse on the host, served on loopback during the build.
if ! have_image "$PYTORCH_IMAGE"; then
    wheelhouse="$CACHE_DIR/wheelhouse-torch-$TORCH_VERSION"
    if [ ! -f "$wheelhouse/.complete" ]; then
        log "pip download torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
        mkdir -p "$wheelhouse"
        python3 -m pip download -q --only-binary=:all: \
            "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" -d "$wheelhouse" \
            >"$CACHE_DIR/pip-download.log" 2>&1 \
            || { tail -20 "$CACHE_DIR/pip-download.log" >&2; exit 1; }
        touch "$wheelhouse/.complete"
    fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$wheelhouse" \
        >"$CACHE_DIR/wheelhouse-http.log" 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
            2>/dev/null && break
        sleep 0.2
    done
    log "building $PYTORCH_IMAGE (several minutes)"
    docker build -q --network host \
        --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
        --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/" \
        --build-arg "TORCH_VERSION=$TORCH_VERSION" \
        --build-arg "TORCHVISION_VERSION=$TORCHVISION_VERSION" \
        -t "$PYTORCH_IMAGE" - <"$HERE/base-pytorch.Dockerfile" >/dev/null
    kill "$server_pid" 2>/dev/null || true
    trap - EXIT
fi
log "base images ready: $DEBIAN_IMAGE $PYTHON_IMAGE $PYTORCH_IMAGE"
