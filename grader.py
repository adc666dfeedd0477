"""
Grade math answers: find the final answer in a model response and in the gold (a bare answer, one
in $...$, or a whole reference solution: answers.py), and decide whether they are equal. This is the RL
reward and every benchmark number, and model text is untrusted, so:

- nothing here runs text as Python (no eval, exec, sympify or parse_expr: sympy's string parsers
  evaluate Python). Answers are read by latex.py, a small recursive-descent parser that builds sympy
  objects directly, with limits on answer length, nesting depth and the size of the numbers it builds.
- cheap checks run first, in the caller: the answers as normalised strings, then as plain numbers.
  What still needs sympy runs in a pool of worker processes (this file run with --worker, started
  on first use and reused), each pair under a hard time limit; a worker that overruns is killed
  and replaced. A timeout or a parse failure is "not equal": untrusted text never raises.

    grade(response, gold) -> bool         reward(response, gold) -> float (1.0 or 0.0)
    grade_many([(response, gold), ...]) -> list[bool]     extract_answer(text) -> str | None

Try it: python grader.py 'so the answer is \\boxed{\\frac12}.' '0.5'
"""
import atexit
import json
import os
import random
import subprocess
import sys
import threading
import time
from fractions import Fraction
from multiprocessing.connection import wait  # select() on any fd number (select.select stops at 1024)

import sympy

import latex
from answers import MAX_ANSWER, candidates, close, extract_answer, normalize, quick, rounding, strip_math

REL_TOL = 1e-6            # numbers are equal within this relative tolerance
TIMEOUT = 1.0             # seconds a pair may spend in sympy before it counts as "not equal"


def default_workers(cap=8):
    """Worker processes for grade_many: the CPUs this process may use (its affinity, not the node's count),
    shared with the node's other ranks (torchrun's LOCAL_WORLD_SIZE) when it sees the whole node, at most cap:
    8 ranks of a 16-CPU node get 2 each, not 8 each."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus >= (os.cpu_count() or 1):  # not pinned to this rank's share already
        cpus //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(1, min(cap, cpus))


WORKERS = default_workers()  # worker processes grade_many uses
STARTUP_TIMEOUT = 60.0    # seconds a new worker may take to start (it imports sympy, once)
WORKER_MEMORY = 2 << 30   # address-space limit of a worker, in bytes

# -----------------------------------------------------------------------------
# comparing parsed answers (in the workers)


def _same(a, b, tol, slack=0):
    """Whether a (predicted) and b (gold) are equal: tuples in order, sets in any order."""
    ta, tb = latex.tag(a), latex.tag(b)
    if ta == tb == "expr":
        return _expr_equal(a, b, tol, slack)
    if "set" in (ta, tb):  # a set holds each item once: (3, 17) listed twice is one solution
        return _match(_unique(a[1], tol) if ta == "set" else [a], _unique(b[1], tol) if tb == "set" else [b], tol)
    if ta == tb == "interval":
        return a[3:] == b[3:] and _same(a[1], b[1], tol) and _same(a[2], b[2], tol)
    if {ta, tb} & {"interval", "union"}:
        xs, ys = _intervals(a), _intervals(b)
        return xs is not None and ys is not None and _match(xs, ys, tol)
    if ta == tb == "tuple":
        return len(a[1]) == len(b[1]) and all(_same(x, y, tol) for x, y in zip(a[1], b[1]))
    if ta == tb == "eq":  # lhs - rhs: equal up to a nonzero constant factor
        ratios = [x / y for x, y in _values(a[1], b[1]) if abs(x) > 1e-20 and abs(y) > 1e-20]
        return len(ratios) >= 2 and all(close(r, ratios[0], tol) for r in ratios)
    if ta == tb == "rel":
        return a[1] == b[1] and all(_same(x, y, tol) for x, y in zip(a[2], b[2]))
    return False


def _match(xs, ys, tol):
    """Whether the items of xs and ys pair up one to one, in any order."""
    if len(xs) != len(ys) or len(xs) > 100:
        return False
    left = list(ys)
    for x in xs:
        j = next((j for j, y in enumerate(left) if _same(x, y, tol)), None)
        if j is None:
            return False
        del left[j]
    return True


def _unique(items, tol):
    """items without repeats (equal by _same), in order; at most 100 of them."""
    out = []
    for x in items[:101]:
        if not any(_same(x, y, tol) for y in out):
            out.append(x)
    return out


def _intervals(value):
    """value as a list of intervals: an interval, a union, or a pair (a, b) read as open."""
    if latex.tag(value) == "union":
        items = [_intervals(item) for item in value[1]]
        return None if None in items else [i for item in items for i in item]
    if latex.tag(value) == "tuple" and len(value[1]) == 2:
        value = latex.meaning(("interval", *value[1], True, True))
    return [value] if latex.tag(value) == "interval" else None


def _values(a, b):
    """(a, b) as numbers at three fixed random points of their symbols (one point when there
    are none), leaving out points where either is undefined or infinite."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if len(symbols) > 10 or a.has(sympy.Sum) or b.has(sympy.Sum):  # a sum to n has no value at n = 0.7
        return []
    rng = random.Random(0)
    points = [{s: sympy.Float(rng.uniform(0.2, 2) * rng.choice((-1, 1)), 30) for s in symbols}
              for _ in range(3 if symbols else 1)]
    rows = [(a.evalf(30, subs=point), b.evalf(30, subs=point)) for point in points]
    return [row for row in rows if all(v.is_number and v.is_finite for v in row)]


def _expr_equal(a, b, tol, slack=0):
    """Equal numbers (within tolerance), or expressions equal at three random points."""
    if a == b:
        return True
    rows = _values(a, b)
    if not (a.free_symbols or b.free_symbols):
        return len(rows) == 1 and close(*rows[0], tol, slack)
    return len(rows) >= 2 and all(close(x, y, tol) for x, y in rows)


def _readings(text):
    """The values an answer may mean: one; for 50% both 50 and 0.5; for y = 2x + 1 also the equation."""
    values = latex.readings(text.rstrip("%"))
    if text.endswith("%") and latex.tag(values[0]) == "expr":
        return [values[0], values[0] / 100]
    return values


def _sympy_equal(pred, gold, rel_tol, rounded=True):
    """Whether normalised answers pred and gold are equal once parsed (runs in a worker)."""
    slack = rounding(gold.replace(" ", "")) if rounded else Fraction(0)
    slack = sympy.Rational(slack.numerator, slack.denominator)
    golds, preds = _readings(gold), _readings(pred)
    return any(_same(p, g, sympy.Float(rel_tol), slack) for g in golds for p in preds)

# -----------------------------------------------------------------------------
# the worker pool: sympy runs in other processes, so that a call that hangs can be killed

_WORKER_CMD = [sys.executable, os.path.abspath(__file__), "--worker"]
_pool = []  # workers, dicts of proc, ready, job, unread (bytes), deadline; started on first use, reused
_pool_lock = threading.Lock()


def _forget_pool():
    """In a forked child: the parent's workers (and maybe its held lock) are not the child's."""
    global _pool, _pool_lock
    _pool, _pool_lock = [], threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _start_worker(worker=None):
    """Start a worker, or kill `worker` and start another in its place."""
    if worker is not None:
        worker["proc"].kill()
        worker["proc"].wait()
        worker["proc"].stdin.close()
        worker["proc"].stdout.close()
    # a fresh interpreter (fork + exec) is safe from a process holding threads or CUDA, and
    # unlike multiprocessing's spawn it does not re-run the caller's __main__ (scripts, no guard)
    proc = subprocess.Popen(_WORKER_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0, start_new_session=True)
    new = {"proc": proc, "ready": False, "job": None, "unread": b"",
           "deadline": time.monotonic() + STARTUP_TIMEOUT}
    if worker is None:
        return new
    worker.update(new)


@atexit.register
def _stop_pool():
    """No worker outlives the process that started it."""
    for worker in _pool:
        worker["proc"].kill()


def _run_jobs(jobs, rel_tol, rounded, timeout, workers, counts):
    """_sympy_equal on each (pred, gold) in the pool, each within timeout seconds of being sent;
    a pair that overruns is False, and its worker is killed and replaced. counts["timeouts"] and
    counts["errors"] (a check that raised: an answer that does not parse) grow by what happened."""
    results, todo = [False] * len(jobs), list(range(len(jobs)))[::-1]
    with _pool_lock:
        while len(_pool) < min(workers, len(jobs)):
            _pool.append(_start_worker())
        active = _pool[:min(workers, len(jobs))]
        while todo or any(w["job"] is not None for w in active):
            for w in active:
                if w["ready"] and w["job"] is None and todo:
                    job = todo.pop()
                    try:
                        w["proc"].stdin.write((json.dumps([*jobs[job], rel_tol, rounded]) + "\n").encode())
                        w["job"], w["deadline"] = job, time.monotonic() + timeout
                    except OSError:  # it died while idle: the pair waits for its replacement
                        todo.append(job)
                        _start_worker(w)
            waiting = [w for w in active if w["job"] is not None or (todo and not w["ready"])]
            if not waiting:
                continue
            seconds = max(0.0, min(w["deadline"] for w in waiting) - time.monotonic())
            readable = wait([w["proc"].stdout for w in waiting], seconds)
            for w in waiting:
                if w["proc"].stdout in readable:
                    data = os.read(w["proc"].stdout.fileno(), 64)
                    if not data:  # it died: on its pair (which stays False), or before it was ready
                        if not w["ready"] and w["proc"].wait() >= 0:  # it exited on its own: it cannot start
                            raise RuntimeError(f"grader worker {_WORKER_CMD} exited at start: run it to see why")
                        counts["errors"] += w["job"] is not None
                        _start_worker(w)
                        continue
                    w["unread"] += data  # a pipe may hand over a line in pieces: act on whole lines only
                    while b"\n" in w["unread"] and (not w["ready"] or w["job"] is not None):
                        line, w["unread"] = w["unread"].split(b"\n", 1)
                        if not w["ready"]:
                            w["ready"] = True
                        else:
                            counts["errors"] += line.strip() == b"e"
                            results[w["job"]], w["job"] = line.strip() == b"1", None
                elif time.monotonic() > w["deadline"]:
                    if not w["ready"]:
                        raise RuntimeError(f"grader worker {_WORKER_CMD} did not start within "
                                           f"{STARTUP_TIMEOUT:.0f} s: does `python -c 'import sympy'` work?")
                    counts["timeouts"] += 1
                    _start_worker(w)
    return results


def _worker_main():
    """Serve the parent: for each [pred, gold, rel_tol, rounded] JSON line on stdin, write 1 or 0."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    except (ImportError, ValueError, OSError):
        pass
    reply = os.dup(1)
    os.dup2(2, 1)  # stray prints go to stderr, never into the replies
    _sympy_equal("\\sqrt{2}x + \\pi", "(x, 1)", REL_TOL)  # sympy's slow first use, before any clock runs
    os.write(reply, b"ready\n")
    for line in sys.stdin.buffer:
        try:
            pred, gold, rel_tol, rounded = json.loads(line)
            verdict = b"1\n" if _sympy_equal(pred, gold, rel_tol, rounded) else b"0\n"
        except Exception:  # a parse failure, an overflow, out of memory: "not equal", counted as an error
            verdict = b"e\n"
        os.write(reply, verdict)

# -----------------------------------------------------------------------------
# the API


def grade_many(pairs, rel_tol=REL_TOL, timeout=TIMEOUT, workers=WORKERS, rounded=True, last_number=False,
               counts=None):
    """grade() for each (response, gold) pair: cheap checks here, the rest in parallel workers. rounded: a
    decimal gold (3.14) also matches a value that rounds to it (pi), as where a benchmark's answers are
    rounded by convention (eval.ROUNDED says which); False: equal within rel_tol only. last_number: a
    response that marks no answer (no \\boxed{}, no "the answer is") is also read for its last number, as
    math evaluation harnesses read it (eval.py does); False: only for its last math-mode expression, so that
    a reward asks for a marked final answer, as the paper's does. counts: a dict whose "timeouts" and "errors"
    (checks that overran, or raised on an answer that does not parse) grow by this call's."""
    if not (0 <= rel_tol < 1 and timeout > 0 and workers >= 1):
        raise ValueError(f"need 0 <= rel_tol < 1, timeout > 0, workers >= 1; got {rel_tol}, {timeout}, {workers}")
    results, jobs, where = [], [], []
    for k, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise TypeError(f"pair {k}: expected (response: str, gold), got {pair!r:.80}")
        gold = pair[1]
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = repr(gold)  # AMC23's 27.0, an index
        if not isinstance(gold, str):
            raise TypeError(f"pair {k}: gold must be a str, int or float, got {type(gold).__name__}"
                            " (join a list of answers with ', ' first)")
        # a gold in prose (CollegeMath's "The rocket reaches ... after lift-off.") is its own answer
        gold = extract_answer(gold, prose=False) or strip_math(gold) or None
        verdicts = []
        # the answer, and the sentence it came from (when it came from one)
        for pred in candidates(pair[0], last_number=last_number):
            if pred is not None and gold is not None and max(len(pred), len(gold)) <= MAX_ANSWER:
                p, g = normalize(pred), normalize(gold)
                verdicts.append(quick(p, g, rel_tol, rounded))
                if verdicts[-1] is None:
                    jobs.append((p, g))
                    where.append(k)
        results.append(True in verdicts)
    counts = {"timeouts": 0, "errors": 0} if counts is None else counts
    for key in ("timeouts", "errors"):
        counts.setdefault(key, 0)
    for k, equal in zip(where, _run_jobs(jobs, rel_tol, rounded, timeout, workers, counts) if jobs else []):
        results[k] = results[k] or equal
    return results


def grade(response, gold, rel_tol=REL_TOL, timeout=TIMEOUT, rounded=True, last_number=False):
    """Whether the final answer in response equals the reference answer in gold. Returns within
    about timeout seconds whatever the input; the first call, or one just after a worker was killed,
    also waits the ~0.5 s a worker takes to start."""
    return grade_many([(response, gold)], rel_tol, timeout, workers=1, rounded=rounded, last_number=last_number)[0]


def reward(response, gold, rel_tol=REL_TOL, timeout=TIMEOUT):
    """The RL reward: 1.0 when the final answer in response is right, else 0.0."""
    return 1.0 if grade(response, gold, rel_tol, timeout) else 0.0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_main()
    elif len(sys.argv) == 3:
        print(grade(sys.argv[1], sys.argv[2]))
    else:
        sys.exit("usage: python grader.py RESPONSE GOLD")
