"""
Evaluate a model on the paper's math benchmarks, graded by grader.py: few-shot chain of thought for base
models, zero-shot with the RL prompt templates for RL models. This file owns every prompt in the repo:
rl.py trains with TEMPLATES and render() from here, so a model is evaluated exactly as it was trained.

    python eval.py --model=out/decay_hybrid --benchmarks=gsm8k,math500 --mode=fewshot --limit=100
    python eval.py --model=out/rl_math --mode=zeroshot --template=boxed --benchmarks=aime24,amc23 \\
        --n_samples=16 --temperature=0.6                 # avg@16 and pass@16
    python eval.py                                       # the newest run under out/, all eight benchmarks

The test sets ship in data/benchmarks/<name>/test.jsonl (sources and licences in its README);
--data_dir reads another folder of that layout. Results go to --out_dir (default: beside the model):
results.json and <benchmark>_samples.jsonl (prompt, completion, extracted answer, gold, correct).
"""
import functools
import glob
import json
import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from configurator import configure, show
from grader import extract_answer, grade_many

ROOT = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = ["gsm8k", "math500", "minerva_math", "olympiadbench", "college_math", "mmlu_stem", "aime24", "amc23"]
SHOTS = {"gsm8k": 8, "math500": 4, "minerva_math": 4, "olympiadbench": 4, "college_math": 4, "mmlu_stem": 4,
         "aime24": 0, "amc23": 0}  # the paper's few-shot settings; another benchmark gets 0
FEWSHOT_STOP = ["Problem:"]  # a base model that has answered goes on to invent the next problem

# The RL prompt templates (../shared/RECIPE.md): {question} is replaced; "stop" ends a completion early.
TEMPLATES = {
    "boxed": {"prompt": "{question}\nLet's think step by step and write the final answer in \\boxed{{}}.\n",
              "stop": []},
    "conversation": {"prompt": "A conversation between User and Assistant. The User asks a question and the "
                               "Assistant solves it: it first reasons through the problem step by step, then "
                               "gives the User the final answer in \\boxed{{}}.\nUser: {question}\nAssistant:",
                     "stop": ["User:", "Assistant:"]},
    "qa": {"prompt": "Question: {question}\nAnswer:", "stop": ["Question:"]},
}


@dataclass
class Config:
    model: str = ""                    # a run folder (its hf/), an HF folder or a hub id; "": the newest under out/
    benchmarks: str = ",".join(BENCHMARKS)
    mode: str = "fewshot"              # fewshot (base models) or zeroshot (RL models, with template)
    template: str = "boxed"            # one of TEMPLATES, for zeroshot
    n_samples: int = 1                 # > 1: avg@k and pass@k (with temperature > 0)
    temperature: float = 0.0           # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 1024
    batch_size: int = 64
    limit: int = 0                     # the first `limit` problems of each benchmark; 0: all
    data_dir: str = ""                 # default data/benchmarks
    out_dir: str = ""                  # default beside the model
    dtype: str = "bfloat16"            # float32 on CPU
    seed: int = 0

# -----------------------------------------------------------------------------
# benchmarks and prompts


def load_benchmark(name, data_dir=None):
    """The problems of a benchmark as dicts with question, answer (what the grader compares) and, where the
    set has them, solution and choices."""
    path = os.path.join(data_dir or os.path.join(ROOT, "data", "benchmarks"), name, "test.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark '{name}': {path} not found; the shipped ones are {', '.join(BENCHMARKS)}")
    examples = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    examples.append(normalise(name, json.loads(line)))
                except (KeyError, IndexError, ValueError) as e:
                    raise ValueError(f"{path}, line {n}: cannot read field {e} of a '{name}' problem") from None
    return examples


def normalise(name, r):
    """One record of a benchmark's own layout -> {question, answer[, solution, choices]}."""
    question = r.get("question") or r["problem"]
    if name == "gsm8k":
        return {"question": question, "answer": r["answer"].split("####")[-1].strip(), "solution": r["answer"]}
    if name == "minerva_math":  # no answer field: the last \boxed{} of the solution
        return {"question": question, "answer": extract_answer(r["solution"]), "solution": r["solution"]}
    if name == "olympiadbench":
        if r.get("context") not in (None, "None", ""):
            question = f"{r['context']}\n\n{question}"
        answers = [strip_dollars(a) for a in r["final_answer"]]
        return {"question": question, "answer": ", ".join(answers), "solution": "\n\n".join(r["solution"])}
    if name == "mmlu_stem":
        return {"question": question, "choices": r["choices"], "answer": "ABCD"[int(r["answer"])]}
    example = {"question": question, "answer": strip_dollars(str(r["answer"]))}
    if r.get("solution"):
        example["solution"] = r["solution"]
    return example


def strip_dollars(answer):
    answer = answer.strip()  # CollegeMath writes its answers in $...$
    return answer[1:-1].strip() if len(answer) > 1 and answer[0] == answer[-1] == "$" else answer


def with_choices(example):
    if "choices" not in example:
        return example["question"]
    return example["question"] + "\n" + "\n".join(f"({l}) {c}" for l, c in zip("ABCD", example["choices"]))


def render(question, template="boxed"):
    """A question in one of the RL templates: the prompt rl.py trains with and zero-shot evaluation uses."""
    if template not in TEMPLATES:
        raise ValueError(f"template '{template}': choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[template]["prompt"].format(question=question)


@functools.lru_cache
def fewshot_pool():
    with open(os.path.join(ROOT, "data", "fewshot.json")) as f:
        return json.load(f)


def exemplars(benchmark):
    pool = fewshot_pool()
    pool = pool["gsm8k"] if benchmark == "gsm8k" else pool["mmlu_stem"] if benchmark == "mmlu_stem" else pool["math"]
    return pool[:SHOTS.get(benchmark, 0)]


def build_prompt(example, benchmark, mode="fewshot", template="boxed"):
    """fewshot: worked "Problem: ... Solution: ... The final answer is ..." exemplars, then the problem;
    zeroshot: the problem in an RL template."""
    if mode == "zeroshot":
        return render(with_choices(example), template)
    if mode != "fewshot":
        raise ValueError(f"mode '{mode}': use fewshot or zeroshot")
    shots = "".join(f"Problem:\n{with_choices(e)}\n\nSolution:\n{e['solution']} The final answer is ${e['answer']}$.\n\n"
                    for e in exemplars(benchmark))
    return f"{shots}Problem:\n{with_choices(example)}\n\nSolution:\n"


def stop_strings(mode, template="boxed"):
    return FEWSHOT_STOP if mode == "fewshot" else TEMPLATES[template]["stop"]


def cut_at_stop(text, stops):
    """text up to the first stop string."""
    return text[:min([i for i in (text.find(s) for s in stops) if i >= 0], default=len(text))]

# -----------------------------------------------------------------------------
# evaluation


def evaluate(generate, benchmarks, mode="fewshot", n_samples=1, limit=None, data_dir=None, template="boxed",
             tokenizer=None, out_dir=None):
    """Score generate (a list of prompt strings -> a list of completion strings) on benchmarks: per benchmark
    {"accuracy" (avg@k), "pass@k", "n", "mean_response_tokens" (with a tokenizer)}. Each prompt appears
    n_samples times in a row. With out_dir, writes <benchmark>_samples.jsonl there."""
    results = {}
    for name in ([benchmarks] if isinstance(benchmarks, str) else benchmarks):
        examples = load_benchmark(name, data_dir)[:limit or None]
        prompts = [build_prompt(e, name, mode, template) for e in examples for _ in range(n_samples)]
        completions = [cut_at_stop(c, stop_strings(mode, template)) for c in generate(prompts)]
        golds = [e["answer"] for e in examples for _ in range(n_samples)]
        correct = grade_many(list(zip(completions, golds)))
        per_problem = [correct[i:i + n_samples] for i in range(0, len(correct), n_samples)]
        results[name] = {"accuracy": sum(correct) / max(len(correct), 1), "n": len(examples),
                         f"pass@{n_samples}": sum(map(any, per_problem)) / max(len(per_problem), 1)}
        if tokenizer is not None:
            results[name]["mean_response_tokens"] = sum(len(tokenizer.encode(c)) for c in completions) / max(len(completions), 1)
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, f"{name}_samples.jsonl"), "w") as f:
                for p, c, g, ok in zip(prompts, completions, golds, correct):
                    f.write(json.dumps({"prompt": p, "completion": c, "extracted": extract_answer(c), "gold": g,
                                        "correct": ok}) + "\n")
    return results


def model_generate(model, tokenizer, max_new_tokens, batch_size=64, stop=(), temperature=0.0, top_p=1.0, seed=0):
    """Wrap our model as generate(prompts) -> completions: batched longest-first (similar lengths share a
    batch), stopping at EOS or a stop string; prompt i samples from (seed, i) whatever its batch."""
    def generate(prompts):
        encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        completions = [None] * len(prompts)
        for start in tqdm(range(0, len(order), batch_size), desc="generate", leave=False, disable=len(order) <= batch_size):
            rows = order[start:start + batch_size]
            tokens, _ = model.generate([encoded[i] for i in rows], max_new_tokens, temperature, top_p,
                                       stop_ids=[tokenizer.eos_id, tokenizer.eot_id], seed=[seed * 1_000_003 + i for i in rows],
                                       stop_strings=stop, decode=tokenizer.decode)
            for i, t in zip(rows, tokens):
                completions[i] = cut_at_stop(tokenizer.decode(t), stop)
        return completions
    return generate

# -----------------------------------------------------------------------------
# command line


def find_model(path):
    """(HF folder or hub id, default out_dir) for --model; "" means the newest hf/ under out/."""
    if not path:
        found = sorted(glob.glob(os.path.join("out", "**", "hf", "config.json"), recursive=True), key=os.path.getmtime)
        if not found:
            raise FileNotFoundError("no model under out/: train one (README: the two commands) or pass "
                                    "--model=PATH_OR_HUB_ID, e.g. --model=OctoThinker/OctoThinker-1B-Hybrid-Base")
        path = os.path.dirname(os.path.dirname(found[-1]))
    if os.path.isdir(os.path.join(path, "hf")):
        return os.path.join(path, "hf"), os.path.join(path, "eval")
    if os.path.isdir(path):
        return path, os.path.join(path, "eval")
    return path, os.path.join("out", "eval", path.replace("/", "--"))


def main(cfg):
    from data import Tokenizer
    from model import Llama
    torch.manual_seed(cfg.seed)
    folder, default_out = find_model(cfg.model)
    out_dir = cfg.out_dir or default_out
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, cfg.dtype) if device == "cuda" else torch.float32
    print(show(cfg))
    model = Llama.from_pretrained(folder, dtype=dtype, device=device).eval()
    tokenizer = Tokenizer.from_pretrained(folder)
    generate = model_generate(model, tokenizer, cfg.max_new_tokens, cfg.batch_size, stop_strings(cfg.mode, cfg.template),
                              cfg.temperature, cfg.top_p, cfg.seed)
    results = {}
    for name in cfg.benchmarks.split(","):
        print(f"{name}...", flush=True)
        results |= evaluate(generate, [name], cfg.mode, cfg.n_samples, cfg.limit or None, cfg.data_dir or None,
                            cfg.template, tokenizer, out_dir)
    print(f"\n{folder} ({cfg.mode}{'' if cfg.mode == 'fewshot' else ', ' + cfg.template})\n")
    print(f"| benchmark | n | accuracy | pass@{cfg.n_samples} | mean response tokens |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['n']} | {r['accuracy']:.1%} | {r[f'pass@{cfg.n_samples}']:.1%} | "
              f"{r['mean_response_tokens']:.0f} |")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"model": folder, "config": json.loads(show(cfg)), "results": results}, f, indent=1)
    print(f"\nwrote {out_dir}/results.json")
    return results


if __name__ == "__main__":
    main(configure(Config()))
