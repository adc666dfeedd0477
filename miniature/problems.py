"""
The miniature world's problems: each kind's space of problems (its numbers), the arithmetic that solves one, its
answer, and the seeded split of every kind into held-out, RL and training problems (disjoint by construction).
world.py renders them (text.py) and writes the files.
"""
import hashlib
import math

BASIC = ["add", "sub", "two_step", "mul", "share", "equation", "fraction"]
CHAINS = ["chain1", "chain2", "chain3", "chain4"]  # a story changed k times: the miniature's difficulty dial
KINDS = BASIC + CHAINS

def space(kind, cfg):
    """Every problem of a kind, as its numbers, in a fixed order."""
    A, M, X = cfg.max_add, cfg.max_mul, cfg.max_x
    if kind == "add":
        return [(a, b) for a in range(2, A + 1) for b in range(2, A + 1)]
    if kind == "sub":
        return [(a, b) for a in range(3, 2 * A + 1) for b in range(2, min(a, A + 1))]
    if kind == "two_step":
        return [(a, b, c) for a in range(2, A + 1) for b in range(2, A + 1) for c in range(2, a + b)]
    if kind == "mul":
        return [(a, b) for a in range(2, M + 1) for b in range(2, M + 1)]
    if kind == "share":  # (total, parts)
        return [(a * b, a) for a in range(2, M + 1) for b in range(2, M + 1)]
    if kind == "equation":  # (k, b, c) of k x + b = c
        return [(k, b, k * x + b) for k in range(2, M + 1) for x in range(1, X + 1) for b in range(1, A + 1)]
    if kind in CHAINS:  # (start, change, change, ...): a change is +b or -b, every total in [1, chain_total]
        out = [(a,) for a in range(2, cfg.chain_start + 1)]
        for _ in range(int(kind[5:])):
            out = [n + (d,) for n in out for b in range(1, cfg.chain_operand + 1) for d in (b, -b)
                   if 1 <= sum(n) + d <= cfg.chain_total]
        return out
    # fraction: (pieces, taken); what is left, (pieces - taken) / pieces, already in lowest terms
    return [(q, p) for q in range(2, A + 1) for p in range(1, q) if math.gcd(q - p, q) == 1]


def compute(a, op, b):
    return {"+": a + b, "-": a - b, "\\times": a * b, "\\div": a // b}[op]


def facts(kind, n):
    """The solution's arithmetic, in order, as (left, op, right, result)."""
    steps = {"add": [(n[0], "+", n[1])], "sub": [(n[0], "-", n[1])], "mul": [(n[0], "\\times", n[1])],
             "share": [(n[0], "\\div", n[1])], "fraction": [(n[0], "-", n[1])]}.get(kind)
    if kind == "two_step":
        steps = [(n[0], "+", n[1]), (n[0] + n[1], "-", n[2])]
    if kind == "equation":
        steps = [(n[2], "-", n[1]), (n[2] - n[1], "\\div", n[0])]
    if kind in CHAINS:
        steps = [(sum(n[:i + 1]), "+" if d > 0 else "-", abs(d)) for i, d in enumerate(n[1:])]
    return [(a, op, b, compute(a, op, b)) for a, op, b in steps]


def answer(kind, n):
    r = facts(kind, n)[-1][3]
    return f"\\frac{{{r}}}{{{n[0]}}}" if kind == "fraction" else str(r)


def rank(kind, n, seed):
    """A problem's place in its kind's seeded order, from a hash: the splits take their problems in this order."""
    return hashlib.blake2b(f"{seed}/{kind}/{n}".encode(), digest_size=8).digest()


def eval_quotas(cfg, sizes):
    """How many problems of each kind are held out: cfg.eval split by the mix, with no kind giving more than
    eval_share of its problems (what a small kind cannot give, the others do)."""
    total, quota = sum(cfg.mix[k] for k in sizes), dict.fromkeys(sizes, 0)
    for i in range(1, cfg.eval + 1):
        room = [k for k in sizes if quota[k] < int(cfg.eval_share * sizes[k])]
        if not room:
            raise ValueError(f"only {i - 1} problems can be held out, not eval={cfg.eval}: raise max_add, max_mul, "
                             f"max_x or eval_share, or ask for fewer")
        quota[max(room, key=lambda k: cfg.mix[k] / total * i - quota[k])] += 1
    return quota


def pools(cfg):
    """{split: {kind: [numbers, ...]}}: for each kind the mix uses, its first problems in seeded order are held out
    for evaluation, the next rl_share for RL, the rest are for training. Disjoint by construction. A chain goes to
    a split with every chain it begins or that begins it (all chains of one start and first change together), so
    no training or RL solution works through a held-out problem as its first steps."""
    spaces = {k: sorted(space(k, cfg), key=lambda n: rank(k, n, cfg.seed)) for k in KINDS if cfg.mix.get(k, 0) > 0}
    quota = eval_quotas(cfg, {k: len(v) for k, v in spaces.items()})
    out = {"train": {}, "rl": {}, "eval": {}}
    for k, problems in spaces.items():
        if k not in CHAINS:
            n_rl = quota[k] + round(cfg.rl_share * len(problems))
            out["eval"][k], out["rl"][k], out["train"][k] = problems[:quota[k]], problems[quota[k]:n_rl], problems[n_rl:]
    chains = [k for k in spaces if k in CHAINS]
    families = sorted({n[:2] for k in chains for n in spaces[k]}, key=lambda f: rank("chain", f, cfg.seed))
    count = {f: dict.fromkeys(chains, 0) for f in families}
    for k in chains:
        for n in spaces[k]:
            count[n[:2]][k] += 1
    # whole families, in seeded order, to the held-out set until every kind can fill its quota, then to RL
    need = {"eval": {k: quota[k] for k in chains}, "rl": {k: round(cfg.rl_share * len(spaces[k])) for k in chains}}
    split_of = {}
    for f in families:
        split_of[f] = next((s for s in ("eval", "rl") if any(v > 0 for v in need[s].values())), "train")
        for k in need.get(split_of[f], {}):
            need[split_of[f]][k] -= count[f][k]
    for k in chains:
        part = {s: [n for n in spaces[k] if split_of[n[:2]] == s] for s in out}
        out["eval"][k], out["rl"][k], out["train"][k] = part["eval"][:quota[k]], part["rl"], part["train"]
    return out
