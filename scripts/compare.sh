#!/usr/bin/env bash
# make compare: ELIP, the unpruned ALBEF baseline and the paper's ablations (Figure 3) on the
# synthetic corpus, same config, seed and number of steps (2 ranks each): held-out zero-shot
# retrieval, step time, and whether the caption guides the pruning (object share of the kept
# tokens vs of the image), one row per variant.
#
# Variants (COMPARE_VARIANTS, space-separated; default all of them):
#   elip        the config as it is (look-ahead scoring, λ 0.8, merging)
#   baseline    img_prune: null (no pruning)
#   inline      img_prune scoring: inline (the cheaper scoring ablation)
#   lambda<X>   img_prune lambda: X, e.g. lambda0 (text-only guidance), lambda0.4, lambda1 (image-only)
#   nomerge     img_prune merge: false (drop the pruned tokens instead of merging them)
# Other settings: COMPARE_STEPS (1200: at 600 held-out retrieval is still near chance), COMPARE_CONFIG (configs/demo.yaml), COMPARE_RANKS (2),
# COMPARE_LIMIT (held-out images analysed per variant, 1000), COMPARE_K_TEST (32), ELIP (the
# binary; default the release build), DEMO_OUT (corpus and shards; built here when missing),
# COMPARE_IMAGES (images of a corpus built here, 2400). Re-running resumes each variant's run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
STEPS=${COMPARE_STEPS:-1200}
CONFIG=${COMPARE_CONFIG:-configs/demo.yaml}
VARIANTS=${COMPARE_VARIANTS:-elip baseline inline lambda0 lambda0.4 lambda1 nomerge}
RANKS=${COMPARE_RANKS:-2}
LIMIT=${COMPARE_LIMIT:-1000}
K_TEST=${COMPARE_K_TEST:-32}
for n in "$STEPS" "$RANKS" "$LIMIT" "$K_TEST"; do
    [[ $n =~ ^[1-9][0-9]{0,8}$ ]] || { echo "compare.sh: COMPARE_STEPS, COMPARE_RANKS, COMPARE_LIMIT and COMPARE_K_TEST must be positive integers, got '$n'" >&2; exit 2; }
done
[[ -f $CONFIG ]] || { echo "compare.sh: COMPARE_CONFIG=$CONFIG: no such file" >&2; exit 2; }
grep -q '^img_prune: {.*}$' "$CONFIG" || { echo "compare.sh: $CONFIG needs a one-line 'img_prune: {...}' mapping to derive the variants from" >&2; exit 2; }
ELIP=${ELIP:-$(swift build -c release --show-bin-path)/elip}
MPIRUN=(mpirun -np "$RANKS" --bind-to none)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ $(nproc) -ge $RANKS ]] || MPIRUN+=(--oversubscribe)

# Each variant's config: the base config with its img_prune line changed.
mkdir -p "$OUT/compare"
config_of() {
    local v=$1 f="$OUT/compare/$1.yaml" extra=""
    case $v in
        elip) cp "$CONFIG" "$f"; echo "$f"; return ;;
        baseline) sed 's/^img_prune: .*/img_prune: null/' "$CONFIG" >"$f"; echo "$f"; return ;;
        inline) extra="scoring: inline" ;;
        nomerge) extra="merge: false" ;;
        lambda*)
            local x=${v#lambda}
            [[ $x =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || { echo "compare.sh: variant $v: λ must be a number in [0, 1] (lambda0, lambda0.4, lambda1)" >&2; return 1; }
            extra="lambda: $x" ;;
        *) echo "compare.sh: unknown variant '$v' (elip, baseline, inline, lambda<X>, nomerge)" >&2; return 1 ;;
    esac
    sed "s/^\(img_prune: {.*\)}$/\1, $extra}/" "$CONFIG" >"$f"
    echo "$f"
}
for v in $VARIANTS; do config_of "$v" >/dev/null; done  # refuse a bad variant before training any
for f in "$(dirname "$CONFIG")"/*.json; do [[ -e $f ]] && cp "$f" "$OUT/compare/"; done  # bert_config next to the configs

SIZE=$(sed -n 's/^image_\(res\|size\): *\([0-9]*\).*/\2/p' "$CONFIG" | head -1)
if [[ ! -f $OUT/corpus/test.json ]]; then
    "$ELIP" synth --out "$OUT/corpus" --images "${COMPARE_IMAGES:-2400}" --size "$SIZE" --seed 1 --test-fraction 0.1
    echo "$SIZE" >"$OUT/corpus/size"
fi
if [[ ! -f $OUT/shards/manifest.json ]]; then
    "${MPIRUN[@]}" "$ELIP" build-dataset --annotations "$OUT/corpus/train.json" --image-root "$OUT/corpus" \
        --out "$OUT/shards" --shards 4 --image-size "$SIZE" --workers 1 --quiet
fi

for v in $VARIANTS; do
    cfg=$(config_of "$v")
    echo "== $v: $STEPS steps"
    # The training log goes to a file (its last lines are shown when it fails).
    "${MPIRUN[@]}" "$ELIP" train --config "$cfg" --data "$OUT/shards" --out "$OUT/compare/$v" --resume auto \
        --max-steps "$STEPS" --threads 1 >"$OUT/compare/$v-train.log" 2>&1 \
        || { tail -20 "$OUT/compare/$v-train.log" >&2; echo "compare.sh: training $v failed (log: $OUT/compare/$v-train.log)" >&2; exit 1; }
    "${MPIRUN[@]}" "$ELIP" eval-retrieval --checkpoint "$OUT/compare/$v" --config "$cfg" --data "$OUT/corpus/test.json" \
        --image-root "$OUT/corpus" --k-test "$K_TEST" --threads 1 --quiet --out "$OUT/compare/$v-retrieval.json"
    rm -f "$OUT/compare/$v-pruning.json"
    if [[ $v != baseline ]]; then
        other=inline; [[ $v == inline ]] && other=look_ahead
        "$ELIP" analyze-pruning --checkpoint "$OUT/compare/$v" --config "$cfg" --data "$OUT/corpus/test.json" \
            --threads "$RANKS" --limit "$LIMIT" --compare-scoring "$other" --out "$OUT/compare/$v-pruning.json" >/dev/null
    fi
done
python3 scripts/compare-table.py "$OUT/compare" $VARIANTS | tee "$OUT/compare/table.md"
