"""
Speed of data.py on this machine, written as a markdown table to bench/results/data.md:
BPE training on GSM8K's train set (~4 MB), prepare (tokens/s, 2 processes), and MixtureLoader
tokens/s per process at seq_len 1024 from a two-source mixture (memory-mapped shards, page cache
warm), for one process and for rank 0 of 8 (which plans the whole global batch, reads its eighth).

    python bench/data.py                      # needs ../shared/data/gsm8k/train.jsonl
    python bench/data.py --copies=2 --repeats=3   # a quick smoke run
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date

import numpy as np
import tiktoken
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data import MixtureLoader, prepare  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gsm8k", default=os.path.join(ROOT, "..", "shared", "data", "gsm8k", "train.jsonl"))
    p.add_argument("--vocab_size", type=int, default=8192)
    p.add_argument("--copies", type=int, default=8, help="copies of GSM8K in the 'web' source")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=16, help="global rows per step")
    p.add_argument("--steps", type=int, default=100, help="batches per timed repeat")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "data.md"))
    args = p.parse_args()

    records = [json.loads(line) for line in open(args.gsm8k)]
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in records]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    tok = None

    def train():
        nonlocal tok
        tok = Tokenizer.train(texts, args.vocab_size)
    train_s = median_seconds(train, 3)
    print(f"BPE training: {mb:.1f} MB, vocab {args.vocab_size}: {train_s:.2f} s")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        web = os.path.join(tmp, "web.jsonl")
        with open(web, "w") as f:
            for copy in range(args.copies):
                for t in texts:
                    f.write(json.dumps({"text": f"[{copy}] {t}"}) + "\n")
        t0 = time.perf_counter()
        index = prepare(web, os.path.join(tmp, "web"), tok, docs_per_shard=20_000, workers=2)
        prepare_s = time.perf_counter() - t0
        prepare(args.gsm8k, os.path.join(tmp, "qa"), tok, fmt="qa", docs_per_shard=20_000, workers=1)
        print(f"prepare: {index['n_tokens']:,} tokens in {prepare_s:.1f} s")
        sources = {"web": (os.path.join(tmp, "web"), 0.7), "qa": (os.path.join(tmp, "qa"), 0.3)}
        for world_size in [1, 8]:
            loader = MixtureLoader(sources, args.seq_len, args.batch_size, rank=0, world_size=world_size, seed=0)

            def read():
                for _ in range(args.steps):
                    next(loader)
            s = median_seconds(read, args.repeats)
            tokens = args.steps * args.batch_size // world_size * args.seq_len
            rows.append((world_size, args.batch_size // world_size, tokens / s))
            print(f"MixtureLoader world_size={world_size}: {tokens / s / 1e6:.1f} M tokens/s per process")

    versions = (f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
                f"tiktoken {tiktoken.__version__}")
    lines = [
        "# data.py speed", "",
        f"{date.today()} · {cpu_name()} · {os.cpu_count()} CPUs, shared (load average {os.getloadavg()[0]:.1f} at the "
        f"end) · {platform.system()} · {versions}", "",
        "| what | setting | result |", "|---|---|---|",
        f"| BPE training (`Tokenizer.train`) | GSM8K train, {mb:.1f} MB, vocab {args.vocab_size}, median of 3 | {train_s:.2f} s |",
        f"| `prepare` (2 processes) | {args.copies}x GSM8K as text, {index['n_tokens'] / 1e6:.1f} M tokens | "
        f"{index['n_tokens'] / prepare_s / 1e6:.2f} M tokens/s |",
    ]
    for world_size, per_rank, tps in rows:
        lines.append(f"| `MixtureLoader` | seq_len {args.seq_len}, global batch {args.batch_size}, world_size "
                     f"{world_size} (rank 0: {per_rank} rows), 2 sources, median of {args.repeats} x "
                     f"{args.steps} batches | {tps / 1e6:.1f} M tokens/s per process |")
    lines += ["", "The loader figure is x, y and doc_ids as int64 tensors, from page-cached shards; the target "
              "is at least 2 M tokens/s per process at seq_len 1024.", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
