#!/usr/bin/env bash
# make compare: ELIP versus the unpruned ALBEF baseline on the synthetic corpus, same config,
# seed and number of steps (2 ranks each): held-out zero-shot retrieval, step time, and whether
# the caption guides the pruning (object share of the kept tokens vs of the image). A third run,
# `inline`, is the scoring ablation (img_prune scoring: inline instead of the paper's look-ahead);
# its kept patches are compared with the look-ahead's on the same model.
# Reuses the demo's corpus and shards (scripts/demo.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
STEPS=${COMPARE_STEPS:-600}
ELIP=$(swift build -c release --show-bin-path)/elip
MPIRUN=(mpirun -np 2 --bind-to core)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ -f $OUT/shards/manifest.json && -f $OUT/corpus/test.json ]] || DEMO_MINUTES=0.1 scripts/demo.sh
mkdir -p "$OUT/compare"
sed 's/^img_prune: .*/img_prune: null/' configs/demo.yaml >"$OUT/compare/baseline.yaml"
sed 's/^\(img_prune: {.*\)}$/\1, scoring: inline}/' configs/demo.yaml >"$OUT/compare/inline.yaml"
grep -q 'scoring: inline' "$OUT/compare/inline.yaml" || { echo "compare.sh: could not set scoring: inline in configs/demo.yaml's img_prune line" >&2; exit 1; }
cp configs/config_bert_tiny.json "$OUT/compare/"
config_of() { case $1 in elip) echo configs/demo.yaml ;; *) echo "$OUT/compare/$1.yaml" ;; esac; }
for variant in elip baseline inline; do
    cfg=$(config_of "$variant")
    echo "== $variant: $STEPS steps"
    "${MPIRUN[@]}" "$ELIP" train --config "$cfg" --data "$OUT/shards" --out "$OUT/compare/$variant" --resume auto \
        --max-steps "$STEPS" --threads 1
    "${MPIRUN[@]}" "$ELIP" eval-retrieval --checkpoint "$OUT/compare/$variant" --config "$cfg" --data "$OUT/corpus/test.json" \
        --image-root "$OUT/corpus" --k-test 32 --threads 1 --quiet --out "$OUT/compare/$variant-retrieval.json"
done
"$ELIP" analyze-pruning --checkpoint "$OUT/compare/elip" --config configs/demo.yaml --data "$OUT/corpus/test.json" \
    --threads 2 --compare-scoring inline --out "$OUT/compare/pruning-analysis.json"
"$ELIP" analyze-pruning --checkpoint "$OUT/compare/inline" --config "$OUT/compare/inline.yaml" --data "$OUT/corpus/test.json" \
    --threads 2 --compare-scoring look_ahead --out "$OUT/compare/pruning-analysis-inline.json"
python3 - "$OUT/compare" <<'PY'
import json, statistics, sys
d = sys.argv[1]
print(f"\n{'':10s} {'TR@1':>6s} {'IR@1':>6s} {'mean R@1':>9s} {'r_mean':>7s} {'step (ms)':>10s} {'images/s':>9s}")
for v in ["elip", "baseline", "inline"]:
    r = json.load(open(f"{d}/{v}-retrieval.json"))
    rows = [json.loads(l) for l in open(f"{d}/{v}/metrics.jsonl")]
    rows = rows[len(rows) // 5:]  # skip warm-up
    step = statistics.median(sum(x["seconds"].values()) for x in rows)
    ips = statistics.median(x["images_per_s"] for x in rows)
    print(f"{v:10s} {r['txt_r1']:6.2f} {r['img_r1']:6.2f} {(r['txt_r1'] + r['img_r1']) / 2:9.2f} {r['r_mean']:7.2f} {1000 * step:10.0f} {ips:9.1f}")
print("(step time and images/s come from each run's own metrics.jsonl: a run resumed at its last step keeps the")
print(" timings of the code that trained it; `elip bench train-step --variants look_ahead,none,inline` compares speed side by side)")
for name, f in [("ELIP (look-ahead)", "pruning-analysis.json"), ("inline scoring", "pruning-analysis-inline.json")]:
    a = json.load(open(f"{d}/{f}"))
    shares = ", ".join(f"stage {j + 1} {100 * s:.1f}%" for j, s in enumerate(a["keptObjectShare"]))
    print(f"{name}: object pixels under the kept tokens: {shares}; in the image: {100 * a['imageObjectShare']:.1f}% ({a['images']} held-out images)")
    overlap = ", ".join(f"stage {j + 1} {100 * s:.1f}%" for j, s in enumerate(a["survivingOverlapWithOtherScoring"]))
    print(f"  surviving patches also kept by {a['otherScoring']} scoring on this model: {overlap}")
PY
