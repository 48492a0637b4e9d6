#!/usr/bin/env bash
# Multi-process fault tests of `elip train` (issue 15 classes 9 and 16): runs the built debug
# `elip` under mpirun.
#  1. a SIGSTOPped rank: the collective watchdog aborts the job within bounded time, naming the
#     rank that does not answer and the operation the other one waits in
#  2. no false alarm: rank 0 spends 4x the watchdog timeout in every checkpoint, the job finishes
#  3. SIGTERM to cluster/launch.sh: the ranks checkpoint (SIGUSR1 forwarded), exit 143, and
#     nothing it started holds its output open afterwards
#  4. SIGTERM to mpirun itself with odls_base_sigkill_timeout raised: the ranks checkpoint
set -euo pipefail
cd "$(dirname "$0")/.."

source tests-mpi/common.sh mpi-faults

tiny_config "$W/long.yaml" "max_steps: 100000, checkpoint_every: 100000, log_every: 1, seed: 7"
tiny_config "$W/short.yaml" "max_steps: 6, checkpoint_every: 2, log_every: 1, seed: 7, collective_timeout_minutes: 0.05"

wait_for_metrics() {  # wait_for_metrics RUN: until rank 0 logged a step (at most 120 s)
    for _ in $(seq 1 240); do
        [[ -s $1/metrics.jsonl ]] && return 0
        sleep 0.5
    done
    return 1
}
rank_pid() {  # rank_pid MPIRUN_PID RANK: the pid of that rank (a child of mpirun)
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return 0; }
    done
    return 1
}

# 1. SIGSTOP rank 1: with a 3 s watchdog, rank 0 checks after 3 s of waiting, rank 1 does not
#    answer within the 5 s grace, the job is aborted (exit 75) — well inside 60 s.
"${MPIRUN[@]}" -np 2 "$ELIP" train --config "$W/long.yaml" --vocab "$VOCAB" --out "$W/stop" --threads 1 \
    --collective-timeout-minutes 0.05 >"$W/stop.log" 2>&1 &
pid=$!
kill_after 240 "$pid"
rc=0
if wait_for_metrics "$W/stop" && r1=$(rank_pid "$pid" 1); then
    start=$(date +%s)
    kill -STOP "$r1"
    wait "$pid" || rc=$?
    secs=$(( $(date +%s) - start ))
    kill -CONT "$r1" 2>/dev/null || true
else
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" || true; secs=-1
fi
kill "$guard" 2>/dev/null || true
if [[ $rc -ne 0 && $secs -ge 0 && $secs -lt 60 ]] &&
    grep -q "\[rank 0\] error: collective watchdog: rank 0 has waited [0-9]* s in [A-Za-z_ -]* (step [0-9]*); rank(s) 1 did not answer a liveness check" "$W/stop.log"; then
    pass "SIGSTOPped rank: watchdog aborted the job after ${secs}s (exit $rc): $(grep -o 'rank 0 has waited.*check' "$W/stop.log")"
else
    fail "SIGSTOPped rank: exit $rc after ${secs}s" "$W/stop.log"
fi

# 2. Rank 0 is 12 s in every checkpoint (4x the 3 s timeout) while rank 1 waits in the barrier:
#    rank 0 answers the liveness checks, the job is not aborted and finishes.
rc=0
ELIP_FAULT_SLOW_CHECKPOINT_SECONDS=12 timeout -k 5 300 "${MPIRUN[@]}" -x ELIP_FAULT_SLOW_CHECKPOINT_SECONDS -np 2 "$ELIP" train \
    --config "$W/short.yaml" --vocab "$VOCAB" --out "$W/slow" --threads 1 >"$W/slow.log" 2>&1 || rc=$?
if [[ $rc -eq 0 ]] && grep -q "stopped: reached step 6" "$W/slow.log" && ! grep -q "collective watchdog" "$W/slow.log"; then
    pass "slow checkpoints (12 s, watchdog 3 s): no false alarm, the run finished"
else
    fail "slow checkpoints: exit $rc" "$W/slow.log"
fi

# SIGTERM to PID once RUN has written its first metrics; sets rc to PID's exit status. A guard
# SIGKILLs PID after 240 s so a broken signal path cannot hang the suite.
term_after_first_metrics() {
    local pid=$1 run=$2 guard
    kill_after 240 "$pid"
    rc=0
    wait_for_metrics "$run" || true
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    kill "$guard" 2>/dev/null || true
}

# Processes that hold FILE open (from /proc: no fuser or lsof needed).
holders() {
    local fd
    for fd in /proc/[0-9]*/fd/*; do
        if [[ $(readlink "$fd" 2>/dev/null) == "$1" ]]; then echo "${fd%/fd/*}"; fi
    done | sort -u | tr '\n' ' '
}

# 3. SIGTERM to cluster/launch.sh: SIGUSR1 to mpirun, the ranks checkpoint and exit 0, launch.sh 143.
#    Once it has exited nothing it started holds its output open (its grace timer's sleep did,
#    for 300 s: `launch.sh ... | tee log` waited that long after the job).
printf 'localhost slots=2\n' >"$W/hosts"
cluster/launch.sh --hostfile "$W/hosts" --ranks-per-node 2 --threads-per-rank 1 --bind none --elip "$ELIP" -- \
    train --config "$W/long.yaml" --vocab "$VOCAB" --out "$W/launch" >"$W/launch.log" 2>&1 &
term_after_first_metrics $! "$W/launch"
sleep 0.5  # the grace timer ends on its own TERM
held=$(holders "$W/launch.log")
if [[ $rc -eq 143 && -z $held ]] && grep -q "stop signal (SIGUSR1): checkpointed at step" "$W/launch.log" &&
    ls "$W/launch/checkpoints" | grep -q '^step-'; then
    pass "SIGTERM to launch.sh: $(grep -o 'checkpointed at step [0-9]*' "$W/launch.log"), exit 143"
else
    fail "SIGTERM to launch.sh (exit $rc${held:+; after it exited, still holding its output: $held})" "$W/launch.log"
fi

# 4. SIGTERM to mpirun itself: OpenMPI SIGTERMs the ranks and SIGKILLs them after
#    odls_base_sigkill_timeout (default 1 s); raised to 10 s the ranks checkpoint in time.
"${MPIRUN[@]}" --mca odls_base_sigkill_timeout 10 -np 2 "$ELIP" train --config "$W/long.yaml" --vocab "$VOCAB" \
    --out "$W/term" --threads 1 >"$W/term.log" 2>&1 &
term_after_first_metrics $! "$W/term"
if grep -q "stopped: stop signal (SIGTERM): checkpointed at step" "$W/term.log" && ls "$W/term/checkpoints" | grep -q '^step-'; then
    pass "SIGTERM to mpirun (sigkill timeout 10 s): $(grep -o 'checkpointed at step [0-9]*' "$W/term.log"), mpirun exit $rc"
else
    fail "SIGTERM to mpirun (exit $rc)" "$W/term.log"
fi

echo "mpi-faults: $passed passed, $failed failed"
if [[ $failed -eq 0 ]]; then rm -rf "$W"; else echo "tests-mpi/faults: logs in $W"; exit 1; fi
