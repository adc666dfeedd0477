"""
Evaluate a model on the paper's math benchmarks, graded by grader.py: few-shot chain of thought for base
models, zero-shot with the RL prompt templates for RL models. This file owns every prompt in the repo:
rl.py trains with TEMPLATES and render() from here, so a model is evaluated exactly as it was trained.

    python eval.py --model=out/decay_hybrid --benchmarks=gsm8k,math500 --mode=fewshot --limit=100
    python eval.py --model=out/rl_math --mode=zeroshot --template=conversation --benchmarks=aime24,amc23 \\
        --n_samples=16 --temperature=0.6                 # avg@16 and pass@16
    python eval.py                                       # the newest run under out/, all eight benchmarks
    torchrun --nproc_per_node=8 eval.py --model=...      # each GPU generates an eighth of the prompts

The test sets ship in data/benchmarks/<name>/test.jsonl (sources and licences in its README), the few-shot
exemplars in data/fewshot.json; --data_dir reads another folder of the benchmarks' layout. Results go to
--out_dir (default: <run>/eval/): config.json, results.json and <benchmark>_samples.jsonl (prompt, completion,
extracted answer, gold, correct). Anything that maps prompts to completions can be scored with evaluate().
"""
import functools
import glob
import json
import os
import re
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from common import check_wandb, is_hub_id, launch, open_wandb, setup_distributed, wandb_table, write_atomic
from configurator import config_json
from grader import extract_answer, grade_many

ROOT = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = ["gsm8k", "math500", "minerva_math", "olympiadbench", "college_math", "mmlu_stem", "aime24", "amc23"]
SHOTS = {"gsm8k": 8, "math500": 4, "minerva_math": 4, "olympiadbench": 4, "college_math": 4, "mmlu_stem": 4,
         "aime24": 0, "amc23": 0}  # the paper's few-shot settings; a benchmark not named here gets 0
# Benchmarks whose decimal answers are rounded by convention (Minerva's physics and astronomy give 2-3 significant
# figures; CollegeMath's applied problems round too): there a value that rounds to the gold matches it (pi for
# 3.14). Everywhere else answers are exact, and a decimal must equal the gold within the grader's rel_tol.
ROUNDED = {"minerva_math", "college_math"}
FEWSHOT_STOP = ["Problem:"]  # a base model that has answered goes on to invent the next problem

# The RL prompt templates (../shared/RECIPE.md): {question} is filled in by render(); a completion ends at the
# first "stop" string found in the generated text (never in the prompt, which ends with "Assistant:" itself).
TEMPLATES = {
    "boxed": {"prompt": "{question}\nLet's think step by step and write the final answer in \\boxed{{}}.\n",
              "stop": []},
    "conversation": {"prompt": "A conversation between User and Assistant. The User asks a question and the "
                               "Assistant solves it: it first reasons through the problem step by step, then "
                               "gives the User the final answer in \\boxed{{}}.\nUser: {question}\nAssistant:",
                     "stop": ["User:", "Assistant:"]},
    "qa": {"prompt": "Question: {question}\nAnswer:", "stop": ["Question:"]},
    # the miniature's: its QA data's frame, with the boxed template's request (its instruction data asks so too)
    "qa_boxed": {"prompt": "Question: {question} Let's think step by step and write the final answer in "
                           "\\boxed{{}}.\nAnswer:", "stop": ["Question:"]},
}


@dataclass
class Config:
    # model
    model: str = ""                    # a run folder (its hf/), an HF folder or a hub id; "": the newest under out/
    device: str = ""                   # "": cuda when there is one, else cpu
    dtype: str = ""                    # "": bfloat16 on cuda, float32 on cpu
    tokenizer: str = ""                # "": the model folder's; else "llama3" (Meta's, offline), a folder or hub id
    # what to evaluate
    benchmarks: str = ",".join(BENCHMARKS)
    mode: str = "fewshot"              # fewshot (base models) or zeroshot (RL models, with template)
    template: str = "boxed"            # one of TEMPLATES, for zeroshot: the one the model was trained with
    limit: int = 0                     # the first `limit` problems of each benchmark; 0: all
    data_dir: str = ""                 # "": data/benchmarks
    # sampling
    n_samples: int = 1                 # > 1: avg@k and pass@k, which needs temperature > 0
    temperature: float = 0.0           # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 1024
    batch_size: int = 64               # rows decoding at once, per rank (each rank generates its share)
    kv_budget: str = ""                # the KV cache's size: tokens ("200000") or bytes ("20GB"); "": most of
                                       # the free GPU memory (a row per prompt on CPU); "all": a row per prompt
    # grading
    last_number: bool = True           # a completion that marks no answer: its last number, as the harnesses read it
    compile: bool = False              # torch.compile the decode step: pays off on long runs, on a GPU above all
    seed: int = 0
    dist_timeout_min: float = 120      # under torchrun: how long a rank waits for the others (the slowest share)
    wandb_project: str = ""            # also log the config and results to wandb; results.json either way
    # output
    out_dir: str = ""                  # "": <run>/eval, or out/eval/<hub id>

# -----------------------------------------------------------------------------
# benchmarks and prompts


def load_benchmark(name, data_dir=None):
    """The problems of a benchmark as dicts with question, answer (the gold the grader compares) and, where
    the set has them, solution and choices."""
    data_dir = data_dir or os.path.join(ROOT, "data", "benchmarks")
    path = os.path.join(data_dir, name, "test.jsonl")
    if not os.path.isfile(path):
        there = sorted(d for d in os.listdir(data_dir) if os.path.isfile(os.path.join(data_dir, d, "test.jsonl"))) \
            if os.path.isdir(data_dir) else []
        raise FileNotFoundError(f"benchmark '{name}': {path} not found; {data_dir} has "
                                f"{', '.join(there) or 'no <name>/test.jsonl'}")
    examples = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    examples.append(normalise(name, json.loads(line)))
                except (KeyError, IndexError, TypeError, ValueError) as e:
                    raise ValueError(f"{path}, line {n}: cannot read a '{name}' problem ({type(e).__name__}: {e}); "
                                     "each line needs a question (or problem) and an answer field") from None
    if not examples:
        raise ValueError(f"{path} holds no problems")
    return examples


def normalise(name, r):
    """One record in its benchmark's own layout -> {question, answer[, solution, choices]}."""
    question = r["question"] if r.get("question") else r["problem"]
    if name == "gsm8k":  # a worked solution ending "#### <answer>"
        return {"question": question, "answer": r["answer"].split("####")[-1].strip(), "solution": r["answer"]}
    if name == "minerva_math":  # no answer field: the answer is the last \boxed{} of the solution
        answer = extract_answer(r["solution"])
        if not answer:
            raise ValueError("its solution has no \\boxed{} answer")
        return {"question": question, "answer": answer, "solution": r["solution"]}
    if name == "olympiadbench":  # answers are lists of "$...$" strings, one of which may hold several answers
        if r.get("context") not in (None, "None", ""):
            question = f"{r['context']}\n\n{question}"
        answer = ", ".join(re.sub(r"\$\s*,\s*\$", ", ", a).replace("$", "").strip() for a in r["final_answer"])
        return {"question": question, "answer": answer, "solution": "\n\n".join(r["solution"])}
    if name == "mmlu_stem":  # four choices, the answer an index into them; graded as a letter
        if len(r["choices"]) != 4:
            raise ValueError(f"{len(r['choices'])} choices, expected 4")
        return {"question": question, "choices": r["choices"], "answer": "ABCD"[int(r["answer"])]}
    example = {"question": question, "answer": strip_dollars(str(r["answer"]))}
    if r.get("solution"):
        example["solution"] = r["solution"]
    return example


def strip_dollars(answer):
    answer = answer.strip()  # CollegeMath writes its answers in $...$
    return answer[1:-1].strip() if len(answer) > 1 and answer[0] == answer[-1] == "$" else answer


def with_choices(example):
    """The question as the model sees it: a multiple-choice one with its choices (A) to (D) below."""
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


def exemplars(benchmark, data_dir=None):
    """The worked examples shown before a problem: the benchmark folder's own fewshot.jsonl when it has one
    (question, solution, answer: all of them, as the miniature's world writes), else GSM8K's own, MMLU-STEM's
    multiple-choice ones, or the MATH-style ones for every other benchmark."""
    own = os.path.join(data_dir or os.path.join(ROOT, "data", "benchmarks"), benchmark, "fewshot.jsonl")
    if os.path.isfile(own):
        with open(own) as f:
            return [json.loads(line) for line in f if line.strip()]
    pool = fewshot_pool()
    return pool.get(benchmark, pool["math"])[:SHOTS.get(benchmark, 0)]


def build_prompt(example, benchmark, mode="fewshot", template="boxed", data_dir=None):
    """fewshot: worked "Problem: ... Solution: ... The final answer is $X$." exemplars, then the problem and an
    open "Solution:"; zeroshot: the problem in an RL template."""
    if mode == "zeroshot":
        return render(with_choices(example), template)
    if mode != "fewshot":
        raise ValueError(f"mode '{mode}': use fewshot (base models) or zeroshot (RL models)")
    shots = "".join(f"Problem:\n{with_choices(e)}\n\nSolution:\n{e['solution']} "
                    f"The final answer is ${e['answer']}$.\n\n" for e in exemplars(benchmark, data_dir))
    return f"{shots}Problem:\n{with_choices(example)}\n\nSolution:\n"


def stop_strings(mode, template="boxed"):
    return FEWSHOT_STOP if mode == "fewshot" else TEMPLATES[template]["stop"]


def completion_text(tokens, tokenizer, stops):
    """A completion's text as eval.py grades it and rl.py rewards it: its tokens without a final EOS or
    end-of-turn (decoded, it would be the text "<|end_of_text|>"), cut at the first stop string."""
    if tokens and tokens[-1] in (tokenizer.eos_id, tokenizer.eot_id):
        tokens = tokens[:-1]
    return cut_at_stop(tokenizer.decode(tokens), stops)


def cut_at_stop(text, stops):
    """text up to the first stop string."""
    return text[:min([i for i in (text.find(s) for s in stops) if i >= 0], default=len(text))]

# -----------------------------------------------------------------------------
# evaluation


def evaluate(generate, benchmarks, mode="fewshot", n_samples=1, limit=None, data_dir=None, template="boxed",
             out_dir=None, last_number=True):
    """Score generate (a list of prompt strings -> a list of completion strings; each prompt appears n_samples
    times in a row) on benchmarks (a list, or names joined by commas). Per benchmark: accuracy (the mean over
    all samples: avg@k), pass@k (the share of problems with a correct sample), n (problems), no_answer (the
    share of completions without a final answer), seconds, and mean_response_tokens when generate records
    generate.new_tokens (as model_generate does), and the max_new_tokens it used. last_number: an unmarked
    completion's last number is its answer (grader.grade_many). With out_dir, writes <benchmark>_samples.jsonl
    there. Under torchrun every rank calls it (generate splits the prompts: see model_generate) and rank 0
    grades and writes; the other ranks return {}."""
    results = {}
    for name in benchmarks.split(",") if isinstance(benchmarks, str) else benchmarks:
        examples = load_benchmark(name, data_dir)[:limit or None]
        prompts = [build_prompt(e, name, mode, template, data_dir) for e in examples for _ in range(n_samples)]
        golds = [e["answer"] for e in examples for _ in range(n_samples)]
        t0 = time.perf_counter()
        completions = list(generate(prompts))
        seconds = time.perf_counter() - t0
        if len(completions) != len(prompts) or not all(isinstance(c, str) for c in completions):
            raise ValueError(f"{name}: generate returned {len(completions)} completions for {len(prompts)} prompts; "
                             "it must return one str per prompt, in order")
        if dist.is_initialized() and dist.get_rank() > 0:
            continue  # rank 0 has every completion too, and grades them
        completions = [cut_at_stop(c, stop_strings(mode, template)) for c in completions]  # in case generate didn't
        correct = grade_many(list(zip(completions, golds)), rounded=name in ROUNDED, last_number=last_number)
        extracted = [extract_answer(c, last_number=last_number) for c in completions]
        per_problem = [correct[i:i + n_samples] for i in range(0, len(correct), n_samples)]
        results[name] = {"accuracy": sum(correct) / len(correct),
                         f"pass@{n_samples}": sum(map(any, per_problem)) / len(per_problem),
                         "n": len(examples), "n_samples": n_samples,
                         "no_answer": sum(a is None for a in extracted) / len(extracted), "seconds": round(seconds, 2)}
        new_tokens = getattr(generate, "new_tokens", None)
        if new_tokens is not None and len(new_tokens) == len(completions):
            results[name]["mean_response_tokens"] = sum(new_tokens) / len(new_tokens)
        if getattr(generate, "max_new_tokens", None):  # as used: capped where the prompts leave less room
            results[name]["max_new_tokens"] = generate.max_new_tokens
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            tokens = new_tokens if new_tokens is not None and len(new_tokens) == len(completions) else \
                [None] * len(golds)
            write_atomic(os.path.join(out_dir, f"{name}_samples.jsonl"), "".join(
                json.dumps({"prompt": p, "completion": c, "extracted": a, "gold": g, "correct": ok, "new_tokens": n})
                + "\n" for p, c, a, g, ok, n in zip(prompts, completions, extracted, golds, correct, tokens)))
    return results


def model_generate(model, tokenizer, max_new_tokens, batch_size=64, stop=(), temperature=0.0, top_p=1.0, seed=0,
                   compile=False, rank=0, world_size=1, kv_budget=None):
    """Our model as generate(prompts) -> completions: each prompt after BOS, longest first (running out of
    memory shows at once), at most batch_size decoding at a time within kv_budget (generation.generate), ending
    at EOS, end-of-turn or a stop string, which the completion leaves out. Prompt i samples from (seed, i)
    whatever else is generating (in fp32 token for token; in bf16 a batch's rounding can flip a rare token).
    With world_size > 1 (every rank calls it with the same prompts), rank r generates the r-th, (r +
    world_size)-th, ... longest prompts (a prompt's repeats together) and every rank gets all completions back:
    the same as one process, in about 1 / world_size of the time. After a call, generate.new_tokens holds the
    tokens each completion generated, and generate.max_new_tokens the limit used (capped where the longest
    prompt leaves less of the context)."""
    stop, stop_ids = list(stop), (tokenizer.eos_id, tokenizer.eot_id)

    def generate(prompts):
        encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        max_new = generate.max_new_tokens = fit_context(max_new_tokens, max(map(len, encoded), default=0),
                                                        model.config.max_seq_len, say=rank == 0)
        order = deal(order, encoded, rank, world_size)
        completions, generate.new_tokens = [None] * len(prompts), [0] * len(prompts)
        bar = tqdm(total=len(order), unit="prompt", desc="generate", leave=False,
                   disable=len(order) <= batch_size or rank > 0)
        if order:
            tokens, _ = model.generate([encoded[i] for i in order], max_new, temperature, top_p, stop_ids=stop_ids,
                                       seed=[(seed << 32) + i for i in order], stop_strings=stop,
                                       decode=tokenizer.decode, compile=compile, kv_budget=kv_budget,
                                       max_batch=batch_size, on_done=lambda _: bar.update(1))
            for i, t in zip(order, tokens):
                generate.new_tokens[i] = len(t)
                completions[i] = completion_text(t, tokenizer, stop)
        bar.close()
        if world_size > 1:  # each rank's rows to every rank; the rows a rank did not generate are None there
            shares = [None] * world_size
            dist.all_gather_object(shares, (order, [completions[i] for i in order],
                                            [generate.new_tokens[i] for i in order]))
            for rows, texts, counts in shares:
                for i, text, count in zip(rows, texts, counts):
                    completions[i], generate.new_tokens[i] = text, count
        return completions

    generate.new_tokens, generate.max_new_tokens = [], max_new_tokens
    return generate

def deal(order, encoded, rank, world_size):
    """Rank `rank`'s share of the prompts in `order` (longest first): runs of one prompt (avg@k's samples) dealt
    round the ranks as one, so that one rank prefills each prompt once, and the shares alike in length."""
    groups = []
    for i in order:
        if groups and encoded[groups[-1][0]] == encoded[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [i for group in groups[rank::world_size] for i in group]


def fit_context(max_new_tokens, longest_prompt, max_seq_len, say=True):
    """max_new_tokens, or less where the longest prompt (BOS included) leaves less room in the model's context
    (saying so). One cap for the whole call (a benchmark), so a completion never depends on the prompts batched
    with it; only a cap that binds makes it depend on the call's longest prompt, and results.json records it."""
    room = max_seq_len - longest_prompt
    if room < 1:
        raise ValueError(f"a prompt of {longest_prompt} tokens fills the model's whole context (max_seq_len="
                         f"{max_seq_len}); use fewer few-shot examples (--mode=zeroshot) or a longer-context model")
    if max_new_tokens > room and say:
        tqdm.write(f"max_new_tokens={max_new_tokens} capped at {room}: the longest prompt has {longest_prompt} tokens "
                   f"and the model's context is {max_seq_len}")
    return min(max_new_tokens, room)


# -----------------------------------------------------------------------------
# command line


def find_model(path, own_tokenizer=True):
    """(model folder or hub id, default out_dir) for --model: a run folder means its hf/; "" the newest hf/
    under out/."""
    if not path:
        found = sorted(glob.glob(os.path.join("out", "**", "hf", "config.json"), recursive=True), key=os.path.getmtime)
        if not found:
            raise SystemExit("eval.py: no model to evaluate: nothing under out/*/hf/ yet. Train one (README: "
                             "python train.py configs/tiny.py) or pass --model=PATH_OR_HUB_ID, e.g. "
                             "--model=OctoThinker/OctoThinker-1B-Hybrid-Base")
        path = os.path.dirname(os.path.dirname(found[-1]))
    if os.path.isdir(os.path.join(path, "hf")):
        return check_model_folder(os.path.join(path, "hf"), own_tokenizer), os.path.join(path, "eval")
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "ckpt")) and not os.path.exists(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"--model={path}: a run folder without its hf/ export, which train.py and rl.py "
                                    "write when the run finishes; wait for it, or pass a finished run")
        return check_model_folder(path, own_tokenizer), os.path.join(path, "eval")
    if not is_hub_id(path):
        raise FileNotFoundError(f"--model={path}: no such folder, and not a hub id like 'meta-llama/Llama-3.2-1B'")
    return path, os.path.join("out", "eval", path.replace("/", "--"))


def check_model_folder(folder, own_tokenizer=True):
    """folder, if it holds what loading needs (its tokenizer too, unless one is named apart): a name for each
    missing thing otherwise."""
    missing = []
    if not os.path.isfile(os.path.join(folder, "config.json")):
        missing.append("config.json")
    if not glob.glob(os.path.join(folder, "*.safetensors")):
        missing.append("weights (*.safetensors)")
    if own_tokenizer and not any(os.path.isfile(os.path.join(folder, f)) for f in
                                 ("tokenizer.model", "original/tokenizer.model", "tokenizer.json")):
        missing.append("tokenizer (tokenizer.model [+ special_tokens.json] or tokenizer.json)")
    if missing:
        raise FileNotFoundError(f"--model={folder}: no {', no '.join(missing)} there. A model folder is a run's hf/ "
                                "(train.py, rl.py), what Llama.save_pretrained + Tokenizer.save write, or a "
                                "downloaded Llama-3")
    return folder


def main(cfg):
    from model import Llama
    from tokenizer import Tokenizer
    names = cfg.benchmarks.split(",")
    for name in names:  # every mistake in the config before minutes of loading
        load_benchmark(name, cfg.data_dir or None)
    if cfg.mode not in ("fewshot", "zeroshot"):
        raise ValueError(f"--mode={cfg.mode}: use fewshot (base models) or zeroshot (RL models)")
    render("", cfg.template)
    if cfg.n_samples > 1 and cfg.temperature == 0:
        raise ValueError(f"--n_samples={cfg.n_samples} with greedy decoding gives identical samples; "
                         "set --temperature too (e.g. 0.6)")
    check_wandb(cfg)
    folder, default_out = find_model(cfg.model, own_tokenizer=not cfg.tokenizer)
    out_dir = cfg.out_dir or default_out
    rank, world_size, device = setup_distributed(cfg.dist_timeout_min)  # under torchrun: the prompts split
    device = cfg.device or str(device)
    dtype = getattr(torch, cfg.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    torch.manual_seed(cfg.seed)
    if rank == 0:
        print(config_json(cfg))
        os.makedirs(out_dir, exist_ok=True)
        write_atomic(os.path.join(out_dir, "config.json"), config_json(cfg) + "\n")

    model = Llama.from_pretrained(folder, dtype=dtype, device=device).eval()
    tokenizer = Tokenizer.from_pretrained(cfg.tokenizer or folder)
    generate = model_generate(model, tokenizer, cfg.max_new_tokens, cfg.batch_size,
                              stop_strings(cfg.mode, cfg.template), cfg.temperature, cfg.top_p, cfg.seed, cfg.compile,
                              rank, world_size, cfg.kv_budget or None)
    results = {}
    for name in names:
        results |= evaluate(generate, [name], cfg.mode, cfg.n_samples, cfg.limit or None, cfg.data_dir or None,
                            cfg.template, out_dir, cfg.last_number)
        if rank == 0:
            r = results[name]
            print(f"{name}: {r['accuracy']:.1%} of {r['n']} ({r['seconds']:.0f} s)", flush=True)
    if rank > 0:
        return results

    k = cfg.n_samples
    print(f"\n{folder}, {cfg.mode}{'' if cfg.mode == 'fewshot' else ' (' + cfg.template + ')'}, "
          f"{'greedy' if cfg.temperature == 0 else f'temperature {cfg.temperature}'}\n")
    print(f"| benchmark | n | {'accuracy' if k == 1 else f'avg@{k} | pass@{k}'} | mean response tokens |")
    print(f"|---|---|---|{'' if k == 1 else '---|'}---|")
    for name, r in results.items():
        scores = f"{r['accuracy']:.1%}" if k == 1 else f"{r['accuracy']:.1%} | {r[f'pass@{k}']:.1%}"
        print(f"| {name} | {r['n']} | {scores} | {r['mean_response_tokens']:.0f} |")
    write_atomic(os.path.join(out_dir, "results.json"), json.dumps(
        {"model": folder, "device": device, "dtype": str(dtype)[6:], "config": json.loads(config_json(cfg)),
         "results": results}, indent=1))
    print(f"\nwrote {out_dir}/results.json and <benchmark>_samples.jsonl")
    model_name = os.path.normpath(folder).removesuffix(os.sep + "hf").split(os.sep)[-1]  # a run's, or the hub id's
    tracked = open_wandb(cfg, out_dir, "eval", f"eval {model_name}")
    if tracked is not None:
        tracked.summary.update({f"{name}/{key}": value for name, r in results.items() for key, value in r.items()
                                if isinstance(value, (int, float))})
        tracked.log({"results": wandb_table([{"benchmark": name, **{k: v for k, v in r.items()
                                                                     if isinstance(v, (int, float, str))}}
                                             for name, r in results.items()])})
        tracked.finish()
    return results


if __name__ == "__main__":
    launch(main, Config())
