"""
Training throughput: tokens/s and MFU of train.py's step (forward, backward, AdamW) on one device, for
the Triton attention and RMSNorm kernels against the plain-torch (SDPA) path, with torch.compile off and
on. Packed rows (8 documents each) of random tokens, so it measures the model, not the data.

    python bench/train.py                      # GPU: Llama-3.2-1B at seq 4096, bf16; CPU: tiny.py's model
    python bench/train.py --steps=3 --variants=torch   # a quick smoke run
"""
import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels  # noqa: E402
import train  # noqa: E402
from common import parallelize  # noqa: E402
from configurator import configure  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402


def batch(rows, seq_len, vocab, docs, device):
    x = torch.randint(0, vocab, (rows, seq_len + 1), device=device)
    cuts = torch.sort(torch.randperm(seq_len - 1, device=device)[:docs - 1] + 1).values
    doc_ids = torch.zeros(seq_len, dtype=torch.long, device=device)
    doc_ids[cuts] = 1
    return x[:, :-1], x[:, 1:], doc_ids.cumsum(0).expand(rows, seq_len)


def measure(mcfg, cfg, device, use_kernels, steps):
    """Median seconds of a training step (after two warm-up steps) of a fresh model."""
    kernels.ENABLED = use_kernels
    torch.manual_seed(0)
    model = parallelize(Llama(mcfg).to(device), cfg, 1, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    x, y, doc_ids = batch(cfg.micro_batch, cfg.seq_len, mcfg.vocab_size, 8, device)
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            loss = model(x, y, doc_ids=doc_ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return statistics.median(times), memory


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--variants", default="triton,torch,triton+compile,torch+compile" if cuda else "torch,torch+compile")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:  # the 1B model at seq 4096, one sequence per forward, activation checkpointing off
        mcfg = ModelConfig.preset("llama3.2-1b")
        cfg = train.Config(seq_len=4096, micro_batch=2)
        name = f"{torch.cuda.get_device_name()}, bf16 autocast"
    else:  # tiny.py's model and batch
        cfg = configure(train.Config(), [os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py")])
        mcfg = ModelConfig.preset(cfg.model, **cfg.model_args)
        cfg.micro_batch = cfg.batch_tokens // cfg.seq_len
        name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), fp32"
    matmul, attn = train.flops_per_token(mcfg)
    peak = train.peak_flops(torch.cuda.get_device_name()) if cuda else 0.0
    tokens = cfg.micro_batch * cfg.seq_len
    with torch.device("meta"):
        params = sum(p.numel() for p in Llama(mcfg).parameters())
    lines = [f"# Training step throughput\n",
             f"{name}, {date.today()}, torch {torch.__version__}, triton {__import__('triton').__version__}; "
             f"model {params / 1e6:,.0f}M parameters, {cfg.micro_batch} x {cfg.seq_len} tokens a step "
             f"(8 packed documents a row), AdamW; median of {args.steps} steps after 2 warm-up.\n",
             "| attention + norm | compile | tokens/s | MFU | peak memory (GiB) |", "|---|---|---|---|---|"]
    print("\n".join(lines))
    for variant in args.variants.split(","):
        use_kernels, compiled = variant.startswith("triton"), variant.endswith("+compile")
        cfg.compile = compiled
        seconds, memory = measure(mcfg, cfg, device, use_kernels, args.steps)
        tok_s = tokens / seconds
        mfu = f"{tok_s * (matmul + attn * (cfg.seq_len + 1) / 2) / peak:.1%}" if peak else "n/a"  # causal-T
        dtype = torch.bfloat16 if cuda else torch.float32
        q = torch.zeros(cfg.micro_batch, cfg.seq_len, mcfg.n_heads, mcfg.head_dim, device=device, dtype=dtype)
        kv = q[:, :, :mcfg.n_kv_heads]
        docs = batch(cfg.micro_batch, cfg.seq_len, mcfg.vocab_size, 8, device)[2]
        backend = kernels.sdpa_backend(q, kv, kv, True, docs)  # what the torch path ran: flash, efficient or math
        row = (f"| {'Triton kernels' if use_kernels else f'torch (SDPA, {backend})'} | {'on' if compiled else 'off'} | "
               f"{tok_s:,.0f} | {mfu} | {memory:.1f} |")
        lines.append(row)
        print(row, flush=True)
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"train_{device.type}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
