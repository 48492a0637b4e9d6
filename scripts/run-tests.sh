#!/usr/bin/env bash
# The whole test suite: XCTest (unit + end-to-end CLI tests, tiny shapes) and the multi-process
# MPI tests; ends with one summary line "tests: P passed, F failed, S skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=$(mktemp "${TMPDIR:-/tmp}/elip-tests.XXXXXX")
# OpenBLAS falls back to its generic SSE3 kernels on CPUs it does not recognise (e.g. Sapphire
# Rapids in some VMs), ~6x slower. `elip` corrects this itself (Sources/elip/BLASKernels.swift);
# the XCTest bundle links OpenBLAS directly, so pick the kernels from the CPU's flags here.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
    if [[ $flags == *avx512f* && $flags == *avx512bw* && $flags == *avx512vl* ]]; then
        export OPENBLAS_CORETYPE=SKYLAKEX
    elif [[ $flags == *avx2* && $flags == *fma* ]]; then
        export OPENBLAS_CORETYPE=HASWELL
    fi
fi
status=0
ELIP_THREADS=${ELIP_THREADS:-2} swift test --skip-build ${BUILD_FLAGS:-} 2>&1 | tee "$LOG"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
# XCTest's closing line: "Executed N tests, with S tests skipped and F failures".
line=$(grep -E "Suite 'All tests'" -A1 "$LOG" | grep -E "Executed [0-9]+ tests?" | tail -1)
executed=$(sed -nE 's/.*Executed ([0-9]+) tests?.*/\1/p' <<<"$line")
skipped=$(sed -nE 's/.* ([0-9]+) tests? skipped.*/\1/p' <<<"$line")
xfailed=$(sed -nE 's/.*with ([^ ]+ [^ ]+ skipped and )?([0-9]+) failures?.*/\2/p' <<<"$line")
executed=${executed:-0}; skipped=${skipped:-0}; xfailed=${xfailed:-0}
[[ $executed -gt 0 ]] || { echo "run-tests: no XCTest summary found" >&2; status=1; xfailed=$((xfailed + 1)); }
passed=$((executed - skipped - xfailed))
failed=$xfailed
PART=$(mktemp "${TMPDIR:-/tmp}/elip-tests-part.XXXXXX")
for script in scripts/check-deps.py tests-mpi/run.sh tests-mpi/train.sh tests-mpi/faults.sh tests-mpi/eval.sh cluster/test-netns.sh; do
    "$script" 2>&1 | tee "$PART"
    rc=${PIPESTATUS[0]}
    out=$(tail -1 "$PART")
    p=$(sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/p' <<<"$out")
    f=$(sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/p' <<<"$out")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$out")
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-1}))
    skipped=$((skipped + ${s:-0}))
    [[ $rc -eq 0 ]] || status=1
done
rm -f "$LOG" "$PART"
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
