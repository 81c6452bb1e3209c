#!/usr/bin/env bash
# The worker's GPU claim (pick_device in docker/entrypoint.sh) under two uids, without a GPU.
#
#   bash tests/docker/test_gpu_locks.sh [ENTRYPOINT [LOCK_DIR]]      (as root: setpriv)
#
# Runs the entrypoint's real `worker` role, with HPO_GPU_COUNT standing in for the GPUs and a
# fake `hpo` first on PATH that records its arguments and then becomes `sleep` (so the lock on
# fd 9, passed on by `exec`, stays held as long as that "worker" lives), as uid 1000 and uid
# 1001 against one lock directory, world-writable with the sticky bit like the volume
# gpu-locks. Checks: a second uid claims the other free GPU (no "Permission denied" on the
# first uid's lock file); with every GPU claimed a worker still starts, sharing one; a lock
# released by one uid is claimed by the other, both ways; an unreadable lock file or an
# unusable lock directory gives a one-line warning per file and the worker still starts (never
# an exit, which compose's `restart: on-failure` would turn into a restart loop).
# ENTRYPOINT: default docker/entrypoint.sh of this checkout; LOCK_DIR: default a fresh sticky
# world-writable directory, removed at the end (the smoke test passes the worker image's
# /run/hpo on a fresh volume instead). Takes about a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENTRYPOINT="${1:-$HERE/../../docker/entrypoint.sh}"
LOCK_DIR="${2:-}"
UID_A=1000 UID_B=1001

[ "$(id -u)" = 0 ] || { echo "test_gpu_locks: needs root (runs workers as uids $UID_A and $UID_B)" >&2; exit 2; }
command -v setpriv >/dev/null || { echo "test_gpu_locks: needs setpriv (util-linux)" >&2; exit 2; }

WORK="$(mktemp -d /tmp/hpo-gpu-locks.XXXXXX)"
chmod 0755 "$WORK"
mkdir -m 0755 "$WORK/bin"
mkdir -m 0777 "$WORK/state"
if [ -z "$LOCK_DIR" ]; then
    LOCK_DIR="$WORK/locks"
    mkdir "$LOCK_DIR"
    chmod 1777 "$LOCK_DIR"
fi
# the fake hpo: records its arguments, then holds on to the inherited fd 9 as `sleep`
cat >"$WORK/bin/hpo" <<'EOF'
#!/bin/sh
echo "$*" >"$FAKE_STATE/$FAKE_TAG.args"
exec sleep 600
EOF
chmod 0755 "$WORK/bin/hpo"

declare -A PIDS=()
failures=0
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    # a lock directory passed in is the caller's (a throwaway volume); ours went with $WORK
}
trap cleanup EXIT

fail() { echo "FAIL $*" >&2; failures=$((failures + 1)); }

# start TAG UID COUNT [LOCK_DIR]: a worker as UID seeing COUNT GPUs; sets $device to what it got.
start() {
    local tag=$1 uid=$2 count=$3 dir=${4:-$LOCK_DIR}
    env HPO_DEVICE="${HPO_DEVICE:-}" HPO_GPU_COUNT="$count" HPO_LOCK_DIR="$dir" PATH="$WORK/bin:$PATH" \
        FAKE_STATE="$WORK/state" FAKE_TAG="$tag" HPO_NAMESERVER=127.0.0.1:1 \
        setpriv --reuid="$uid" --regid="$uid" --clear-groups sh "$ENTRYPOINT" worker \
        >"$WORK/state/$tag.log" 2>&1 &
    PIDS[$tag]=$!
    for _ in $(seq 100); do
        [ -s "$WORK/state/$tag.args" ] && break
        kill -0 "${PIDS[$tag]}" 2>/dev/null || break
        sleep 0.05
    done
    device=""
    if [ -s "$WORK/state/$tag.args" ]; then
        device="$(sed -n 's/.*--device \([^ ]*\).*/\1/p' "$WORK/state/$tag.args")"
        echo "  $tag (uid $uid, $count GPUs): --device ${device:-none}; $(grep -c . "$WORK/state/$tag.log") log lines" >&2
    else
        fail "$tag (uid $uid): the worker did not start; its output:"
        sed 's/^/    /' "$WORK/state/$tag.log" >&2
    fi
}

# stop TAG: the worker exits (as a killed one would); its lock is released.
stop() { kill "${PIDS[$1]}" 2>/dev/null || true; wait "${PIDS[$1]}" 2>/dev/null || true; unset "PIDS[$1]"; }

expect_device() { [ "$device" = "$2" ] || fail "$1: expected --device $2, got '${device}'"; }
expect_clean_log() {
    if grep -qiE 'denied|unusable|cannot|error' "$WORK/state/$1.log"; then
        fail "$1: unexpected problem in its log:"; sed 's/^/    /' "$WORK/state/$1.log" >&2
    fi
}
owner_mode() { stat -c '%u %a' "$LOCK_DIR/$1" 2>/dev/null || echo missing; }

echo "test_gpu_locks: $ENTRYPOINT, locks in $LOCK_DIR ($(stat -c %a "$LOCK_DIR"))" >&2

# 1. uid A claims GPU 0, then uid B (another run's user) the other free one
start a1 "$UID_A" 2;  expect_device a1 cuda:0; expect_clean_log a1
start b1 "$UID_B" 2;  expect_device b1 cuda:1; expect_clean_log b1
[ "$(owner_mode gpu0.lock)" = "$UID_A 644" ] || fail "gpu0.lock: owner and mode $(owner_mode gpu0.lock), expected $UID_A 644"
[ "$(owner_mode gpu1.lock)" = "$UID_B 644" ] || fail "gpu1.lock: owner and mode $(owner_mode gpu1.lock), expected $UID_B 644"

# 2. every GPU claimed: a third worker starts anyway, sharing one
start c1 "$UID_B" 2
case "$device" in cuda:0|cuda:1) ;; *) fail "c1: expected a shared cuda:0 or cuda:1, got '$device'" ;; esac
grep -q 'sharing GPU' "$WORK/state/c1.log" || fail "c1: no 'sharing GPU' in its log"
stop c1

# 3. a lock released by uid A is claimed by uid B, and one released by uid B by uid A
stop a1
start b2 "$UID_B" 2;  expect_device b2 cuda:0; expect_clean_log b2
stop b1
start a2 "$UID_A" 2;  expect_device a2 cuda:1; expect_clean_log a2

# 4. more GPUs than lock files: uid B makes the missing one
start b3 "$UID_B" 3;  expect_device b3 cuda:2; expect_clean_log b3
stop b3

# 5. a lock file uid B cannot read (GPU 0, free now): one warning line, and B still starts
stop b2
chmod 0600 "$LOCK_DIR/gpu0.lock"
start b4 "$UID_B" 2
[ -n "$device" ] || fail "b4: no device despite the unreadable lock"
warnings="$(grep -c 'gpu0.lock unusable as uid' "$WORK/state/b4.log" || true)"
[ "$warnings" = 1 ] || fail "b4: expected one warning line on gpu0.lock, found $warnings"
grep -q 'sharing GPU' "$WORK/state/b4.log" || fail "b4: no 'sharing GPU' in its log"
stop b4
chmod 0644 "$LOCK_DIR/gpu0.lock"

# 6. a lock directory that cannot be made: one warning per GPU, and the worker still starts
start b5 "$UID_B" 2 /proc/hpo-no-such-dir
[ -n "$device" ] || fail "b5: no device without a lock directory"
[ "$(grep -c 'unusable as uid' "$WORK/state/b5.log" || true)" = 2 ] || fail "b5: expected 2 warning lines"
stop b5

# 7. HPO_DEVICE wins, and one GPU needs no claim
HPO_DEVICE=cuda:5 start d1 "$UID_A" 2; expect_device d1 cuda:5; expect_clean_log d1
stop d1
start d2 "$UID_A" 1;  expect_device d2 ""; stop d2
stop a2

if [ "$failures" -gt 0 ]; then
    echo "test_gpu_locks: $failures failure(s); the logs:" >&2
    for log in "$WORK"/state/*.log; do echo "--- $(basename "$log")" >&2; cat "$log" >&2; done
    exit 1
fi
echo "test_gpu_locks: OK (uids $UID_A and $UID_B share the GPU locks in $LOCK_DIR)" >&2
