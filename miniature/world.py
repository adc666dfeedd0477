"""
The synthetic math world of the CPU miniature: a small family of word problems a tiny model can learn (sums,
differences, two-step stories, products, equal shares, linear equations, fractions), with computed answers,
rendered as the paper's kinds of data and written as jsonl in the real corpora's formats.

    python -m miniature.world [config.py] --out_dir=out/world --seed=0 [--key=value ...]

out_dir gets
    web_hq.jsonl, web_lq.jsonl     {"text"}: math "web" pages, clean and degraded (MegaMath-Web-Pro vs FineMath)
    qa_short.jsonl, qa_long.jsonl  {"question", "solution", "answer"}: a brief worked solution, or a long one that
                                   checks each step and catches its own slips; qa_boxed of them end in
                                   "The answer is \\boxed{answer}.", the rest state it in prose only
    instruct.jsonl                 {"question", "solution"}: a little instruction following
    rl.jsonl                       {"question", "answer"}: GRPO's prompts
    benchmarks/synth/test.jsonl    {"question", "answer"}: held-out problems (eval.py --data_dir=out/world/benchmarks)
    world.json                     the config and counts, written last: the same config is not generated twice
data.py prepares them like any corpus: fmt="text" for the web, a template over question and solution for QA.

A problem is a kind and its numbers. Each (kind, numbers) belongs to one split, eval, rl or train, by its place
in a seeded order of its kind, and only train problems are written into training files; the noise of
low-quality pages never touches a question. So no RL or evaluation problem is ever the subject of training
text. Web pages work their examples in prose ("So Ann has 12 apples now.") and box few answers (web_boxed):
the \\boxed{} answer format comes mainly from the QA data, which is what makes QA in mid-training help RL, as
in the paper. Even the QA data boxes only some answers (qa_boxed), as scraped QA does: a model mid-trained on it
gives a checkable final answer only sometimes, the habit zero-RL rewards first. (Unboxed, an answer is stated in
prose; only the equations' solutions, worked in math mode, end in a math-mode answer the grader also reads.)
"""
import hashlib
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field

from common import write_atomic
from configurator import configure

BASIC = ["add", "sub", "two_step", "mul", "share", "equation", "fraction"]
CHAINS = ["chain1", "chain2", "chain3", "chain4"]  # one story changed k times: the difficulty dial of the miniature's world
KINDS = BASIC + CHAINS


@dataclass
class Config:
    out_dir: str = "out/world"
    seed: int = 0
    # sizes
    web_docs: int = 4000          # pages in each of web_hq and web_lq
    qa_short: int = 4000
    qa_long: int = 4000
    instruct: int = 400
    rl: int = 1000
    eval: int = 200               # distinct problems, kinds in the mix's proportions
    # difficulty
    mix: dict = field(default_factory=lambda: {k: 1.0 for k in BASIC})  # kind -> weight; 0 leaves it out
    max_add: int = 12             # operands of sums and differences, pieces of a whole
    max_mul: int = 6              # factors of products and shares, coefficients of equations
    max_x: int = 10               # solutions of equations
    chain_start: int = 20         # a chain's first number (from 2), its changes (1 to chain_operand, gained or
    chain_operand: int = 6        # lost), every running total within 1 to chain_total
    chain_total: int = 30
    eval_share: float = 0.3       # the most of a kind's problems the evaluation set may hold out
    rl_share: float = 0.15        # the share of a kind's problems kept for RL; the rest are for training
    # rendering
    examples: int = 3             # worked examples on a web page
    web_boxed: float = 0.05       # the share of web examples that end in \boxed{} (most web math does not)
    qa_boxed: float = 0.4         # the share of QA solutions that end in \boxed{}; the rest end at their last sentence
    slip: float = 0.3             # the chance a step of a long solution goes wrong first and is corrected
    noise: float = 0.5            # the share of a low-quality page's sentences that get damaged
    # what a low-quality page loses in reasoning, not only in surface (0: pages as clean in content as web_hq)
    lq_exercises: float = 0.0     # the share of its examples that are exercises: the question, no solution
    lq_skip: float = 0.0          # ... that give the result only ("Answer: 9."), the work left out
    lq_wrong: float = 0.0         # the chance a stated result is wrong (off by a little)
    instruct_math: float = 0.0    # the share of instruction data that is a problem asked to be boxed (BOX_ASKS), its
                                  # short solution always ending in \boxed{}


NAMES = ["Ann", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo", "Mia", "Ned", "Olga",
         "Pat", "Rosa", "Sam", "Tess", "Uma"]
THINGS = ["apples", "marbles", "books", "stamps", "coins", "shells", "pencils", "cards", "eggs", "stickers",
          "buttons", "plums"]

# -----------------------------------------------------------------------------
# problems: a kind, its numbers, the arithmetic that solves it


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
    for evaluation, the next rl_share for RL, the rest are for training. Disjoint by construction."""
    spaces = {k: sorted(space(k, cfg), key=lambda n: rank(k, n, cfg.seed)) for k in KINDS if cfg.mix.get(k, 0) > 0}
    quota = eval_quotas(cfg, {k: len(v) for k, v in spaces.items()})
    out = {"train": {}, "rl": {}, "eval": {}}
    for k, problems in spaces.items():
        n_rl = quota[k] + round(cfg.rl_share * len(problems))
        out["eval"][k], out["rl"][k], out["train"][k] = problems[:quota[k]], problems[quota[k]:n_rl], problems[n_rl:]
    return out

# -----------------------------------------------------------------------------
# stories: each kind's problems in words. A story is (question, a sentence per step with {f} for its arithmetic,
# conclusion); a, b, c are the numbers, r the answer, s the first step's result. A step first restates what it
# uses in the question's own words: copying is the first thing a tiny model learns (an induction head), and
# reading numbers from anywhere in the question comes much later.

STORIES = {
    "add": [
        ("{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
         ["{name} has {a} {thing} and gets {b} more, so {f}"], "{name} has {r} {thing} now"),
        ("{name} picks {a} {thing} in the morning and {b} in the afternoon. How many {thing} does {name} pick in all?",
         ["{name} picks {a} {thing} in the morning and {b} in the afternoon, so {f}"],
         "{name} picks {r} {thing} in all"),
    ],
    "sub": [
        ("{name} has {a} {thing} and gives {b} of them to {other}. How many {thing} does {name} have left?",
         ["{name} has {a} {thing} and gives {b} of them away, so {f}"], "{name} has {r} {thing} left"),
        ("There are {a} {thing} in a box. {name} takes out {b}. How many {thing} are still in the box?",
         ["There are {a} {thing} and {name} takes out {b}, so {f}"], "{r} {thing} are still in the box"),
    ],
    "two_step": [
        ("{name} has {a} {thing}, buys {b} more, then gives {c} to {other}. How many {thing} does {name} have "
         "in the end?", ["{name} has {a} {thing} and buys {b} more, so {f}",
                         "Then {name} gives {c} to {other}, so {f}"], "{name} has {r} {thing} in the end"),
        ("A shelf holds {a} {thing}. {name} puts {b} more on it and {other} takes {c} away. How many {thing} are "
         "on the shelf now?", ["The shelf holds {a} {thing} and {name} puts {b} more on it, so {f}",
                               "Then {other} takes {c} away, so {f}"], "there are {r} {thing} on the shelf"),
    ],
    "mul": [
        ("{name} buys {a} bags with {b} {thing} in each bag. How many {thing} does {name} buy in all?",
         ["{name} buys {a} bags with {b} {thing} in each bag, so {f}"], "{name} buys {r} {thing}"),
        ("There are {a} rows of {thing} with {b} {thing} in each row. How many {thing} are there?",
         ["There are {a} rows with {b} {thing} in each row, so {f}"], "there are {r} {thing}"),
    ],
    "share": [
        ("{name} shares {a} {thing} equally among {b} friends. How many {thing} does each friend get?",
         ["{name} shares {a} {thing} equally among {b} friends, so {f}"], "each friend gets {r} {thing}"),
        ("{a} {thing} are packed in boxes of {b}. How many boxes are filled?",
         ["There are {a} {thing} in boxes of {b}, so {f}"], "{r} boxes are filled"),
    ],
    "equation": [
        ("Solve for $x$: ${a}x + {b} = {c}$.",
         ["We have ${a}x + {b} = {c}$, so subtract {b} from both sides: {f}, so ${a}x = {s}$",
          "Divide both sides by {a}: {f}"], "$x = {r}$"),
        ("{name} thinks of a number, multiplies it by {a} and adds {b}. The result is {c}. What is the number?",
         ["The number times {a} plus {b} is {c}, so undo the adding: {f}", "Then undo the multiplying: {f}"],
         "the number is {r}"),
    ],
    "fraction": [
        ("{name} cuts a pie into {a} equal pieces and eats {b} of them. What fraction of the pie is left?",
         ["The pie has {a} equal pieces and {name} eats {b} of them, so {f} pieces are left"],
         "{r} of the pie is left"),
        ("A bag holds {a} {thing}. {name} takes {b} of them. What fraction of the {thing} is still in the bag?",
         ["The bag holds {a} {thing} and {name} takes {b} of them, so {f} are still in the bag"],
         "{r} of the {thing} are still in the bag"),
    ],
}

INTROS = {
    "add": ["Adding puts two groups together: the sum tells how many there are in all.",
            "When more things join a group, we find the new total by adding."],
    "sub": ["Subtracting takes some away: the difference tells how many are left.",
            "When some things are given away or taken out, we subtract to find how many remain."],
    "two_step": ["Some stories need two steps: first add what is gained, then subtract what is lost.",
                 "A two-step problem is solved one step at a time, and each result feeds the next step."],
    "mul": ["Multiplying counts equal groups quickly: the number of groups times the size of each group.",
            "When every bag or row holds the same number, we multiply instead of adding again and again."],
    "share": ["Dividing shares a total equally: the total divided by the number of parts is the size of each part.",
              "Division undoes multiplication: if each box holds the same number, divide the total by it."],
    "equation": ["To solve an equation like $ax + b = c$, undo each operation in reverse order: subtract, then divide.",
                 "An equation is a balance: do the same thing to both sides until $x$ is alone."],
    "fraction": ["A fraction names part of a whole: the bottom counts the equal pieces, the top the pieces we mean.",
                 "When some pieces are taken, the pieces left over all the pieces is the fraction left."],
}
INVERSE = {"+": "-", "-": "+", "\\times": "\\div", "\\div": "\\times"}
GAINS, LOSSES = ["finds", "gets"], ["gives away", "loses"]  # few verbs: which way a change goes is learnt fast
for k in CHAINS:
    INTROS[k] = ["A story can change a number again and again: follow each change in order, one step at a time.",
                 "To follow a total through several changes, add what is gained and take away what is lost, in order."]


OPENERS = ["Then", "Next", "After that", "Last"]  # each change's own: a solution can copy its clause unambiguously


def chain_story(n, rng):
    """A chain's story: a start and its changes, each told with a random verb and its own opener, as (question,
    steps, conclusion) templates with the numbers already in. The solution restates each clause of the question
    word for word before its arithmetic: copying is what a tiny model learns first."""
    verbs = [rng.choice(GAINS if d > 0 else LOSSES) for d in n[1:]]
    clauses = [f"{OPENERS[i]} {{name}} {v} {abs(d)}" for i, (v, d) in enumerate(zip(verbs, n[1:]))]
    start = "{name} has " + str(n[0]) + " {thing}."
    question = start + "".join(f" {c}." for c in clauses) + " How many {thing} does {name} have now?"
    steps = [f"{start} {clauses[0]}, so {{f}}"] + [f"{c}, so {{f}}" for c in clauses[1:]]
    return question, steps, "{name} has {r} {thing} now"


def pose(kind, n, rng):
    """A problem dressed in a random story, names and thing."""
    name, other = rng.sample(NAMES, 2)
    story = chain_story(n, rng) if kind in CHAINS else rng.choice(STORIES[kind])
    ctx = dict(zip("abc", n), name=name, other=other, thing=rng.choice(THINGS), r=answer(kind, n),
               s=facts(kind, n)[0][3])
    return {"kind": kind, "n": n, "story": story, "ctx": ctx, "facts": facts(kind, n), "answer": ctx["r"],
            "question": story[0].format(**ctx)}


def fact_text(f):
    return f"{f[0]} {f[1]} {f[2]} = {f[3]}"


def step(p, i, f):
    return p["story"][1][i].format(**p["ctx"], f=fact_text(f))


def conclusion(p):
    return p["story"][2].format(**p["ctx"])


def boxed(p):
    return f"The answer is \\boxed{{{p['answer']}}}."


def short_solution(p, box=True):
    return " ".join([step(p, i, f) + "." for i, f in enumerate(p["facts"])] + [f"So {conclusion(p)}."] + [boxed(p)] * box)


def wrong(f, rng):
    """A plausible slip in a step: a result off by a little (a product off by one group)."""
    a, op, b, r = f
    w = r + b * rng.choice([-1, 1]) if op == "\\times" else r + rng.choice([-2, -1, 1, 2])
    return (a, op, b, w) if w > 0 and w != r else (a, op, b, r + 1)


def long_solution(p, rng, slip, box=True):
    """Works each step, checks it by its inverse, sometimes slips first and catches it, then checks the end."""
    out = ["Let's read the problem carefully and solve it one step at a time."]
    for i, f in enumerate(p["facts"]):
        if rng.random() < slip:
            w = wrong(f, rng)
            back = (w[3], INVERSE[w[1]], w[2], compute(w[3], INVERSE[w[1]], w[2]))
            out += [step(p, i, w) + ".", f"Wait, let me check: {fact_text(back)}, not {f[0]}. That is wrong, so {fact_text(f)}."]
        else:
            out.append(step(p, i, f) + ".")
        out.append(f"Let me check: {fact_text((f[3], INVERSE[f[1]], f[2], f[0]))}. Correct.")
    if p["kind"] == "equation":
        k, b, c = p["n"]
        x = int(p["answer"])
        out.append(f"Let me put it back into the equation: {k} \\times {x} = {k * x} and {k * x} + {b} = {c}. Correct.")
    out += [f"So {conclusion(p)}.", "Every step checks out."] + [boxed(p)] * box
    return " ".join(out)

# -----------------------------------------------------------------------------
# web pages, clean and degraded. A page is paragraphs of (sentence, is_question); questions are never damaged.

JUNK_TOP = ["Home | Worksheets | Games | Login", "Skip to content  Menu  Search", "Math Help Forum > Homework > Page 3",
            "Advertisement - Click here for FREE printables!!", "You are here: Home / Grade 3 / Word problems"]
JUNK_END = ["Share this: Facebook Twitter Email", "Posted by admin in Uncategorized | 0 comments",
            "(c) 2014 mathfun4kids. All rights reserved.", "Next page >>  Related: times tables, coloring pages",
            "Was this helpful? Yes No  Report an error"]


def practice(kind, rng, cfg):
    """A line of arithmetic facts of the kind's operations (tables, not problems)."""
    A, M = cfg.max_add, cfg.max_mul
    ops = {"add": "+", "sub": "-", "two_step": "+-", "mul": "x", "share": "/", "equation": "-/",
           "fraction": "-"}.get(kind, "+-")
    out = []
    for _ in range(4):
        op, a, b = rng.choice(ops), rng.randint(2, A), rng.randint(2, A)
        if op in "x/":
            a, b = rng.randint(2, M), rng.randint(2, M)
        f = {"+": (a, "+", b), "-": (a + b, "-", b), "x": (a, "\\times", b), "/": (a * b, "\\div", b)}[op]
        out.append(fact_text((*f, compute(*f))))
    return "Practice: " + ", ".join(out) + "."


def web_page(kind, problems, rng, cfg):
    page = [[(rng.choice(INTROS[kind]), False)], [(practice(kind, rng, cfg), False)]]
    for p in problems:
        sentences = [(f"Example: {p['question']}", True)]
        sentences += [(step(p, i, f) + ".", False) for i, f in enumerate(p["facts"])]
        sentences.append((f"So {conclusion(p)}.", False))
        if rng.random() < cfg.web_boxed:
            sentences.append((boxed(p), False))
        page.append(sentences)
    return page


def lq_page(kind, problems, rng, cfg):
    """A low-quality page before its surface damage (degrade): poorer in reasoning, not only in spelling. Some
    examples are exercises without a solution, some give the result alone, and a stated result may be wrong."""
    page = [[(rng.choice(INTROS[kind]), False)], [(practice(kind, rng, cfg), False)]]
    for p in problems:
        r = rng.random()
        if r < cfg.lq_exercises:
            page.append([(f"Exercise: {p['question']}", True)])
            continue
        sentences = [(f"Example: {p['question']}", True)]
        facts = [wrong(f, rng) if rng.random() < cfg.lq_wrong else f for f in p["facts"]]
        if r < cfg.lq_exercises + cfg.lq_skip:
            sentences.append((f"Answer: {facts[-1][3]}.", False))
        else:
            sentences += [(step(p, i, f) + ".", False) for i, f in enumerate(facts)]
            sentences.append((f"So {p['story'][2].format(**{**p['ctx'], 'r': facts[-1][3]})}.", False))
        page.append(sentences)
    return page


def page_text(page):
    return "\n\n".join(" ".join(s for s, _ in para) for para in page)


def damage(s, rng):
    """One defect of a sentence: lost, a wrong result, a typo, or cut short. None: dropped."""
    r = rng.random()
    if r < 0.25:
        return None
    if r < 0.5 and " = " in s:  # a wrong result after an '='
        head, _, tail = s.rpartition(" = ")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        if digits:
            return f"{head} = {int(tail[:digits]) + rng.choice([-3, -1, 1, 2])}{tail[digits:]}"
    words = s.split(" ")
    if r < 0.75:  # swap two letters inside a word
        long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if long_words:
            i = rng.choice(long_words)
            j = rng.randrange(1, len(words[i]) - 2)
            w = words[i]
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            return " ".join(words)
    return " ".join(words[:max(1, len(words) // 2)]) + "..."


def degrade(page, rng, noise):
    """A low-quality page: boilerplate, damaged and shuffled explanations, sometimes cut off."""
    out = []
    for para in page:
        sentences = [(damage(s, rng) if not q and rng.random() < noise else s, q) for s, q in para]
        sentences = [(s, q) for s, q in sentences if s]
        free = [s for s, q in sentences if not q]
        if rng.random() < noise:
            rng.shuffle(free)  # the explanation comes out of order; the question stays where it was
        free = iter(free)
        out.append([(s if q else next(free), q) for s, q in sentences])
    if rng.random() < noise:
        out = out[:rng.randint(min(3, len(out)), len(out))]  # the page ends early, after its first example
    return f"{rng.choice(JUNK_TOP)}\n\n{page_text(out)}\n\n{rng.choice(JUNK_END)}"

# -----------------------------------------------------------------------------
# instruction following

BOX_ASKS = ["Let's think step by step and write the final answer in \\boxed{}.",  # eval.py's qa_boxed template's
            "Solve it step by step and put the final answer in \\boxed{}.",
            "Show your work, then give the answer in \\boxed{}."]


def box_request(p, rng):
    """A problem asked to be solved and boxed, answered so: what links mid-training to an RL prompt that asks."""
    return {"question": f"{p['question']} {rng.choice(BOX_ASKS)}", "solution": short_solution(p, box=True)}


def instruction(rng, cfg):
    a, b = rng.sample(range(1, cfg.max_add + 1), 2)
    q = rng.randint(2, 12)
    p = rng.randint(1, q - 1)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    question, solution = rng.choice([
        (f"Write the number {words[q]} in digits.", f"{q}"),
        (f"Which is larger, {a} or {b}? Answer with the number only.", f"{max(a, b)}"),
        (f"Answer yes or no: is {a} greater than {b}?", "Yes." if a > b else "No."),
        (f"Put the number {a} in a box, like this: \\boxed{{}}.", f"\\boxed{{{a}}}"),
        (f"Give only the final answer, in \\boxed{{}}: what is {a} plus {b}?", f"\\boxed{{{a + b}}}"),
        (f"Write {p} out of {q} as a fraction in LaTeX.", f"\\frac{{{p}}}{{{q}}}"),
        (f"Repeat this sentence exactly: {name} likes {thing}.", f"{name} likes {thing}."),
        (f"Count from {a} to {a + 3}, separated by commas.", ", ".join(str(a + i) for i in range(4))),
        (f"Answer in one word: what does {name} collect, if {name} has a box full of {thing}?",
         thing.capitalize() + "."),
    ])
    return {"question": question, "solution": solution}

# -----------------------------------------------------------------------------
# the world


def take(queues, pool, kind, rng):
    """The next problem of a kind, from a shuffled walk over its pool, a new walk when one ends: every problem
    is used before any is used twice."""
    if not queues.get(kind):
        queues[kind] = rng.sample(pool[kind], len(pool[kind]))
    return queues[kind].pop()


def pick_kind(rng, mix, kinds):
    return rng.choices(kinds, [mix[k] for k in kinds])[0]


def build(cfg):
    """Every file's rows, {name: rows}, from cfg alone."""
    unknown = sorted(set(cfg.mix) - set(KINDS))
    if unknown or not any(v > 0 for v in cfg.mix.values()):
        raise ValueError(f"mix={cfg.mix}: give some of the kinds {KINDS} a positive weight (unknown: {unknown})")
    rng, split = random.Random(cfg.seed), pools(cfg)
    kinds = list(split["train"])
    empty = [k for k in kinds if not split["train"][k]]
    if empty:
        raise ValueError(f"kinds {empty} have no training problems; raise max_add/max_mul/max_x or lower the shares")
    queues, files = {}, {}

    def train_problem(kind=None):
        kind = kind or pick_kind(rng, cfg.mix, kinds)
        return pose(kind, take(queues, split["train"], kind, rng), rng)

    def page():
        kind = pick_kind(rng, cfg.mix, kinds)
        return web_page(kind, [train_problem(kind) for _ in range(cfg.examples)], rng, cfg)

    def lq():
        if not (cfg.lq_exercises or cfg.lq_skip or cfg.lq_wrong):
            return page()
        kind = pick_kind(rng, cfg.mix, kinds)
        return lq_page(kind, [train_problem(kind) for _ in range(cfg.examples)], rng, cfg)

    files["web_hq"] = [{"text": page_text(page())} for _ in range(cfg.web_docs)]
    files["web_lq"] = [{"text": degrade(lq(), rng, cfg.noise)} for _ in range(cfg.web_docs)]
    box = lambda: cfg.qa_boxed >= 1 or rng.random() < cfg.qa_boxed  # no draw at 1: the same world as before
    qa = [train_problem() for _ in range(cfg.qa_short)]
    files["qa_short"] = [{"question": p["question"], "solution": short_solution(p, box()), "answer": p["answer"]}
                         for p in qa]
    qa = [train_problem() for _ in range(cfg.qa_long)]
    files["qa_long"] = [{"question": p["question"], "solution": long_solution(p, rng, cfg.slip, box()),
                         "answer": p["answer"]} for p in qa]
    files["instruct"] = [box_request(train_problem(), rng) if cfg.instruct_math and rng.random() < cfg.instruct_math
                         else instruction(rng, cfg) for _ in range(cfg.instruct)]
    rl_queues, rl_kinds = {}, [k for k in kinds if split["rl"][k]]
    if cfg.rl and not rl_kinds:
        raise ValueError(f"no RL problems among {kinds}: raise rl_share, max_add, max_mul or max_x")
    rl = [pose(k, take(rl_queues, split["rl"], k, rng), rng) for k in (pick_kind(rng, cfg.mix, rl_kinds)
                                                                      for _ in range(cfg.rl))]
    files["rl"] = [{"question": p["question"], "answer": p["answer"]} for p in rl]
    held_out = rng.sample([(k, n) for k in kinds for n in split["eval"][k]], cfg.eval)  # in a random order
    files["benchmarks/synth/test"] = [{"question": pose(k, n, rng)["question"], "answer": answer(k, n), "kind": k}
                                      for k, n in held_out]
    return files


def generate_world(out_dir="out/world", seed=0, **knobs):
    """Write the world of Config(out_dir, seed, **knobs) into out_dir, unless that same world is already there.
    Returns world.json's contents: the config, each file's row count and each split's problems per kind."""
    cfg = Config(out_dir=out_dir, seed=seed, **knobs)
    marker = os.path.join(out_dir, "world.json")
    config = json.loads(json.dumps(asdict(cfg)))
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
        there = all(os.path.exists(os.path.join(out_dir, f"{name}.jsonl")) for name in done["counts"])
        if done["config"] == config and there:
            return done
        os.remove(marker)  # a half-rewritten folder must not look finished
    files = build(cfg)
    os.makedirs(os.path.join(out_dir, "benchmarks", "synth"), exist_ok=True)
    for name, rows in files.items():
        write_atomic(os.path.join(out_dir, f"{name}.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    split = pools(cfg)
    done = {"config": config, "counts": {name: len(rows) for name, rows in files.items()},
            "problems": {s: {k: len(v) for k, v in split[s].items()} for s in split}}
    write_atomic(marker, json.dumps(done, indent=1))
    return done


if __name__ == "__main__":
    cfg = configure(Config())
    print(json.dumps(asdict(cfg), indent=1))
    done = generate_world(**asdict(cfg))
    print(f"{cfg.out_dir}: {done['counts']}")
