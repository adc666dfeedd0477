"""
Decoding speed of model.generate, eager and with its decode step compiled, against transformers' generate
on the same weights, greedy, with ragged prompts, at batch 1 and 32 (and 64 on a GPU), written as a
markdown table to bench/results/.

    python bench/generate.py     # CPU: the "mini" preset and the miniature's model; GPU: Llama-3.2-1B shapes, bf16
    python bench/generate.py --models=miniature --new_tokens=16 --repeats=1   # a quick smoke run

On a GPU it also reports the memory-bandwidth floor of each decode step (every weight and the batch's
KV cache read once) against the measured copy bandwidth of the card.
"""
import argparse
import os
import platform
import runpy
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
    """Median seconds of each function, run in turns so that a change in machine load hits all alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def make_prompts(batch, vocab, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi + 1, (batch,), generator=g).tolist()
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]


def ours(model, prompts, new_tokens, compile=False):
    tokens, _ = model.generate(prompts, max_new_tokens=new_tokens, temperature=0, compile=compile)
    assert all(len(t) == new_tokens for t in tokens)


def theirs(hf, prompts, new_tokens, device):
    # left-padded, as transformers expects for batched decoder-only generation
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                      do_sample=False, pad_token_id=0)
    assert out.shape[1] == width + new_tokens


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
    t, = timed([lambda: y.copy_(x)], 10)
    return 2 * x.numel() / t  # a copy reads and writes every byte


def model_config(name):
    """A preset, or 'miniature': the model the CPU miniature trains (configs/tiny.py, its world's 716 tokens)."""
    if name != "miniature":
        return ModelConfig.preset(name)
    tiny = runpy.run_path(os.path.join(ROOT, "configs", "tiny.py"))
    return ModelConfig.preset(tiny["model"], **tiny["model_args"], vocab_size=716)


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llama3.2-1b" if cuda else "mini,miniature", help="presets, or 'miniature'")
    ap.add_argument("--batches", default="1,32,64" if cuda else "1,32")
    ap.add_argument("--new_tokens", type=int, default=256 if cuda else 128)
    ap.add_argument("--prompt_len", default="64,256" if cuda else "16,64", help="min,max prompt length")
    ap.add_argument("--repeats", type=int, default=3)
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
              f"{str(dtype)[6:]} weights, greedy, prompts of {lo}-{hi} tokens, {args.new_tokens} new tokens, "
              f"median of {args.repeats}. Compiled: `generate(compile=True)`, timed after its first call "
              f"(which compiles).\n")
    cols = ("| model | batch | ours tok/s | ours compiled tok/s | transformers tok/s | ours / transformers "
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
        for batch in map(int, args.batches.split(",")):
            prompts = make_prompts(batch, cfg.vocab_size, lo, hi, seed=batch)
            n = batch * args.new_tokens
            t_ours, t_compiled, t_hf = timed([lambda: ours(model, prompts, args.new_tokens),
                                              lambda: ours(model, prompts, args.new_tokens, compile=True),
                                              lambda: theirs(hf, prompts, args.new_tokens, device)], args.repeats)
            row = (f"| {label} | {batch} | {n / t_ours:,.0f} | {n / t_compiled:,.0f} | {n / t_hf:,.0f} "
                   f"| {t_hf / t_ours:.2f}x | {t_hf / t_compiled:.2f}x |")
            if cuda:
                floor = decode_floor_s(cfg, param_bytes, prompts, args.new_tokens, 2, bandwidth)
                row += f" {n / floor:,.0f} | {floor / t_compiled:.2f} |"
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
