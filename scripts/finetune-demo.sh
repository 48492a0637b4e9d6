#!/usr/bin/env bash
# make finetune-demo (after make demo): fine-tunes the demo's pre-trained checkpoint on the
# synthetic SNLI-VE triples with 2 MPI ranks, and the same model from random weights for the same
# steps, evaluates both on the held-out scenes' statements (eval-ve) and writes
# out/demo/finetune.json = {task: {"metric", "value", "baseline", "random_init", ...}}.
# Tasks: ve, vqa, retrieval (scripts/finetune-demo-retrieval.sh) and nlvr2 (its block at the end adds its entry to finetune.json).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
STEPS=${FINETUNE_STEPS:-300}
MINUTES=${FINETUNE_MINUTES:-4}
ELIP=$(swift build -c release --show-bin-path)/elip
MPIRUN=(mpirun -np 2 --bind-to core)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ $(nproc) -ge 2 ]] || MPIRUN+=(--oversubscribe)
[[ -d $OUT/run/checkpoints ]] || { echo "$OUT/run has no checkpoint: run make demo first" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "1/4 SNLI-VE triples of the demo corpus -> $OUT/ve-shards"
if [[ ! -f $OUT/corpus/ve_train.json || ! -f $OUT/corpus/vqa_train.json ]]; then
    # A corpus from before synth wrote ve_*.json / vqa_*.json: synth is deterministic, so re-running it with
    # the demo's arguments rewrites the same images and adds the triples.
    "$ELIP" synth --out "$OUT/corpus" --images "${DEMO_IMAGES:-2400}" --size "$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)" --seed 1 --test-fraction 0.1
fi
if [[ -f $OUT/ve-shards/manifest.json ]]; then echo "reusing $OUT/ve-shards"; else
    "${MPIRUN[@]}" "$ELIP" build-dataset --format ve --annotations "$OUT/corpus/ve_train.json" --image-root "$OUT/corpus" \
        --out "$OUT/ve-shards" --shards 4 --image-size 64 --workers 1 --quiet
fi

for start in pretrained random; do
    step "2/4 fine-tuning ($start start): mpirun -np 2 elip finetune --task ve --config configs/demo-ve.yaml ($STEPS steps)"
    if [[ $start == pretrained ]]; then INIT=(--init "$OUT/run"); else INIT=(--random-init); fi
    "${MPIRUN[@]}" "$ELIP" finetune --task ve --config configs/demo-ve.yaml "${INIT[@]}" --data "$OUT/ve-shards" \
        --out "$OUT/ve-$start" --resume auto --threads 1 --max-steps "$STEPS" --time-limit-minutes "$MINUTES" | grep -v '^init: not used'
    step "3/4 SNLI-VE accuracy on the held-out scenes ($start start)"
    "${MPIRUN[@]}" "$ELIP" eval-ve --checkpoint "$OUT/ve-$start" --data "$OUT/corpus/ve_test.json" --image-root "$OUT/corpus" \
        --threads 1 --quiet --out "$OUT/ve-$start.json"
done

# VQA: the synthetic questions (SyntheticQuestions), one shard record per image; rank_answer
# over the 20-answer list on the held-out scenes' questions, scored with the official VQA
# accuracy against the majority-answer baseline.
VQA_STEPS=${FINETUNE_VQA_STEPS:-200}
VQA_MINUTES=${FINETUNE_VQA_MINUTES:-2.5}
step "vqa 1/3 VQA questions of the demo corpus -> $OUT/vqa-shards"
if [[ ! -f $OUT/corpus/vqa_train.json ]]; then
    # A corpus from before synth wrote vqa_*.json: synth is deterministic (same images).
    "$ELIP" synth --out "$OUT/corpus" --images "${DEMO_IMAGES:-2400}" --size "$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)" --seed 1 --test-fraction 0.1
fi
if [[ -f $OUT/vqa-shards/manifest.json ]]; then echo "reusing $OUT/vqa-shards"; else
    "${MPIRUN[@]}" "$ELIP" build-dataset --format vqa --annotations "$OUT/corpus/vqa_train.json" --image-root "$OUT/corpus" \
        --out "$OUT/vqa-shards" --shards 4 --image-size 64 --workers 1 --quiet
fi
for start in pretrained random; do
    step "vqa 2/3 fine-tuning ($start start): mpirun -np 2 elip finetune --task vqa --config configs/demo-vqa.yaml ($VQA_STEPS steps)"
    if [[ $start == pretrained ]]; then INIT=(--init "$OUT/run"); else INIT=(--random-init); fi
    "${MPIRUN[@]}" "$ELIP" finetune --task vqa --config configs/demo-vqa.yaml "${INIT[@]}" --data "$OUT/vqa-shards" \
        --out "$OUT/vqa-$start" --resume auto --threads 1 --max-steps "$VQA_STEPS" --time-limit-minutes "$VQA_MINUTES" | grep -v '^init: not used'
    step "vqa 3/3 VQA accuracy on the held-out scenes' questions ($start start)"
    "${MPIRUN[@]}" "$ELIP" eval-vqa --checkpoint "$OUT/vqa-$start" --data "$OUT/corpus/vqa_test.json" --image-root "$OUT/corpus" \
        --answer-list "$OUT/corpus/answer_list.json" --threads 1 --quiet --batch 64 \
        --write-results "$OUT/vqa-$start-results.json" --out "$OUT/vqa-$start.json"
done
scripts/finetune-demo-retrieval.sh   # writes $OUT/finetune.retrieval.json

step "4/4 summary -> $OUT/finetune.json"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
pre = json.load(open(os.path.join(out, "ve-pretrained.json")))
rnd = json.load(open(os.path.join(out, "ve-random.json")))
summary = {"ve": {"metric": "accuracy", "value": round(pre["accuracy"], 2), "baseline": round(pre["majority_baseline"], 2),
                  "random_init": round(rnd["accuracy"], 2), "samples": pre["samples"],
                  "steps": {"pretrained": pre.get("step"), "random_init": rnd.get("step")}}}
vqa_pre = json.load(open(os.path.join(out, "vqa-pretrained.json")))
vqa_rnd = json.load(open(os.path.join(out, "vqa-random.json")))
summary["vqa"] = {"metric": "vqa_accuracy", "value": vqa_pre["overall"], "baseline": vqa_pre["majority_baseline"],
                  "random_init": vqa_rnd["overall"], "questions": len(vqa_pre["per_question"]),
                  "steps": {"pretrained": vqa_pre.get("step"), "random_init": vqa_rnd.get("step")}}
# The other tasks' entries, each written by its part as finetune.<task>.json.
for task in ["retrieval"]:
    part = os.path.join(out, f"finetune.{task}.json")
    if os.path.exists(part):
        summary[task] = json.load(open(part))
json.dump(summary, open(os.path.join(out, "finetune.json"), "w"), indent=2, sort_keys=True)
print(json.dumps(summary, indent=2, sort_keys=True))
PY

# NLVR2: the synthetic pairs of the same corpus (two scenes, a true/false statement about both).
NLVR2_STEPS=${FINETUNE_NLVR2_STEPS:-200}
NLVR2_MINUTES=${FINETUNE_NLVR2_MINUTES:-2}
step "nlvr2 1/3 NLVR2 pairs of the demo corpus -> $OUT/nlvr2-shards"
if [[ ! -f $OUT/corpus/nlvr2_train.json ]]; then
    # A corpus from before synth wrote nlvr2_*.json: synth is deterministic (same images).
    "$ELIP" synth --out "$OUT/corpus" --images "${DEMO_IMAGES:-2400}" --size "$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)" --seed 1 --test-fraction 0.1
fi
if [[ -f $OUT/nlvr2-shards/manifest.json ]]; then echo "reusing $OUT/nlvr2-shards"; else
    "${MPIRUN[@]}" "$ELIP" build-dataset --format nlvr2 --annotations "$OUT/corpus/nlvr2_train.json" --image-root "$OUT/corpus" \
        --out "$OUT/nlvr2-shards" --shards 4 --image-size 64 --workers 1 --quiet
fi
# The random start trains exactly the steps the pre-trained start reached in its time limit.
for start in pretrained random; do
    if [[ $start == pretrained ]]; then INIT=(--init "$OUT/run"); LIMIT=(--time-limit-minutes "$NLVR2_MINUTES"); else
        INIT=(--random-init); LIMIT=()
        NLVR2_STEPS=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$OUT/nlvr2-pretrained.json")
    fi
    step "nlvr2 2/3 fine-tuning ($start start): mpirun -np 2 elip finetune --task nlvr2 --config configs/demo-nlvr2.yaml (up to $NLVR2_STEPS steps)"
    "${MPIRUN[@]}" "$ELIP" finetune --task nlvr2 --config configs/demo-nlvr2.yaml "${INIT[@]}" --data "$OUT/nlvr2-shards" \
        --out "$OUT/nlvr2-$start" --resume auto --threads 1 --max-steps "$NLVR2_STEPS" "${LIMIT[@]}" | grep -v '^init: not used' | cut -c1-400
    step "nlvr2 3/3 NLVR2 accuracy on the held-out scenes' pairs ($start start)"
    "${MPIRUN[@]}" "$ELIP" eval-nlvr2 --checkpoint "$OUT/nlvr2-$start" --data "$OUT/corpus/nlvr2_test.json" --image-root "$OUT/corpus" \
        --threads 1 --quiet --out "$OUT/nlvr2-$start.json"
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
path = os.path.join(out, "finetune.json")
summary = json.load(open(path)) if os.path.exists(path) else {}
pre = json.load(open(os.path.join(out, "nlvr2-pretrained.json")))
rnd = json.load(open(os.path.join(out, "nlvr2-random.json")))
summary["nlvr2"] = {"metric": "accuracy", "value": round(pre["accuracy"], 2), "baseline": round(pre["majority_baseline"], 2),
                    "random_init": round(rnd["accuracy"], 2), "samples": pre["samples"],
                    "steps": {"pretrained": pre.get("step"), "random_init": rnd.get("step")}}
json.dump(summary, open(path, "w"), indent=2, sort_keys=True)
print(json.dumps({"nlvr2": summary["nlvr2"]}, indent=2, sort_keys=True))
PY
