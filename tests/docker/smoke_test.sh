#!/usr/bin/env bash
# Docker smoke test: builds the images and runs the compose setup for real, CPU variant.
#
#   bash tests/docker/smoke_test.sh          (as root; HPO_SKIP_DOCKER=1 skips it)
#
# 1. Installs and starts a Docker engine if none answers (tests/docker/setup_engine.sh).
# 2. Builds local stand-ins for the registry base images (tests/docker/build_base_images.sh;
#    cached: images in the engine, tarball and wheelhouse under $HPO_CI_CACHE).
# 3. Builds the master and worker images from docker/Dockerfile with docker compose.
# 4. Run "clean": master (+ nameserver) and 2 workers on the quickstart space; the master must
#    exit 0 and results.json must hold every planned job with a finite loss; hpo-report reads it.
# 5. Run "kill": the same with one worker container killed mid-run; the run must still finish
#    (the killed worker's job may be logged as crashed) and the master exit 0.
# 6. Run "stop": `docker compose stop` mid-run; every container must end on SIGTERM (not be
#    killed after the grace period).
# Containers use host networking on 127.0.0.1 only (tests/docker/docker-compose.smoke.yml).
# Everything is brought down on exit, also on failure; a dockerd this script started is stopped
# again unless HPO_SMOKE_KEEP_DOCKERD=1. Images are kept as a cache for the next run.
set -euo pipefail

if [ "${HPO_SKIP_DOCKER:-0}" = 1 ]; then
    echo "docker smoke test: skipped (HPO_SKIP_DOCKER=1)"
    exit 0
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE_DIR="${HPO_CI_CACHE:-/var/cache/hpo-ci}"
RUN_TIMEOUT="${HPO_SMOKE_RUN_TIMEOUT:-900}"   # seconds for one run, bounded
PROJECT="hpo-smoke"
started_at=$(date +%s)

log() { echo "[smoke_test] $(date +%T) $*" >&2; }

if [ -n "${HPO_PYTHON:-}" ]; then
    PYTHON="$HPO_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
else
    PYTHON=python3
fi

# --- engine and base images ----------------------------------------------------------------
engine_was_running=0
docker info >/dev/null 2>&1 && engine_was_running=1
bash "$HERE/setup_engine.sh"
bash "$HERE/build_base_images.sh"

# --- settings shared by every compose call -------------------------------------------------
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false COMPOSE_PROGRESS=plain COMPOSE_ANSI=never
export HPO_SPACE=search_spaces/quickstart.yaml
export HPO_MIN_WORKERS=2 HPO_LOADER_WORKERS=0 HPO_WORKER_THREADS=1
export HPO_UID=1000 HPO_GID=1000                  # not root: exercises the volume permissions
export HPO_NS_PORT
HPO_NS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export HPO_RESULTS_DIR
HPO_RESULTS_DIR="$(mktemp -d /tmp/hpo-smoke-results.XXXXXX)"
chmod 0777 "$HPO_RESULTS_DIR"
LOG_DIR="$HPO_RESULTS_DIR/logs"
mkdir -p "$LOG_DIR"

compose() {
    docker compose -p "$PROJECT" --project-directory "$ROOT" \
        -f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cpu.yml" \
        -f "$HERE/docker-compose.smoke.yml" "$@"
}

cleanup() {
    status=$?
    set +e
    if [ "$status" -ne 0 ]; then
        log "FAILED (exit $status); last container logs:"
        compose logs --no-color --tail 40 >&2 2>&1
        log "logs and results kept in $HPO_RESULTS_DIR"
    fi
    compose down -v --remove-orphans --timeout 20 >/dev/null 2>&1
    [ "$status" -ne 0 ] || rm -rf "$HPO_RESULTS_DIR"
    if [ "$engine_was_running" = 0 ] && [ "${HPO_SMOKE_KEEP_DOCKERD:-0}" != 1 ] \
        && [ -f "$CACHE_DIR/dockerd.pid" ]; then
        pid="$(cat "$CACHE_DIR/dockerd.pid")"
        log "stopping the dockerd this test started (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        rm -f "$CACHE_DIR/dockerd.pid"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

compose down -v --remove-orphans >/dev/null 2>&1 || true     # leftovers of an aborted run

log "building the master and worker images"
compose build master worker >"$LOG_DIR/build.log" 2>&1 \
    || { tail -40 "$LOG_DIR/build.log" >&2; exit 1; }

# planned_jobs RUN_ID: the job count the master logged at start.
planned_jobs() {
    local counts
    counts="$(compose logs --no-color master 2>/dev/null \
        | sed -n 's/.* \([0-9][0-9]*\) jobs; waiting for.*/\1/p')"
    echo "${counts%%$'\n'*}"
}

# wait_for_master RUN_ID: block (bounded) until the master exits; fail unless it exited 0.
wait_for_master() {
    local code=0
    # in the background, so that a signal to this script is handled at once
    timeout "$RUN_TIMEOUT" docker compose -p "$PROJECT" wait master >/dev/null &
    wait $! || code=$?
    compose logs --no-color >"$LOG_DIR/$1.log" 2>&1
    if [ "$code" -eq 124 ]; then
        log "run $1 did not finish within ${RUN_TIMEOUT}s"
        return 1
    fi
    [ "$code" -eq 0 ] || { log "run $1: master exited with status $code"; return 1; }
    log "run $1: master exited 0"
}

# check_run RUN_ID MAX_CRASHED
check_run() {
    local jobs
    jobs="$(planned_jobs)"
    [ -n "$jobs" ] || { log "run $1: the master did not log its job count"; return 1; }
    "$PYTHON" "$HERE/check_results.py" "$HPO_RESULTS_DIR/$1" --jobs "$jobs" --max-crashed "$2"
    "$PYTHON" -m hpo.report "$HPO_RESULTS_DIR/$1" --top 3 >"$LOG_DIR/$1.report.txt"
    log "run $1: hpo-report read it:"
    head -20 "$LOG_DIR/$1.report.txt" >&2
}

# --- run 1: nameserver + master + 2 workers ------------------------------------------------
export HPO_RUN_ID=smoke-clean
log "run $HPO_RUN_ID: up (quickstart, 2 CPU workers, nameserver on 127.0.0.1:$HPO_NS_PORT)"
compose up -d --no-build --scale worker=2 >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
wait_for_master "$HPO_RUN_ID"
check_run "$HPO_RUN_ID" 0
compose down --timeout 20 >/dev/null 2>&1

# wait_for_results RUN_ID N: block (bounded) until results.json holds at least N lines.
wait_for_results() {
    local file="$HPO_RESULTS_DIR/$1/results.json"
    for _ in $(seq "$RUN_TIMEOUT"); do
        [ -f "$file" ] && [ "$(wc -l <"$file")" -ge "$2" ] && return 0
        sleep 1
    done
    log "run $1: fewer than $2 results after ${RUN_TIMEOUT}s"
    return 1
}

# --- run 2: one worker killed mid-run ------------------------------------------------------
export HPO_RUN_ID=smoke-kill HPO_ITERATIONS=1
log "run $HPO_RUN_ID: up, then docker kill one worker once jobs are flowing"
compose up -d --no-build --scale worker=2 >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
wait_for_results "$HPO_RUN_ID" 2
workers="$(compose ps -q worker)"     # (no `| head`: SIGPIPE would fail the pipeline)
victim="${workers%%$'\n'*}"
[ -n "$victim" ] || { log "no worker container to kill"; exit 1; }
log "killing worker container ${victim:0:12}"
docker kill "$victim" >/dev/null
wait_for_master "$HPO_RUN_ID"
check_run "$HPO_RUN_ID" 1
compose down --timeout 20 >/dev/null 2>&1

# --- run 3: docker compose stop mid-run ends every process by SIGTERM, not SIGKILL ----------
export HPO_RUN_ID=smoke-stop
log "run $HPO_RUN_ID: up, then docker compose stop while jobs run"
compose up -d --no-build --scale worker=2 >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
wait_for_results "$HPO_RUN_ID" 1
stop_started=$(date +%s)
compose stop --timeout 60 >/dev/null 2>&1
log "run $HPO_RUN_ID: stopped in $(( $(date +%s) - stop_started ))s; exit codes:"
killed=0
for container in $(compose ps -a -q); do
    code="$(docker inspect -f '{{.State.ExitCode}}' "$container")"
    echo "  $(docker inspect -f '{{.Name}}' "$container"): $code" >&2
    case "$code" in
        0|130|143) ;;
        137) killed=1 ;;
        *) log "warning: $(docker inspect -f '{{.Name}}' "$container") ended on SIGTERM with status $code (abnormal)" ;;
    esac
done
[ "$killed" = 0 ] || { log "a container ignored SIGTERM and was killed after 60s"; exit 1; }

elapsed=$(( $(date +%s) - started_at ))
echo "docker smoke test: OK (runs smoke-clean, smoke-kill and smoke-stop, ${elapsed}s)"
