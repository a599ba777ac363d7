"""The seed article's two executors on sandpool's benchmark workloads.

Runs one workload on ThreadPoolExecutor or ProcessPoolExecutor (chunksize=1,
max_workers = CPUs unless given) and prints one JSON line:
  {"executor", "workload", "tasks", "seconds", "tasks_per_second",
   "p50_ms", "p99_ms", "peak_rss_mib"}
Throughput is for the whole batch; latency is per task, submit to result,
measured one task at a time through a warm pool (the round-trip cost). Peak RSS is the largest of the
parent and of any worker process (ru_maxrss).

Workloads (the same definitions as sandpool's macro benchmark):
  noop       10,000 tasks returning their 1 KiB input
  docstats   2,000 documents of about 4 KiB: document statistics
  primes     200 tasks counting the primes below 30,000 by trial division
  sleep      1,000 tasks sleeping 10 ms (I/O-bound)
  read       2,000 reads of the 4 KiB files under DATA_DIR
  mixed      read a file under DATA_DIR, document statistics, write the JSON to OUT_DIR

Usage: executors.py EXECUTOR WORKLOAD [--workers N] [--data DIR] [--out DIR] [--tasks N]
"""
import argparse
import collections
import json
import os
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

WORD = re.compile(r"[^\W_]+")


def doc_stats(text):
    words = [w.lower() for w in WORD.findall(text)]
    counts = collections.Counter(words)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {"bytes": len(text.encode("utf-8")), "lines": text.count("\n"), "words": len(words),
            "unique": len(counts), "top": [[w, c] for w, c in top]}


def count_primes(limit):
    count = 0
    for n in range(2, limit):
        if n < 4:
            count += 1
            continue
        if n % 2 == 0:
            continue
        d = 3
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 2
        if prime:
            count += 1
    return count


def noop(data):
    return data


def sleep_10ms(_):
    time.sleep(0.010)
    return 0


def read_file(path):
    with open(path, "rb") as f:
        return len(f.read())


def mixed(job):
    path, out_dir = job
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    stats = doc_stats(text)
    out = os.path.join(out_dir, os.path.basename(path) + ".json")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(stats, f)
    os.replace(out + ".tmp", out)
    return stats["words"]


WORDS = ["the", "pool", "thread", "process", "memory", "isolation", "wasm", "instance", "task", "input",
         "output", "order", "result", "cost", "serialize", "pickle", "crash", "limit", "deadline", "fuel"]


def make_doc(i, size=4096):
    """Deterministic document i of about `size` bytes (the Rust side generates the same text)."""
    words, x, total = [], (i * 2654435761 + 1) % (1 << 32), 0
    while total < size:
        x = (x * 1103515245 + 12345) % (1 << 31)
        w = WORDS[x % len(WORDS)]
        words.append(w)
        total += len(w) + 1
    return " ".join(words)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("executor", choices=["thread", "process"])
    ap.add_argument("workload", choices=["noop", "docstats", "primes", "sleep", "read", "mixed"])
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--data", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--tasks", type=int, default=0)
    a = ap.parse_args()

    if a.workload == "noop":
        fn, args = noop, [bytes(1024)] * (a.tasks or 10_000)
    elif a.workload == "docstats":
        fn, args = doc_stats, [make_doc(i) for i in range(a.tasks or 2_000)]
    elif a.workload == "primes":
        fn, args = count_primes, [30_000] * (a.tasks or 200)
    elif a.workload == "sleep":
        fn, args = sleep_10ms, list(range(a.tasks or 1_000))
    elif a.workload == "read":
        files = sorted(os.path.join(a.data, n) for n in os.listdir(a.data))
        fn, args = read_file, files[: a.tasks or len(files)]
    else:
        os.makedirs(a.out, exist_ok=True)
        files = sorted(os.path.join(a.data, n) for n in os.listdir(a.data))
        fn, args = mixed, [(f, a.out) for f in files[: a.tasks or len(files)]]

    pool_type = ThreadPoolExecutor if a.executor == "thread" else ProcessPoolExecutor
    latencies = []
    start = time.perf_counter()
    with pool_type(max_workers=a.workers) as pool:
        submitted = []
        for arg in args:
            submitted.append((time.perf_counter(), pool.submit(fn, arg)))
        for _t0, fut in submitted:
            fut.result()
    seconds = time.perf_counter() - start
    # Latency: one task at a time through a warm pool (submit to result), up to 500 tasks.
    with pool_type(max_workers=a.workers) as pool:
        for arg in args[: min(len(args), 500)]:
            t0 = time.perf_counter()
            pool.submit(fn, arg).result()
            latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({
        "executor": a.executor, "workload": a.workload, "tasks": len(args), "seconds": seconds,
        "tasks_per_second": len(args) / seconds,
        "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "peak_rss_mib": rss / 1024,
    }))


if __name__ == "__main__":
    main()
