#!/usr/bin/env bash
# The retrieval part of make finetune-demo (scripts/finetune-demo.sh runs it with its settings):
# the demo corpus's retrieval_train.json -> build-dataset --format retrieval -> fine-tuning of the
# demo checkpoint and of random weights for the same steps (2 ranks) -> eval-retrieval on the
# held-out test.json (ALBEF protocol) -> $OUT/finetune.retrieval.json, the "retrieval" entry of
# finetune.json: mean R@1 = (TR@1 + IR@1) / 2, baseline = the same at chance.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
STEPS=${RETRIEVAL_STEPS:-150}
MINUTES=${RETRIEVAL_MINUTES:-2}
ELIP=$(swift build -c release --show-bin-path)/elip
MPIRUN=(mpirun -np 2 --bind-to core)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ $(nproc) -ge 2 ]] || MPIRUN+=(--oversubscribe)
step() { printf '\n== %s\n' "$*"; }

step "retrieval 1/3: retrieval_train.json of the demo corpus -> $OUT/retrieval-shards"
if [[ ! -f $OUT/corpus/retrieval_train.json ]]; then
    # A corpus from before synth wrote retrieval_train.json: synth is deterministic, re-running it
    # with the demo's arguments rewrites the same images and adds the file.
    "$ELIP" synth --out "$OUT/corpus" --images "${DEMO_IMAGES:-2400}" --size "$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)" --seed 1 --test-fraction 0.1 --quiet
fi
if [[ -f $OUT/retrieval-shards/manifest.json ]]; then echo "reusing $OUT/retrieval-shards"; else
    "${MPIRUN[@]}" "$ELIP" build-dataset --format retrieval --annotations "$OUT/corpus/retrieval_train.json" --image-root "$OUT/corpus" \
        --out "$OUT/retrieval-shards" --shards 4 --image-size 64 --workers 1 --quiet
fi

for start in pretrained random; do
    step "retrieval 2/3 ($start start): mpirun -np 2 elip finetune --task retrieval --config configs/demo-retrieval.yaml ($STEPS steps)"
    if [[ $start == pretrained ]]; then INIT=(--init "$OUT/run"); else INIT=(--random-init); fi
    "${MPIRUN[@]}" "$ELIP" finetune --task retrieval --config configs/demo-retrieval.yaml "${INIT[@]}" --data "$OUT/retrieval-shards" \
        --out "$OUT/retrieval-$start" --resume auto --threads 1 --max-steps "$STEPS" --time-limit-minutes "$MINUTES" | grep -v '^init: not used'
    step "retrieval 3/3: held-out retrieval ($start start; ALBEF protocol, k_test 32)"
    "${MPIRUN[@]}" "$ELIP" eval --task retrieval --checkpoint "$OUT/retrieval-$start" --data "$OUT/corpus/test.json" \
        --image-root "$OUT/corpus" --k-test 32 --threads 1 --quiet --out "$OUT/retrieval-$start.json"
done

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
pre = json.load(open(os.path.join(out, "retrieval-pretrained.json")))
rnd = json.load(open(os.path.join(out, "retrieval-random.json")))
test = json.load(open(os.path.join(out, "corpus", "test.json")))
caps = [len(e["caption"]) if isinstance(e["caption"], list) else 1 for e in test]
# Chance: a random text ranking puts one of image i's captions first with probability
# caps_i / texts; a random image ranking puts a caption's image first with 1 / images.
tr1 = 100 * sum(c / sum(caps) for c in caps) / len(caps)
ir1 = 100 / len(caps)
def mean_r1(r): return round((r["txt_r1"] + r["img_r1"]) / 2, 2)
entry = {"metric": "mean R@1 ((TR@1 + IR@1) / 2, held-out split)", "value": mean_r1(pre), "baseline": round((tr1 + ir1) / 2, 2),
         "random_init": mean_r1(rnd), "r_mean": {"pretrained": round(pre["r_mean"], 2), "random_init": round(rnd["r_mean"], 2)},
         "images": pre["images"], "texts": pre["texts"], "steps": {"pretrained": pre.get("step"), "random_init": rnd.get("step")}}
zero = os.path.join(out, "retrieval.json")   # make demo's zero-shot result of the same checkpoint
if os.path.exists(zero):
    entry["zero_shot"] = mean_r1(json.load(open(zero)))
json.dump(entry, open(os.path.join(out, "finetune.retrieval.json"), "w"), indent=2, sort_keys=True)
print(json.dumps({"retrieval": entry}, indent=2, sort_keys=True))
PY
