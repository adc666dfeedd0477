"""
Decoding speed of model.generate, eager and with its decode step compiled, against transformers' generate
on the same weights, with ragged prompts, at batch 1 and 32 (and 64 on a GPU), written as a markdown table
to bench/results/. Two workloads: every row greedy for a fixed number of tokens, and rows sampled until a
stop id, which finish at different steps (transformers computes a finished row until the batch is done;
we drop it).

    python bench/generate.py     # CPU: the "mini" shape and the miniature's model; GPU: Llama-3.2-1B shapes, bf16
    python bench/generate.py --models=miniature --new_tokens=16 --repeats=1   # a quick smoke run

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
from model import Llama, ModelConfig  # noqa: E402


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
    args = ap.parse_args()
    import transformers

    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    bandwidth = copy_bandwidth() if cuda else None
    lo, hi = map(int, args.prompt_len.split(","))
    name = torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
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
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        cfg = model_config(model_name)
        with tempfile.TemporaryDirectory() as d:
            Llama(cfg).to(dtype).save_pretrained(d)
            model = Llama.from_pretrained(d, device=device).eval()
            hf = transformers.LlamaForCausalLM.from_pretrained(d, dtype=dtype).to(device).eval()
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        label = f"{model_name} ({param_bytes / 1e6:.1f} MB)"
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
    out = args.out or os.path.join(ROOT, "bench", "results", f"generate_{device}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
