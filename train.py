"""
Mid-training, Stable-then-Decay: train a Llama-3 on a weighted mixture of prepared corpora.

    python train.py configs/tiny.py                                 # one process: CPU or one GPU
    torchrun --nproc_per_node=8 train.py configs/stable.py          # FSDP2 over 8 GPUs
    torchrun --nproc_per_node=8 train.py configs/decay_hybrid.py    # a decay branch from out/stable

The learning rate warms up, stays constant (the stable stage), then decays to a floor; each length is
a number of steps or a fraction of max_steps. A stable run has no decay; a decay branch starts from the
stable run (init_from) and decays over its whole length. Re-running a command resumes from the newest
complete checkpoint in out_dir, which holds config.json, metrics.jsonl (a line per step),
ckpt/step_NNNNNN/ (model, optimizer, loader, RNG) and, at the end, hf/ for eval.py, rl.py, transformers
and vLLM (common.py's run scaffold, which rl.py shares). With val_mixture, the loss on held-out windows is
measured every eval_every steps and logged beside the training loss as val_loss.
"""
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from common import (all_sum, autocast, clip_gradients, latest_checkpoint, launch, load_checkpoint, local_or_hub,
                    parallelize, start_run)
from data import MixtureLoader
from model import PRESETS, Llama, ModelConfig, config_from_hf
from tokenizer import Tokenizer


@dataclass
class Config:
    # model: a preset trained from scratch, or init_from a checkpoint
    model: str = "llama3.2-1b"         # a ModelConfig preset, used when init_from is ""
    model_args: dict = field(default_factory=dict)  # overrides of the preset, e.g. {"vocab_size": 4096}
    init_from: str = ""                # a run folder (its newest checkpoint), one checkpoint (run/ckpt/step_N),
                                       # an HF folder or a hub id
    init_optimizer: bool = False       # from a run folder: continue with its optimizer state too
    tokenizer: str = ""                # a tokenizer folder, hub id or "llama3" (Meta's, offline); "" = init_from's
    # data
    mixture: dict = field(default_factory=dict)  # {name: (prepared folder, weight)}
    val_mixture: dict = field(default_factory=dict)  # held-out sources, the same layout: val_loss every eval_every
    seq_len: int = 4096
    batch_tokens: int = 4 * 2**20      # the global batch of one optimizer step, in tokens
    micro_batch: int = 4               # sequences per forward pass on each rank
    # optimisation
    lr: float = 3e-5
    min_lr: float = 3e-6               # the floor the decay ends at
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # schedule: a length <= 1 is a fraction of max_steps, a larger one a number of steps
    max_steps: int = 1000
    warmup: float = 0.0
    decay: float = 0.0                 # 0: a stable run, constant after warmup
    decay_shape: str = "cosine"        # linear, cosine or 1-sqrt
    # system
    compile: bool = False              # torch.compile each transformer block
    activation_checkpointing: bool = False
    # checkpoints and logs
    out_dir: str = "out/run"
    ckpt_every: int = 1000
    keep_checkpoints: int = 2          # older complete checkpoints are deleted
    export_dtype: str = "bfloat16"     # of the hf/ export
    max_bad_steps: int = 3             # non-finite steps in a row before the run stops
    eval_every: int = 0                # steps between validation losses on val_mixture (and at the last step)
    val_batches: int = 1               # global batches of val_mixture in each validation
    dist_timeout_min: float = 120      # how long a rank waits for the others in one collective before failing
    plan: bool = False                 # --plan: print the per-GPU memory and throughput plan (WORLD_SIZE GPUs, else
                                       # 8), then exit; no GPU, no download (meta tensors)
    seed: int = 0
    wandb_project: str = ""            # also log to wandb (config, metrics); metrics.jsonl either way


# dense bf16 peak FLOP/s by device name, the more specific names first: "NVIDIA H100 80GB HBM3" is the SXM part
PEAK_FLOPS = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("H800", 989e12),
              ("GH200", 989e12), ("A100", 312e12), ("A800", 312e12), ("B200", 2250e12), ("L40S", 362e12)]

# -----------------------------------------------------------------------------
# schedule


def steps_of(length, max_steps):
    if length > 1:
        return int(length)
    return max(1, round(length * max_steps)) if length > 0 else 0  # a short run keeps every phase


def lr_at(step, cfg):
    """The learning rate of update `step` (0-based): a function of the step alone, so a resumed run
    recomputes it exactly."""
    warmup, decay = steps_of(cfg.warmup, cfg.max_steps), steps_of(cfg.decay, cfg.max_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    decay_start = cfg.max_steps - decay
    if step < decay_start:
        return cfg.lr
    progress = (step - decay_start + 1) / decay  # 1 at the last step: it ends exactly at the floor
    shape = {"linear": 1 - progress, "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
             "1-sqrt": 1 - math.sqrt(progress)}[cfg.decay_shape]
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * shape

# -----------------------------------------------------------------------------
# model and tokenizer


def resolve_init(cfg):
    """(model config, HF folder or None, run checkpoint or None) of what the run starts from."""
    if not cfg.init_from:
        return ModelConfig.preset(cfg.model, **cfg.model_args), None, None
    if os.path.exists(os.path.join(cfg.init_from, "meta.json")):  # one checkpoint of a run: ckpt/step_N
        with open(os.path.join(cfg.init_from, "meta.json")) as f:
            return ModelConfig(**json.load(f)["model_config"]), None, cfg.init_from
    if os.path.isdir(os.path.join(cfg.init_from, "ckpt")):
        ckpt = latest_checkpoint(cfg.init_from)
        if ckpt is None:
            raise FileNotFoundError(f"init_from={cfg.init_from} has no complete checkpoint yet; finish that run first")
        with open(os.path.join(ckpt, "meta.json")) as f:
            return ModelConfig(**json.load(f)["model_config"]), None, ckpt
    folder = local_or_hub(cfg.init_from, "init_from", "A run folder, one of its checkpoints or an HF folder: run "
                          "what writes it first (a decay branch's stable run: python train.py configs/stable.py)",
                          allow_patterns=["*.json", "*.safetensors", "original/tokenizer.model"])
    with open(os.path.join(folder, "config.json")) as f:
        return config_from_hf(json.load(f), os.path.join(folder, "config.json")), folder, None


def load_tokenizer(cfg, init_ckpt):
    source = cfg.tokenizer
    if not source and init_ckpt:  # a decay branch uses its stable run's tokenizer
        with open(os.path.join(init_ckpt, "meta.json")) as f:
            source = json.load(f)["config"]["tokenizer"]
    source = source or cfg.init_from
    if not source:
        raise ValueError("set tokenizer= (a folder written by data.py, or a hub id like meta-llama/Llama-3.2-1B)")
    return Tokenizer.from_pretrained(source)


def peak_flops(device_name):
    """The device's dense bf16 peak (PEAK_FLOPS), or 0 for a device not listed: MFU is then not reported."""
    return next((flops for name, flops in PEAK_FLOPS if name in device_name), 0.0)


def attention_flops(doc_ids, mcfg):
    """Training FLOPs of attention as computed with packed documents: each document of length n attends causally
    within itself, n (n + 1) / 2 query-key pairs, each 4 head_dim multiply-adds forward (QK and PV) and twice that
    backward: 12 x layers x heads x head_dim a pair. (The causal-T count instead prices every token at the whole
    window: T (T + 1) / 2 pairs a row.)"""
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    lengths = torch.diff(torch.cat([starts.flatten().nonzero()[:, 0], torch.tensor([doc_ids.numel()])]))
    pairs = (lengths * (lengths + 1) // 2).sum().item()
    return 12 * mcfg.n_layers * mcfg.n_heads * mcfg.head_dim * pairs


def flops_per_token(mcfg):
    """Training FLOPs per token: 6 per matmul weight (forward and backward), and causal attention's per query-key
    pair (a token at the causal-T count has (T + 1) / 2 pairs on average)."""
    matmul = mcfg.n_layers * (2 * mcfg.dim * (mcfg.n_heads + mcfg.n_kv_heads) * mcfg.head_dim
                              + 3 * mcfg.dim * mcfg.ffn_dim) + mcfg.dim * mcfg.vocab_size
    return 6 * matmul, 12 * mcfg.n_layers * mcfg.n_heads * mcfg.head_dim  # the second, times (T + 1) / 2

# -----------------------------------------------------------------------------
# the run


def check_geometry(cfg, world_size):
    """Gradient-accumulation steps per optimizer step: the global batch is fixed; ranks and micro-batches only
    divide it, so a run's results do not depend on the number of GPUs."""
    seqs = cfg.batch_tokens // cfg.seq_len
    if cfg.batch_tokens % cfg.seq_len or seqs % (world_size * cfg.micro_batch):
        raise ValueError(f"batch_tokens={cfg.batch_tokens} must be a multiple of seq_len={cfg.seq_len} "
                         f"times world_size={world_size} times micro_batch={cfg.micro_batch}")
    if not cfg.mixture:
        raise ValueError("set mixture = {name: (prepared folder, weight), ...} (see configs/)")
    if cfg.val_mixture and not cfg.eval_every:
        raise ValueError("val_mixture is set but eval_every=0: set eval_every to the steps between validations")
    return seqs // (world_size * cfg.micro_batch)


def mixture_loader(mixture, cfg, run, tokenizer):
    return MixtureLoader({k: tuple(v) for k, v in mixture.items()}, cfg.seq_len, cfg.batch_tokens // cfg.seq_len,
                         rank=run.rank, world_size=run.world_size, seed=cfg.seed, tokenizer=tokenizer)


@torch.no_grad()
def validation_loss(model, loader, start, cfg, run, amp):
    """The mean token loss over val_batches global batches of val_mixture's windows: the loader rewinds to
    `start` each time, so every validation sees the same windows and the curve compares like with like. Held out
    only if val_mixture's sources are not also in mixture (the same folder and name would give the same windows)."""
    loader.load_state_dict(start)
    loss_sum, n = torch.zeros((), device=run.device, dtype=torch.float64), 0
    for _ in range(cfg.val_batches):
        x, y, doc_ids = next(loader)
        for i in range(0, len(x), cfg.micro_batch):
            xb, yb, db = (t[i:i + cfg.micro_batch].to(run.device) for t in (x, y, doc_ids))
            with amp:
                loss = model(xb, yb, doc_ids=db)
            tokens = (yb != -100).sum()
            loss_sum += loss.double() * tokens
            n += tokens.item()
    return all_sum(loss_sum.item(), run.device) / all_sum(n, run.device)


# -----------------------------------------------------------------------------
# the plan: python train.py CONFIG --plan


HUB_PRESETS = {"meta-llama/Llama-3.2-1B": "llama3.2-1b", "meta-llama/Llama-3.2-3B": "llama3.2-3b",
               "meta-llama/Llama-3.1-8B": "llama3.1-8b"}  # so a plan needs no download


def plan_model(cfg):
    """The model config a run would build: the preset, a local run or HF folder's, or a known hub base's."""
    base = cfg.init_from.split("@")[0]
    if base in HUB_PRESETS and not os.path.exists(base):
        return ModelConfig.preset(HUB_PRESETS[base])
    if cfg.init_from and not os.path.exists(cfg.init_from):
        raise FileNotFoundError(f"--plan: init_from={cfg.init_from} is not here yet; plan the run it starts from, or "
                                f"add --init_from= --model=PRESET (one of {sorted(PRESETS)})")
    return resolve_init(cfg)[0]


def plan(cfg, world_size, gpu_gib=80.0, gpu="H100 SXM", mfu=0.4):
    """Per-GPU memory and throughput of cfg on world_size GPUs under FSDP2 (fp32 shards, bf16 compute), as text.
    Each line's arithmetic is printed beside it (bytes: fp32 4, bf16 2)."""
    m = plan_model(cfg)
    with torch.device("meta"):
        model = Llama(m)
    P = sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for p in model.layers[0].parameters())
    root = P - m.n_layers * block  # embedding (tied lm_head once), final norm; lm_head when untied
    kv, tokens = m.n_kv_heads * m.head_dim, cfg.micro_batch * cfg.seq_len
    accum = cfg.batch_tokens // (cfg.seq_len * cfg.micro_batch * world_size)
    # what a Block keeps for backward per token (model.py): bf16 inputs of its norms, q/k/v/o projections and
    # MLP (2 x (6 dim + 2 kv + 4 ffn)), and RoPE's fp32 halves of q and k (4 x (dim + kv))
    per_layer = 2 * (6 * m.dim + 2 * kv + 4 * m.ffn_dim) + 4 * (m.dim + kv)
    G = 2**30
    rows = [("parameters, fp32 shards", 4 * P / world_size, f"4 B x {P / 1e9:.2f}B / {world_size}"),
            ("gradients, fp32 shards", 4 * P / world_size, f"4 B x {P / 1e9:.2f}B / {world_size}"),
            ("AdamW moments, fp32 shards", 8 * P / world_size, f"8 B x {P / 1e9:.2f}B / {world_size}"),
            ("gathered bf16: root + 2 blocks", 2 * root + 4 * block, f"2 B x {root / 1e6:.0f}M + 2 x 2 B x "
             f"{block / 1e6:.0f}M"),
            ("block gradients before reduce-scatter", 6 * block, f"(2 B bf16 + 4 B fp32) x {block / 1e6:.0f}M"),
            ("lm_head gradient, fp32 sum (chunked loss)", 4 * m.vocab_size * m.dim, f"4 B x {m.vocab_size} x {m.dim}"),
            ("loss: one chunk of fp32 logits (x3 in backward)", 3 * 4 * 2**26, "3 x 4 B x 2^26")]
    full = per_layer * tokens * m.n_layers
    checkpointed = 2 * m.dim * tokens * m.n_layers + per_layer * tokens
    fixed = sum(r[1] for r in rows) + 2 * m.dim * tokens  # + the final hidden states the loss keeps
    lines = [f"plan: {cfg.out_dir}, {world_size} GPUs (WORLD_SIZE), {gpu_gib:.0f} GiB each; model {P / 1e9:.2f}B "
             f"({m.n_layers} layers, dim {m.dim}, ffn {m.ffn_dim}, vocab {m.vocab_size})",
             f"tokens: {cfg.batch_tokens:,} a step = {world_size} GPUs x {accum} micro-batches x {cfg.micro_batch} x "
             f"{cfg.seq_len}", "", "per GPU:"]
    lines += [f"  {name:<48} {b / G:7.2f} GiB   {how}" for name, b, how in rows]
    lines += [f"  {'activations, no checkpointing':<48} {full / G:7.2f} GiB   {per_layer:,} B x {tokens:,} tokens x "
              f"{m.n_layers} layers",
              f"  {'activations, activation checkpointing':<48} {checkpointed / G:7.2f} GiB   2 B x {m.dim} x "
              f"{tokens:,} x {m.n_layers} (block inputs) + one layer's {per_layer * tokens / G:.2f} GiB"]
    total = {False: fixed + full, True: fixed + checkpointed}
    # a quarter left for what the count leaves out: backward's transient gradients of the widest activations
    # (ffn-wide), the allocator's fragmentation, NCCL's buffers
    need = total[False] > 0.75 * gpu_gib * G
    lines += [f"  {'total':<48} {total[False] / G:7.2f} GiB without, {total[True] / G:.2f} GiB with checkpointing: "
              f"activation_checkpointing={'True (needed)' if need else 'False (not needed)'}; "
              f"this config has {cfg.activation_checkpointing}"]
    matmul, attn = flops_per_token(m)
    per_token = matmul + attn * (cfg.seq_len + 1) / 2  # causal-T; packed documents compute less attention
    step = per_token * cfg.batch_tokens * (4 / 3 if cfg.activation_checkpointing else 1)  # recompute: +1 forward
    seconds = step / (world_size * peak_flops(gpu.replace(" SXM", "")) * mfu)
    lines += ["", f"FLOPs: {matmul / 1e9:.2f} G/token matmuls (6 x weights) + {attn * (cfg.seq_len + 1) / 2 / 1e9:.2f} "
              f"G/token attention (12 x layers x heads x head_dim x (T + 1) / 2)"
              f"{', x 4/3 recomputed' if cfg.activation_checkpointing else ''}: {step / 1e15:,.1f} PFLOP a step",
              f"at {mfu:.0%} of the peak on {gpu} ({peak_flops(gpu.replace(' SXM', '')) / 1e12:.0f} TFLOP/s bf16): "
              f"{seconds:.1f} s a step, {cfg.batch_tokens / seconds / world_size:,.0f} tokens/s a GPU, "
              f"{cfg.max_steps * seconds / 3600:,.1f} h for {cfg.max_steps:,} steps"]
    return "\n".join(lines)


def main(cfg):
    if cfg.plan:
        print(plan(cfg, int(os.environ.get("WORLD_SIZE", 8))))
        return
    run = start_run(cfg, check=check_geometry)
    if run.done:
        return
    accum, device = check_geometry(cfg, run.world_size), run.device
    mcfg, hf_folder, init_ckpt = resolve_init(cfg)
    tokenizer = load_tokenizer(cfg, init_ckpt)
    tokenizer.check_hf()  # what the export at the end needs
    if not cfg.init_from:  # a model from scratch gets exactly its tokenizer's vocabulary: no id it never saw
        mcfg = ModelConfig(**{**asdict(mcfg), "vocab_size": tokenizer.n_vocab, "bos_id": tokenizer.bos_id,
                              "eos_id": tokenizer.eos_id})
    if tokenizer.n_vocab > mcfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab} tokens but the model's vocab_size is "
                         f"{mcfg.vocab_size}; set model_args={{'vocab_size': {tokenizer.n_vocab}}}")
    if hf_folder:
        model = Llama.from_pretrained(hf_folder, dtype=torch.float32, device=device)
    else:  # from scratch: built on the meta device, sharded, then each rank allocates and fills only its shard
        with torch.device("meta"):
            model = Llama(mcfg)
    model = parallelize(model, cfg, run.world_size, device)
    if not hf_folder:
        model.to_empty(device=device)
        if mcfg.tie_embeddings and model.lm_head.weight is not model.embed_tokens.weight:
            model.lm_head.weight = model.embed_tokens.weight  # to_empty's new tensors untie them
        model.init_weights(seed=cfg.seed)  # the same weights on any number of ranks
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")
    loader = mixture_loader(cfg.mixture, cfg, run, tokenizer)
    val_loader = mixture_loader(cfg.val_mixture, cfg, run, tokenizer) if cfg.val_mixture else None
    val_start = val_loader.state_dict() if val_loader else None
    step = 0
    if run.resume:
        meta = run.restore(model, optimizer)
        step = meta["step"]
        loader.load_state_dict(meta["loader"])
    elif init_ckpt:
        load_checkpoint(init_ckpt, model, optimizer if cfg.init_optimizer else None)
        if run.rank == 0:
            print(f"initialised from {init_ckpt}" + (" with its optimizer state" if cfg.init_optimizer else ""))
    run.open_logs(step)

    amp = autocast(device, run.world_size)
    matmul_flops, attn_flops = flops_per_token(mcfg)
    peak = peak_flops(torch.cuda.get_device_name()) if device.type == "cuda" else 0.0
    bar = run.progress(step)
    bad = 0
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, doc_ids = next(loader)  # this rank's rows of the global batch
        n_global = all_sum((y != -100).sum().item(), device)
        attn_global = all_sum(attention_flops(doc_ids, mcfg), device) if peak else 0.0
        loss_sum = torch.zeros((), device=device)
        for i in range(accum):
            rows = slice(i * cfg.micro_batch, (i + 1) * cfg.micro_batch)
            xb, yb, db = (t[rows].to(device, non_blocking=True) for t in (x, y, doc_ids))
            if run.world_size > 1:  # reduce-scatter gradients once, after the last micro-batch
                model.set_requires_gradient_sync(i == accum - 1)
            with amp:
                loss = model(xb, yb, doc_ids=db)  # the mean over this micro-batch's n target tokens
            n = (yb != -100).sum()
            # The step's loss is the mean over every target token of the global batch, on every rank: so each
            # micro-batch's mean is weighted by n / n_global (micro-batches and ranks then add up to that mean,
            # however the batch is split), and times world_size because FSDP averages gradients over ranks.
            (loss * n * run.world_size / n_global).backward()
            loss_sum += loss.detach() * n
        loss = all_sum(loss_sum.item(), device) / n_global
        grad_norm = clip_gradients(model, cfg.grad_clip)
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
            bad = 0
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        tok_per_s = cfg.batch_tokens / (time.perf_counter() - t0)
        # MFU two ways: attention at the causal-T count (every token sees the whole window, the usual figure),
        # and as computed, within each packed document (what the kernels do: lower with short documents)
        flops = peak * run.world_size
        mfu = tok_per_s * (matmul_flops + attn_flops * (cfg.seq_len + 1) / 2) / flops if peak else 0.0
        mfu_docs = tok_per_s * (matmul_flops + attn_global / cfg.batch_tokens) / flops if peak else 0.0
        row = {"step": step, "loss": loss, "lr": lr, "tokens": step * cfg.batch_tokens, "grad_norm": grad_norm,
               "tok_per_s": tok_per_s, "mfu": mfu, "mfu_docs": mfu_docs} | ({} if finite else {"skipped": 1})
        if val_loader and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            row["val_loss"] = validation_loss(model, val_loader, val_start, cfg, run, amp)
        run.log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}",
                        **({"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}),
                        **({"mfu": f"{mfu:.1%}"} if peak else {}))
        if not finite:
            bad += 1
            if run.rank == 0:
                tqdm.write(f"step {step}: non-finite loss {loss} or grad norm {grad_norm}: update skipped")
            if bad >= cfg.max_bad_steps:
                raise RuntimeError(f"{bad} steps in a row had a non-finite loss or gradient (the last: step {step}); "
                                   f"stopping. The last good checkpoint, {latest_checkpoint(cfg.out_dir)}, is "
                                   "untouched: lower lr or check the data, then re-run to resume from it.")
        run.checkpoint(step, model, optimizer, loader=loader.state_dict())
        if run.preempted(step, model, optimizer, loader=loader.state_dict()):
            return
    run.finish(model, tokenizer)


if __name__ == "__main__":
    launch(main, Config(), preemptible=True)
