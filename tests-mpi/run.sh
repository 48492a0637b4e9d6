#!/usr/bin/env bash
# Multi-process tests of ELIPDistributed: runs the already built debug test bundle under mpirun
# (2 and 3 ranks, the thread-level fallbacks, and a dead-rank check). Builds nothing.
#
# Bundle location: $ELIP_BIN_PATH, else `swift build $BUILD_FLAGS --show-bin-path`
# (e.g. BUILD_FLAGS="--scratch-path .build-mpi" tests-mpi/run.sh). Extra mpirun flags: $ELIP_MPIRUN_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${ELIP_BIN_PATH:-$(swift build ${BUILD_FLAGS:-} --show-bin-path)}
BUNDLE="$BIN/elipPackageTests.xctest"
if [[ ! -x "$BUNDLE" ]]; then
    echo "tests-mpi: no test bundle at $BUNDLE; build first: swift build --build-tests" >&2
    exit 2
fi
if ! command -v mpirun >/dev/null; then
    echo "tests-mpi: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, or make setup)" >&2
    exit 2
fi

# --oversubscribe: more ranks than this machine's cores. --bind-to none: each rank runs a
# communication thread besides its compute threads; pinning a rank to one core would starve them.
MPIRUN=(mpirun --oversubscribe --bind-to none)
if [[ $(id -u) -eq 0 ]]; then
    MPIRUN+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
read -r -a EXTRA <<<"${ELIP_MPIRUN_ARGS:-}"

SUITE=ELIPDistributedTests.MPITests
# The MPI suite plus the arena test (which also runs single-process under swift test).
SELECTION="$SUITE,ELIPDistributedTests.ArenaTests"
# Every rank must run exactly these tests; a stale bundle without them must not pass.
EXPECTED=$("$BUNDLE" --list-tests | grep -cE "^ELIPDistributedTests\.(MPITests|ArenaTests)/" || true)
if [[ $EXPECTED -eq 0 ]]; then
    echo "tests-mpi: $BUNDLE has no $SUITE tests; rebuild with swift build --build-tests" >&2
    echo "MPI tests: 0 passed, 1 failed"
    exit 1
fi
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/elip-mpi.XXXXXX")
passed=0
failed=0

# Shared-memory transport: OpenMPI's default (vader with CMA single-copy) works on this machine
# and is the fastest. Containers that forbid process_vm_readv (ptrace restrictions) or have a
# tiny /dev/shm break it for large messages, so a preflight with a 4 MB all-reduce picks the first
# configuration that works: default, vader without single-copy, then TCP loopback.
MCA=()
preflight_ok=0
for cfg in "" "--mca btl_vader_single_copy_mechanism none" "--mca btl self,tcp"; do
    read -r -a try_mca <<<"$cfg"
    if timeout -k 5 60 "${MPIRUN[@]}" "${try_mca[@]}" "${EXTRA[@]}" -np 2 "$BUNDLE" \
        "$SUITE/testWorldMatchesLauncher,$SUITE/testAllReduceSumMaxMin" >"$LOGS/preflight.log" 2>&1; then
        MCA=("${try_mca[@]}")
        preflight_ok=1
        break
    fi
done
if [[ $preflight_ok -eq 0 ]]; then
    echo "tests-mpi: no MPI transport works here; last attempt:" >&2
    tail -30 "$LOGS/preflight.log" >&2
    echo "MPI tests: 0 passed, 1 failed"
    exit 1
fi
echo "tests-mpi: $EXPECTED tests via: ${MPIRUN[*]} ${MCA[*]:-} ${EXTRA[*]:-} -np N $BUNDLE $SELECTION"

# run NAME NP [ENV=VALUE ...]: the selection on NP ranks; every rank must run all of
# them (none skipped) without failures.
run() {
    local name=$1 np=$2
    shift 2
    local log="$LOGS/$name.log" xs=() rc=0
    for kv in "$@"; do xs+=(-x "$kv"); done
    env "$@" timeout -k 10 300 "${MPIRUN[@]}" "${MCA[@]}" "${EXTRA[@]}" "${xs[@]}" --tag-output -np "$np" \
        "$BUNDLE" "$SELECTION" >"$log" 2>&1 || rc=$?
    # Per rank: the selection passed, with all expected tests run and none skipped.
    local ok; ok=$(grep -c "<stdout>:Test Suite 'Selected tests' passed" "$log" || true)
    local full; full=$(grep -c "<stdout>:.*Executed $EXPECTED tests\?, with 0 failures" "$log" || true)
    # A failing rank's summary if there is one, else the full selection's.
    local summary
    summary=$(grep -o "Executed [0-9]* tests\?, with [^(]*[1-9][0-9]* failures\?" "$log" | head -1 || true)
    [[ -n $summary ]] || summary=$(grep -o "Executed $EXPECTED tests\?, with [^(]*" "$log" | head -1 || true)
    [[ -n $summary ]] || summary="no test summary"
    summary=${summary% }
    if [[ $rc -eq 0 && $ok -eq $np && $full -ge $np ]] && ! grep -q "skipped and" "$log"; then
        echo "PASS $name ($np ranks): $summary on every rank"
        passed=$((passed + 1))
    else
        local why="exit $rc"; [[ $rc -eq 124 ]] && why="timed out after 300 s"
        echo "FAIL $name ($np ranks, $why): $summary"
        grep -E "error:|skipped|Abort|terminated|exiting improperly" "$log" | head -20 || true
        failed=$((failed + 1))
    fi
}

run ranks2 2
run ranks3 3
# Fallbacks when MPI lacks MPI_THREAD_MULTIPLE: reducer thread with a busy guard; no thread.
run ranks2-serialized 2 ELIP_MPI_THREAD_LEVEL=serialized
run ranks2-funneled 2 ELIP_MPI_THREAD_LEVEL=funneled

# Dead rank: rank 1 exits(3) while ranks 0 and 2 sit in an all-reduce. mpirun must end non-zero
# within 60 s (124 from timeout means it hung).
start=$(date +%s)
rc=0
ELIP_MPI_DEAD_RANK_TEST=1 timeout -k 5 60 "${MPIRUN[@]}" "${MCA[@]}" "${EXTRA[@]}" -x ELIP_MPI_DEAD_RANK_TEST=1 \
    --tag-output -np 3 "$BUNDLE" ELIPDistributedTests.MPIDeadRankTests >"$LOGS/dead-rank.log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))
if [[ $rc -ne 0 && $rc -ne 124 && $rc -ne 137 && $secs -lt 60 ]] && grep -q "exiting with status 3" "$LOGS/dead-rank.log"; then
    echo "PASS dead-rank (3 ranks): mpirun exited $rc after ${secs}s"
    passed=$((passed + 1))
else
    echo "FAIL dead-rank (3 ranks): mpirun exited $rc after ${secs}s (expected non-zero, < 60 s)"
    tail -20 "$LOGS/dead-rank.log"
    failed=$((failed + 1))
fi

# World size must match the launcher: the bundle started without mpirun but with a faked
# OMPI_COMM_WORLD_SIZE=2 comes up as an MPI singleton and must report a clear mismatch.
rc=0
ELIP_MPI_SIZE_MISMATCH_TEST=1 OMPI_COMM_WORLD_SIZE=2 timeout -k 5 60 "$BUNDLE" \
    ELIPDistributedTests.MPIWorldSizeMismatchTests >"$LOGS/size-mismatch.log" 2>&1 || rc=$?
if [[ $rc -eq 0 ]] && grep -q "Executed 1 test, with 0 failures" "$LOGS/size-mismatch.log"; then
    echo "PASS size-mismatch: OMPI_COMM_WORLD_SIZE=2 with a 1-process MPI world is a clear error"
    passed=$((passed + 1))
else
    echo "FAIL size-mismatch (exit $rc)"
    grep -E "error:|skipped" "$LOGS/size-mismatch.log" | head -10 || true
    failed=$((failed + 1))
fi

# ---- dataset builder block (owner: data / build-dataset; logic in tests-mpi/dataset.sh) ----
# mpirun -np 2 and 3 `elip build-dataset` must give the same shards as one process, and resume.
if ELIP_BIN_PATH="$BIN" ELIP_MPI_MCA="${MCA[*]:-}" tests-mpi/dataset.sh; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
# ---- end of dataset builder block ----

echo "MPI tests: $passed passed, $failed failed"
if [[ $failed -eq 0 ]]; then rm -rf "$LOGS"; else echo "tests-mpi: logs in $LOGS"; exit 1; fi
