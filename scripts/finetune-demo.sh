#!/usr/bin/env bash
# make finetune-demo (after make demo): fine-tunes the demo's pre-trained checkpoint (out/demo/run)
# on the synthetic downstream tasks of the demo corpus with 2 MPI ranks, evaluates each on the
# held-out scenes and writes out/demo/finetune.json = {task: {"metric", "value", "baseline", ...}}.
#
# Tasks (FINETUNE_TASKS, default all four, in this order):
#   ve         SNLI-VE triples (entailed / neutral / contradicted statements)  accuracy vs majority class
#   vqa        questions with one true answer each, rank_answer over the list  VQA accuracy vs majority answer
#   nlvr2      two scenes and a true/false statement about both               accuracy vs majority class
#   retrieval  the corpus's retrieval split (image ids), ALBEF protocol       r_mean vs chance
# Each task trains for FINETUNE_MINUTES_<TASK> minutes (ve 2, vqa 2.5, nlvr2 2.5, retrieval 1.5) or
# FINETUNE_STEPS_<TASK> steps (2000), whichever comes first, from configs/demo-<task>.yaml. FINETUNE_RANDOM_INIT=1 also fine-tunes the same model
# from random weights for exactly the steps the pre-trained start reached, and adds "random_init"
# to each entry (pre-training must help); it doubles the time, or after a plain run adds only the
# random starts. Re-running reuses a finished task (its result JSON) and resumes an interrupted one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
TASKS=${FINETUNE_TASKS:-ve vqa nlvr2 retrieval}
RANDOM_INIT=${FINETUNE_RANDOM_INIT:-0}
ELIP=${ELIP:-$(swift build -c release --show-bin-path)/elip}
MPIRUN=(mpirun -np 2 --bind-to core)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ $(nproc) -ge 2 ]] || MPIRUN+=(--oversubscribe)
step() { printf '\n== %s\n' "$*"; }
die() { echo "finetune-demo: $*" >&2; exit 1; }
[[ -d $OUT/run/checkpoints ]] || die "$OUT/run has no checkpoint: run make demo first"
[[ $RANDOM_INIT == 0 || $RANDOM_INIT == 1 ]] || die "FINETUNE_RANDOM_INIT must be 0 or 1, got '$RANDOM_INIT'"
SIZE=$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)

# Per task: the annotation file build-dataset reads (its --format is the task's name) and the time.
annotations_of() { case $1 in ve) echo ve_train.json ;; vqa) echo vqa_train.json ;; nlvr2) echo nlvr2_train.json ;;
    retrieval) echo retrieval_train.json ;; *) die "unknown task '$1' in FINETUNE_TASKS (ve, vqa, nlvr2, retrieval)" ;; esac; }
# About 8.5 minutes of training in all (2 idle cores), the evaluations ~1.5 minutes more.
default_minutes() { case $1 in ve) echo 2 ;; vqa) echo 2.5 ;; nlvr2) echo 2.5 ;; retrieval) echo 1.5 ;; esac; }
setting() {  # setting NAME TASK DEFAULT: $FINETUNE_NAME_TASK or the default
    local var="FINETUNE_$1_$(echo "$2" | tr a-z A-Z)"
    echo "${!var:-$3}"
}
for task in $TASKS; do annotations_of "$task" >/dev/null; done  # refuse a bad task before training any

evaluate() {  # evaluate TASK RUN OUT_JSON: the held-out split, every sample once
    local task=$1 run=$2 out=$3
    case $task in
        ve) "${MPIRUN[@]}" "$ELIP" eval-ve --checkpoint "$run" --data "$OUT/corpus/ve_test.json" --image-root "$OUT/corpus" \
                --threads 1 --quiet --out "$out" ;;
        vqa) "${MPIRUN[@]}" "$ELIP" eval-vqa --checkpoint "$run" --data "$OUT/corpus/vqa_test.json" --image-root "$OUT/corpus" \
                --answer-list "$OUT/corpus/answer_list.json" --threads 1 --quiet --batch 64 \
                --write-results "${out%.json}-results.json" --out "$out" ;;
        nlvr2) "${MPIRUN[@]}" "$ELIP" eval-nlvr2 --checkpoint "$run" --data "$OUT/corpus/nlvr2_test.json" --image-root "$OUT/corpus" \
                --threads 1 --quiet --out "$out" ;;
        retrieval) "${MPIRUN[@]}" "$ELIP" eval --task retrieval --checkpoint "$run" --data "$OUT/corpus/test.json" \
                --image-root "$OUT/corpus" --k-test 32 --threads 1 --quiet --out "$out" ;;
    esac
}

for task in $TASKS; do
    ann=$(annotations_of "$task")
    if [[ ! -f $OUT/corpus/$ann ]]; then
        # A corpus from before synth wrote this task's files: synth is deterministic, so re-running it
        # with the demo's arguments rewrites the same images and adds them.
        "$ELIP" synth --out "$OUT/corpus" --images "${DEMO_IMAGES:-2400}" --size "$SIZE" --seed 1 --test-fraction 0.1 --quiet
    fi
    step "$task 1/3: $ann of the demo corpus -> $OUT/$task-shards"
    if [[ -f $OUT/$task-shards/manifest.json ]]; then echo "reusing $OUT/$task-shards"; else
        "${MPIRUN[@]}" "$ELIP" build-dataset --format "$task" --annotations "$OUT/corpus/$ann" --image-root "$OUT/corpus" \
            --out "$OUT/$task-shards" --shards 4 --image-size "$SIZE" --workers 1 --quiet
    fi
    starts=(pretrained); [[ $RANDOM_INIT == 1 ]] && starts+=(random)
    for start in "${starts[@]}"; do
        # A finished start (its evaluation written) is kept: resuming it would train it further
        # under a new time limit, and the random start's steps are pinned to its step count.
        if [[ -f $OUT/$task-$start.json ]]; then
            echo "reusing $OUT/$task-$start.json ($task, $start start; delete it and $OUT/$task-$start/ to fine-tune again)"
            continue
        fi
        if [[ $start == pretrained ]]; then
            INIT=(--init "$OUT/run")
            LIMIT=(--max-steps "$(setting STEPS "$task" 2000)" --time-limit-minutes "$(setting MINUTES "$task" "$(default_minutes "$task")")")
        else
            # Exactly the steps the pre-trained start reached in its time.
            INIT=(--random-init)
            LIMIT=(--max-steps "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$OUT/$task-pretrained.json")")
        fi
        step "$task 2/3 ($start start): mpirun -np 2 elip finetune --task $task --config configs/demo-$task.yaml ${LIMIT[*]}"
        "${MPIRUN[@]}" "$ELIP" finetune --task "$task" --config "configs/demo-$task.yaml" "${INIT[@]}" --data "$OUT/$task-shards" \
            --out "$OUT/$task-$start" --resume auto --threads 1 "${LIMIT[@]}" | grep -v '^init: not used' | cut -c1-300
        step "$task 3/3 ($start start): held-out evaluation -> $OUT/$task-$start.json"
        evaluate "$task" "$OUT/$task-$start" "$OUT/$task-$start.json"
    done
done

step "summary -> $OUT/finetune.json"
python3 - "$OUT" "$RANDOM_INIT" $TASKS <<'PY'
import json, os, sys
out, with_random, tasks = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
def load(task, start):
    path = os.path.join(out, f"{task}-{start}.json")
    return json.load(open(path)) if os.path.exists(path) else None

def retrieval_chance():
    # A random text ranking finds one of image i's captions in the top K with probability
    # ~ 1 - (1 - K/texts)^captions_i; a random image ranking finds a caption's image with K / images.
    test = json.load(open(os.path.join(out, "corpus", "test.json")))
    caps = [len(e["caption"]) if isinstance(e["caption"], list) else 1 for e in test]
    texts, images = sum(caps), len(caps)
    tr = {k: 100 * sum(1 - (1 - k / texts) ** c for c in caps) / images for k in (1, 5, 10)}
    ir = {k: 100 * min(k, images) / images for k in (1, 5, 10)}
    return (sum(tr.values()) + sum(ir.values())) / 6, (tr[1] + ir[1]) / 2

# The text-only baseline: the training split's majority label per sentence form (the sentence with
# its colour, shape, number and material words blanked), applied to the test split. It is what a
# model that ignores the images can reach (e.g. "how many _ are there?" -> "1"), so a score above
# it is what the images added.
# Colour and shape words come from the corpus's answer list (with their plurals); the materials and
# number words are SyntheticEntailment's.
_answers = json.load(open(os.path.join(out, "corpus", "answer_list.json")))
_objects = {a for a in _answers if a not in ("yes", "no") and not a.isdigit()}
WORDS = _objects | {a + ("es" if a.endswith("s") else "s") for a in _objects} \
    | {"wood", "paper", "glass", "metal", "plastic", "stone", "one", "two", "three", "four", "a", "an", "is", "are"}
def form(sentence):
    return " ".join("_" if w.strip("?") in WORDS else w for w in sentence.lower().split())

def text_only(task):
    files = {"ve": ("ve_train.json", "ve_test.json", "sentence"), "nlvr2": ("nlvr2_train.json", "nlvr2_test.json", "sentence"),
             "vqa": ("vqa_train.json", "vqa_test.json", "question")}
    if task not in files:
        return None
    train_file, test_file, key = files[task]
    def label(e): return e["answer"][0] if task == "vqa" else e["label"]
    counts, overall = {}, {}
    for e in json.load(open(os.path.join(out, "corpus", train_file))):
        counts.setdefault(form(e[key]), {}).setdefault(label(e), 0)
        counts[form(e[key])][label(e)] += 1
        overall[label(e)] = overall.get(label(e), 0) + 1
    best = lambda c: max(sorted(c), key=lambda k: c[k])
    test = json.load(open(os.path.join(out, "corpus", test_file)))
    hits = sum(best(counts.get(form(e[key]), overall)) == label(e) for e in test)
    return 100 * hits / len(test)

def entry(task, r):
    if task in ("ve", "nlvr2"):
        return {"metric": "accuracy", "value": r["accuracy"], "baseline": r["majority_baseline"], "samples": r["samples"],
                "text_only_baseline": text_only(task)}
    if task == "vqa":
        # Every synthetic question has one answer given by all ten "humans": VQA accuracy = exact match.
        return {"metric": "vqa_accuracy", "value": r["overall"], "baseline": r["majority_baseline"], "questions": len(r["per_question"]),
                "text_only_baseline": text_only(task)}
    r_mean_chance, r1_chance = retrieval_chance()
    return {"metric": "r_mean (mean of TR@1/5/10 and IR@1/5/10, held-out split)", "value": r["r_mean"], "baseline": r_mean_chance,
            "mean_r1": (r["txt_r1"] + r["img_r1"]) / 2, "mean_r1_chance": r1_chance, "images": r["images"], "texts": r["texts"]}

path = os.path.join(out, "finetune.json")
summary = json.load(open(path)) if os.path.exists(path) else {}
for task in tasks:
    # The random-start result only when this run made it (an older one may predate the current runs).
    pre, rnd = load(task, "pretrained"), load(task, "random") if with_random else None
    e = {k: round(v, 2) if isinstance(v, float) else v for k, v in entry(task, pre).items()}
    e["steps"] = pre.get("step")
    if rnd is not None:
        e["random_init"] = round(entry(task, rnd)["value"], 2)
        e["random_init_steps"] = rnd.get("step")
    summary[task] = e
json.dump(summary, open(path, "w"), indent=2, sort_keys=True)
print(json.dumps(summary, indent=2, sort_keys=True))
print("\n| task | metric | pre-trained | random init | baseline | text-only baseline | steps |\n| --- | --- | --- | --- | --- | --- | --- |")
for task in tasks:
    e = summary[task]
    print(f"| {task} | {e['metric'].split(' ')[0]} | {e['value']} | {e.get('random_init', '-')} | {e['baseline']} | {e.get('text_only_baseline', '-')} | {e['steps']} |")
PY
