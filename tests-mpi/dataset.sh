#!/usr/bin/env bash
# Distributed dataset build: `mpirun -np K elip build-dataset ...` must produce exactly the shards of
# a single-process build (same records, byte-identical data.mdb: equal manifest checksums), for
# K = 2 and 3 over 5 shards, verify cleanly, and resume (a deleted shard is rebuilt by its rank
# only). Uses the already built `elip` executable; builds nothing.
#
# Binary: $ELIP_BIN_PATH/elip, else `swift build $BUILD_FLAGS --show-bin-path`/elip
# (e.g. BUILD_FLAGS="--scratch-path .build-ds" tests-mpi/dataset.sh). Extra mpirun flags:
# $ELIP_MPIRUN_ARGS; transport flags chosen by run.sh: $ELIP_MPI_MCA.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${ELIP_BIN_PATH:-$(swift build ${BUILD_FLAGS:-} --show-bin-path)}
ELIP="$BIN/elip"
if [[ ! -x "$ELIP" ]]; then
    echo "tests-mpi/dataset: no elip executable at $ELIP; build first" >&2
    exit 2
fi
MPIRUN=(mpirun --oversubscribe --bind-to none)
if [[ $(id -u) -eq 0 ]]; then
    MPIRUN+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
read -r -a EXTRA <<<"${ELIP_MPIRUN_ARGS:-} ${ELIP_MPI_MCA:-}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/elip-mpi-dataset.XXXXXX")
ok=1
fail() { echo "FAIL dataset: $*"; ok=0; }

# Shard list with counts, sizes and checksums (everything in manifest.json that must agree).
shards() { grep -E '"(name|records|bytes|checksum)" :' "$1/manifest.json" | tr -d ' ,'; }

"$ELIP" synth --out "$WORK/syn" --images 30 --size 64 --seed 11 --quiet >/dev/null
printf '[{"image": "images/none.jpg", "caption": "missing"}]\n' >"$WORK/extra.json"
ARGS=(build-dataset --annotations "$WORK/syn/train.json" "$WORK/syn/test.json" "$WORK/extra.json"
      --image-root "$WORK/syn" --shards 5 --image-size 32 --workers 1 --quiet --max-reject-fraction 0.5)
"$ELIP" "${ARGS[@]}" --out "$WORK/single" >"$WORK/single.log" 2>&1 || fail "single-process build failed: $(tail -3 "$WORK/single.log")"

for np in 2 3; do
    out="$WORK/np$np"
    if ! timeout -k 5 300 "${MPIRUN[@]}" "${EXTRA[@]}" -np "$np" "$ELIP" "${ARGS[@]}" --out "$out" >"$out.log" 2>&1; then
        fail "mpirun -np $np build failed:"; tail -20 "$out.log"; continue
    fi
    if ! diff <(shards "$WORK/single") <(shards "$out") >"$out.diff"; then
        fail "-np $np shards differ from the single-process build:"; cat "$out.diff"
    fi
    cmp -s "$WORK/single/rejects.jsonl" "$out/rejects.jsonl" || fail "-np $np rejects.jsonl differs"
    "$ELIP" inspect-dataset "$out" --verify --show 0 >"$out.verify" 2>&1 || { fail "-np $np verify failed"; cat "$out.verify"; }
done

# Resume under MPI: remove shard 3 (rank 1 of 2 owns it) and leave a stale temporary behind.
out="$WORK/np2"
if [[ -d "$out/shard-00003-of-00005" ]]; then
    rm -rf "$out/shard-00003-of-00005"
    mkdir "$out/shard-00001-of-00005.tmp-424242"
    timeout -k 5 300 "${MPIRUN[@]}" "${EXTRA[@]}" -np 2 "$ELIP" "${ARGS[@]}" --out "$out" >"$out.resume.log" 2>&1 \
        || { fail "resumed build failed"; tail -20 "$out.resume.log"; }
    grep -q "built 30 records in 5 shards (this rank: 0 built, 3 kept)" "$out.resume.log" && grep -q "rank 1: 1 finished shard(s) verified and kept: 1$" "$out.resume.log" \
        || { fail "a rank rebuilt shards it had finished"; cat "$out.resume.log"; }
    diff <(shards "$WORK/single") <(shards "$out") >/dev/null || fail "resumed shards differ"
    ls "$out" | grep -q '\.tmp' && fail "temporary directories left behind: $(ls "$out")"
fi

if [[ $ok -eq 1 ]]; then
    echo "PASS dataset (mpirun -np 2 and 3 == single process, verify, resume)"
    rm -rf "$WORK"
else
    echo "tests-mpi/dataset: files in $WORK"
    exit 1
fi
