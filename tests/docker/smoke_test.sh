#!/usr/bin/env bash
# Docker smoke test: builds the images and runs the compose setup for real, CPU variant.
#
#   bash tests/docker/smoke_test.sh          (as root; HPO_SKIP_DOCKER=1 skips it)
#
# 1. Installs and starts a Docker engine if none answers (tests/docker/setup_engine.sh).
# 2. Builds local stand-ins for the registry base images (tests/docker/build_base_images.sh;
#    cached: images in the engine, tarball and wheelhouse under $HPO_CI_CACHE).
# 3. Builds the master and worker images from docker/Dockerfile with docker compose, then runs
#    tests/docker/test_gpu_locks.sh in the worker image: workers of two uids (1000, 1001) claim
#    GPUs (HPO_GPU_COUNT stands in for them) through one lock volume, free ones and released
#    ones, and a lock they cannot use is a one-line warning, never an exit.
# 4. Run "clean" (docker-compose.yml + docker-compose.cpu.yml): the one-shot `certs` service
#    makes the certificates into the volume `tls`, then master (+ nameserver) and 2 workers on
#    the quickstart space, all over mutual TLS. While it runs, the TLS is checked for real
#    (tests/docker/check_tls.py, in the master image): the master logs a nameserver with
#    "mutual TLS"; a client with the deployment's certificate is answered, a plain client and
#    one with another CA's certificate are refused; /tls is 0700 and the services' user's. The
#    master must exit 0 and results.json hold every planned job with a finite loss; hpo-report
#    (in the master image) reads it.
# 5. Run "kill", the several-machines recipe on one machine (+ docker-compose.distributed.yml):
#    `run --rm certs` makes the certificates into a host directory (HPO_TLS_HOST_DIR), `up
#    master`, then `up --no-deps --scale worker=2 worker`, as on separate machines; the same TLS
#    checks. Mid-run, the hpo worker process inside one worker container gets SIGKILL from the
#    host, as from the kernel's OOM killer (best while it runs a job): its container must be
#    restarted by compose (RestartCount > 0, a second worker start in its log, under a new
#    name). Then the other worker's whole container is killed (docker kill). The run must still
#    finish, the master exit 0, every job be logged with a finite loss (a lost job runs again:
#    attempts.json has a line per lost attempt, and the job's result comes from a later
#    attempt), and the results' info.worker names be distinct per worker start (the replicas
#    share the host network, hence hostname and often pid) and traceable to their containers.
# 6. Run "stop": back on the volume of run "clean" (its certificates are reused, not remade);
#    `docker compose stop` mid-run; every container must end on SIGTERM (not be killed after
#    the grace period).
# Containers use host networking on 127.0.0.1 only (tests/docker/docker-compose.smoke.yml); the
# certs container has no network. The host needs only python3's standard library (for
# check_results.py; HPO_PYTHON picks another interpreter): what needs hpo runs in the images.
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

# check_results.py needs only the standard library; hpo-report and the TLS checks run in the
# master image, which has hpo and its dependencies (the host Python need not).
PYTHON="${HPO_PYTHON:-python3}"
MASTER_IMAGE=hpo-smoke-master:latest   # as named in docker-compose.smoke.yml
WORKER_IMAGE=hpo-smoke-worker:latest

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
# what docker-compose.distributed.yml requires; the smoke override pins the same loopback values
export HPO_HOST=127.0.0.1 HPO_NAMESERVER="127.0.0.1:$HPO_NS_PORT"
export HPO_RESULTS_DIR
HPO_RESULTS_DIR="$(mktemp -d /tmp/hpo-smoke-results.XXXXXX)"
chmod 0777 "$HPO_RESULTS_DIR"
LOG_DIR="$HPO_RESULTS_DIR/logs"
mkdir -p "$LOG_DIR"
# run "kill": the certificates of the several-machines recipe, in a host directory ("./tls")
export HPO_TLS_HOST_DIR
HPO_TLS_HOST_DIR="$(mktemp -d /tmp/hpo-smoke-tls.XXXXXX)"

SINGLE_HOST=(-f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cpu.yml" -f "$HERE/docker-compose.smoke.yml")
SEVERAL_HOSTS=(-f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cpu.yml"
               -f "$ROOT/docker-compose.distributed.yml" -f "$HERE/docker-compose.smoke.yml")
COMPOSE_FILES=("${SINGLE_HOST[@]}")

compose() {
    docker compose -p "$PROJECT" --project-directory "$ROOT" "${COMPOSE_FILES[@]}" "$@"
}

cleanup() {
    status=$?
    set +e
    if [ "$status" -ne 0 ]; then
        log "FAILED (exit $status); last container logs:"
        compose logs --no-color --tail 40 >&2 2>&1
        log "logs and results kept in $HPO_RESULTS_DIR"
    fi
    COMPOSE_FILES=("${SINGLE_HOST[@]}")          # the file set that declares the volume `tls`
    compose down -v --remove-orphans --timeout 20 >/dev/null 2>&1
    rm -rf "$HPO_TLS_HOST_DIR"
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

# GPU locks under two uids, without a GPU (tests/docker/test_gpu_locks.sh): in the worker image,
# with its installed entrypoint, dash, flock and setpriv, on a fresh volume at /run/hpo (mode
# from the image, as the volume gpu-locks gets it; anonymous, so --rm deletes it). As root in
# the container, to switch between the uids; no network. About a second.
log "GPU locks: two uids, one lock volume (tests/docker/test_gpu_locks.sh in the worker image)"
timeout 120 docker run --rm --network none --user 0:0 --entrypoint bash \
    -v "$HERE/test_gpu_locks.sh:/opt/test_gpu_locks.sh:ro" -v /run/hpo \
    "$WORKER_IMAGE" /opt/test_gpu_locks.sh /usr/local/bin/hpo-entrypoint /run/hpo

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

# check_run RUN_ID MAX_CRASHED [CHECK_RESULTS_OPTIONS...]
check_run() {
    local jobs
    jobs="$(planned_jobs)"
    [ -n "$jobs" ] || { log "run $1: the master did not log its job count"; return 1; }
    "$PYTHON" "$HERE/check_results.py" "$HPO_RESULTS_DIR/$1" --jobs "$jobs" --max-crashed "$2" "${@:3}"
    timeout 300 docker run --rm --network none --user "$HPO_UID:$HPO_GID" \
        -v "$HPO_RESULTS_DIR/$1:/workspace/results/$1:ro" \
        "$MASTER_IMAGE" hpo-report "/workspace/results/$1" --top 3 >"$LOG_DIR/$1.report.txt"
    log "run $1: hpo-report read it:"
    head -20 "$LOG_DIR/$1.report.txt" >&2
}

# check_tls RUN_ID TLS_SOURCE: the run's nameserver speaks mutual TLS and nothing else.
# TLS_SOURCE (the volume or host directory with the run's certificates) is mounted read-only
# into a container of the master image on the host network; it talks to 127.0.0.1 only.
check_tls() {
    local logs
    logs="$(compose logs --no-color master 2>&1)"
    case "$logs" in
        *"nameserver listening on 127.0.0.1:$HPO_NS_PORT (mutual TLS)"*)
            log "run $1: the master's log says: nameserver listening on 127.0.0.1:$HPO_NS_PORT (mutual TLS)" ;;
        *)  log "run $1: the master did not log a nameserver with mutual TLS on 127.0.0.1:$HPO_NS_PORT"
            return 1 ;;
    esac
    log "run $1: TLS checks against the nameserver on 127.0.0.1:$HPO_NS_PORT"
    timeout 120 docker run --rm --network host --user "$HPO_UID:$HPO_GID" \
        -v "$2:/tls:ro" -v "$HERE/check_tls.py:/opt/check_tls.py:ro" \
        "$MASTER_IMAGE" python /opt/check_tls.py "127.0.0.1:$HPO_NS_PORT" --tls /tls --owner "$HPO_UID" >&2
}

# ca_fingerprint VOLUME_OR_DIR: the SHA-256 of the CA certificate there.
ca_fingerprint() {
    local line
    line="$(timeout 120 docker run --rm --network none --user "$HPO_UID:$HPO_GID" -v "$1:/tls:ro" \
        "$MASTER_IMAGE" sha256sum /tls/ca.pem)"
    echo "${line%% *}"
}

# wait_healthy SERVICE: block (bounded) until the service's container is healthy.
wait_healthy() {
    local container state
    for _ in $(seq 120); do
        container="$(compose ps -q "$1" 2>/dev/null)" || container=""
        state=""
        [ -z "$container" ] \
            || state="$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null)" || true
        [ "$state" = healthy ] && return 0
        sleep 1
    done
    log "$1 did not become healthy within 120s"
    return 1
}

# --- run 1: nameserver + master + 2 workers ------------------------------------------------
export HPO_RUN_ID=smoke-clean
log "run $HPO_RUN_ID: up (quickstart, 2 CPU workers, nameserver on 127.0.0.1:$HPO_NS_PORT)"
compose up -d --no-build --scale worker=2 >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
check_tls "$HPO_RUN_ID" "${PROJECT}_tls"      # up -d returned: certs done, master healthy
first_ca="$(ca_fingerprint "${PROJECT}_tls")"
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

# --- run 2: the several-machines recipe; a worker process OOM-killed, a worker container killed -
# wait_for_result_workers RUN_ID N: block (bounded) until results.json has results of N distinct
# workers (info.worker), so that each replica is in the results before any is killed.
wait_for_result_workers() {
    local file="$HPO_RESULTS_DIR/$1/results.json" count=0
    for _ in $(seq "$RUN_TIMEOUT"); do
        count="$("$PYTHON" -c 'import json, sys
names = set()
for line in open(sys.argv[1]):
    try:  # a line being written may be incomplete
        names.add(((json.loads(line)[3] or {}).get("info") or {}).get("worker"))
    except ValueError:
        pass
print(len(names - {None}))' "$file" 2>/dev/null)" || count=0
        [ "$count" -ge "$2" ] && return 0
        sleep 1
    done
    log "run $1: results of $count distinct workers after ${RUN_TIMEOUT}s, expected $2"
    return 1
}

# worker_starts CONTAINER: how many times the hpo worker in it announced itself (one per start).
worker_starts() {
    docker logs "$1" 2>&1 | grep -c ' for run .* serving on ' || true
}

# worker_busy CONTAINER: its (latest) hpo worker is running a job: more job starts than jobs done
# in its log since that worker's last start.
worker_busy() {
    docker logs "$1" 2>&1 | awk '
        / for run .* serving on / { began = 0; done = 0 }
        /: [^ ]* at budget /      { began++ }
        / done: loss /            { done++ }
        END { exit !(began > done) }'
}

# hpo_worker_pid CONTAINER: the host pid of the `hpo worker` process in it (a child of the
# container's init, docker-init under `init: true`), checked by its command line.
hpo_worker_pid() {
    local init pid cmdline
    init="$(docker inspect -f '{{.State.Pid}}' "$1")"
    for pid in $(cat /proc/"$init"/task/*/children 2>/dev/null) "$init"; do
        cmdline="$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)" || continue
        if [[ "$cmdline" == *"hpo worker"* ]]; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

master_running() {
    [ "$(docker inspect -f '{{.State.Running}}' "$(compose ps -a -q master)" 2>/dev/null)" = true ]
}

export HPO_RUN_ID=smoke-kill HPO_ITERATIONS=1
COMPOSE_FILES=("${SEVERAL_HOSTS[@]}")
log "run $HPO_RUN_ID: docker-compose.distributed.yml: certs into $HPO_TLS_HOST_DIR, up master, then the workers"
compose run --rm certs >"$LOG_DIR/certs-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/certs-$HPO_RUN_ID.log" >&2; exit 1; }
[ -f "$HPO_TLS_HOST_DIR/ca.key" ] || { log "run $HPO_RUN_ID: certs made no CA key in $HPO_TLS_HOST_DIR"; exit 1; }
compose up -d --no-build master >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
wait_healthy master
compose up -d --no-build --no-deps --scale worker=2 worker >>"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
check_tls "$HPO_RUN_ID" "$HPO_TLS_HOST_DIR"
wait_for_results "$HPO_RUN_ID" 2
wait_for_result_workers "$HPO_RUN_ID" 2
workers="$(compose ps -q worker)"     # (no `| head`: SIGPIPE would fail the pipeline)
read -r -d '' oom_victim other <<<"$workers" || true
[ -n "$oom_victim" ] && [ -n "$other" ] || { log "run $HPO_RUN_ID: expected 2 worker containers, got: $workers"; exit 1; }

# a. as the kernel's OOM killer does: SIGKILL to the hpo worker process inside the container, from
#    the host, best while it runs a job. Its container exits 137, and `restart: on-failure` must
#    bring it back, under a new worker name; the job runs again (the master retries lost jobs).
for _ in $(seq 300); do worker_busy "$oom_victim" && break; sleep 0.2; done
pid="$(hpo_worker_pid "$oom_victim")" || { log "run $HPO_RUN_ID: no hpo worker process in ${oom_victim:0:12}"; exit 1; }
log "run $HPO_RUN_ID: SIGKILL to the hpo worker process in container ${oom_victim:0:12} (host pid $pid$(worker_busy "$oom_victim" && echo ', running a job')), as an OOM kill"
kill -KILL "$pid"
for _ in $(seq 180); do [ "$(worker_starts "$oom_victim")" -ge 2 ] && break; sleep 1; done
restarts="$(docker inspect -f '{{.RestartCount}}' "$oom_victim")"
if [ "$restarts" -lt 1 ] || [ "$(worker_starts "$oom_victim")" -lt 2 ]; then
    log "run $HPO_RUN_ID: container ${oom_victim:0:12} was not restarted after the kill (RestartCount $restarts, state $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$oom_victim"))"
    exit 1
fi
log "run $HPO_RUN_ID: compose restarted ${oom_victim:0:12} (RestartCount $restarts) and its worker is serving again"

# b. as before: the other worker's whole container killed mid-run (docker kill)
if master_running; then
    for _ in $(seq 100); do worker_busy "$other" && break; sleep 0.2; done
    log "run $HPO_RUN_ID: docker kill worker container ${other:0:12}$(worker_busy "$other" && echo ', running a job')"
    docker kill "$other" >/dev/null
else
    log "run $HPO_RUN_ID: the run ended before the second kill (docker kill of ${other:0:12}): skipped"
fi
wait_for_master "$HPO_RUN_ID"
log "run $HPO_RUN_ID: RestartCount ${oom_victim:0:12}: $(docker inspect -f '{{.RestartCount}}' "$oom_victim"), ${other:0:12}: $(docker inspect -f '{{.RestartCount}}' "$other")"
worker_logs=()
for container in $oom_victim $other; do
    docker logs "$container" >"$LOG_DIR/$HPO_RUN_ID-worker-${container:0:12}.log" 2>&1
    worker_logs+=(--worker-log "$LOG_DIR/$HPO_RUN_ID-worker-${container:0:12}.log")
done
# every job logged with a finite loss (lost jobs ran again: none crashed), names unique per
# worker start, and the OOM-killed worker's job (if it had one) in attempts.json and run again
check_run "$HPO_RUN_ID" 0 "${worker_logs[@]}" \
    --oom-killed-log "$LOG_DIR/$HPO_RUN_ID-worker-${oom_victim:0:12}.log"
compose down --timeout 20 >/dev/null 2>&1

# --- run 3: docker compose stop mid-run ends every process by SIGTERM, not SIGKILL ----------
export HPO_RUN_ID=smoke-stop
COMPOSE_FILES=("${SINGLE_HOST[@]}")
log "run $HPO_RUN_ID: up (the certificates of run smoke-clean), then docker compose stop while jobs run"
compose up -d --no-build --scale worker=2 >"$LOG_DIR/up-$HPO_RUN_ID.log" 2>&1 \
    || { cat "$LOG_DIR/up-$HPO_RUN_ID.log" >&2; exit 1; }
if [ "$(ca_fingerprint "${PROJECT}_tls")" = "$first_ca" ]; then
    log "run $HPO_RUN_ID: certs kept the volume's CA (sha256 ${first_ca:0:16}...)"
else
    log "run $HPO_RUN_ID: certs replaced the volume's CA of run smoke-clean"
    exit 1
fi
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
