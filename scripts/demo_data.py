"""The demo teacher's training documents (scripts/demo.sh's data stage): one JSONL of mixed, shuffled documents.

usage: python3 scripts/demo_data.py OUT.jsonl --jsonl FILE... --text FILE... [--slices N] [--seed S]

Every {"text"} line of the --jsonl files (postnas-data synth's repeats and recall exercises) is one document;
--slices N more are pieces of 64 to 128 bytes cut at random places from the --text files (real text: the
repository's own sources, frozen in data/demo-text.txt). All of them are shuffled together, so every 256-token
training window holds a mix of kinds. That mix is what lets the tiny teacher grow its induction head: with the same documents in
blocks (a window of text, a window of repeats, a window of exercises) postnas-train's runs stayed at chance
on recall for 2,000 steps in four of five tries. Deterministic for a seed (Python's random with a fixed seed);
the output is written whole or not at all."""
import argparse
import json
import os
import random
import sys

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--jsonl", nargs="+", default=[])
ap.add_argument("--text", nargs="+", default=[])
ap.add_argument("--slices", type=int, default=0)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()

docs = []
for path in a.jsonl:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            d = json.loads(line)
            if not isinstance(d, dict) or not isinstance(d.get("text"), str):
                sys.exit("%s:%d: not a {\"text\": ...} line" % (path, n))
            docs.append(d["text"])
rng = random.Random(a.seed)
if a.slices:
    # bytes, decoded per slice with replacement: a cut inside a UTF-8 sequence costs one character
    text = b"".join(open(p, "rb").read() for p in a.text)
    if len(text) < 128:
        sys.exit("--text: %d bytes in %d files, need at least 128" % (len(text), len(a.text)))
    for _ in range(a.slices):
        n = rng.randint(64, 128)
        i = rng.randint(0, len(text) - n)
        docs.append(text[i:i + n].decode("utf-8", "replace"))
rng.shuffle(docs)
tmp = a.out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}) + "\n")
os.replace(tmp, a.out)
print("demo_data: %d documents (%d text slices) -> %s" % (len(docs), a.slices, a.out))
