"""
GRPO step throughput: rollout tokens/s (model.generate on the full rollout copy, sampling at temperature 1)
and update tokens/s (old log-probs, then the clipped surrogate's forward and backward, and AdamW), and the
share of the step spent generating. Random weights and prompt tokens, every response its full length, so it
measures rl.py's two halves, not what a model has learned to write.

    python bench/rl.py        # GPU: Llama-3.2-1B, 128 prompts x 16 samples x 1024 tokens; CPU: rl_tiny's shapes

On a GPU it also gives the memory-bandwidth floor of decoding (every weight and the visible KV cache read once
a step), as bench/generate.py does.
"""
import argparse
import os
import platform
import sys
import time
from datetime import date

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # first: the repo's rl.py, not this
import generation  # noqa: E402
import grpo  # noqa: E402
import rl  # noqa: E402
from generate import copy_bandwidth, cpu_name, decode_floor_s  # noqa: E402  (bench/generate.py)
from model import Llama, ModelConfig  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(model, policy, optimizer, prompts, args, device):
    """One GRPO step's rollout and update (grpo.update: old log-probs, the clipped surrogate's forward and backward
    on each micro-batch, AdamW), timed: (rollout seconds, generated tokens, update seconds, tokens)."""
    sync(device)
    t0 = time.perf_counter()
    seeds = [rl.sample_seed(0, 0, j, 0) for j in range(len(prompts))]
    responses, logprobs = policy.generate(prompts, args.new_tokens, temperature=1.0, seed=seeds, compile=args.compile,
                                          kv_budget=args.kv_budget or None, max_batch=args.gen_batch,
                                          tempered_logprobs=True)
    sync(device)
    t_rollout = time.perf_counter() - t0
    # two PPO mini-batches, as configs/rl_math.py: the second one off-policy, so the old log-probs are computed
    halves = args.prompts % 2 == 0  # two mini-batches when the prompts split evenly, else one
    cfg = rl.Config(prompts_per_step=args.prompts, samples_per_prompt=args.samples,
                    mini_batch_prompts=args.prompts // 2 if halves else args.prompts, micro_batch=args.micro_batch,
                    temperature=1.0)
    batch = {"prompt_tokens": prompts, "responses": responses, "rollout_logprobs": logprobs,
             "truncated": [False] * len(prompts), "keep": torch.ones(len(prompts), dtype=torch.bool),
             "advantages": grpo.group_advantages(torch.randn(len(prompts)), args.samples)}
    t1 = time.perf_counter()
    out = grpo.update(model, None, optimizer, batch, cfg, device, 1, args.new_tokens)
    sync(device)
    return t_rollout, sum(map(len, responses)), time.perf_counter() - t1, out["tokens"]


def rollout_memory(params, gpu_bytes, ranks):
    """(sharded state, free memory at rollout, generate's default KV budget) of a rank, bytes: the GPU less this
    rank's FSDP shard of fp32 weights, gradients and AdamW's two moments (16 bytes a parameter / ranks), the bf16
    rollout copy and 2 GiB for the CUDA context; the budget is generation.GPU_SHARE of what is left."""
    state = 16 * params / ranks
    free = gpu_bytes - state - 2 * params - 2 * 2**30
    return state, free, generation.GPU_SHARE * free


def rl_math_kv(gpu_bytes=80 * 2**30, ranks=8, prompt_len=512, rows=256):
    """Markdown rows: the KV cache configs/rl_math.py's rollout needs on each rank at full length, and what the
    default kv_budget gives on a GPU of gpu_bytes, for the paper's three models. Arithmetic from the shapes (no
    GPU here): bf16 K and V for every layer; free memory at rollout = the GPU less the bf16 rollout copy, this
    rank's FSDP shard of fp32 weights, gradients and AdamW's two moments (16 bytes a parameter / ranks), and 2
    GiB for the CUDA context; the default budget is generation.GPU_SHARE of that."""
    out = ["", f"## KV cache at configs/rl_math.py's settings ({rows} rows a rank: 16 prompts x 16 samples, prompts "
           f"of {prompt_len} tokens; {gpu_bytes / 2**30:.0f} GiB GPUs, {ranks} ranks; arithmetic)", "",
           "| model | KV per token | full length, 4096 new | full length, 8192 new | default budget | rows at once, "
           "short and long (4096 / 8192 new) |", "|---|---|---|---|---|---|"]
    for preset in ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b"):
        cfg = ModelConfig.preset(preset)
        with torch.device("meta"):  # shapes only, no memory
            params = sum(p.numel() for p in Llama(cfg).parameters())
        per_token = generation.kv_token_bytes(cfg, torch.bfloat16)
        _, _, budget = rollout_memory(params, gpu_bytes, ranks)
        # the rows generate lays out in that budget, short and long ones (generation.layout)
        fits = [sum(n for n, _ in generation.layout(rows, prompt_len, new, int(budget // per_token)))
                for new in (4096, 8192)]
        full = [rows * (prompt_len + new) * per_token / 2**30 for new in (4096, 8192)]
        out.append(f"| {preset} ({params / 1e9:.1f}B) | {per_token / 2**10:.0f} KiB | {full[0]:.0f} GiB | "
                   f"{full[1]:.0f} GiB | {budget / 2**30:.0f} GiB | {fits[0]} / {fits[1]} |")
    return out


def rl_math_memory(gpu_bytes=80 * 2**30, ranks=8, prompt_len=512, new=4096, micro=8):
    """Markdown rows: each rank's memory in the three phases of a configs/rl_math.py step, for the paper's three
    models, now and as rl.py held it before; an ESTIMATE, arithmetic from the shapes (no GPU here). N parameters, W
    ranks. Always: FSDP2's fp32 shards of the weights, gradients and AdamW's two moments (16 N / W) and 2 GiB for
    the CUDA context. Rollout: the bf16 rollout copy (2 N) and the KV cache (generate's default budget:
    GPU_SHARE of what is free). Update (the rollout copy released, rl.free_weights): a block's bf16 weights
    gathered twice (FSDP prefetches the next), a block's fp32 gradient before its reduce-scatter (after every
    micro-batch), the checkpointed activations (each block's bf16 input, micro x (prompt + new) tokens), one
    block's insides recomputed with their gradients (about (8 dim + 4 ffn_dim) x 2 bytes a token, twice), and
    one chunk of fp32 logits (2^26 of them, 3 times). Sync: the rollout copy allocated again and one bf16 tensor
    gathered at a time. Before: the rollout copy kept through the update, full fp32 gradients accumulated on
    every rank (gradient sync on only the last micro-batch: 4 N), and the whole fp32 model gathered to sync (4 N)."""
    gib = 2**30
    out = ["", f"## Memory a rank, configs/rl_math.py's step (estimate: arithmetic from the shapes; {ranks} ranks of "
           f"{gpu_bytes / gib:.0f} GiB, micro-batches of {micro} x ({prompt_len} + {new}) tokens, activation "
           "checkpointing)", "",
           "| model | sharded state | rollout (copy + KV) | update | sync | update before | sync before | fits now / "
           "before |", "|---|---|---|---|---|---|---|---|"]
    for preset in ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b"):
        cfg = ModelConfig.preset(preset)
        with torch.device("meta"):  # shapes only, no memory
            model = Llama(cfg)
        n = sum(p.numel() for p in model.parameters())
        block = sum(p.numel() for p in model.layers[0].parameters())
        largest = max(p.numel() for p in model.parameters())
        tokens = micro * (prompt_len + new)
        context = 2 * gib
        state, _, kv = rollout_memory(n, gpu_bytes, ranks)
        activations = (cfg.n_layers * tokens * cfg.dim * 2 + 2 * tokens * (8 * cfg.dim + 4 * cfg.ffn_dim) * 2
                       + 3 * 2**26 * 4)
        rollout = state + context + 2 * n + kv
        update = state + context + 2 * 2 * block + 4 * block + activations
        sync_now = state + context + 2 * n + 2 * largest
        update_before = update + 2 * n + 4 * n
        sync_before = state + context + 2 * n + 4 * n
        fits = lambda *phases: "yes" if max(phases) <= gpu_bytes else "no"  # noqa: E731
        out.append(f"| {preset} ({n / 1e9:.1f}B) | {state / gib:.1f} GiB | {rollout / gib:.1f} GiB "
                   f"({2 * n / gib:.1f} + {kv / gib:.1f}) | {update / gib:.1f} GiB | {sync_now / gib:.1f} GiB "
                   f"| {update_before / gib:.1f} GiB | {sync_before / gib:.1f} GiB "
                   f"| {fits(rollout, update, sync_now)} / {fits(rollout, update_before, sync_before)} |")
    return out


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama3.2-1b" if cuda else "miniature")
    ap.add_argument("--prompts", type=int, default=128 if cuda else 16)
    ap.add_argument("--samples", type=int, default=16 if cuda else 8)
    ap.add_argument("--prompt_len", type=int, default=256 if cuda else 30)
    ap.add_argument("--new_tokens", type=int, default=1024 if cuda else 80)
    ap.add_argument("--gen_batch", type=int, default=512 if cuda else 128)
    ap.add_argument("--kv_budget", default="", help="generate's kv_budget ('': its default)")
    ap.add_argument("--micro_batch", type=int, default=8 if cuda else 64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--compile", type=int, default=int(cuda), help="1: generate(compile=True)")
    ap.add_argument("--out", default=None, help="markdown file (default bench/results/rl_<device>.md)")
    args = ap.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    mcfg = ModelConfig.preset(args.preset)  # the CPU default is rl_tiny's model (configs/tiny.py's)
    model = Llama(mcfg).to(device)
    policy = Llama(mcfg).to(device, torch.bfloat16 if cuda else torch.float32).eval()
    policy.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=cuda)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, mcfg.vocab_size, (args.prompt_len,), generator=g).tolist()
               for _ in range(args.prompts) for _ in range(args.samples)]
    for _ in range(args.steps):  # the last one is reported; the first warms up
        t_rollout, gen_tokens, t_update, upd_tokens = step(model, policy, optimizer, prompts, args, device)
    params = sum(p.numel() for p in model.parameters())
    name = f"{torch.cuda.get_device_name()}, bf16" if cuda else \
        f"CPU ({cpu_name()}, {platform.machine()}, {torch.get_num_threads()} threads), fp32"
    lines = ["# GRPO step throughput (bench/rl.py)\n",
             f"{name}, {date.today()}, torch {torch.__version__}; model {args.preset} ({params / 1e6:,.1f}M parameters, "
             f"random weights); {args.prompts} prompts x {args.samples} samples, prompts of {args.prompt_len} tokens, "
             f"responses of {args.new_tokens} tokens, at most {args.gen_batch} decoding at once (kv_budget "
             f"{args.kv_budget or 'default'}), update micro-batches of "
             f"{args.micro_batch}; the last of {args.steps} steps; decode step compiled: {bool(args.compile)}.\n",
             "| rollout tok/s | update tok/s | rollout s | update s | share generating |" + (" decode floor s | floor / rollout |" if cuda else ""),
             "|---|---|---|---|---|" + ("---|---|" if cuda else "")]
    row = (f"| {gen_tokens / t_rollout:,.0f} | {upd_tokens / t_update:,.0f} | {t_rollout:.1f} | {t_update:.1f} | "
           f"{t_rollout / (t_rollout + t_update):.0%} |")
    if cuda:
        n = args.gen_batch
        floor = decode_floor_s(mcfg, 2 * params, [[0] * args.prompt_len] * n, args.new_tokens, 2, copy_bandwidth())
        floor *= len(prompts) / n
        row += f" {floor:.1f} | {floor / t_rollout:.2f} |"
    lines.append(row)
    lines += rl_math_kv() + rl_math_memory()
    print("\n".join(lines))
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"rl_{device.type}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
