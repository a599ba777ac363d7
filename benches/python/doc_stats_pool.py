"""The seed article's pattern in Python: ProcessPoolExecutor over a folder of
files, one output/{file_id}.json per input, computing the same document
statistics as sandpool's doc_stats task (see the design brief):

  words: re.findall(r"[^\\W_]+", text), lowercased; top 10 by count desc, word asc.

Usage: python3 doc_stats_pool.py INPUT_DIR OUT_DIR [WORKERS]
Prints one JSON line: {"files": N, "seconds": S, "files_per_second": R}.
"""
import collections
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor

WORD = re.compile(r"[^\W_]+")
# Output folders this worker process has made (the output tree mirrors the inputs).
MADE = set()


def file_id(rel):
    """sandpool run's output path for `rel`: the input tree mirrored, each name escaped alone."""
    return "/".join(escape_name(part) for part in rel.split("/"))


def escape_name(rel):
    out = []
    for c in rel:
        if c == "%":
            out.append("%25")
        elif c == "\\":
            out.append("%5C")
        elif ord(c) < 32 or ord(c) == 127:
            out.append("".join(f"%{b:02X}" for b in c.encode()))
        else:
            out.append(c)
    return "".join(out)


def doc_stats(text):
    words = [w.lower() for w in WORD.findall(text)]
    counts = collections.Counter(words)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "bytes": len(text.encode("utf-8")),
        "lines": text.count("\n"),
        "words": len(words),
        "unique": len(counts),
        "top": [[w, c] for w, c in top],
    }


def process(job):
    in_dir, out_dir, rel = job
    with open(os.path.join(in_dir, rel), "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    stats = doc_stats(text)
    path = os.path.join(out_dir, file_id(rel) + ".json")
    parent = os.path.dirname(path)
    if parent not in MADE:
        os.makedirs(parent, exist_ok=True)
        MADE.add(parent)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, separators=(",", ":"))
    os.replace(tmp, path)
    return rel


def main():
    in_dir, out_dir = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count()
    os.makedirs(out_dir, exist_ok=True)
    rels = []
    for root, _dirs, files in os.walk(in_dir):
        for name in files:
            rels.append(os.path.relpath(os.path.join(root, name), in_dir).replace(os.sep, "/"))
    rels.sort()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = sum(1 for _ in pool.map(process, [(in_dir, out_dir, r) for r in rels], chunksize=1))
    seconds = time.perf_counter() - start
    print(json.dumps({"files": done, "seconds": seconds, "files_per_second": done / seconds}))


if __name__ == "__main__":
    main()
