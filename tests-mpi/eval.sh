#!/usr/bin/env bash
# Multi-process tests of `elip eval-retrieval` (SPEC §4): runs the already built debug `elip`
# under mpirun. A tiny model is trained for 3 steps on synthetic scenes, then the retrieval
# evaluation runs on 1, 2 and 3 ranks (feature batches and ITM rows round-robin, results
# broadcast / all-reduced); the rescored top-k lists must be bitwise those of one process.
#  1. 2 ranks == 1 process (indices and scores bitwise, same metrics)
#  2. 3 ranks (uneven share of batches and rows) == 1 process
#  3. a missing image in a batch of rank 1 ends the job non-zero, naming the file
#  4. `elip caption` with a tiny BLIP: 2 and 3 ranks write the same file as 1 process; a missing
#     image on rank 1 ends the job non-zero, naming the file
set -euo pipefail
cd "$(dirname "$0")/.."

source tests-mpi/common.sh mpi-eval

tiny_config "$W/t.yaml" "max_steps: 3, checkpoint_every: 3, keep_checkpoints: 1, log_every: 1, seed: 7"
if ! timeout -k 5 300 "$ELIP" train --config "$W/t.yaml" --vocab "$VOCAB" --out "$W/run" --threads 1 >"$W/train.log" 2>&1 ||
    ! timeout -k 5 120 "$ELIP" synth --out "$W/synth" --images 30 --size 40 --seed 3 --test-fraction 0.5 --quiet >"$W/synth.log" 2>&1; then
    fail "setup (train 3 steps, synth)" "$W/train.log"
    echo "MPI eval tests: $passed passed, $failed failed"
    exit 1
fi

evaluate() {  # evaluate NP NAME [args...]
    local np=$1 name=$2
    shift 2
    local cmd=("$ELIP" eval-retrieval --checkpoint "$W/run" --data "$W/synth/test.json" --image-root "$W/synth"
               --vocab "$VOCAB" --k-test 7 --batch 5 --threads 1 --out "$W/$name.json" --save-scores "$W/$name.safetensors" "$@")
    if [[ $np -eq 0 ]]; then timeout -k 5 300 "${cmd[@]}"; else timeout -k 5 300 "${MPIRUN[@]}" -np "$np" "${cmd[@]}"; fi
}
metrics() { grep -E '"(txt|img)_r|"r_mean|"images|"texts' "$1"; }

if evaluate 0 one >"$W/one.log" 2>&1; then pass "1 process ($(grep r_mean "$W/one.log" | tr -s ' '))"; else fail "1 process" "$W/one.log"; fi
for np in 2 3; do
    if evaluate "$np" "np$np" >"$W/np$np.log" 2>&1 &&
        "$ELIP" diff-weights "$W/one.safetensors" "$W/np$np.safetensors" --tolerance 0 >"$W/diff$np.log" 2>&1 &&
        diff <(metrics "$W/one.json") <(metrics "$W/np$np.json") >"$W/mdiff$np.log" 2>&1; then
        pass "$np ranks == 1 process ($(tail -1 "$W/diff$np.log"))"
    else
        fail "$np ranks differ from 1 process" "$W/diff$np.log"
        cat "$W/mdiff$np.log" "$W/np$np.log" 2>/dev/null | tail -15
    fi
done

# 3. Image 6 is in feature batch 1 (batches of 5), which rank 1 of 2 computes: remove it; rank 0
# waits in the broadcast of that batch, and the job must still end non-zero.
last=$(grep -o '"images/[0-9]*\.jpg"' "$W/synth/test.json" | sed -n 6p | tr -d '"')
mv "$W/synth/$last" "$W/missing.jpg"
start=$(date +%s)
if evaluate 2 broken >"$W/broken.log" 2>&1; then
    fail "a missing image under mpirun was not reported" "$W/broken.log"
elif (($(date +%s) - start > 120)); then
    fail "a missing image under mpirun took more than 120 s to end the job" "$W/broken.log"
elif grep -q "$last" "$W/broken.log"; then
    pass "a missing image on rank 1 ends the job non-zero, naming $last"
else
    fail "the error does not name $last" "$W/broken.log"
fi
mv "$W/missing.jpg" "$W/synth/$last"

# 4. Captions: a 2-step tiny BLIP, batches of 4 round-robin over the ranks, broadcast by their owner.
cat >"$W/med.json" <<JSON
{"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": 30524,
 "max_position_embeddings": 32, "encoder_width": 16, "add_cross_attention": true}
JSON
cat >"$W/blip.yaml" <<YAML
model: blip
med_config: $W/med.json
image_size: 32
queue_size: 16
max_length: 12
embed_dim: 8
init_lr: 1e-3
warmup_steps: 1
vision: {patch_size: 16, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
img_prune: null
train: {max_steps: 2, checkpoint_every: 2, keep_checkpoints: 1, log_every: 1, seed: 5}
data: {synthetic: {images: 16, size: 32}}
YAML
caption() {  # caption NP NAME
    local cmd=("$ELIP" caption --checkpoint "$W/blip-run" --data "$W/synth/test.json" --image-root "$W/synth"
               --vocab "$VOCAB" --batch 4 --threads 1 --out "$W/$2.json")
    if [[ $1 -eq 0 ]]; then timeout -k 5 300 "${cmd[@]}"; else timeout -k 5 300 "${MPIRUN[@]}" -np "$1" "${cmd[@]}"; fi
}
if ! timeout -k 5 300 "$ELIP" train --config "$W/blip.yaml" --vocab "$VOCAB" --out "$W/blip-run" --batch-size 4 --threads 1 >"$W/blip-train.log" 2>&1 ||
    ! caption 0 cap-one >"$W/cap-one.log" 2>&1; then
    fail "captions: setup (BLIP train 2 steps, caption on 1 process)" "$W/cap-one.log"
else
    for np in 2 3; do
        if caption "$np" "cap-np$np" >"$W/cap-np$np.log" 2>&1 && cmp "$W/cap-one.json" "$W/cap-np$np.json" >"$W/cap-cmp$np.log" 2>&1; then
            pass "captions: $np ranks write the same file as 1 process ($(grep -c image_id "$W/cap-one.json") images)"
        else
            fail "captions: $np ranks differ from 1 process" "$W/cap-np$np.log"
        fi
    done
    # The 6th image is in batch 1 (batches of 4), which rank 1 of 2 captions.
    last=$(grep -o '"images/[0-9]*\.jpg"' "$W/synth/test.json" | awk '!seen[$0]++' | sed -n 6p | tr -d '"')
    mv "$W/synth/$last" "$W/missing.jpg"
    start=$(date +%s)
    if caption 2 cap-broken >"$W/cap-broken.log" 2>&1; then
        fail "captions: a missing image under mpirun was not reported" "$W/cap-broken.log"
    elif (($(date +%s) - start > 120)); then
        fail "captions: a missing image under mpirun took more than 120 s to end the job" "$W/cap-broken.log"
    elif grep -q "rank 1: .*$last" "$W/cap-broken.log"; then
        pass "captions: a missing image on rank 1 ends the job non-zero, naming $last"
    else
        fail "captions: the error does not name $last" "$W/cap-broken.log"
    fi
    mv "$W/missing.jpg" "$W/synth/$last"
fi

echo "MPI eval tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]] && rm -rf "$W"
[[ $failed -eq 0 ]]
