"""
The synthetic math world of the CPU miniature: a small family of word problems a tiny model can learn, with
computed answers, rendered as the paper's kinds of data and written as jsonl in the real corpora's formats. Two
families: the default one (sums, differences, two-step stories, products, equal shares, linear equations,
fractions; configs/tiny.py and rl_tiny use it), and chains (chain1 to chain4: a number changed k times, each
clause restated word for word in the solution), configs/miniature/world.py's, whose k is a difficulty dial.

    python -m miniature.world [config.py] --out_dir=out/world --seed=0 [--key=value ...]

out_dir gets
    web_hq.jsonl, web_lq.jsonl     {"text"}: math "web" pages, clean and degraded (MegaMath-Web-Pro vs FineMath)
    qa_short.jsonl, qa_long.jsonl  {"question", "solution", "answer"}: a brief worked solution, or a long one that
                                   checks each step and catches its own slips; qa_boxed of them end in
                                   "The answer is \\boxed{answer}.", the rest state it in prose only
    instruct.jsonl                 {"question", "solution"}: a little instruction following (instruct_math of it:
                                   problems asked to be boxed in BOX_ASKS' words, eval.py's qa_boxed template's)
    rl.jsonl                       {"question", "answer"}: GRPO's prompts
    benchmarks/synth/test.jsonl    {"question", "answer", "kind"}: held-out problems (eval.py
                                   --data_dir=out/world/benchmarks), and fewshot.jsonl, training problems worked
                                   as exemplars for evaluating base models few-shot
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
import json
import os
import random
from dataclasses import asdict, dataclass, field

from common import write_atomic
from configurator import configure
from miniature.problems import BASIC, KINDS, answer, pools
from miniature.text import box_request, degrade, instruction, long_solution, lq_page, page_text, pose, short_solution, \
    web_page

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
    fewshot: int = 4              # worked examples for few-shot evaluation (the first kinds of the mix, one each)
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
    # eval.py's few-shot exemplars for base models: training problems, one of each kind, their short solutions
    shots = [train_problem(k) for k in kinds[:cfg.fewshot]]
    files["benchmarks/synth/fewshot"] = [{"question": p["question"], "solution": short_solution(p, box=False),
                                          "answer": p["answer"]} for p in shots]
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
