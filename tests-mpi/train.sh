#!/usr/bin/env bash
# Multi-process tests of `elip train` (SPEC §6): runs the already built debug `elip` under mpirun.
#  1. 2 ranks x batch 4 with global negatives == 1 rank x batch 8 (weights after 3 steps)
#  2. resume under mpirun is bitwise identical to the uninterrupted run
#  3. a rank killed mid-run ends the job non-zero within 60 s
#  4. a process killed while writing a checkpoint leaves the previous one loadable (resume auto)
#  5. ranks with different configs are refused (fingerprint check)
#  6. SIGUSR1 (Slurm pre-emption): every rank finishes its step, rank 0 checkpoints, exit 0
#  7. synth -> build-dataset -> train from LMDB shards -> resume, all under mpirun
#  8. cluster/launch.sh's mpirun line (dry run)
#  9. BLIP: 2 ranks x 4 with global negatives == 1 rank x 8, and resume under mpirun is bitwise
set -euo pipefail
cd "$(dirname "$0")/.."

source tests-mpi/common.sh mpi-train

config() {  # config FILE [extra train keys]; dropout off so runs with different rank counts compare
    tiny_config "$1" "max_steps: 3, checkpoint_every: 1, keep_checkpoints: 5, log_every: 1, seed: 7, dropout: false, global_negatives: true${2:-}"
}

config "$W/t.yaml"
train() {  # train NP OUT [args...]
    local np=$1 out=$2
    shift 2
    if [[ $np -eq 0 ]]; then
        timeout -k 5 300 "$ELIP" train --config "$W/t.yaml" --vocab "$VOCAB" --out "$out" --threads 1 "$@"
    else
        timeout -k 5 300 "${MPIRUN[@]}" -np "$np" "$ELIP" train --config "$W/t.yaml" --vocab "$VOCAB" --out "$out" --threads 1 "$@"
    fi
}
ck() { echo "$1/checkpoints/step-$(printf %08d "$2")/model.safetensors"; }

# 1. 2 ranks x 4 == 1 rank x 8. Attention key biases (BERT's key.bias, the middle third of the
# ViT's packed qkv.bias) are left out: their gradient is zero in exact arithmetic (softmax ignores
# a shift shared by all keys), so AdamW turns float noise into full-size steps there and they
# carry no information about the equivalence. Every weight matrix is compared.
if train 0 "$W/one" --batch-size 8 >"$W/one.log" 2>&1 && train 2 "$W/two" --batch-size 4 >"$W/two.log" 2>&1 &&
    "$ELIP" diff-weights "$(ck "$W/one" 3)" "$(ck "$W/two" 3)" --exclude key.bias --exclude qkv.bias --tolerance 1e-4 >"$W/diff1.log" 2>&1; then
    pass "global negatives: 2 ranks x batch 4 == 1 rank x batch 8 after 3 steps ($(tail -1 "$W/diff1.log"))"
else
    fail "global negatives: 2 ranks x 4 differ from 1 rank x 8" "$W/diff1.log"
fi

# 2. Resume under mpirun: stop at step 2, resume to 3, bitwise equal to the uninterrupted run.
if train 2 "$W/res" --batch-size 4 --max-steps 2 >"$W/res1.log" 2>&1 &&
    train 2 "$W/res" --batch-size 4 --resume auto >"$W/res2.log" 2>&1 &&
    "$ELIP" diff-weights "$(ck "$W/two" 3)" "$(ck "$W/res" 3)" >"$W/diff2.log" 2>&1; then
    pass "resume under mpirun is bitwise identical ($(tail -1 "$W/diff2.log"))"
else
    fail "resume under mpirun" "$W/diff2.log"
fi

# 3. A rank killed mid-run ends the job non-zero within 60 s.
start=$(date +%s)
rc=0
ELIP_FAULT_KILL_RANK=1 ELIP_FAULT_AT_STEP=2 timeout -k 5 60 "${MPIRUN[@]}" -x ELIP_FAULT_KILL_RANK -x ELIP_FAULT_AT_STEP \
    -np 2 "$ELIP" train --config "$W/t.yaml" --vocab "$VOCAB" --out "$W/kill" --threads 1 >"$W/kill.log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))
if [[ $rc -ne 0 && $rc -ne 124 && $secs -lt 60 ]]; then
    pass "killed rank ends the job: mpirun exited $rc after ${secs}s"
else
    fail "killed rank: mpirun exited $rc after ${secs}s" "$W/kill.log"
fi

# 4. Killed while writing the step-2 checkpoint: resume auto continues from step 1.
rc=0
ELIP_FAULT_CRASH_IN_CHECKPOINT=2 train 0 "$W/torn" --batch-size 8 >"$W/torn1.log" 2>&1 || rc=$?
if [[ $rc -ne 0 ]] && train 0 "$W/torn" --batch-size 8 --resume auto >"$W/torn2.log" 2>&1 &&
    grep -q "resumed from .*step-00000001 at step 1" "$W/torn2.log" &&
    "$ELIP" diff-weights "$(ck "$W/one" 3)" "$(ck "$W/torn" 3)" >"$W/diff4.log" 2>&1; then
    pass "a torn checkpoint write leaves the previous checkpoint loadable; the resumed run matches"
else
    fail "torn checkpoint (first run exit $rc)" "$W/torn2.log"
fi

# 5. Ranks with different configs are refused (MPMD launch: one config per rank).
config "$W/u.yaml" ", grad_clip: 1.0"
rc=0
timeout -k 5 120 "${MPIRUN[@]}" -np 1 "$ELIP" train --config "$W/t.yaml" --vocab "$VOCAB" --out "$W/mm" --threads 1 : \
    -np 1 "$ELIP" train --config "$W/u.yaml" --vocab "$VOCAB" --out "$W/mm" --threads 1 >"$W/mm.log" 2>&1 || rc=$?
if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -qi "fingerprint" "$W/mm.log"; then
    pass "ranks with different configs are refused (exit $rc)"
else
    fail "config mismatch (exit $rc)" "$W/mm.log"
fi

# 6. SIGUSR1 to mpirun (forwarded to the ranks): checkpoint and exit 0.
config "$W/long.yaml"
sed -i "s/max_steps: 3/max_steps: 100000/; s/checkpoint_every: 1/checkpoint_every: 100000/" "$W/long.yaml"
"${MPIRUN[@]}" -np 2 "$ELIP" train --config "$W/long.yaml" --vocab "$VOCAB" --out "$W/sig" --threads 1 >"$W/sig.log" 2>&1 &
pid=$!
kill_after 200 "$pid"
watchdog=$guard
for _ in $(seq 1 120); do
    [[ -s $W/sig/metrics.jsonl ]] && break
    sleep 1
done
kill -USR1 "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
kill "$watchdog" 2>/dev/null || true
if [[ $rc -eq 0 ]] && grep -q "stop signal (SIGUSR1): checkpointed at step" "$W/sig.log" && ls "$W/sig/checkpoints" | grep -q step-; then
    pass "SIGUSR1: $(grep -o 'stop signal (SIGUSR1): checkpointed at step [0-9]*' "$W/sig.log"), exit 0"
else
    fail "SIGUSR1 (exit $rc)" "$W/sig.log"
fi

# 7. The whole data path: synth -> build-dataset (2 ranks) -> train from the LMDB shards (2 ranks),
#    then resume for one more step.
if "$ELIP" synth --out "$W/corpus" --images 40 --size 48 --seed 3 >"$W/synth.log" 2>&1 &&
    timeout -k 5 300 "${MPIRUN[@]}" -np 2 "$ELIP" build-dataset --annotations "$W/corpus/train.json" --image-root "$W/corpus" \
        --out "$W/shards" --shards 3 --image-size 40 >"$W/build.log" 2>&1 &&
    config "$W/s.yaml" && sed -i "s#data: .*#data: {shards: $W/shards, loader_threads: 1}#; s/global_negatives: true/global_negatives: false/; s/dropout: false/dropout: true/" "$W/s.yaml" &&
    timeout -k 5 300 "${MPIRUN[@]}" -np 2 "$ELIP" train --config "$W/s.yaml" --vocab "$VOCAB" --out "$W/shard-run" --threads 1 \
        --max-steps 2 >"$W/shard-train.log" 2>&1 &&
    timeout -k 5 300 "${MPIRUN[@]}" -np 2 "$ELIP" train --config "$W/s.yaml" --vocab "$VOCAB" --out "$W/shard-run" --threads 1 \
        --resume auto >>"$W/shard-train.log" 2>&1 &&
    [[ -f $(ck "$W/shard-run" 3) ]]; then
    pass "synth -> build-dataset (2 ranks) -> train from LMDB shards (2 ranks) -> resume"
else
    fail "LMDB data path" "$W/shard-train.log"
fi

# 7b. Damaged shards under 2 ranks (non-strict): their records are skipped and counted, and the
#     count in metrics.jsonl (written by rank 0) is the whole job's, summed over the ranks. Four
#     shards, 1 and 2 damaged: whether ranks take shards round-robin or in blocks, each rank reads
#     one damaged and one good shard, so the total needs both ranks' counts.
if [[ -d $W/corpus ]] &&
    timeout -k 5 300 "${MPIRUN[@]}" -np 2 "$ELIP" build-dataset --annotations "$W/corpus/train.json" --image-root "$W/corpus" \
        --out "$W/shards4" --shards 4 --image-size 40 >"$W/build4.log" 2>&1; then
    want=0
    for s in 1 2; do
        dmdb="$W/shards4/shard-0000$s-of-00004/data.mdb"
        truncate -s $(( $(stat -c %s "$dmdb") / 2 )) "$dmdb"
        want=$(( want + $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print([s["records"] for s in m["shards"] if s["name"]==sys.argv[2]][0])' "$W/shards4/manifest.json" "shard-0000$s-of-00004") ))
    done
    sed "s#data: .*#data: {shards: $W/shards4, loader_threads: 1}#" "$W/s.yaml" >"$W/sd.yaml"
    got=
    if timeout -k 5 300 "${MPIRUN[@]}" -np 2 "$ELIP" train --config "$W/sd.yaml" --vocab "$VOCAB" --out "$W/damaged-run" --threads 1 \
            --max-steps 2 >"$W/damaged-train.log" 2>&1 &&
        got=$(python3 -c 'import json,sys; print(int([json.loads(l) for l in open(sys.argv[1])][-1]["values"]["data_records_in_damaged_shards"]))' "$W/damaged-run/metrics.jsonl") &&
        [[ $want -gt 0 && $got -eq $want ]] && grep -q "\[rank 0\] warning: shard" "$W/damaged-train.log" && grep -q "\[rank 1\] warning: shard" "$W/damaged-train.log"; then
        pass "damaged shards under 2 ranks: $got skipped records, counted on both ranks and summed (manifest: $want)"
    else
        echo "manifest records of the damaged shards: $want, metrics: ${got:-?}" >>"$W/damaged-train.log"
        fail "damaged shard counts summed over ranks" "$W/damaged-train.log"
    fi
else
    fail "damaged shard counts: building 4 shards failed" "$W/build4.log"
fi

# 8. cluster/launch.sh builds the mpirun line (dry run: ranks, threads, binding, interface).
if out=$(cluster/launch.sh --hostfile cluster/hosts.example --ranks-per-node 2 --threads-per-rank 4 --iface eth0 \
        --elip "$ELIP" --dry-run -- train --config configs/debug.yaml 2>&1) &&
    grep -q -- "-np 8 -x ELIP_THREADS=4" <<<"$out" && grep -q -- "--map-by ppr:2:node:PE=4 --bind-to core" <<<"$out" &&
    grep -q -- "btl_tcp_if_include eth0" <<<"$out" && grep -q -- "train --config configs/debug.yaml --threads 4" <<<"$out"; then
    pass "cluster/launch.sh: 4 hosts x 2 ranks x 4 threads -> mpirun -np 8 with core binding and eth0"
else
    echo "$out" >"$W/launch.log"; fail "cluster/launch.sh dry run" "$W/launch.log"
fi

# 9. BLIP (model: blip) through the same trainer: the global-negatives equivalence (negative texts
# re-encoded from gathered ids, negative images gathered with gradient, the LM mean over every
# rank's targets) and bitwise resume.
cat >"$W/med.json" <<JSON
{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 30524,
 "max_position_embeddings": 32, "encoder_width": 32, "add_cross_attention": true}
JSON
cat >"$W/blip.yaml" <<YAML
model: blip
med_config: $W/med.json
image_size: 64
queue_size: 32
max_length: 16
embed_dim: 16
init_lr: 1e-3
warmup_lr: 1e-4
warmup_steps: 2
max_epoch: 50
vision: {patch_size: 16, embed_dim: 32, depth: 4, num_heads: 4, mlp_ratio: 2}
img_prune: {begin_layer: [1, 2], num_act_layers: [1, 2], keep_ratio: [0.75, 0.5]}
train: {max_steps: 3, checkpoint_every: 1, keep_checkpoints: 5, log_every: 1, seed: 9, dropout: false, global_negatives: true}
data: {synthetic: {images: 64, size: 64}}
YAML
blip() {  # blip NP OUT [args...]
    local np=$1 out=$2
    shift 2
    if [[ $np -eq 0 ]]; then
        timeout -k 5 300 "$ELIP" train --config "$W/blip.yaml" --vocab "$VOCAB" --out "$out" --threads 1 "$@"
    else
        timeout -k 5 300 "${MPIRUN[@]}" -np "$np" "$ELIP" train --config "$W/blip.yaml" --vocab "$VOCAB" --out "$out" --threads 1 "$@"
    fi
}
if blip 0 "$W/blip-one" --batch-size 8 >"$W/blip-one.log" 2>&1 && blip 2 "$W/blip-two" --batch-size 4 >"$W/blip-two.log" 2>&1 &&
    "$ELIP" diff-weights "$(ck "$W/blip-one" 3)" "$(ck "$W/blip-two" 3)" --exclude key.bias --exclude qkv.bias --tolerance 1e-4 >"$W/diff9.log" 2>&1; then
    pass "BLIP global negatives: 2 ranks x batch 4 == 1 rank x batch 8 after 3 steps ($(tail -1 "$W/diff9.log"))"
else
    fail "BLIP global negatives: 2 ranks x 4 differ from 1 rank x 8" "$W/diff9.log"
fi
if blip 2 "$W/blip-res" --batch-size 4 --max-steps 2 >"$W/blip-res1.log" 2>&1 &&
    blip 2 "$W/blip-res" --batch-size 4 --resume auto >"$W/blip-res2.log" 2>&1 &&
    "$ELIP" diff-weights "$(ck "$W/blip-two" 3)" "$(ck "$W/blip-res" 3)" >"$W/diff10.log" 2>&1; then
    pass "BLIP resume under mpirun is bitwise identical ($(tail -1 "$W/diff10.log"))"
else
    fail "BLIP resume under mpirun" "$W/diff10.log"
fi

# 11. An OPENBLAS_CORETYPE narrower than the CPU runs is kept and noted once per job (the root
#     rank), not once per rank; on a CPU without AVX-512 nothing is narrower and no note appears.
wanted=$(env -u OPENBLAS_CORETYPE "$ELIP" info --json | sed -nE 's/.*"blas_kernels_wanted":"([A-Z]+)".*/\1/p')
expected=0
[[ $wanted == SKYLAKEX ]] && expected=1
OPENBLAS_CORETYPE=HASWELL timeout -k 5 120 "${MPIRUN[@]}" -x OPENBLAS_CORETYPE -np 2 "$ELIP" train --config "$W/t.yaml" \
    --vocab "$VOCAB" --out "$W/note" --threads 1 --batch-size 4 --max-steps 1 >"$W/note.log" 2>&1 || true
notes=$(grep -c "^note: OPENBLAS_CORETYPE=HASWELL in the environment" "$W/note.log" || true)
if [[ $notes -eq $expected ]] && grep -q "stopped: reached step 1" "$W/note.log"; then
    pass "narrower OPENBLAS_CORETYPE under 2 ranks: $notes note(s) for wanted ${wanted:-none} kernels"
else
    fail "narrower OPENBLAS_CORETYPE under 2 ranks: $notes note(s), expected $expected" "$W/note.log"
fi

echo "mpi-train: $passed passed, $failed failed"
if [[ $failed -eq 0 ]]; then rm -rf "$W"; else echo "tests-mpi/train: logs in $W"; exit 1; fi
