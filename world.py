"""
A synthetic math world for the miniature recipe: small word problems a tiny model can learn, with computed
answers, rendered as the paper's kinds of data and written as jsonl in the real corpora's formats.

    python world.py --out_dir=out/world --seed=0

out_dir gets
    web_hq.jsonl, web_lq.jsonl   {"text"}: math "web" pages, clean and degraded (MegaMath-Web-Pro vs FineMath)
    qa_short.jsonl, qa_long.jsonl  {"question", "answer"}: the answer a worked solution ending in \\boxed{},
                                   as in GSM8K and the QA corpora: brief, or long (trying, checking, correcting)
    instruct.jsonl               {"question", "answer"}: a little instruction following
    rl.jsonl                     {"question", "answer"}: GRPO's prompts
    benchmarks/synth/test.jsonl  {"question", "answer"}: held-out problems, for eval.py --data_dir
    world.json                   the config and counts, written last
A problem is a kind and its numbers; each (kind, numbers) belongs to one split by its hash, so no training
text can contain an RL or evaluation problem. Web pages explain and work examples in prose ("so 5 + 3 = 8
apples") without \\boxed{}: the answer format comes only from the QA data, as in the paper.
"""
import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass

from configurator import configure


@dataclass
class Config:
    out_dir: str = "out/world"
    seed: int = 0
    web_docs: int = 4000        # pages in each of web_hq and web_lq
    qa_short: int = 4000
    qa_long: int = 4000
    instruct: int = 400
    rl: int = 1000
    eval: int = 200
    max_add: int = 20           # operands of sums and differences
    max_mul: int = 9            # factors of products
    kinds: tuple = ("add", "sub", "two_step", "mul", "equation")
    noise: float = 0.3          # the share of a low-quality page's sentences that get damaged


NAMES = ["Ann", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo", "Mia", "Ned", "Olga", "Pat"]
THINGS = ["apples", "marbles", "books", "stamps", "coins", "shells", "pencils", "cards", "eggs", "stickers"]

# -----------------------------------------------------------------------------
# problems: a kind, its numbers, the question, and the steps that solve it


def draw(kind, rng, cfg):
    """The numbers of a random problem of this kind (answers are positive integers)."""
    a, b = rng.randint(2, cfg.max_add), rng.randint(1, cfg.max_add)
    if kind == "add":
        return (a, b)
    if kind == "sub":
        return (a + b, b)
    if kind == "two_step":
        return (a, b, rng.randint(1, a + b - 1))
    if kind == "mul":
        return (rng.randint(2, cfg.max_mul), rng.randint(2, cfg.max_mul))
    x, k = rng.randint(1, 12), rng.randint(2, 6)  # equation: k x + b = c
    return (k, b, k * x + b)


def steps(kind, n):
    """The solution as (left, op, right, result) facts, in order; the last result is the answer."""
    if kind == "add":
        return [(n[0], "+", n[1], n[0] + n[1])]
    if kind == "sub":
        return [(n[0], "-", n[1], n[0] - n[1])]
    if kind == "two_step":
        return [(n[0], "+", n[1], n[0] + n[1]), (n[0] + n[1], "-", n[2], n[0] + n[1] - n[2])]
    if kind == "mul":
        return [(n[0], "\\times", n[1], n[0] * n[1])]
    k, b, c = n
    return [(c, "-", b, c - b), (c - b, "\\div", k, (c - b) // k)]


def question(kind, n, rng):
    name, other, thing = rng.choice(NAMES), rng.choice(NAMES), rng.choice(THINGS)
    if kind == "add":
        return f"{name} has {n[0]} {thing} and gets {n[1]} more. How many {thing} does {name} have now?"
    if kind == "sub":
        return f"{name} has {n[0]} {thing} and gives {n[1]} of them to {other}. How many {thing} are left?"
    if kind == "two_step":
        return (f"{name} has {n[0]} {thing}, buys {n[1]} more, then gives {n[2]} to {other}. "
                f"How many {thing} does {name} have in the end?")
    if kind == "mul":
        return f"{name} buys {n[0]} bags with {n[1]} {thing} in each bag. How many {thing} is that in all?"
    return f"Solve for $x$: ${n[0]}x + {n[1]} = {n[2]}$."


def fact(s):
    return f"{s[0]} {s[1]} {s[2]} = {s[3]}"


def split_of(kind, n, seed):
    """Which split a problem belongs to, by the hash of its kind and numbers: eval, rl or train."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}/{kind}/{n}".encode(), digest_size=8).digest(), "little") % 20
    return "eval" if h < 2 else "rl" if h < 5 else "train"  # 10%, 15% and 75% of all problems


def problems(split, count, rng, cfg):
    """count problems of a split, each (kind, numbers, question, steps); evaluation problems are all different."""
    out, seen = [], set()
    for _ in range(count * 200):
        if len(out) == count:
            break
        kind = rng.choice(cfg.kinds)
        n = draw(kind, rng, cfg)
        if split_of(kind, n, cfg.seed) != split or ((kind, n) in seen and split == "eval"):
            continue
        seen.add((kind, n))
        out.append((kind, n, question(kind, n, rng), steps(kind, n)))
    if len(out) < count:
        raise ValueError(f"only {len(out)} distinct '{split}' problems fit max_add={cfg.max_add}, "
                         f"max_mul={cfg.max_mul}; ask for fewer or raise them")
    return out

# -----------------------------------------------------------------------------
# renderings


def short_solution(kind, s):
    if kind == "equation":
        return f"Subtract: {fact(s[0])}. Divide: {fact(s[1])}. So $x = \\boxed{{{s[-1][3]}}}$."
    return " ".join(f"{fact(x)}." for x in s) + f" The answer is \\boxed{{{s[-1][3]}}}."


def long_solution(kind, s, rng):
    """Works step by step, checks each step by its inverse, and sometimes slips and corrects itself."""
    inverse = {"+": "-", "-": "+", "\\times": "\\div", "\\div": "\\times"}
    lines = ["Let me work through this step by step."]
    for i, x in enumerate(s):
        if rng.random() < 0.3:  # a slip, caught by the check
            wrong = x[3] + rng.choice([-2, -1, 1, 2])
            lines.append(f"Step {i + 1}: {x[0]} {x[1]} {x[2]} = {wrong}. Wait, let me check that: "
                         f"{wrong} {inverse[x[1]]} {x[2]} is not {x[0]}. That is wrong.")
        lines.append(f"Step {i + 1}: {fact(x)}. Check: {x[3]} {inverse[x[1]]} {x[2]} = {x[0]}. Correct.")
    answer = f"$x = \\boxed{{{s[-1][3]}}}$" if kind == "equation" else f"\\boxed{{{s[-1][3]}}}"
    lines.append(f"Every step checks out, so the answer is {answer}.")
    return " ".join(lines)


INTROS = {
    "add": "Adding tells how many there are when two groups are put together.",
    "sub": "Subtracting tells how many are left when some are taken away.",
    "two_step": "Some problems take two steps: first find the total, then take away what is given.",
    "mul": "Multiplying counts equal groups quickly: the number of groups times the size of each group.",
    "equation": "To solve an equation like $3x + 4 = 19$, undo each operation: subtract, then divide.",
}


def web_page(kind, examples, rng):
    """An expository page: a rule, a few practice facts, and worked examples in prose (no \\boxed{})."""
    facts = [fact(rng.choice(steps(kind, e[1]))) for e in examples]
    worked = []
    for _, n, q, s in examples:
        body = ", then ".join(fact(x) for x in s)
        worked.append(f"Example: {q} We compute {body}, so the result is {s[-1][3]}.")
    return " ".join([INTROS[kind], "Practice: " + "; ".join(facts) + "."] + worked)


def degrade(text, rng, noise):
    """A low-quality version: typos, wrong results, lost sentences, shuffled order and page boilerplate."""
    sentences = [s for s in text.split(". ") if s]
    out = []
    for s in sentences:
        r = rng.random()
        if r < noise / 3:
            continue  # lost
        if r < 2 * noise / 3:  # a wrong number
            words = s.split(" ")
            i = rng.randrange(len(words))
            if words[i].isdigit():
                words[i] = str(int(words[i]) + rng.choice([-3, -1, 1, 2]))
            s = " ".join(words)
        elif r < noise:  # a typo
            i = rng.randrange(max(1, len(s) - 1))
            s = s[:i] + s[i + 1:i + 2] + s[i:i + 1] + s[i + 2:]
        out.append(s)
    rng.shuffle(out)
    junk = rng.choice(["Home | Worksheets | Login", "Click here to subscribe!!", "Share this page: f t in",
                       "Posted by admin in Uncategorized", "(c) 2019 mathfun4kids. All rights reserved."])
    return f"{junk} {'. '.join(out)}. {rng.choice(['Read more...', 'Comments (0)', 'Next page >>'])}"


def instruction(rng):
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    n = rng.randint(0, 10)
    return rng.choice([
        {"question": f"Write the number {words[n]} in digits.", "answer": f"{n}"},
        {"question": f"Which is larger, {a} or {b}? Answer with the number only.", "answer": f"{max(a, b)}"},
        {"question": f"Put the number {a} in a box, as \\boxed{{}}.", "answer": f"\\boxed{{{a}}}"},
        {"question": f"Answer yes or no: is {a} greater than {b}?", "answer": "Yes." if a > b else "No."},
        {"question": f"Repeat after me: {rng.choice(NAMES)} likes {rng.choice(THINGS)}.", "answer": "OK."},
    ])

# -----------------------------------------------------------------------------
# the world


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


def generate_world(cfg):
    """Write the world into cfg.out_dir (skipped when the same config is already there); returns the counts."""
    marker = os.path.join(cfg.out_dir, "world.json")
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
        if done["config"] == json.loads(json.dumps(asdict(cfg))):
            return done["counts"]
    os.makedirs(os.path.join(cfg.out_dir, "benchmarks", "synth"), exist_ok=True)
    rng = random.Random(cfg.seed)
    files = {}
    train = problems("train", cfg.qa_short + cfg.qa_long + 3 * cfg.web_docs, rng, cfg)
    short, long_, web = train[:cfg.qa_short], train[cfg.qa_short:cfg.qa_short + cfg.qa_long], train[cfg.qa_short + cfg.qa_long:]
    files["qa_short"] = [{"question": q, "answer": short_solution(k, s)} for k, n, q, s in short]
    files["qa_long"] = [{"question": q, "answer": long_solution(k, s, rng)} for k, n, q, s in long_]
    pages = []
    for i in range(cfg.web_docs):  # a page on the kind of its first example, worked with those of that kind
        examples = web[3 * i:3 * i + 3]
        pages.append(web_page(examples[0][0], [e for e in examples if e[0] == examples[0][0]], rng))
    files["web_hq"] = [{"text": p} for p in pages]
    files["web_lq"] = [{"text": degrade(p, rng, cfg.noise)} for p in pages]
    files["instruct"] = [instruction(rng) for _ in range(cfg.instruct)]
    files["rl"] = [{"question": q, "answer": str(s[-1][3])} for _, _, q, s in problems("rl", cfg.rl, rng, cfg)]
    held_out = [{"question": q, "answer": str(s[-1][3])} for _, _, q, s in problems("eval", cfg.eval, rng, cfg)]
    for name, rows in files.items():
        write_jsonl(os.path.join(cfg.out_dir, f"{name}.jsonl"), rows)
    write_jsonl(os.path.join(cfg.out_dir, "benchmarks", "synth", "test.jsonl"), held_out)
    counts = {name: len(rows) for name, rows in files.items()} | {"eval": len(held_out)}
    with open(marker + ".tmp", "w") as f:
        json.dump({"config": asdict(cfg), "counts": counts}, f, indent=1)
    os.replace(marker + ".tmp", marker)
    return counts


if __name__ == "__main__":
    cfg = configure(Config())
    print(f"{cfg.out_dir}: {generate_world(cfg)}")
