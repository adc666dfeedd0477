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
and vLLM. The functions here (distributed setup, sharding, checkpoints, metrics) are rl.py's too.
"""
import json
import math
import os
import random
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_state_dict)
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from configurator import configure, show
from data import MixtureLoader
from tokenizer import Tokenizer
from model import Llama, ModelConfig, config_from_hf


@dataclass
class Config:
    # model: a preset trained from scratch, or init_from a checkpoint
    model: str = "llama3.2-1b"         # a ModelConfig preset, used when init_from is ""
    model_args: dict = field(default_factory=dict)  # overrides of the preset, e.g. {"vocab_size": 4096}
    init_from: str = ""                # a run folder (its newest checkpoint), one checkpoint (run/ckpt/step_N),
                                       # an HF folder or a hub id
    init_optimizer: bool = False       # from a run folder: continue with its optimizer state too
    tokenizer: str = ""                # a tokenizer folder or hub id; "" = init_from's
    # data
    mixture: dict = field(default_factory=dict)  # {name: (prepared folder, weight)}
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
    seed: int = 0


warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # DCP in a single process: intended
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "B200": 2250e12}  # dense bf16

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
# distributed


def setup_distributed():
    """(rank, world_size, device) from torchrun's environment; without it one process, nothing initialised."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world_size, device


def all_sum(x, device):
    t = torch.tensor(x, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.item()


def barrier():
    if dist.is_initialized():
        dist.barrier()


def parallelize(model, cfg, world_size, device):
    """Activation checkpointing, then torch.compile, then FSDP2, per block; then the root. On GPUs the
    parameters are sharded in fp32 and gathered in bf16, gradients reduced in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if device.type == "cuda" \
        else MixedPrecisionPolicy()
    for block in model.layers:
        if cfg.activation_checkpointing:
            # wrap forward, not the module, so parameter names (and so checkpoints and exports) don't change
            block.forward = (lambda fwd: lambda *a: checkpoint(fwd, *a, use_reentrant=False))(block.forward)
        if cfg.compile:
            block.compile()
        if world_size > 1:
            fully_shard(block, mp_policy=mp)
    if world_size > 1:
        fully_shard(model, mp_policy=mp)
    return model

# -----------------------------------------------------------------------------
# checkpoints: ckpt/step_NNNNNN, written as ckpt/.tmp_step_NNNNNN and renamed when complete


def latest_checkpoint(out_dir):
    folder = os.path.join(out_dir, "ckpt")
    steps = sorted(d for d in os.listdir(folder) if d.startswith("step_")) if os.path.isdir(folder) else []
    return os.path.join(folder, steps[-1]) if steps else None


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(out_dir, step, model, optimizer, meta, rank, keep):
    """model and optimizer (sharded, with torch.distributed.checkpoint), each rank's RNG, and meta.json."""
    folder = os.path.join(out_dir, "ckpt")
    tmp, final = os.path.join(folder, f".tmp_step_{step:06d}"), os.path.join(folder, f"step_{step:06d}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
    torch.save(rng_state(), os.path.join(tmp, f"rng_{rank}.pt"))
    if rank == 0:
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)  # a re-run that saves the same step again
        os.rename(tmp, final)
        for old in sorted(d for d in os.listdir(folder) if d.startswith("step_"))[:-keep]:
            shutil.rmtree(os.path.join(folder, old))
    barrier()


def load_checkpoint(path, model, optimizer=None, rank=0):
    """Load a checkpoint into a model (and optimizer) of any sharding; returns its meta.json."""
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=path)
        set_model_state_dict(model, state["model"])
    else:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    with open(os.path.join(path, "meta.json")) as f:
        return json.load(f)


def export_hf(model, tokenizer, out_dir, dtype, rank):
    """out_dir/hf: the gathered weights in Hugging Face format plus the tokenizer, renamed in when complete."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tmp, final = os.path.join(out_dir, ".tmp_hf"), os.path.join(out_dir, "hf")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict={k: v.to(getattr(torch, dtype)) for k, v in state.items()})
        tokenizer.save(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    barrier()


def open_metrics(out_dir, resume_step, name="metrics.jsonl"):
    """A jsonl log of out_dir for appending, cut back to the lines of steps <= resume_step (rank 0 only)."""
    path = os.path.join(out_dir, name)
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    kept = [line for line in lines if line and json.loads(line)["step"] <= resume_step]
    with open(path + ".tmp", "w") as f:
        f.write("".join(line + "\n" for line in kept))
    os.replace(path + ".tmp", path)
    return open(path, "a")

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
    folder = cfg.init_from
    if not os.path.isdir(folder):
        from huggingface_hub import snapshot_download
        folder = snapshot_download(folder, allow_patterns=["*.json", "*.safetensors", "original/tokenizer.model"])
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


def flops_per_token(mcfg):
    """Training FLOPs per token: 6 per matmul weight (forward and backward) plus causal attention."""
    matmul = mcfg.n_layers * (2 * mcfg.dim * (mcfg.n_heads + mcfg.n_kv_heads) * mcfg.head_dim
                              + 3 * mcfg.dim * mcfg.ffn_dim) + mcfg.dim * mcfg.vocab_size
    return 6 * matmul, 6 * mcfg.n_layers * mcfg.n_heads * mcfg.head_dim  # the second, times seq_len

# -----------------------------------------------------------------------------
# the run


def train(cfg):
    rank, world_size, device = setup_distributed()
    torch.manual_seed(cfg.seed)
    # batch geometry: the global batch is fixed; ranks and micro-batches only divide it
    seqs = cfg.batch_tokens // cfg.seq_len
    if cfg.batch_tokens % cfg.seq_len or seqs % (world_size * cfg.micro_batch):
        raise ValueError(f"batch_tokens={cfg.batch_tokens} must be a multiple of seq_len={cfg.seq_len} "
                         f"times world_size={world_size} times micro_batch={cfg.micro_batch}")
    accum = seqs // (world_size * cfg.micro_batch)
    if not cfg.mixture:
        raise ValueError("set mixture = {name: (prepared folder, weight), ...} (see configs/)")
    os.makedirs(cfg.out_dir, exist_ok=True)
    if rank == 0:
        print(show(cfg))
        with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
            f.write(show(cfg))
    resume = latest_checkpoint(cfg.out_dir)
    if resume and os.path.isdir(os.path.join(cfg.out_dir, "hf")) and resume.endswith(f"step_{cfg.max_steps:06d}"):
        if rank == 0:
            print(f"{cfg.out_dir} is complete ({resume}, hf/): nothing to do")
        return

    mcfg, hf_folder, init_ckpt = resolve_init(cfg)
    tokenizer = load_tokenizer(cfg, init_ckpt)
    if not cfg.init_from:  # a model from scratch gets exactly its tokenizer's vocabulary: no id it never saw
        mcfg = ModelConfig(**{**asdict(mcfg), "vocab_size": tokenizer.n_vocab, "bos_id": tokenizer.bos_id,
                              "eos_id": tokenizer.eos_id})
    if tokenizer.n_vocab > mcfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab} tokens but the model's vocab_size is "
                         f"{mcfg.vocab_size}; set model_args={{'vocab_size': {tokenizer.n_vocab}}}")
    model = Llama.from_pretrained(hf_folder, dtype=torch.float32, device=device) if hf_folder \
        else Llama(mcfg).to(device)  # every rank the same weights: the same seed
    model = parallelize(model, cfg, world_size, device)
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")
    loader = MixtureLoader({k: tuple(v) for k, v in cfg.mixture.items()}, cfg.seq_len, seqs,
                           rank=rank, world_size=world_size, seed=cfg.seed, tokenizer=tokenizer)
    step = 0
    if resume:
        meta = load_checkpoint(resume, model, optimizer)
        step = meta["step"]
        loader.load_state_dict(meta["loader"])
        rng_file = os.path.join(resume, f"rng_{rank}.pt")
        if os.path.exists(rng_file):
            set_rng_state(torch.load(rng_file, weights_only=False))
        if rank == 0:
            print(f"resuming from {resume} (step {step})")
    elif init_ckpt:
        load_checkpoint(init_ckpt, model, optimizer if cfg.init_optimizer else None)
        if rank == 0:
            print(f"initialised from {init_ckpt}" + (" with its optimizer state" if cfg.init_optimizer else ""))
    metrics = open_metrics(cfg.out_dir, step) if rank == 0 else None

    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" and world_size == 1 else nullcontext()
    matmul_flops, attn_flops = flops_per_token(mcfg)
    peak = next((v for k, v in PEAK_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), 0)
    meta = lambda s: {"step": s, "loader": loader.state_dict(), "model_config": asdict(mcfg),
                      "config": asdict(cfg), "world_size": world_size}
    bar = tqdm(total=cfg.max_steps, initial=step, disable=rank != 0, desc=os.path.basename(cfg.out_dir))
    bad = 0
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, doc_ids = next(loader)  # this rank's rows of the global batch
        n_global = all_sum((y != -100).sum().item(), device)
        loss_sum = torch.zeros((), device=device)
        for i in range(accum):
            rows = slice(i * cfg.micro_batch, (i + 1) * cfg.micro_batch)
            xb, yb, db = (t[rows].to(device, non_blocking=True) for t in (x, y, doc_ids))
            if world_size > 1:  # reduce-scatter gradients once, after the last micro-batch
                model.set_requires_gradient_sync(i == accum - 1)
            with autocast:
                loss = model(xb, yb, doc_ids=db)
            n = (yb != -100).sum()
            # weight by tokens so the step's gradient is the global batch's mean; FSDP divides by world_size
            (loss * n * world_size / n_global).backward()
            loss_sum += loss.detach() * n
        loss = all_sum(loss_sum.item(), device) / n_global
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        grad_norm = (grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm).item()
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
            bad = 0
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        tok_per_s = cfg.batch_tokens / (time.perf_counter() - t0)
        mfu = tok_per_s * (matmul_flops + attn_flops * cfg.seq_len) / (peak * world_size) if peak else 0.0
        if rank == 0:
            row = {"step": step, "loss": loss, "lr": lr, "tokens": step * cfg.batch_tokens, "grad_norm": grad_norm,
                   "tok_per_s": tok_per_s, "mfu": mfu} | ({} if finite else {"skipped": 1})
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}",
                            **({"mfu": f"{mfu:.1%}"} if peak else {}))
        if not finite:
            bad += 1
            if rank == 0:
                tqdm.write(f"step {step}: non-finite loss {loss} or grad norm {grad_norm}: update skipped")
            if bad >= cfg.max_bad_steps:
                raise RuntimeError(f"{bad} steps in a row had a non-finite loss or gradient (the last: step {step}); "
                                   f"stopping. The last good checkpoint, {latest_checkpoint(cfg.out_dir)}, is "
                                   "untouched: lower lr or check the data, then re-run to resume from it.")
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(cfg.out_dir, step, model, optimizer, meta(step), rank, cfg.keep_checkpoints)
    bar.close()
    export_hf(model, tokenizer, cfg.out_dir, cfg.export_dtype, rank)
    if rank == 0:
        metrics.close()
        print(f"done: {cfg.out_dir}/hf")


if __name__ == "__main__":
    cfg = configure(Config())
    try:
        train(cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
