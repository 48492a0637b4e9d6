# Sourced by the multi-process test scripts (tests-mpi/*.sh, cluster/test-netns.sh): the built
# `elip`, the vocabulary, mpirun's flags, PASS/FAIL bookkeeping, a work folder, and the tiny
# model config they train. Usage: source tests-mpi/common.sh NAME (NAME labels messages).
TEST_NAME=$1
BIN=${ELIP_BIN_PATH:-$(swift build ${BUILD_FLAGS:-} --show-bin-path)}
ELIP="$BIN/elip"
[[ -x $ELIP ]] || { echo "$TEST_NAME: no $ELIP; build first (swift build --build-tests)" >&2; exit 2; }
VOCAB=${ELIP_VOCAB:-assets/bert-base-uncased-vocab.txt}
[[ -f $VOCAB ]] || { echo "$TEST_NAME: no vocabulary at $VOCAB; run make setup (or set ELIP_VOCAB)" >&2; exit 2; }
# --oversubscribe: more ranks than cores; --bind-to none: ranks run helper threads besides compute.
MPIRUN=(mpirun --oversubscribe --bind-to none)
if [[ $(id -u) -eq 0 ]]; then
    MPIRUN+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
read -r -a EXTRA <<<"${ELIP_MPIRUN_ARGS:-}"
MPIRUN+=("${EXTRA[@]}")
W=$(mktemp -d "${TMPDIR:-/tmp}/elip-$TEST_NAME.XXXXXX")
passed=0
failed=0
# kill_after SECONDS PID: SIGKILLs PID after SECONDS unless the guard is killed first; sets
# guard to the guard's PID. `kill "$guard"` also ends its sleep: a sleep left running would hold
# this script's output open, and the test runner reading it would wait the sleep out.
kill_after() {
    ( sleep "$1" </dev/null >/dev/null 2>&1 & timer=$!
      trap 'kill "$timer" 2>/dev/null; exit 0' TERM
      wait "$timer" && kill -9 "$2" 2>/dev/null ) &
    guard=$!
}
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); [[ -f ${2:-/dev/null} ]] && tail -15 "$2"; return 0; }

# tiny_config FILE "TRAIN KEYS": a 12-layer ViT at width 64 with three pruning stages, the tiny
# BERT, 32-px synthetic scenes; TRAIN KEYS is the body of the train: mapping.
tiny_config() {
    cat >"$1" <<YAML
bert_config: $PWD/configs/config_bert_tiny.json
image_res: 32
vision_width: 64
embed_dim: 16
batch_size: 4
queue_size: 32
img_prune: {begin_layer: [2, 4, 10], num_act_layers: [2, 6, 2], keep_ratio: [0.75, 0.5, 0.25]}
vision: {patch_size: 8, embed_dim: 64, depth: 12, num_heads: 4, mlp_ratio: 2}
optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
schedular: {sched: cosine, lr: 1e-3, epochs: 50, min_lr: 1e-4, warmup_lr: 1e-4, warmup_epochs: 1, warmup_step_size: 2}
train: {$2}
data: {synthetic: {images: 64, size: 32}}
YAML
}
