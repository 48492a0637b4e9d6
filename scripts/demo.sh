#!/usr/bin/env bash
# make demo: set up, build, make a synthetic corpus, shard it under mpirun, pre-train ELIP-ALBEF
# (or the model of DEMO_CONFIG, e.g. configs/demo-blip.yaml or configs/demo-meter.yaml) with 2 ranks for a bounded time,
# evaluate zero-shot retrieval on the held-out split (and, for a captioning model, captions
# against the most frequent training caption), draw what ELIP keeps and the training curves, and
# summarise. Re-running reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${DEMO_CONFIG:-configs/demo.yaml}
[[ -f $CONFIG ]] || { echo "DEMO_CONFIG=$CONFIG: no such file" >&2; exit 1; }
MODEL=$(sed -n 's/^model: *\([A-Za-z0-9_-]*\).*/\1/p' "$CONFIG" | head -1)
MODEL=${MODEL:-albef}
SIZE=$(sed -n 's/^image_\(res\|size\): *\([0-9]*\).*/\2/p' "$CONFIG" | head -1)
[[ -n $SIZE ]] || { echo "$CONFIG: no image_res / image_size at the top level" >&2; exit 1; }
# Each model has its own folder: corpora of different image sizes must not be reused across them.
if [[ $MODEL == albef ]]; then OUT=${DEMO_OUT:-out/demo}; else OUT=${DEMO_OUT:-out/demo-$MODEL}; fi
CAPTIONS=0; [[ $MODEL == blip ]] && CAPTIONS=1
N=$((6 + CAPTIONS))
MINUTES=${DEMO_MINUTES:-9}
IMAGES=${DEMO_IMAGES:-2400}
ELIP=$(swift build -c release --show-bin-path)/elip
MPIRUN=(mpirun -np 2 --bind-to core)
if [[ $(id -u) -eq 0 ]]; then MPIRUN+=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ $(nproc) -ge 2 ]] || MPIRUN+=(--oversubscribe)
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
t0=$(date +%s)

step "1/$N synthetic corpus ($IMAGES images of coloured shapes at $SIZE px, 10% held out) -> $OUT/corpus"
if [[ -f $OUT/corpus/test.json ]]; then
    have=$(cat "$OUT/corpus/size" 2>/dev/null || echo 64)
    [[ $have == "$SIZE" ]] || { echo "$OUT/corpus was made at $have px, $CONFIG needs $SIZE: set DEMO_OUT to another folder" >&2; exit 1; }
    echo "reusing $OUT/corpus"
else
    "$ELIP" synth --out "$OUT/corpus" --images "$IMAGES" --size "$SIZE" --seed 1 --test-fraction 0.1
    echo "$SIZE" >"$OUT/corpus/size"
fi

step "2/$N sharded LMDB corpus, built by 2 MPI ranks -> $OUT/shards"
if [[ -f $OUT/shards/manifest.json ]]; then echo "reusing $OUT/shards"; else
    "${MPIRUN[@]}" "$ELIP" build-dataset --annotations "$OUT/corpus/train.json" --image-root "$OUT/corpus" \
        --out "$OUT/shards" --shards 4 --image-size "$SIZE" --workers 1 --quiet
    "$ELIP" inspect-dataset "$OUT/shards" --verify --show 16 --out "$OUT/contact-sheet.png" | tail -3
fi

step "3/$N pre-training: mpirun -np 2 elip train --config $CONFIG (at most $MINUTES minutes)"
"${MPIRUN[@]}" "$ELIP" train --config "$CONFIG" --data "$OUT/shards" --out "$OUT/run" --resume auto \
    --threads 1 --time-limit-minutes "$MINUTES"

if [[ $MODEL == meter ]]; then
    # METER has no unimodal features: every image x caption pair goes through the full model (the
    # ViT pruned under that caption), so the held-out split is ranked on its first 50 images (pairs grow with the square: 100 took 176 s on 2 idle cores).
    step "4/$N zero-shot retrieval on the held-out split (every pair ranked by ITM, METER's protocol; first ${DEMO_RANK_IMAGES:-50} images)"
    "${MPIRUN[@]}" "$ELIP" eval-retrieval --checkpoint "$OUT/run" --data "$OUT/corpus/test.json" --image-root "$OUT/corpus" \
        --config "$CONFIG" --max-images "${DEMO_RANK_IMAGES:-50}" --batch 64 --threads 1 --out "$OUT/retrieval.json"
else
    step "4/$N zero-shot retrieval on the held-out split (unpruned ViT, ITM re-ranking, ALBEF's protocol)"
    "${MPIRUN[@]}" "$ELIP" eval-retrieval --checkpoint "$OUT/run" --data "$OUT/corpus/test.json" --image-root "$OUT/corpus" \
        --config "$CONFIG" --k-test 32 --threads 1 --out "$OUT/retrieval.json"
fi

if ((CAPTIONS)); then
    step "5/$N captions of the held-out images (beam 3; no prompt: the model is pre-trained, not caption-tuned)"
    # COCO-format references of the held-out split (ids from the file names), and the baseline
    # every captioner must beat: the single most frequent training caption, for every image.
    python3 - "$OUT" <<'PY'
import collections, json, os, sys
out = sys.argv[1]
test = json.load(open(f"{out}/corpus/test.json"))
train = json.load(open(f"{out}/corpus/train.json"))
def caps(e): return e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
images, anns = [], []
for e in test:
    i = int(os.path.splitext(os.path.basename(e["image"]))[0])
    images.append({"id": i, "file_name": e["image"]})
    anns += [{"image_id": i, "id": len(anns) + 1, "caption": c} for c in caps(e)]
json.dump({"images": images, "annotations": anns, "type": "captions", "info": {"description": "elip demo held-out split"}},
          open(f"{out}/captions-references.json", "w"), indent=1)
counts = collections.Counter(c for e in train for c in caps(e))
top = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # most frequent; ties: alphabetical
json.dump([{"image_id": im["id"], "caption": top} for im in images], open(f"{out}/captions-most-frequent.json", "w"), indent=1)
print(f"{len(images)} images, {len(anns)} reference captions; most frequent training caption: \"{top}\" ({counts[top]} times)")
PY
    "${MPIRUN[@]}" "$ELIP" caption --checkpoint "$OUT/run" --config "$CONFIG" --data "$OUT/captions-references.json" \
        --image-root "$OUT/corpus" --prompt "" --max-length 30 --threads 1 --out "$OUT/captions.json"
    "$ELIP" eval-caption --annotations "$OUT/captions-references.json" --results "$OUT/captions.json" --out "$OUT/caption-eval-model.json"
    "$ELIP" eval-caption --annotations "$OUT/captions-references.json" --results "$OUT/captions-most-frequent.json" \
        --out "$OUT/caption-eval-most-frequent.json"
    python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def row(path):
    m = json.load(open(path))
    return {"BLEU-1": m["Bleu_1"], "BLEU-4": m["Bleu_4"], "CIDEr": m["CIDEr"]}
baseline = row(f"{out}/caption-eval-most-frequent.json")
baseline["caption"] = json.load(open(f"{out}/captions-most-frequent.json"))[0]["caption"]
json.dump({"model": row(f"{out}/caption-eval-model.json"), "most_frequent_caption": baseline},
          open(f"{out}/caption_metrics.json", "w"), indent=1)
PY
fi

step "$((5 + CAPTIONS))/$N what ELIP keeps, and the training curves"
# demo-first-pair begin: the first held-out image and its caption, NUL-separated (paths and
# captions may hold spaces or quotes; the folder reaches Python as an argument, never as code).
{ IFS= read -r -d '' IMG && IFS= read -r -d '' CAP; } < <(python3 - "$OUT/corpus/test.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))[0]
c = e["caption"] if isinstance(e["caption"], str) else e["caption"][0]
sys.stdout.write(e["image"] + "\0" + c + "\0")
PY
)
# demo-first-pair end
if [[ $MODEL == meter ]]; then
    echo "(visualize takes WordPiece vocabularies only: no pruning.png for METER yet)"
else
    "$ELIP" visualize --checkpoint "$OUT/run" --config "$CONFIG" --image "$OUT/corpus/$IMG" --caption "$CAP" \
        --out "$OUT/pruning.png"
fi
"$ELIP" plot "$OUT/run" --out "$OUT/training.png"

step "$N/$N summary ($(( $(date +%s) - t0 )) s)"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/retrieval.json"))
m = r.get("metrics", r)
def g(k): return float(m[k])
n_img, n_txt = r["images"], r["texts"]
print(f"held-out retrieval ({n_img} images, {n_txt} captions): TR@1 {g('txt_r1'):.1f}  IR@1 {g('img_r1'):.1f}  "
      f"TR@5 {g('txt_r5'):.1f}  IR@5 {g('img_r5'):.1f}  r_mean {g('r_mean'):.1f}")
# Chance for both directions at R@1 is about 1 / images (each image has the same number of captions).
mean_r1 = (g('txt_r1') + g('img_r1')) / 2
print(f"mean of TR@1 and IR@1: {mean_r1:.1f}% = {mean_r1 / (100 / n_img):.1f}x chance ({100 / n_img:.2f}%)")
try:
    c = json.load(open(f"{out}/caption_metrics.json"))
except FileNotFoundError:
    sys.exit(0)
m, b = c["model"], c["most_frequent_caption"]
print(f"captions: BLEU-4 {m['BLEU-4']:.3f}  CIDEr {m['CIDEr']:.3f};  most frequent training caption: BLEU-4 {b['BLEU-4']:.3f}  "
      f"CIDEr {b['CIDEr']:.3f};  CIDEr ratio {m['CIDEr'] / max(b['CIDEr'], 1e-12):.1f}x")
PY
cat <<EOF
written:
  $OUT/corpus/          synthetic images, masks, train.json / test.json
  $OUT/shards/          LMDB shards + manifest.json$( [[ -f $OUT/contact-sheet.png ]] && printf '\n  %s' "$OUT/contact-sheet.png    samples from the shards")
  $OUT/run/             checkpoints/ and metrics.jsonl
  $OUT/retrieval.json   TR/IR@1/5/10 and r_mean$( ((CAPTIONS)) && printf '\n  %s\n  %s' "$OUT/captions.json     a caption per held-out image (COCO results format)" "$OUT/caption_metrics.json  BLEU-4 and CIDEr-D: the model vs the most frequent training caption")$( [[ $MODEL != meter ]] && printf '\n  %s' "$OUT/pruning.png      tokens kept per stage and the text-guided attention")
  $OUT/training.png     losses, learning rate, throughput
EOF
