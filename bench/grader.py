"""
Speed and accuracy of grader.py on real data, written as a markdown table to
bench/results/grader.md: checks/s on MATH500 (reference solution against its answer: the
true-positive rate; solution i against answer i+1: the false-positive rate), on the same answers
rewritten as a model might (x = <answer>; (a)/(b), sqrt(x), pi), and on GSM8K likewise. Each set is timed on a fresh
worker pool: its first run (sympy's caches cold) and the median of --repeats more.

    python bench/grader.py                  # needs ../shared/data/benchmarks
    python bench/grader.py --repeats=1      # a quick smoke run
"""
import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from datetime import date

import sympy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import grader  # noqa: E402


def seconds(fn, repeats):
    """The first run's time (sympy's caches in the workers cold) and the median of the next repeats."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def fresh_pool(workers):
    """Kill the pool's workers and start new ones, and wait until they are ready (untimed)."""
    grader._stop_pool()
    grader._pool.clear()
    grader.grade_many([("\\boxed{2\\sqrt{2}}", "\\sqrt{8}")] * workers, workers=workers)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def to_sympy(pairs):
    """The share of pairs the cheap checks cannot decide, which go to the sympy workers."""
    n = 0
    for response, gold in pairs:
        p, g = grader.extract_answer(response), grader.extract_answer(gold)
        n += p is not None and g is not None and grader._quick(grader._normalize(p), grader._normalize(g), grader.REL_TOL) is None
    return n / len(pairs)


def plain(answer):
    """An answer as a model might write it in plain text: (a)/(b), sqrt(x), pi."""
    for _ in range(3):  # nested fractions and roots, innermost first
        answer = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
        answer = re.sub(r"\\sqrt\{([^{}]*)\}", r" sqrt(\1)", answer)
    return answer.replace("\\pi", "pi ").replace("\\cdot", "*")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "benchmarks"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=grader.WORKERS, help="workers for the parallel column")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "grader.md"))
    args = p.parse_args()

    def rows(name):
        return [json.loads(line) for line in open(os.path.join(args.data, name, "test.jsonl"))]

    math = rows("math500")
    gsm = rows("gsm8k")
    gsm_gold = [r["answer"].split("####")[-1].strip() for r in gsm]
    sets = [  # name, pairs, whether they should grade equal
        ("MATH500 solution vs its answer", [(r["solution"], r["answer"]) for r in math], True),
        ("MATH500 solution i vs answer i+1", [(a["solution"], b["answer"]) for a, b in zip(math, math[1:])
                                              if a["answer"] != b["answer"]], False),
        ("MATH500 `x = answer` vs answer", [(f"\\boxed{{x = {r['answer']}}}", r["answer"]) for r in math], True),
        ("MATH500 answer in plain text vs answer", [(f"The answer is {plain(r['answer'])}", r["answer"]) for r in math
                                                    if plain(r["answer"]) != r["answer"]
                                                    and not re.search(r"\d\s*\\frac", r["answer"])], True),  # 1\frac{4}{5}
        ("GSM8K solution vs its answer", [(r["answer"], g) for r, g in zip(gsm, gsm_gold)], True),
        ("GSM8K solution i vs answer i+1", [(r["answer"], h) for r, g, h in zip(gsm, gsm_gold, gsm_gold[1:]) if g != h], False),
    ]

    lines = []
    for name, pairs, equal in sets:
        fresh_pool(1)
        cold, one = seconds(lambda: grader.grade_many(pairs, workers=1), args.repeats)
        fresh_pool(args.workers)
        cold_many, many = seconds(lambda: grader.grade_many(pairs, workers=args.workers), args.repeats)
        rate = sum(grader.grade_many(pairs)) / len(pairs)
        label = "true positives" if equal else "false positives"
        print(f"{name:40s} {len(pairs):5d} pairs, {to_sympy(pairs):6.1%} to sympy, {label} {rate:6.2%}; checks/s "
              f"1 worker: {len(pairs) / cold:6.0f} cold, {len(pairs) / one:6.0f} warm ({one:.3f} s); "
              f"{args.workers} workers: {len(pairs) / cold_many:6.0f} cold, {len(pairs) / many:6.0f} warm")
        lines.append(f"| {name} | {len(pairs)} | {to_sympy(pairs):.1%} | {label}: {rate:.2%} | "
                     f"{cold:.3f} s / {one:.3f} s | {len(pairs) / cold:,.0f} / {len(pairs) / one:,.0f} | "
                     f"{len(pairs) / cold_many:,.0f} / {len(pairs) / many:,.0f} |")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"{date.today()} · {cpu_name()} · {os.cpu_count()} CPUs, shared (load average {load:.1f} at the end) · "
              f"{platform.system()} · Python {platform.python_version()}, sympy {sympy.__version__}")
    table = "\n".join([
        "# grader.py speed and accuracy", "", header, "",
        f"| pairs | n | to sympy | result | time, 1 worker (cold / warm) | checks/s, 1 worker (cold / warm) "
        f"| checks/s, {args.workers} workers (cold / warm) |",
        "|---|---|---|---|---|---|---|", *lines, "",
        f"Each set runs on a freshly started pool (started untimed): cold is the first run, with sympy's caches in "
        f"the workers empty, as for new model outputs; warm is the median of the next {args.repeats}. Default rel_tol "
        f"{grader.REL_TOL:g}, timeout {grader.TIMEOUT:g} s. \"to sympy\" is the share of pairs the cheap checks "
        "(normalised strings, plain numbers) leave to the sympy workers; the rest are decided in the calling process. "
        "Target: the 500 MATH500 reference solutions against their answers in under 1 s on one core.", ""])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
