"""
Decoding speed of model.generate, eager and with its decode step compiled, against transformers' generate
on the same weights, with ragged prompts, at batch 1 and 32 (and 64 on a GPU), written as a markdown table
to bench/results/. Two workloads: every row greedy for a fixed number of tokens, and rows sampled until a
stop id, which finish at different steps (transformers computes a finished row until the batch is done;
we drop it).

    python bench/generate.py     # CPU: the "mini" shape and the miniature's model; GPU: Llama-3.2-1B shapes, bf16
    python bench/generate.py --models=miniature --new_tokens=16 --repeats=1   # a quick smoke run

Then continuous batching under a KV budget (generate's kv_budget) against the way to stay within the same memory
without it, chunks of prompts generated one after another, on an RL workload (16 prompts x 8 samples, sampled,
ragged stops and the qa template's stop string) and an eval workload (200 greedy prompts of mixed length, ragged
stops), at a budget of a quarter of the requests' full-length rows (laid out by generate as short and long
rows); and with no budget at all ("all").
The KV memory is the cache's as allocated (every cache a call makes is recorded), not computed from shapes.

On a GPU it also reports the memory-bandwidth floor of each decode step (every weight and the batch's
KV cache read once) against the measured copy bandwidth of the card.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import generation  # noqa: E402
from eval import TEMPLATES  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), e.g. "Intel(R) Xeon(R) Processor"."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fns, repeats):
    """Median rate of each function (what it returns, a count, per second), the functions run in turns
    so that a change in machine load hits all alike."""
    for fn in fns:
        fn()  # warm-up (and compilation)
    rates = [[] for _ in fns]
    for _ in range(repeats):
        for fn, rs in zip(fns, rates):
            sync()
            t0 = time.perf_counter()
            n = fn()
            sync()
            rs.append(n / (time.perf_counter() - t0))
    return [statistics.median(rs) for rs in rates]


def make_prompts(batch, vocab, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi + 1, (batch,), generator=g).tolist()
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]


def ours(model, prompts, new_tokens, stops, compile=False):
    """Tokens generated: all new_tokens greedy, or sampled until a stop id."""
    tokens, _ = model.generate(prompts, max_new_tokens=new_tokens, temperature=1.0 if stops else 0,
                               stop_ids=stops, seed=0, compile=compile)
    assert stops or all(len(t) == new_tokens for t in tokens)
    return sum(map(len, tokens))


def theirs(hf, prompts, new_tokens, stops, device):
    # left-padded, as transformers expects for batched decoder-only generation
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    how = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=stops) if stops else \
        dict(do_sample=False, min_new_tokens=new_tokens)
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, pad_token_id=0, **how)[:, width:]
    # a finished row is padded to the longest; count each row's tokens up to and including its stop
    stops = set(stops)
    return sum(next((i + 1 for i, t in enumerate(row) if t in stops), len(row)) for row in out.tolist())


def engine_workloads(cfg, args):
    """{name: (prompts, generate keyword arguments)}: RL, 16 prompts x 8 samples in groups, sampled; eval,
    200 greedy prompts of 16-128 tokens. Stops: stop ids (1 in stop_every of the vocabulary; 16 times as many
    for greedy rows, which repeat themselves) and the qa template's stop string on a made-up decode."""
    letters = "".join(chr(c) for c in range(32, 127))
    decode = lambda ids: "".join(letters[i % len(letters)] for i in ids)  # noqa: E731
    groups = make_prompts(16, cfg.vocab_size, 16, 64, seed=1)
    every = args.stop_every or 64  # ragged stops are the point here, whatever --stop_every says
    stop = list(range(1, cfg.vocab_size, every))
    rl = dict(max_new_tokens=160, temperature=1.0, stop_ids=stop, seed=list(range(128)),
              stop_strings=TEMPLATES["qa"]["stop"], decode=decode)
    greedy_stop = list(range(1, cfg.vocab_size, max(1, every // 16)))
    ev = dict(max_new_tokens=128, temperature=0, stop_ids=greedy_stop, stop_strings=TEMPLATES["qa"]["stop"],
              decode=decode)
    return {"RL, 16 x 8 sampled": ([p for p in groups for _ in range(8)], rl),
            "eval, 200 greedy": (make_prompts(200, cfg.vocab_size, 16, 128, seed=2), ev)}


def engine_run(model, prompts, kw, how, rows):
    """Tokens generated by prompts, either in chunks of `rows` prompts one after another ("chunked"), or in one
    call with a budget of `rows` full-length rows ("budget"), or in one batch ("all")."""
    row_len = max(map(len, prompts)) + kw["max_new_tokens"]
    seeds = kw.get("seed") or list(range(len(prompts)))
    kw = {k: v for k, v in kw.items() if k != "seed"}
    if how == "chunked":
        calls = [(slice(i, i + rows), "all") for i in range(0, len(prompts), rows)]
    else:
        calls = [(slice(None), rows * row_len if how == "budget" else "all")]
    total = 0
    for part, budget in calls:
        tokens, _ = model.generate(prompts[part], seed=seeds[part], kv_budget=budget, **kw)
        total += sum(map(len, tokens))
    return total


def engine_rows(models, args, dtype):
    """The continuous-batching table's markdown rows."""
    made = []

    class Recorded(generation.KVCache):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append((self.nbytes(), self.shapes))

    original, generation.KVCache = generation.KVCache, Recorded  # counts the cache of every call the bench makes
    try:
        return engine_table(models, args, dtype, made)
    finally:
        generation.KVCache = original


def engine_table(models, args, dtype, made):
    """engine_rows' table, made: (bytes, tiers) of each cache allocated since it was last cleared."""
    out = ["", "## Continuous batching under a KV budget", "",
           "| model | workload | mean / max new tokens | KV budget (long rows) | budget's rows (short + long) "
           "| chunked tok/s | budget tok/s | budget / chunked | peak KV chunked | peak KV budget | budget limit "
           "| no budget (all) tok/s | all / budget |", "|" + "---|" * 13]
    for label, model in models:
        for name, (prompts, kw) in engine_workloads(model.config, args).items():
            rows = len(prompts) // 4
            row_len = max(map(len, prompts)) + kw["max_new_tokens"]
            peaks, totals, fns = {}, {}, []
            for how in ("chunked", "budget", "all"):
                def fn(how=how):
                    made.clear()
                    totals[how] = engine_run(model, prompts, kw, how, rows)
                    peaks[how] = max(made)
                    return totals[how]
                fns.append(fn)
            chunked, budget, unlimited = timed(fns, args.repeats)
            mean = totals["all"] / len(prompts)
            limit = rows * row_len * generation.kv_token_bytes(model.config, dtype)
            assert peaks["budget"][0] <= limit and peaks["chunked"][0] <= limit
            tiers = " + ".join(f"{n} of {length}" for n, length in peaks["budget"][1])
            row = (f"| {label} | {name} | {mean:.0f} / {kw['max_new_tokens']} | {rows} of {row_len} | {tiers} "
                   f"| {chunked:,.0f} | {budget:,.0f} | {budget / chunked:.2f}x "
                   f"| {peaks['chunked'][0] / 2**20:.1f} MiB | {peaks['budget'][0] / 2**20:.1f} MiB "
                   f"| {limit / 2**20:.1f} MiB "
                   f"| {unlimited:,.0f} | {unlimited / budget:.2f}x |")
            out.append(row)
            print(row, flush=True)
    return out


def decode_floor_s(cfg, param_bytes, prompts, new_tokens, dtype_bytes, bandwidth):
    """Seconds if each decode step only read every weight and the visible KV cache once."""
    kv_per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * dtype_bytes
    total = 0.0
    for step in range(new_tokens):
        total += param_bytes + kv_per_token * sum(len(p) + step for p in prompts)
    return total / bandwidth


def copy_bandwidth():
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    rate, = timed([lambda: (y.copy_(x), 2 * x.numel())[1]], 10)  # a copy reads and writes every byte
    return rate


def model_config(name):
    """A preset; 'mini', a model between the miniature's and Llama-3.2-1B; or 'miniature' with its world's 716 tokens
    (the model configs/tiny.py trains)."""
    if name == "mini":
        return ModelConfig(dim=256, n_layers=6, n_heads=8, n_kv_heads=2, ffn_dim=768, vocab_size=4096,
                           rope_original_len=256, max_seq_len=4096, bos_id=4094, eos_id=4095)
    return ModelConfig.preset(name, **(dict(vocab_size=716, bos_id=700, eos_id=701) if name == "miniature" else {}))


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llama3.2-1b" if cuda else "mini,miniature", help="presets, or 'miniature'")
    ap.add_argument("--batches", default="1,32,64" if cuda else "1,32")
    ap.add_argument("--new_tokens", type=int, default=256 if cuda else 128)
    ap.add_argument("--prompt_len", default="64,256" if cuda else "16,64", help="min,max prompt length")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stop_every", type=int, default=64, help="the stops workload: 1 token in this many is a "
                    "stop id (a sampled row stops after about this many tokens); 0: no stops workload")
    ap.add_argument("--out", default=None, help="markdown file (default bench/results/generate_<device>.md)")
    ap.add_argument("--engine", default="also", choices=["also", "only", "no"], help="the continuous-batching table")
    args = ap.parse_args()
    import transformers

    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    bandwidth = copy_bandwidth() if cuda and args.engine != "only" else None
    lo, hi = map(int, args.prompt_len.split(","))
    name = torch.cuda.get_device_name() if cuda else f"CPU ({cpu_name()}, {platform.machine()}, " \
                                                    f"{torch.get_num_threads()} threads)"
    header = (f"# model.generate vs transformers generate\n\n"
              f"{name}, {date.today()}, torch {torch.__version__}, transformers {transformers.__version__}, "
              f"{str(dtype)[6:]} weights, prompts of {lo}-{hi} tokens, median of {args.repeats}. Two workloads: "
              f"*fixed*, greedy, every row {args.new_tokens} new tokens; *stops*, sampled at temperature 1 until "
              f"one of 1/{args.stop_every} of the vocabulary's ids (at most {args.new_tokens} tokens), so rows "
              f"finish at different steps, as in eval and RL. tok/s counts each row's tokens up to its stop. "
              f"Compiled: `generate(compile=True)`, timed after its first call (which compiles).\n")
    cols = ("| model | batch | workload | ours tok/s | ours compiled tok/s | transformers tok/s | ours / transformers "
            "| compiled / transformers |" + (" floor tok/s | compiled / floor |" if cuda else ""))
    rows = [header, cols, "|" + "---|" * (cols.count("|") - 1)]
    print(header + "\n" + cols)
    loaded = []
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        cfg = model_config(model_name)
        with tempfile.TemporaryDirectory() as d:
            Llama(cfg).to(dtype).save_pretrained(d)
            model = Llama.from_pretrained(d, device=device).eval()
            if args.engine != "only":  # the engine table needs no transformers model
                hf = transformers.LlamaForCausalLM.from_pretrained(d, dtype=dtype).to(device).eval()
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        label = f"{model_name} ({param_bytes / 1e6:.1f} MB)"
        loaded.append((label, model))
        if args.engine == "only":
            continue
        workloads = {"fixed": []} | ({"stops": list(range(1, cfg.vocab_size, args.stop_every))} if args.stop_every else {})
        for batch in map(int, args.batches.split(",")):
            prompts = make_prompts(batch, cfg.vocab_size, lo, hi, seed=batch)
            for workload, stops in workloads.items():
                r_ours, r_compiled, r_hf = timed([lambda: ours(model, prompts, args.new_tokens, stops),
                                                  lambda: ours(model, prompts, args.new_tokens, stops, compile=True),
                                                  lambda: theirs(hf, prompts, args.new_tokens, stops, device)],
                                                 args.repeats)
                row = (f"| {label} | {batch} | {workload} | {r_ours:,.0f} | {r_compiled:,.0f} | {r_hf:,.0f} "
                       f"| {r_ours / r_hf:.2f}x | {r_compiled / r_hf:.2f}x |")
                if cuda:
                    floor = batch * args.new_tokens / decode_floor_s(cfg, param_bytes, prompts, args.new_tokens, 2,
                                                                     bandwidth)
                    row += f" {floor:,.0f} | {r_compiled / floor:.2f} |" if not stops else " | |"
                rows.append(row)
                print(row, flush=True)
    if cuda:
        rows.append(f"\nFloor: every weight and the visible KV cache read once per step at the measured copy "
                    f"bandwidth ({bandwidth / 1e12:.2f} TB/s); prefill is included in our time, not in the floor.")
    rows += engine_rows(loaded, args, dtype) if args.engine != "no" else []
    out = args.out or os.path.join(ROOT, "bench", "results", f"generate_{device}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
