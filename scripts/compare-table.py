#!/usr/bin/env python3
"""The table of `make compare` (scripts/compare.sh): one Markdown row per variant, from the
variant's config (<dir>/<v>.yaml), retrieval JSON, metrics.jsonl and pruning analysis.

Usage: compare-table.py COMPARE_DIR VARIANT...
"""
import json
import os
import re
import statistics
import sys


def prune_settings(config_path):
    """(scoring, λ, merge) from the one-line img_prune mapping, or None without pruning."""
    line = next((l for l in open(config_path) if l.startswith("img_prune:")), "img_prune: null")
    value = line.split(":", 1)[1].strip()
    if not value.startswith("{"):
        return None

    def key(name, default):
        m = re.search(r"\b" + name + r":\s*([^,}\s]+)", value)
        return m.group(1) if m else default
    return key("scoring", "look_ahead"), float(key("lambda", "0.8")), key("merge", "true") == "true"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    folder, variants = sys.argv[1], sys.argv[2:]
    rows, stages, overlap = [], 0, []
    for v in variants:
        r = json.load(open(os.path.join(folder, f"{v}-retrieval.json")))
        metrics = [json.loads(l) for l in open(os.path.join(folder, v, "metrics.jsonl")) if l.strip()]
        if not metrics:
            sys.exit(f"{folder}/{v}/metrics.jsonl: no training records")
        timed = metrics[len(metrics) // 5:]  # skip warm-up
        step_ms = 1000 * statistics.median(sum(x["seconds"].values()) for x in timed)
        settings = prune_settings(os.path.join(folder, f"{v}.yaml"))
        analysis_path = os.path.join(folder, f"{v}-pruning.json")
        analysis = json.load(open(analysis_path)) if os.path.exists(analysis_path) else None
        if analysis:
            stages = max(stages, len(analysis["keptObjectShare"]))
            if analysis.get("survivingOverlapWithOtherScoring"):
                overlap.append((v, analysis["otherScoring"], analysis["survivingOverlapWithOtherScoring"]))
        rows.append((v, settings, r, step_ms, analysis))

    head = ["variant", "scoring", "λ", "merge", "TR@1", "IR@1", "mean R@1", "r_mean"]
    head += [f"kept on object, stage {j + 1}" for j in range(stages)] + ["object in image", "step (ms)"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for v, settings, r, step_ms, a in rows:
        scoring, lam, merge = (settings[0], f"{settings[1]:g}", "on" if settings[2] else "off") if settings else ("no pruning", "-", "-")
        cells = [v, scoring, lam, merge, f"{r['txt_r1']:.2f}", f"{r['img_r1']:.2f}",
                 f"{(r['txt_r1'] + r['img_r1']) / 2:.2f}", f"{r['r_mean']:.2f}"]
        shares = a["keptObjectShare"] if a else []
        cells += [f"{100 * shares[j]:.1f}%" if j < len(shares) else "-" for j in range(stages)]
        cells += [f"{100 * a['imageObjectShare']:.1f}%" if a else "-", f"{step_ms:.0f}"]
        print("| " + " | ".join(cells) + " |")
    if rows:
        n = rows[0][4]["images"] if rows[0][4] else next((a["images"] for *_, a in rows if a), 0)
        print(f"\nRetrieval: held-out split, unpruned ViT, ITM re-ranking. Kept on object: share of object pixels "
              f"under the kept patches ({n} held-out images, each with its first caption); object in image: what "
              f"random pruning would keep. Step time: median of each run's metrics.jsonl after the first fifth.")
    for v, other, shares in overlap:
        print(f"{v}: surviving patches also kept by {other} scoring on the same model: "
              + ", ".join(f"stage {j + 1} {100 * s:.1f}%" for j, s in enumerate(shares)))


if __name__ == "__main__":
    main()
