"""
The miniature world's text: each problem in words (a story per kind; a chain's built from its numbers), its short
and long worked solutions, math web pages clean and low-quality (poorer reasoning, then surface damage), and
instruction data. Every function draws from the rng it is given, so a world is a pure function of its seed.
"""
from miniature.problems import CHAINS, answer, compute, facts

NAMES = ["Ann", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo", "Mia", "Ned", "Olga",
         "Pat", "Rosa", "Sam", "Tess", "Uma"]
THINGS = ["apples", "marbles", "books", "stamps", "coins", "shells", "pencils", "cards", "eggs", "stickers",
          "buttons", "plums"]

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
GAINS, LOSSES = ["gets"], ["loses"]  # one verb each way: reading a change is reading its number and which way it goes
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
    steps = [step(p, i, f) + "." for i, f in enumerate(p["facts"])]
    return " ".join(steps + [f"So {conclusion(p)}."] + [boxed(p)] * box)


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
            out += [step(p, i, w) + ".",
                    f"Wait, let me check: {fact_text(back)}, not {f[0]}. That is wrong, so {fact_text(f)}."]
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
