"""
GRPO from a base model with verified math rewards: the paper's "zero" RL.

    python rl.py configs/rl_tiny.py                          # one process: a tiny model on CPU, minutes
    torchrun --nproc_per_node=8 rl.py configs/rl_math.py     # FSDP2 over 8 GPUs

Each step: 1. rollout: take prompts_per_step prompts, render each with one of eval.py's templates (the
prompts the model is later evaluated with) and sample samples_per_prompt completions of each; 2. reward:
grader.py checks each completion's final answer against the gold one, on the text eval.py grades
(eval.completion_text); 3. advantages: each reward minus its group's mean (over one prompt's samples), divided
by the group's std unless std_norm is False (Dr. GRPO); 4. update: on PPO mini-batches, the clipped surrogate
with optional KL to the initial model and entropy bonus, the log-probs at the sampling temperature (the
distribution the rollout drew from); an update whose gradient is not finite is skipped.
Every prompt and sample is a pure function of (seed, step, prompt, sample index), so a resumed run and a run
on any number of ranks draw the same ones. The run folder (checkpoints, metrics.jsonl, samples.jsonl, hf/) is
common.py's, as train.py's.
"""
import hashlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from tqdm import tqdm

import eval as evaluation
from common import (all_max, all_sum, autocast, barrier, clip_gradients, latest_checkpoint, launch, local_or_hub,
                    parallelize, start_run)
from data import resolve_inputs
from grader import extract_answer, grade_many
from model import Llama
from tokenizer import Tokenizer


@dataclass
class Config:
    # the policy
    init_from: str = ""                # an HF folder (a mid-training run's hf/) or a hub id
    init_commands: list = field(default_factory=list)  # run in order when init_from does not exist yet
    tokenizer: str = ""                # "" = init_from's
    # prompts: jsonl of {"question": ..., "answer": ...} (a path, or hf:org/name/file.jsonl)
    prompts: str = ""
    template: str = "boxed"            # one of eval.TEMPLATES
    # rollout
    prompts_per_step: int = 128
    samples_per_prompt: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_response_len: dict = field(default_factory=lambda: {0: 4096})  # {from step: length}
    gen_batch: int = 512               # sequences decoding at once on each rank (a group's samples share a prefill)
    kv_budget: str = ""                # the KV cache's size: tokens ("200000") or bytes ("20GB"); "": most of
                                       # the free GPU memory (a row per sequence on CPU); "all": a row per sequence
    # reward
    reward_correct: float = 1.0
    reward_wrong: float = 0.0
    reward_no_answer: float = 0.0      # e.g. -1 for a response without a final answer
    rounded_answers: bool = False      # decimal golds also match values that round to them (see eval.ROUNDED)
    last_number: bool = False          # True: an unmarked response's last number is its answer (as eval.py reads
                                       # it); False: the reward asks for a marked one (\boxed{}, "the answer is")
    # advantages
    std_norm: bool = True              # False: Dr. GRPO
    drop_uniform_groups: bool = False  # DAPO: a group whose rewards are all equal teaches nothing
    # update
    mini_batch_prompts: int = 64       # prompts whose samples make one optimizer step
    micro_batch: int = 16              # sequences per forward pass on each rank
    loss_agg: str = "token-mean"       # token-mean, seq-mean-token-mean or seq-mean-token-sum-norm
    clip_low: float = 0.2
    clip_high: float = 0.2             # DAPO's clip-higher: 0.28
    kl_coef: float = 0.0               # KL to the initial model (k3 estimator)
    entropy_coef: float = 0.0
    lr: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_bad_steps: int = 3             # steps in a row with a non-finite loss or gradient before the run stops
    max_steps: int = 200
    # held-out evaluation, greedy, through eval.py
    eval_data: str = "data/benchmarks"
    eval_benchmarks: str = "math500"
    eval_limit: int = 0                # 0: the whole set
    eval_every: int = 20
    # system
    compile: bool = False              # torch.compile the blocks for the update and the decode step for rollouts
    activation_checkpointing: bool = False
    # checkpoints and logs
    out_dir: str = "out/rl"
    ckpt_every: int = 20
    keep_checkpoints: int = 2
    export_dtype: str = "bfloat16"
    log_samples: int = 4               # full samples per step written to samples.jsonl
    dist_timeout_min: float = 120      # how long a rank waits for the others in one collective before failing
    seed: int = 0

# -----------------------------------------------------------------------------
# GRPO's maths


def group_advantages(rewards, group_size, std_norm=True, eps=1e-6):
    """rewards (N,), each group's samples contiguous -> advantages (N,): reward minus the group's mean,
    divided by the group's (unbiased) std + eps unless std_norm is False."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} (>= 2) samples")
    r = rewards.view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)
    if std_norm:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    return adv.flatten()


def aggregate(x, mask, agg, total=None, max_len=None):
    """Reduce per-token values x (B, T) over the tokens in mask. total: the denominator when (B, T) is a
    slice of a larger batch (its token count for token-mean, else its sequence count); max_len: Dr. GRPO's
    constant length (default T)."""
    x = x * mask
    if agg == "token-mean":
        return x.sum() / (total if total is not None else mask.sum().clamp(min=1))
    if agg == "seq-mean-token-mean":
        per_seq = x.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    elif agg == "seq-mean-token-sum-norm":
        per_seq = x.sum(dim=1) / (max_len or mask.shape[1])
    else:
        raise ValueError(f"loss_agg '{agg}': use token-mean, seq-mean-token-mean or seq-mean-token-sum-norm")
    return per_seq.sum() / (total if total is not None else (mask.sum(dim=1) > 0).sum().clamp(min=1))


def policy_loss(logprobs, old_logprobs, advantages, mask, clip_low=0.2, clip_high=0.2, agg="token-mean",
                ref_logprobs=None, kl_coef=0.0, entropy=None, entropy_coef=0.0, total=None, max_len=None):
    """PPO's clipped surrogate with GRPO's sequence-level advantages: logprobs, old_logprobs, ref_logprobs,
    entropy and mask (B, T), advantages (B,) -> (loss, stats with clip_frac, kl and entropy: token means)."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped, clipped = -adv * ratio, -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    token_mean = lambda x: ((x * mask).sum() / mask.sum().clamp(min=1)).detach()
    stats = {"clip_frac": token_mean((clipped > unclipped).to(mask.dtype)), "kl": torch.zeros(()),
             "entropy": torch.zeros(())}
    if ref_logprobs is not None:
        log_ratio = ref_logprobs - logprobs
        kl = log_ratio.exp() - log_ratio - 1  # k3: a non-negative, unbiased estimate of KL(policy || ref)
        per_token = per_token + kl_coef * kl
        stats["kl"] = token_mean(kl)
    if entropy is not None:
        per_token = per_token - entropy_coef * entropy
        stats["entropy"] = token_mean(entropy)
    return aggregate(per_token, mask, agg, total, max_len), stats

# -----------------------------------------------------------------------------
# prompts and rollouts


def load_prompts(source, template):
    rows = []
    for path in resolve_inputs(source):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if "question" not in record or "answer" not in record:
                    raise ValueError(f"{path}, line {n}: a prompt needs 'question' and 'answer', it has {sorted(record)}")
                rows.append({"prompt": evaluation.render(record["question"], template), "answer": str(record["answer"])})
    if not rows:
        raise ValueError(f"prompts={source!r} holds no prompts")
    return rows


def prompt_indices(step, n_prompts, per_step, seed):
    """The dataset indices of a step's prompts: epochs of seeded permutations, walked per_step at a time."""
    perms, out = {}, []
    for p in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(p, n_prompts)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(perms[epoch][i].item())
    return out


def sample_seed(seed, step, prompt, k):
    digest = hashlib.blake2b(f"{seed}/{step}/{prompt}/{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def length_at(step, schedule):
    """max_response_len at a step: an int, or {from step: length} (the progressive schedule)."""
    if isinstance(schedule, int):
        return schedule
    schedule = {int(k): v for k, v in schedule.items()}
    return int(schedule[max([k for k in schedule if k <= step], default=min(schedule))])


def rollout(policy, tokenizer, prompts, seeds, cfg, max_new_tokens):
    """Sample a completion per prompt string: (prompt token lists, completion token lists, their texts as eval.py
    grades them)."""
    stops = evaluation.TEMPLATES[cfg.template]["stop"]
    encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
    tokens, _ = policy.generate(encoded, max_new_tokens, cfg.temperature, cfg.top_p,
                                stop_ids=[tokenizer.eos_id, tokenizer.eot_id], seed=seeds, stop_strings=stops,
                                decode=tokenizer.decode, compile=cfg.compile, kv_budget=cfg.kv_budget or None,
                                max_batch=cfg.gen_batch)
    return encoded, tokens, [evaluation.completion_text(t, tokenizer, stops) for t in tokens]


def sync_weights(rollout_model, model):
    """Copy the (possibly sharded) policy's weights into the full rollout copy on every rank."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    with torch.no_grad():
        for name, p in rollout_model.named_parameters():
            p.copy_(state[name])


@torch.no_grad()
def all_logprobs(model, x, y, micro_batch, device, temperature=1.0):
    """Per-token log-probs (float32, (B, T)) of every row's targets at temperature, a micro-batch at a time,
    without gradients."""
    return torch.cat([model.logprobs(x[i:i + micro_batch].to(device), y[i:i + micro_batch].to(device),
                                     temperature=temperature)[0] for i in range(0, len(x), micro_batch)]).float()


def pad(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def sequences(prompt_tokens, response_tokens):
    """Inputs, targets (-100 outside the response) and response mask of prompt+response rows, right-padded."""
    x = [p + r[:-1] for p, r in zip(prompt_tokens, response_tokens)]
    y = [[-100] * (len(p) - 1) + r for p, r in zip(prompt_tokens, response_tokens)]
    x, y = pad(x, 0), pad(y, -100)
    return x, y, y != -100

# -----------------------------------------------------------------------------
# the run


TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def ensure_init(cfg, rank):
    """Run init_commands (rank 0; the others wait) when init_from does not exist yet; then init_from's folder (a
    hub id downloads). A command's leading `python` is the interpreter running this script, so a venv works
    without being activated, and it runs outside torchrun's world: a child that saw RANK would wait for ranks
    that never come."""
    if not os.path.exists(cfg.init_from) and cfg.init_commands:
        if rank == 0:
            env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and not k.startswith("TORCHELASTIC")}
            for command in cfg.init_commands:
                command = re.sub(r"^python3?(?=\s)", lambda _: shlex.quote(sys.executable), command.strip())
                print(f"$ {command}", flush=True)
                subprocess.run(command, shell=True, check=True, env=env)
        barrier()
    return local_or_hub(cfg.init_from, "init_from", "A model folder: a mid-training run's hf/ (python train.py "
                        "configs/decay_hybrid.py writes out/decay_hybrid/hf), or set init_commands to make it")


def check_config(cfg, world_size):
    if cfg.top_p != 1.0:
        raise ValueError(f"top_p={cfg.top_p}: the learner's log-probs are of the full tempered distribution, not of "
                         "the top-p truncated one the rollout would sample from, so the update would be off-policy; "
                         "use top_p=1.0 (temperature is accounted for)")
    P, M = cfg.prompts_per_step, cfg.mini_batch_prompts
    if P % M or M % world_size:
        raise ValueError(f"prompts_per_step={P} must be a multiple of mini_batch_prompts={M}, and that of "
                         f"world_size={world_size}")
    if cfg.template not in evaluation.TEMPLATES:
        raise ValueError(f"template '{cfg.template}': choose one of {sorted(evaluation.TEMPLATES)}")


def main(cfg):
    run = start_run(cfg, check=check_config)
    if run.done:
        return
    rank, world_size, device = run.rank, run.world_size, run.device
    P, G, M = cfg.prompts_per_step, cfg.samples_per_prompt, cfg.mini_batch_prompts
    init = ensure_init(cfg, rank)
    tokenizer = Tokenizer.from_pretrained(cfg.tokenizer or init)
    data = load_prompts(cfg.prompts, cfg.template)

    # the policy (trained, sharded), its full copy that generates, and a frozen reference for the KL
    rollout_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = Llama.from_pretrained(init, dtype=torch.float32, device=device)
    policy = Llama.from_pretrained(init, dtype=rollout_dtype, device=device).eval()
    reference = Llama.from_pretrained(init, dtype=rollout_dtype, device=device).eval() if cfg.kl_coef else None
    model = parallelize(model, cfg, world_size, device)
    if world_size > 1:
        from torch.distributed.fsdp import register_fsdp_forward_method
        register_fsdp_forward_method(model, "logprobs")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    step = run.restore(model, optimizer)["step"] if run.resume else 0
    run.open_logs(step, ["metrics", "samples"])
    amp = autocast(device, world_size)

    def held_out_eval():
        """Greedy accuracy on the held-out benchmarks: every rank generates its share of the prompts with its
        rollout copy, rank 0 grades them all (the others get {})."""
        generate = evaluation.model_generate(policy, tokenizer, max_new_tokens=length_at(step, cfg.max_response_len),
                                             batch_size=cfg.gen_batch, stop=evaluation.TEMPLATES[cfg.template]["stop"],
                                             compile=cfg.compile, rank=rank, world_size=world_size,
                                             kv_budget=cfg.kv_budget or None)
        scores = evaluation.evaluate(generate, cfg.eval_benchmarks.split(","), mode="zeroshot", template=cfg.template,
                                     limit=cfg.eval_limit or None, data_dir=cfg.eval_data,
                                     last_number=cfg.last_number)  # graded as the reward is
        results = {f"eval/{name}": s["accuracy"] for name, s in scores.items()}
        results |= {f"eval/{name}_response_len": s["mean_response_tokens"] for name, s in scores.items()}
        if rank == 0:
            tqdm.write(f"step {step}: held-out greedy accuracy {results}")
        return results

    bar, bad = run.progress(step), 0  # bad: steps in a row with a skipped update
    sync_weights(policy, model)
    if step == 0 and cfg.eval_every:  # the starting point of the held-out curve
        run.log({"step": 0, **held_out_eval()})
    while step < cfg.max_steps:
        # 1. rollout: this rank's prompts are the step's positions j = rank, rank + W, ...
        t0 = time.perf_counter()
        chosen = prompt_indices(step, len(data), P, cfg.seed)
        mine = list(range(rank, P, world_size))
        requests = [(j, k) for j in mine for k in range(G)]  # each prompt's group contiguous
        seeds = [sample_seed(cfg.seed, step, chosen[j], k) for j, k in requests]
        max_new = length_at(step, cfg.max_response_len)
        prompt_tokens, responses, texts = rollout(policy, tokenizer, [data[chosen[j]]["prompt"] for j, _ in requests],
                                                  seeds, cfg, max_new)
        gen_tokens = sum(map(len, responses))
        t_rollout = time.perf_counter() - t0

        # 2. rewards and 3. advantages (a group lives on one rank)
        golds = [data[chosen[j]]["answer"] for j, _ in requests]
        correct = grade_many(list(zip(texts, golds)), rounded=cfg.rounded_answers, last_number=cfg.last_number)
        rewards = torch.tensor([cfg.reward_correct if c else cfg.reward_wrong
                                if extract_answer(t, last_number=cfg.last_number) is not None
                                else cfg.reward_no_answer for c, t in zip(correct, texts)])
        advantages = group_advantages(rewards, G, cfg.std_norm)
        keep = torch.ones(len(requests), dtype=torch.bool)
        if cfg.drop_uniform_groups:  # masked, not removed: every rank must run the same number of passes
            keep = (rewards.view(-1, G).std(dim=1) > 0).repeat_interleave(G)

        # 4. update: old (and reference) log-probs first, then the clipped surrogate on each mini-batch
        t1 = time.perf_counter()
        x, y, mask = sequences(prompt_tokens, responses)
        seq_lens = [len(p) + len(r) - 1 for p, r in zip(prompt_tokens, responses)]
        mask &= keep[:, None]
        on_policy = P == M  # one optimizer step per rollout: the old log-probs are the current ones, no extra pass
        with amp:
            old = None if on_policy else all_logprobs(model, x, y, cfg.micro_batch, device, cfg.temperature)
            ref = all_logprobs(reference, x, y, cfg.micro_batch, device, cfg.temperature) if reference else None
        per_update = M // world_size * G  # this rank's sequences in one mini-batch
        sums, skipped = dict.fromkeys(["loss", "clip_frac", "kl", "entropy", "grad_norm"], 0.0), 0
        for u in range(P // M):
            rows = range(u * per_update, (u + 1) * per_update)
            n_tokens = all_sum(mask[rows.start:rows.stop].sum().item(), device)
            n_seqs = all_sum(keep[rows.start:rows.stop].sum().item(), device)
            # The mini-batch's loss is normalised by its global count, over every rank (tokens for token-mean,
            # sequences otherwise), not per micro-batch: micro-batch losses then add up to the mini-batch's loss
            # however it is split across micro-batches and ranks
            total = n_tokens if cfg.loss_agg == "token-mean" else n_seqs
            # rows of similar length share a micro-batch (the loss is a sum, so any split gives the same gradient),
            # and a micro-batch is as wide as its longest row: little padding
            order = sorted(rows, key=lambda i: seq_lens[i])
            micro = [torch.tensor(order[i:i + cfg.micro_batch]) for i in range(0, len(order), cfg.micro_batch)]
            for m, s in enumerate(micro):
                width = max(seq_lens[i] for i in s.tolist())
                xb, yb, mb = (t[s, :width].to(device) for t in (x, y, mask))
                if world_size > 1:
                    model.set_requires_gradient_sync(m == len(micro) - 1)
                with amp:  # at the sampling temperature: the distribution the rollout drew from
                    logprobs, entropy = model.logprobs(xb, yb, entropy=True, temperature=cfg.temperature)
                old_logprobs = logprobs.detach().float() if on_policy else old[s, :width].to(device)
                loss, stats = policy_loss(
                    logprobs.float(), old_logprobs, advantages[s].to(device), mb, cfg.clip_low,
                    cfg.clip_high, cfg.loss_agg, None if ref is None else ref[s, :width].to(device), cfg.kl_coef,
                    entropy.float(), cfg.entropy_coef, total=max(total, 1), max_len=max_new)
                (loss * world_size).backward()  # FSDP averages gradients over ranks: times world_size, a sum again
                sums["loss"] += loss.item()
                n = mb.sum().item()
                for key in ("clip_frac", "kl", "entropy"):
                    sums[key] += stats[key].item() * n / max(n_tokens, 1)
            grad_norm = clip_gradients(model, cfg.grad_clip)  # over every rank's shards: all ranks agree
            if math.isfinite(grad_norm):  # a NaN or inf loss gives a non-finite gradient: that update is skipped
                optimizer.step()
            else:
                skipped += 1
            sums["grad_norm"] += grad_norm
            optimizer.zero_grad(set_to_none=True)
        t_update = time.perf_counter() - t1
        step += 1
        sync_weights(policy, model)

        # 5. logs, evaluation, checkpoints
        n_all = P * G
        lengths = [len(r) for r in responses]
        row = {"step": step,
               "reward": all_sum(rewards.sum().item(), device) / n_all,
               "accuracy": all_sum(sum(correct), device) / n_all,
               "response_len": all_sum(sum(lengths), device) / n_all,
               "response_len_max": all_max(max(lengths), device),
               "loss": all_sum(sums["loss"], device) / (P // M),
               **{k: all_sum(sums[k], device) / (P // M) for k in ("clip_frac", "kl", "entropy")},
               "grad_norm": sums["grad_norm"] / (P // M), "lr": cfg.lr,
               "rollout_tok_per_s": all_sum(gen_tokens, device) / t_rollout,
               "update_tok_per_s": all_sum(int(mask.sum()), device) / t_update}
        if skipped:
            row["skipped"] = skipped
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            row |= held_out_eval()
        run.log(row)
        for (j, k), text, r in list(zip(requests, texts, rewards.tolist()))[:cfg.log_samples]:
            run.log({"step": step, "prompt": data[chosen[j]]["prompt"], "completion": text,
                     "answer": extract_answer(text, last_number=cfg.last_number), "gold": data[chosen[j]]["answer"],
                     "reward": r}, "samples")
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['response_len']:.0f}", loss=f"{row['loss']:.4f}")
        bad = bad + 1 if skipped else 0
        if skipped and rank == 0:
            tqdm.write(f"step {step}: {skipped} of {P // M} updates had a non-finite loss or gradient: skipped")
        if bad >= cfg.max_bad_steps:
            raise RuntimeError(f"{bad} steps in a row had a non-finite loss or gradient (the last: step {step}); "
                               f"stopping. The last good checkpoint, {latest_checkpoint(cfg.out_dir)}, is untouched: "
                               "lower lr or check the rewards, then re-run to resume from it.")
        run.checkpoint(step, model, optimizer)
    run.finish(model, tokenizer)


if __name__ == "__main__":
    launch(main, Config())
