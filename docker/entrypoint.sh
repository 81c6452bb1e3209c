#!/bin/sh
# Entry point of the hpo images: turns HPO_* environment variables into `hpo` command lines,
# so that compose files stay declarative and unset settings fall back to the search space's
# own defaults (an empty variable adds no flag). Every long-running role ends in `exec`, so the
# hpo process receives the container's SIGTERM directly (under `init: true`, from docker-init).
#
#   hpo-entrypoint head        nameserver (in the background) + master; exits with the master
#   hpo-entrypoint nameserver  hpo nameserver
#   hpo-entrypoint master      hpo master (needs a nameserver at HPO_NAMESERVER)
#   hpo-entrypoint worker      hpo worker (claims a free GPU when several are visible, through
#                              lock files in HPO_LOCK_DIR that work for any HPO_UID; see
#                              pick_device); it runs only the job of HPO_SPACE, in working
#                              directories under the results root
#   hpo-entrypoint certs       as root, once: a CA and a certificate in HPO_TLS_DIR (default /tls)
#                              unless it already has them (hpo certs --if-missing), then hands
#                              the directory to HPO_UID:HPO_GID (mode 0700). Extra arguments go to
#                              `hpo certs` (default: --host master, plus --host HPO_HOST if set)
#   hpo-entrypoint -h | --...  hpo with these arguments;  anything else is executed as given
# Extra arguments after the role are passed on to hpo.
# Transport security: every hpo process reads HPO_TLS_DIR itself (mutual TLS with the CA,
# certificate and key there), so no role adds a flag for it.
set -eu

role="${1:-}"
[ $# -gt 0 ] && shift

ns_port="${HPO_NS_PORT:-9090}"
nameserver="${HPO_NAMESERVER:-127.0.0.1:${ns_port}}"
space="${HPO_SPACE:-search_spaces/resnet50_caltech101.yaml}"
run_id="${HPO_RUN_ID:-}"
[ -n "$run_id" ] || run_id="$(basename "$space" .yaml)"
results_root="${HPO_RESULTS_ROOT:-/workspace/results}"

log() { echo "[hpo-entrypoint] $*" >&2; }

nameserver_command() {
    echo "hpo nameserver --host ${HPO_NS_BIND:-0.0.0.0} --port ${ns_port}"
}

# Sets $device, the worker's torch device: HPO_DEVICE when set; none (the job's default) with
# at most one GPU visible; otherwise (compose gives every replica the same GPUs) the first GPU
# whose lock file in HPO_LOCK_DIR, a volume the replicas share, is free. The lock is held on
# fd 9, which `exec` passes on, so it lasts exactly as long as the worker process (and the
# processes it forks). Runs in the current shell on purpose: a $(...) subshell would drop the
# lock at once.
#
# Any HPO_UID, also a later run under another uid than the one that made the files: the lock
# directory is world-writable with the sticky bit (like /tmp; the image makes /run/hpo so, and
# a fresh volume inherits it), so nobody can delete or replace another user's lock file, one
# file per GPU for every uid (a directory per uid would let two uids claim the same GPU).
# A missing file is made with O_EXCL (noclobber) and mode 0644 whatever the umask; an existing
# one is opened READ-ONLY, never for writing: flock(2) needs no write access, a file of another
# uid is not writable (0644), and in a sticky directory the kernel refuses to open another
# user's file with O_CREAT even when its mode allows (fs.protected_regular). The volume is a
# local one: on NFS, flock is emulated with fcntl locks, which need a writable descriptor.
# A lock file that cannot be opened or locked costs a one-line warning, and the worker starts
# anyway (on a free GPU whose lock it got, else sharing one): never an exit, so never a
# restart loop under `restart: on-failure`.
#
# HPO_GPU_COUNT, when set, stands in for torch's count of visible GPUs: for tests
# (tests/docker/test_gpu_locks.sh, which runs on hosts without a GPU), or 0 to skip torch's
# probe; leave it unset in normal use.
pick_device() {
    device="${HPO_DEVICE:-}"
    [ -z "$device" ] || return 0
    count="${HPO_GPU_COUNT:-}"
    [ -n "$count" ] || count="$(python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)"
    case "$count" in
        ""|*[!0-9]*) log "GPU count '$count' is not a number (HPO_GPU_COUNT?); no GPU claimed"; return 0 ;;
    esac
    [ "$count" -gt 1 ] || return 0
    lock_dir="${HPO_LOCK_DIR:-/run/hpo}"
    [ -d "$lock_dir" ] || mkdir -p "$lock_dir" 2>/dev/null || true
    i=0
    while [ "$i" -lt "$count" ]; do
        lock="$lock_dir/gpu$i.lock"
        [ -e "$lock" ] || (umask 022 && set -C && : >"$lock") 2>/dev/null || true
        # `command`: a failed redirection of `exec` would otherwise end the shell
        if { command exec 9<"$lock"; } 2>/dev/null; then
            if flock -n 9 2>/dev/null; then
                log "claimed GPU $i of $count (lock $lock)"
                device="cuda:$i"
                return 0
            else
                status=$?
            fi
            exec 9<&-
            # 1: held by another worker; anything else: flock itself failed
            [ "$status" -eq 1 ] || lock_warning "$lock" "flock failed (status $status)"
        else
            lock_warning "$lock" "cannot open it"
        fi
        i=$((i + 1))
    done
    i=$(( $(od -An -N2 -tu2 /dev/urandom) % count ))
    log "no free GPU of $count could be claimed (see above for any lock problem); sharing GPU $i"
    device="cuda:$i"
}

# lock_warning FILE WHAT: one line on a GPU lock this worker could not use, and the way out.
lock_warning() {
    if [ -e "$1" ]; then
        found="owner uid $(stat -c %u "$1" 2>/dev/null || echo '?'), mode $(stat -c %a "$1" 2>/dev/null || echo '?')"
    else
        found="missing; $(dirname "$1") not writable: mode $(stat -c %a "$(dirname "$1")" 2>/dev/null || echo '?')"
    fi
    log "GPU lock $1 unusable as uid $(id -u): $2 ($found); skipped. Fix: chmod 644 the lock files and 1777 their directory, or delete the volume gpu-locks (docker compose down, then docker volume rm <project>_gpu-locks)"
}

case "$role" in
    nameserver)
        # shellcheck disable=SC2046
        exec $(nameserver_command) "$@"
        ;;
    master|head)
        if [ "$role" = head ]; then
            log "starting the nameserver on port $ns_port"
            # shellcheck disable=SC2046
            $(nameserver_command) &
        fi
        set -- "$space" --run-id "$run_id" --nameserver "$nameserver" \
            --results "$results_root/$run_id" "$@"
        [ -z "${HPO_HOST:-}" ] || set -- "$@" --host "$HPO_HOST"
        [ -z "${HPO_MIN_WORKERS:-}" ] || set -- "$@" --min-workers "$HPO_MIN_WORKERS"
        [ -z "${HPO_MIN_BUDGET:-}" ] || set -- "$@" --min-budget "$HPO_MIN_BUDGET"
        [ -z "${HPO_MAX_BUDGET:-}" ] || set -- "$@" --max-budget "$HPO_MAX_BUDGET"
        [ -z "${HPO_ETA:-}" ] || set -- "$@" --eta "$HPO_ETA"
        [ -z "${HPO_ITERATIONS:-}" ] || set -- "$@" --iterations "$HPO_ITERATIONS"
        [ -z "${HPO_OPTIMIZER:-}" ] || set -- "$@" --optimizer "$HPO_OPTIMIZER"
        [ -z "${HPO_SEED:-}" ] || set -- "$@" --seed "$HPO_SEED"
        log "hpo master $*"
        exec hpo master "$@"
        ;;
    worker)
        pick_device
        if [ -n "${HPO_WORKER_THREADS:-}" ]; then   # CPU threads per job (several workers per host)
            export OMP_NUM_THREADS="$HPO_WORKER_THREADS" MKL_NUM_THREADS="$HPO_WORKER_THREADS"
        fi
        set -- --run-id "$run_id" --nameserver "$nameserver" "$@"
        [ -z "${HPO_HOST:-}" ] || set -- "$@" --host "$HPO_HOST"
        [ -z "$device" ] || set -- "$@" --device "$device"
        [ -z "${HPO_DATA_ROOT:-}" ] || set -- "$@" --data-root "$HPO_DATA_ROOT"
        [ -z "${HPO_LOADER_WORKERS:-}" ] || set -- "$@" --loader-workers "$HPO_LOADER_WORKERS"
        # the only job this worker runs (the one its own copy of the space names), and the root
        # that the master's working directories (under its results directory) must lie in
        set -- "$@" --space "$space" --work-dir "$results_root"
        log "hpo worker $*"
        exec hpo worker "$@"
        ;;
    certs)
        tls_dir="${HPO_TLS_DIR:-/tls}"
        if [ $# -eq 0 ]; then
            set -- --host master
            [ -z "${HPO_HOST:-}" ] || set -- "$@" --host "$HPO_HOST"
        fi
        hpo certs "$tls_dir" --if-missing "$@"
        if [ "$(id -u)" = 0 ]; then
            # every time, also when the certificates were already there: HPO_UID may have changed
            owner="${HPO_UID:-1000}:${HPO_GID:-1000}"
            chown -R "$owner" "$tls_dir"
            chmod 700 "$tls_dir"
            log "$tls_dir: owned by $owner, mode 0700"
        fi
        ;;
    "")
        exec hpo --help
        ;;
    -*)
        exec hpo "$role" "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
