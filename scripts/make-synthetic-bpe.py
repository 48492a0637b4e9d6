#!/usr/bin/env python3
"""Trains the small byte-level BPE vocabulary of the METER demo (configs/synthetic-bpe-vocab.json,
configs/synthetic-bpe-merges.txt) on the synthetic corpus's captions.

    elip synth --out /tmp/synth --images 600 --size 64 --seed 1 --test-fraction 0.1
    python3 scripts/make-synthetic-bpe.py /tmp/synth/train.json configs/synthetic-bpe

The files have roberta-base's layout: vocab.json maps tokens to ids (<s> 0, <pad> 1, </s> 2, <unk> 3,
the 256 byte symbols of GPT-2's bytes_to_unicode, the merged tokens in merge order, <mask> last);
merges.txt starts with a "#version" line, then one "left right" pair per line by rank. Training is
GPT-2's: captions are split as GPT-2's pre-tokeniser does for this alphabet (a word with its
leading space, punctuation apart), then the most frequent adjacent pair is merged until every
word is one token (ties: the lexicographically smallest pair), so the result is deterministic.
Only the standard library is used.
"""
import collections
import json
import re
import sys


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# GPT-2's pattern restricted to what plain ASCII captions contain (no contractions or digits
# beyond \d): optional space + letters, optional space + digits, optional space + other symbols.
PRETOKENIZE = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make-synthetic-bpe.py CORPUS/train.json OUT_PREFIX")
    entries = json.load(open(sys.argv[1]))
    byte_symbol = bytes_to_unicode()
    words = collections.Counter()
    for e in entries:
        captions = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        for caption in captions:
            for chunk in PRETOKENIZE.findall(caption):
                words[tuple(byte_symbol[b] for b in chunk.encode("utf-8"))] += 1
    if not words:
        sys.exit(f"{sys.argv[1]}: no captions")
    merges = []
    while True:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        merged = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab.setdefault(byte_symbol[b], len(vocab))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab["<mask>"] = len(vocab)
    prefix = sys.argv[2]
    with open(prefix + "-vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(prefix + "-merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2 - trained by scripts/make-synthetic-bpe.py on the synthetic corpus\n")
        for left, right in merges:
            f.write(f"{left} {right}\n")
    print(f"{len(vocab)} tokens ({len(merges)} merges) from {sum(words.values())} words -> {prefix}-vocab.json, {prefix}-merges.txt")


if __name__ == "__main__":
    main()
