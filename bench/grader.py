"""
Speed and accuracy of grader.py on real data, written as a markdown table to
bench/results/grader.md: checks/s on MATH500 and OlympiadBench (reference solution against its answer: the
true-positive rate; solution i against answer i+1: the false-positive rate), on the same MATH500 answers
rewritten as a model might (x = <answer>; (a)/(b), sqrt(x), pi), and on GSM8K likewise. Each set is timed on a fresh
worker pool: its first run (sympy's caches cold) and the median of --repeats more.

Then an outside bar: the (gold, pred, expected) cases of HF Math-Verify's regression tests (MIT), read with ast
from its PyPI sdist, fetched into --cache at bench time (its test files never vendored, never run); grader.py's
verdicts and, if the package is installed (not a project dependency), math_verify's. The cases grader.py gets wrong go to --misses.

    python bench/grader.py                  # the benchmarks in data/benchmarks; PyPI for the sdist, once
    python bench/grader.py --repeats=1      # a quick smoke run
"""
import argparse
import ast
import glob
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import time
from collections import Counter
from datetime import date

import sympy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import answers  # noqa: E402
import grader  # noqa: E402
from eval import load_benchmark  # noqa: E402

MATH_VERIFY = "math-verify==0.9.0"
DEFAULTS = {"strict": True, "allow_set_relation_comp": False}  # their compare_strings() defaults, which we keep
AS_EVAL = {"last_number": True}  # grader options as eval.py grades benchmarks (an unmarked answer's last number)


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
        p, g = grader.extract_answer(response, **AS_EVAL), grader.extract_answer(gold, prose=False)
        n += p is not None and g is not None and answers.quick(answers.normalize(p), answers.normalize(g), grader.REL_TOL) is None
    return n / len(pairs)


def plain(answer):
    """An answer as a model might write it in plain text: (a)/(b), sqrt(x), pi."""
    for _ in range(3):  # nested fractions and roots, innermost first
        answer = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
        answer = re.sub(r"\\sqrt\{([^{}]*)\}", r" sqrt(\1)", answer)
    return answer.replace("\\pi", "pi ").replace("\\cdot", "*")


def agreement(name, rows):
    """The two accuracy sets of a benchmark with reference solutions: each solution against its own answer
    (should grade equal) and solution i against answer i+1 (should not; pairs with equal answers left out)."""
    return [(f"{name} solution vs its answer", [(r["solution"], r["answer"]) for r in rows], True),
            (f"{name} solution i vs answer i+1", [(a["solution"], b["answer"]) for a, b in zip(rows, rows[1:])
                                                 if a["answer"] != b["answer"]], False)]


def suite_tests(cache):
    """The tests/ folder of Math-Verify's sdist: pip-downloaded into cache and unpacked, unless already there."""
    name = MATH_VERIFY.replace("-", "_").replace("==", "-")
    tests, tarball = os.path.join(cache, name, "tests"), os.path.join(cache, f"{name}.tar.gz")
    if not os.path.isdir(tests):
        if not os.path.isfile(tarball):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            MATH_VERIFY, "-d", cache], check=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(cache, members=[m for m in tar.getmembers() if "/tests/" in m.name], filter="data")
    return tests


def suite_cases(tests):
    """The literal cases of every @pytest.mark.parametrize over gold, pred and expected (or result), as dicts with
    file, test, gold, pred, expected and opts (the test's keywords to compare_strings(); None for a bare
    verify(parse(gold), parse(pred))); and a Counter of the cases skipped, by reason (skip_reason)."""
    cases, skipped = [], Counter()
    for path in sorted(glob.glob(os.path.join(tests, "*.py"))):
        for fn in ast.walk(ast.parse(open(path).read())):
            for dec in getattr(fn, "decorator_list", []):
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
                expected = next((n for n in ("expected", "result") if n in names), None)
                if not {"gold", "pred"} <= set(names) or not expected:
                    skipped[f"{os.path.basename(path)}: not gold/pred/expected"] += len(dec.args[1].elts)
                    continue
                compare = next((c for c in ast.walk(fn) if isinstance(c, ast.Call)
                                and getattr(c.func, "id", "") == "compare_strings"), None)
                for node in dec.args[1].elts:
                    try:
                        case = dict(zip(names, ast.literal_eval(node)))
                    except (ValueError, TypeError):
                        skipped["not a literal (an f-string)"] += 1
                        continue
                    opts = None if compare is None else {k.arg: case[k.value.id] if isinstance(k.value, ast.Name)
                                                         else ast.literal_eval(k.value) for k in compare.keywords}
                    reason = skip_reason(case["gold"], case["pred"], case[expected], opts or {})
                    if reason:
                        skipped[reason] += 1
                    else:
                        cases.append({"file": os.path.basename(path), "test": fn.name, "gold": case["gold"],
                                      "pred": case["pred"], "expected": bool(case[expected]), "opts": opts})
    return cases, skipped


def skip_reason(gold, pred, expected, opts):
    """Why a case is left out, or None: kept are string gold and pred, a 0/1 expected, and options meaning what
    grader.py does (strict, no set-relation comparison, rounding to 5 or more decimals: not 1/3 = 0.33)."""
    if not (isinstance(gold, str) and isinstance(pred, str)) or expected not in (0, 1):
        return "not string gold and pred with a 0/1 expected"
    if opts.get("precision", 6) < 5:
        return "precision < 5 decimals"
    other = [k for k in DEFAULTS if opts.get(k, DEFAULTS[k]) != DEFAULTS[k]]
    return f"non-default {', '.join(other)}" if other else None


def math_verify_all(cases):
    """math_verify's verdicts on the cases, called as its tests call it; None when it is not installed."""
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    except ImportError:
        return None
    config = {"latex": lambda: LatexExtractionConfig(boxed_match_priority=0), "expr": ExprExtractionConfig}
    verdicts = []
    for c in cases:  # their compare_strings() (verify's defaults are DEFAULTS, precision 6), or parse()'s defaults
        o = {**DEFAULTS, "precision": 6, "match_types": ["latex", "expr"], **(c["opts"] or {})}
        targets = () if c["opts"] is None else ([config[t]() for t in o["match_types"]],)
        verdicts.append(bool(verify(parse(c["gold"], *targets), parse(c["pred"], *targets), float_rounding=o["precision"],
                                    strict=o["strict"], allow_set_relation_comp=o["allow_set_relation_comp"])))
    return verdicts


def suite(args):
    """The markdown lines of the Math-Verify bar: grader.py and math_verify on its kept cases."""
    cases, skipped = suite_cases(suite_tests(args.cache))
    pairs = [(c["pred"], c["gold"]) for c in cases]
    runs = []
    for name, options in [("grader.py, as eval.py grades (last_number=True)", AS_EVAL),
                          ("grader.py, grade()'s defaults, as rl.py rewards", {})]:
        fresh_pool(1)  # each timed before its verdicts are taken, so that cold is cold
        runs.append((f"{name}, 1 worker", seconds(lambda: grader.grade_many(pairs, workers=1, **options), args.repeats),
                     grader.grade_many(pairs, workers=1, **options)))
    if math_verify_all([]) is not None:
        runs.append((f"math_verify {MATH_VERIFY.split('==')[1]}", seconds(lambda: math_verify_all(cases),
                     min(args.repeats, 2)), math_verify_all(cases)))
    theirs = runs[2][2] if len(runs) > 2 else [None] * len(cases)
    with open(args.misses, "w") as f:
        for c, ours, mv in zip(cases, runs[0][2], theirs):
            if ours != c["expected"]:
                f.write(json.dumps({**{k: c[k] for k in ("file", "test", "gold", "pred", "expected")}, "ours": ours,
                                    "extracted": grader.extract_answer(c["pred"], **AS_EVAL),
                                    "math_verify": mv}) + "\n")
    lines = ["| verifier | cases | credited (verdict = expected) | misses (expected true, said false) | false positives "
             "(expected false, said true) | time (cold / warm) | checks/s (cold / warm) |", "|---|---|---|---|---|---|---|"]
    for name, (cold, warm), verdicts in runs:
        right = sum(v == c["expected"] for v, c in zip(verdicts, cases))
        miss, fp = (sum(v != c["expected"] and c["expected"] == e for v, c in zip(verdicts, cases)) for e in (True, False))
        print(f"{name:24s} {len(cases)} cases: {right} credited, {miss} misses, {fp} false positives; "
              f"checks/s {len(cases) / cold:.0f} cold, {len(cases) / warm:.0f} warm")
        lines.append(f"| {name} | {len(cases)} | {right} ({right / len(cases):.1%}) | {miss} | {fp} | "
                     f"{cold:.3f} s / {warm:.3f} s | {len(cases) / cold:,.0f} / {len(cases) / warm:,.0f} |")
    if len(runs) == 2:
        lines.append("| math_verify | not installed (pip install math-verify): no column | | | | | |")
    files = Counter(c["file"] for c in cases)  # in sorted order
    lines += ["", f"Kept, by file: {', '.join(f'{k} {v}' for k, v in files.items())}. Skipped: "
              f"{'; '.join(f'{k} {v}' for k, v in sorted(skipped.items()))}; tests without parametrized cases "
              "(configs, timeout, gamma, raise_on_error, a precision check) are not read. grader.py grades each case "
              "as grade(pred, gold) does, with eval.py's options in the first row and none in the second, timed "
              f"from a fresh worker; math_verify (one process) as its tests call it (their "
              f"match_types choose its extraction); warm: the median of {args.repeats} and {min(args.repeats, 2)} more "
              f"runs. The cases grader.py gets wrong: {args.misses}."]
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=None, help="a folder of <name>/test.jsonl (default: eval.py's, data/benchmarks)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=grader.WORKERS, help="workers for the parallel column")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "grader.md"))
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/octothinker"), help="where the sdist goes")
    p.add_argument("--misses", default="/tmp/grader_misses.jsonl", help="the Math-Verify cases grader.py gets wrong")
    args = p.parse_args()

    math = load_benchmark("math500", args.data)
    sets = [  # name, pairs, whether they should grade equal
        *agreement("MATH500", math),
        ("MATH500 `x = answer` vs answer", [(f"\\boxed{{x = {r['answer']}}}", r["answer"]) for r in math], True),
        ("MATH500 answer in plain text vs answer", [(f"The answer is {plain(r['answer'])}", r["answer"]) for r in math
                                                    if plain(r["answer"]) != r["answer"]
                                                    and not re.search(r"\d\s*\\frac", r["answer"])], True),  # 1\frac{4}{5}
        *agreement("OlympiadBench", load_benchmark("olympiadbench", args.data)),
        *agreement("GSM8K", load_benchmark("gsm8k", args.data)),
    ]

    lines, notes = [], []
    for name, pairs, equal in sets:
        fresh_pool(1)
        cold, one = seconds(lambda: grader.grade_many(pairs, workers=1, **AS_EVAL), args.repeats)
        fresh_pool(args.workers)
        cold_many, many = seconds(lambda: grader.grade_many(pairs, workers=args.workers, **AS_EVAL), args.repeats)
        rate = sum(grader.grade_many(pairs, **AS_EVAL)) / len(pairs)
        label = "true positives" if equal else "false positives"
        print(f"{name:40s} {len(pairs):5d} pairs, {to_sympy(pairs):6.1%} to sympy, {label} {rate:6.2%}; checks/s "
              f"1 worker: {len(pairs) / cold:6.0f} cold, {len(pairs) / one:6.0f} warm ({one:.3f} s); "
              f"{args.workers} workers: {len(pairs) / cold_many:6.0f} cold, {len(pairs) / many:6.0f} warm")
        lines.append(f"| {name} | {len(pairs)} | {to_sympy(pairs):.1%} | {label}: {rate:.2%} | "
                     f"{cold:.3f} s / {one:.3f} s | {len(pairs) / cold:,.0f} / {len(pairs) / one:,.0f} | "
                     f"{len(pairs) / cold_many:,.0f} / {len(pairs) / many:,.0f} |")
        unmarked = sum(grader.extract_answer(response, **AS_EVAL) is None for response, _ in pairs)
        if equal and unmarked:
            notes.append(f" {name}: {unmarked} of the {len(pairs)} responses mark no answer (no \\boxed{{}}, no "
                         "\"the answer is\"), so extract_answer finds none and the pair grades not equal.")

    bar = suite(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"{date.today()} · {cpu_name()} · {os.cpu_count()} CPUs, shared (load average {load:.1f} at the end) · "
              f"{platform.system()} · Python {platform.python_version()}, sympy {sympy.__version__}, "
              f"math_verify {next((d.version for d in importlib.metadata.distributions(name='math-verify')), 'not installed')}")
    table = "\n".join([
        "# grader.py speed and accuracy", "", header, "",
        f"| pairs | n | to sympy | result | time, 1 worker (cold / warm) | checks/s, 1 worker (cold / warm) "
        f"| checks/s, {args.workers} workers (cold / warm) |",
        "|---|---|---|---|---|---|---|", *lines, "",
        f"Each set runs on a freshly started pool (started untimed): cold is the first run, with sympy's caches in "
        f"the workers empty, as for new model outputs; warm is the median of the next {args.repeats}. Graded as "
        f"eval.py grades benchmarks ({', '.join(f'{k}={v}' for k, v in AS_EVAL.items())}); rel_tol "
        f"{grader.REL_TOL:g}, timeout {grader.TIMEOUT:g} s. \"to sympy\" is the share of pairs the cheap checks "
        "(normalised strings, plain numbers) leave to the sympy workers; the rest are decided in the calling process. "
        "Target: the 500 MATH500 reference solutions against their answers in under 1 s on one core." + "".join(notes), "",
        "## An outside bar: Math-Verify's regression cases", "", *bar, ""])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
