"""
GRPO from a base model with verified math rewards: the paper's "zero" RL.

    python rl.py configs/rl_tiny.py                          # one process: a tiny model on CPU, minutes
    torchrun --nproc_per_node=8 rl.py configs/rl_math.py     # FSDP2 over 8 GPUs

Each step: 1. rollout: take prompts_per_step prompts, render each with one of eval.py's templates (the
prompts the model is later evaluated with) and sample samples_per_prompt completions of each; 2. reward:
grader.py checks each completion's final answer against the gold one, on the text eval.py grades
(eval.completion_text); 3. advantages: each reward against its group's (one prompt's samples), grpo.py's maths;
with dynamic_sampling a prompt whose samples all score alike is replaced by another (DAPO); 4. update: on PPO
mini-batches, the clipped surrogate (grpo.update, grpo.policy_loss and its switches), the log-probs at the
sampling temperature (the distribution the rollout drew from); an update whose gradient is not finite is skipped; then
the rollout copy takes the new weights, a tensor at a time. metrics.jsonl gets what a researcher watches each
step (see step_metrics). Every prompt and sample is a pure function of (seed, step, prompt slot, draw, sample
index), so a resumed run and a run on any number of ranks draw the same ones. The run folder (checkpoints,
metrics.jsonl, samples.jsonl, hf/) is common.py's, as train.py's.
"""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

import eval as evaluation
import grpo
from common import all_gather, all_max, all_sum, barrier, latest_checkpoint, launch, local_or_hub, parallelize, start_run
from data import resolve_inputs
from generation import StopStrings
from grader import extract_answer, grade_many
from model import Llama
from tokenizer import Tokenizer


@dataclass
class Config:
    # the policy
    init_from: str = ""                # an HF folder (a mid-training run's hf/) or a hub id
    init_commands: list = field(default_factory=list)  # run in order when init_from does not exist yet
    tokenizer: str = ""                # "" = init_from's; else a folder, hub id or "llama3"
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
    overlong_buffer: int = 0           # DAPO's soft overlong penalty over the last this many tokens before the
    overlong_penalty: float = 1.0      # limit, reaching -overlong_penalty at it; 0: off
    # advantages
    advantage: str = "grpo"            # grpo (reward - group mean [/ std]) or rloo (leave-one-out baseline)
    std_norm: bool = True              # grpo: divide by the group's std; False: Dr. GRPO
    drop_uniform_groups: bool = False  # DAPO: a group whose rewards are all equal teaches nothing: masked
    dynamic_sampling: bool = False     # DAPO: such a group's prompt is replaced by another, and again...
    max_redraws: int = 2               # ... at most this many times (then it is masked)
    # update
    mini_batch_prompts: int = 64       # prompts whose samples make one optimizer step
    micro_batch: int = 16              # sequences per forward pass on each rank
    loss_agg: str = "token-mean"       # token-mean, seq-mean-token-mean or seq-mean-token-sum-norm
    clip_low: float = 0.2
    clip_high: float = 0.2             # DAPO's clip-higher: 0.28
    clip_ratio_c: float = 0.0          # dual-clip: a negative advantage's loss at most this x |A| (3.0); 0: off
    ratio_level: str = "token"         # token, or sequence (GSPO; with clip ranges like 3e-4 / 4e-4)
    overlong_mask: bool = False        # DAPO: truncated responses (no stop before the limit) out of the loss
    kl_coef: float = 0.0               # KL to the initial model (k3 estimator)
    entropy_coef: float = 0.0
    fp32_logprobs: bool = True         # the learner's lm_head product in fp32 (bf16 logits add noise to the ratios;
                                       # on a GPU no slower where torch.mm has out_dtype); False: in bf16
    skip_zero_advantage: bool = True   # with kl_coef = entropy_coef = 0, rows whose advantage is 0 run no pass
                                       # (their loss and gradient are exactly 0; the token-mean still counts them)
    reduce_every_micro_batch: bool = True  # reduce-scatter gradients after each micro-batch (sharded: fits 8B);
                                           # False: once a mini-batch, each rank holding full fp32 gradients
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
    eval_at_start: bool = True         # also at step 0 (False: the base model is evaluated elsewhere, once)
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
    wandb_project: str = ""            # also log to wandb (config, metrics, samples); metrics.jsonl either way

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


def redraw_index(seed, step, slot, draw, n_prompts):
    """dynamic_sampling's replacement for a step's prompt slot, draw 1, 2, ...: any prompt, a pure function of
    (seed, step, slot, draw), so that it is the same on any number of ranks and after a resume."""
    return sample_seed(seed, step, f"slot{slot}", f"redraw{draw}") % n_prompts


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
    """Sample a completion per prompt string: (prompt token lists, completion token lists, their log-probs under
    the tempered distribution they were drawn from, their texts as eval.py grades them, whether each was cut at
    max_new_tokens before a stop)."""
    stops, stop_ids = evaluation.TEMPLATES[cfg.template]["stop"], [tokenizer.eos_id, tokenizer.eot_id]
    encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
    tokens, logprobs = policy.generate(encoded, max_new_tokens, cfg.temperature, cfg.top_p, stop_ids=stop_ids,
                                       seed=seeds, stop_strings=stops, decode=tokenizer.decode, compile=cfg.compile,
                                       kv_budget=cfg.kv_budget or None, max_batch=cfg.gen_batch,
                                       tempered_logprobs=True)
    ended = StopStrings(stops, tokenizer.decode)
    truncated = [len(t) == max_new_tokens and t[-1] not in stop_ids and not ended.end(t) for t in tokens]
    texts = [evaluation.completion_text(t, tokenizer, stops) for t in tokens]
    return encoded, tokens, logprobs, texts, truncated


def score(texts, lengths, golds, cfg, max_new_tokens, counts):
    """2. rewards (float64 (N,)) and which responses were right; counts gains the grader's timeouts and errors
    and the responses without an answer."""
    correct = grade_many(list(zip(texts, golds)), rounded=cfg.rounded_answers, last_number=cfg.last_number,
                         counts=counts)
    answered = [extract_answer(t, last_number=cfg.last_number) is not None for t in texts]
    counts["no_answer"] += answered.count(False)
    rewards = torch.tensor([cfg.reward_correct if c else cfg.reward_wrong if a else cfg.reward_no_answer
                            for c, a in zip(correct, answered)], dtype=torch.float64)
    if cfg.overlong_buffer:
        rewards += grpo.overlong_penalty(lengths, max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty)
    return rewards, correct


def collect(policy, tokenizer, data, cfg, step, rank, world_size):
    """1-3. This rank's groups for the step, the rollout, rewards and advantages: the step's prompt slots j = rank,
    rank + W, ..., each a prompt and its samples_per_prompt samples (contiguous). With dynamic_sampling a slot
    whose rewards are all equal is drawn again, up to max_redraws times. Returns a dict of per-sequence lists
    and tensors, and the step's counts and seconds."""
    P, G, n = cfg.prompts_per_step, cfg.samples_per_prompt, len(data)
    first, max_new = prompt_indices(step, n, P, cfg.seed), length_at(step, cfg.max_response_len)
    groups, pending = {}, list(range(rank, P, world_size))
    # the same keys on every rank, in the same order: step_metrics sums each over the ranks
    stats = {"uniform_groups": 0, "redraws": 0, "no_answer": 0, "timeouts": 0, "errors": 0, "rollout_tokens": 0,
             "time_rollout": 0.0, "time_reward": 0.0}
    for draw in range(1 + (cfg.max_redraws if cfg.dynamic_sampling else 0)):
        prompt = {j: first[j] if draw == 0 else redraw_index(cfg.seed, step, j, draw, n) for j in pending}
        # draw 0: the seeds as ever; a redraw's name holds its slot, so two slots that redraw one prompt differ
        name = {j: prompt[j] if draw == 0 else f"{prompt[j]}/slot{j}/{draw}" for j in pending}
        t0 = time.perf_counter()
        out = rollout(policy, tokenizer, [data[prompt[j]]["prompt"] for j in pending for _ in range(G)],
                      [sample_seed(cfg.seed, step, name[j], k) for j in pending for k in range(G)], cfg, max_new)
        t1 = time.perf_counter()
        golds = [data[prompt[j]]["answer"] for j in pending for _ in range(G)]
        rewards, correct = score(out[3], [len(r) for r in out[1]], golds, cfg, max_new, stats)
        stats["time_rollout"] += t1 - t0
        stats["time_reward"] += time.perf_counter() - t1
        stats["rollout_tokens"] += sum(len(r) for r in out[1])
        groups_r = rewards.view(-1, G)
        uniform = (groups_r == groups_r[:, :1]).all(dim=1).tolist()  # equal values, not a std of 0 (rounding)
        if draw == 0:
            stats["uniform_groups"] = sum(uniform)  # before any redraw: how much of the batch teaches nothing
        else:
            stats["redraws"] += len(pending)
        last = draw == (cfg.max_redraws if cfg.dynamic_sampling else 0)
        for g, j in enumerate(pending):
            if not (uniform[g] and cfg.dynamic_sampling and not last):
                rows = slice(g * G, (g + 1) * G)
                groups[j] = dict(prompt_index=[prompt[j]] * G, golds=golds[rows], prompt_tokens=out[0][rows],
                                 responses=out[1][rows], rollout_logprobs=out[2][rows], texts=out[3][rows],
                                 truncated=out[4][rows], rewards=rewards[rows].tolist(), correct=correct[rows],
                                 uniform=[uniform[g]] * G)
        pending = [j for j in pending if j not in groups]
        if not pending:
            break
    batch = {key: [v for j in sorted(groups) for v in groups[j][key]] for key in groups[min(groups)]}
    batch["rewards"] = torch.tensor(batch["rewards"], dtype=torch.float64)
    batch["advantages"] = grpo.group_advantages(batch["rewards"], G, cfg.advantage, cfg.std_norm).float()
    # masked, not removed: every rank must run the same number of passes
    uniform = torch.tensor(batch["uniform"])
    batch["keep"] = ~uniform if cfg.drop_uniform_groups or cfg.dynamic_sampling else torch.ones_like(uniform)
    return batch, stats


def free_weights(model):
    """Release the rollout copy's weights while the update runs (sync_weights allocates them again): at 8B
    that is 16 GB of bf16 a rank the update can use."""
    for p in model.parameters():
        p.data = torch.empty(0, dtype=p.dtype, device=p.device)


def sync_weights(rollout_model, model):
    """Copy the (possibly sharded) policy's weights into the full rollout copy on every rank, a tensor at a
    time: each shard cast to the copy's dtype, then gathered, so the memory this takes beyond the two models is
    one tensor in the rollout dtype, never the whole fp32 model."""
    from torch.distributed.tensor import DTensor
    copies = dict(rollout_model.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            copy = copies[name]
            full = p.detach().to(copy.dtype)
            if isinstance(full, DTensor):
                full = full.full_tensor()
            if copy.shape != full.shape:  # released by free_weights
                copy.data = torch.empty(full.shape, dtype=copy.dtype, device=copy.device)
            copy.copy_(full)
            del full


# -----------------------------------------------------------------------------
# the run


def step_metrics(step, batch, rollout_stats, update_stats, cfg, device, seconds):
    """metrics.jsonl's row for a step, over every rank: what a researcher watches when a run misbehaves."""
    P, G, M = cfg.prompts_per_step, cfg.samples_per_prompt, cfg.mini_batch_prompts
    n_all, s = P * G, {k: all_sum(v, device) for k, v in {**rollout_stats, **update_stats}.items()
                       if not k.startswith("time_") and k != "logprob_gap_max"}
    lengths = sorted(all_gather([len(r) for r in batch["responses"]]))
    per_token = lambda key, count: s[key] / max(s[count], 1)  # noqa: E731
    row = {"step": step,
           "reward": all_sum(batch["rewards"].sum().item(), device) / n_all,
           "accuracy": all_sum(sum(batch["correct"]), device) / n_all,
           "response_len": sum(lengths) / n_all,
           "response_len_p50": lengths[len(lengths) // 2], "response_len_p90": lengths[int(0.9 * (len(lengths) - 1))],
           "response_len_max": lengths[-1],
           "truncated": all_sum(sum(batch["truncated"]), device) / n_all,  # hit the limit before any stop
           "uniform_groups": s["uniform_groups"] / P,  # groups whose rewards were all equal (before redraws)
           "no_answer": s["no_answer"] / (n_all + s["redraws"] * G),
           "grader_timeouts": int(s["timeouts"]), "grader_errors": int(s["errors"]),
           "loss": s["loss"] / (P // M),
           **{key: per_token(key, "tokens") for key in ("clip_frac", "clip_frac_low", "clip_frac_high")},
           "kl": per_token("kl", "tokens_run"), "entropy": per_token("entropy", "tokens_run"),
           "kl_old_new": per_token("kl_old_new", "tokens_first"),
           "logprob_gap": per_token("logprob_gap", "tokens_run"),
           "logprob_gap_max": all_max(update_stats["logprob_gap_max"], device),
           "rows_run": s["rows_run"] / n_all,  # the rest had nothing to learn (advantage 0, or masked)
           "grad_norm": update_stats["grad_norm"] / (P // M), "lr": cfg.lr,
           **({"dual_clip_frac": per_token("dual_clip_frac", "tokens")} if cfg.clip_ratio_c else {}),
           **({"redraws": int(s["redraws"])} if cfg.dynamic_sampling else {}),
           **{key: round(all_max(value, device), 3) for key, value in seconds.items()},  # the slowest rank's
           "rollout_tok_per_s": s["rollout_tokens"] / max(all_max(seconds["time_rollout"], device), 1e-9),
           "update_tok_per_s": s["tokens"] / max(all_max(seconds["time_update"], device), 1e-9)}
    if update_stats["skipped"]:
        row["skipped"] = update_stats["skipped"]
    return row


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
    choices = {"advantage": ("grpo", "rloo"), "ratio_level": ("token", "sequence"),
               "loss_agg": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key}={getattr(cfg, key)!r}: choose one of {', '.join(allowed)}")
    if cfg.clip_ratio_c and cfg.clip_ratio_c <= 1:
        raise ValueError(f"clip_ratio_c={cfg.clip_ratio_c}: dual-clip needs a bound above 1 (3.0 is usual), or 0")
    limits = [cfg.max_response_len] if isinstance(cfg.max_response_len, int) else cfg.max_response_len.values()
    if not 0 <= cfg.overlong_buffer <= min(limits):
        raise ValueError(f"overlong_buffer={cfg.overlong_buffer} must be within [0, {min(limits)}], the shortest "
                         "max_response_len: the penalty falls over the last overlong_buffer tokens before the limit")


def load_models(cfg, init, device, world_size):
    """The policy (fp32, sharded over ranks, trained), its full copy that generates (bf16 on GPUs), a frozen
    reference for the KL (only if kl_coef), and the optimizer."""
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
    return model, policy, reference, optimizer


def held_out_eval(policy, tokenizer, cfg, step, rank, world_size):
    """Greedy accuracy on the held-out benchmarks: every rank generates its share of the prompts with its rollout
    copy, rank 0 grades them all (the others get {}), graded as the reward is, and writes every completion to
    out_dir/eval/step_<step>/<benchmark>_samples.jsonl."""
    generate = evaluation.model_generate(policy, tokenizer, max_new_tokens=length_at(step, cfg.max_response_len),
                                         batch_size=cfg.gen_batch, stop=evaluation.TEMPLATES[cfg.template]["stop"],
                                         compile=cfg.compile, rank=rank, world_size=world_size,
                                         kv_budget=cfg.kv_budget or None)
    scores = evaluation.evaluate(generate, cfg.eval_benchmarks.split(","), mode="zeroshot", template=cfg.template,
                                 limit=cfg.eval_limit or None, data_dir=cfg.eval_data, last_number=cfg.last_number,
                                 out_dir=os.path.join(cfg.out_dir, "eval", f"step_{step:06d}") if rank == 0 else None)
    results = {f"eval/{name}": s["accuracy"] for name, s in scores.items()}
    results |= {f"eval/{name}_response_len": s["mean_response_tokens"] for name, s in scores.items()}
    if rank == 0:
        tqdm.write(f"step {step}: held-out greedy accuracy {results}")
    return results


def main(cfg):
    run = start_run(cfg, check=check_config)
    if run.done:
        return
    rank, world_size, device = run.rank, run.world_size, run.device
    init = ensure_init(cfg, rank)
    tokenizer = Tokenizer.from_pretrained(cfg.tokenizer or init)
    tokenizer.check_hf()  # what the export at the end needs
    data = load_prompts(cfg.prompts, cfg.template)
    model, policy, reference, optimizer = load_models(cfg, init, device, world_size)
    step = run.restore(model, optimizer)["step"] if run.resume else 0
    run.open_logs(step, ["metrics", "samples"])
    bar, bad = run.progress(step), 0  # bad: steps in a row with a skipped update
    sync_weights(policy, model)
    if step == 0 and cfg.eval_every and cfg.eval_at_start:  # the starting point of the held-out curve
        run.log({"step": 0, **held_out_eval(policy, tokenizer, cfg, step, rank, world_size)})
    while step < cfg.max_steps:
        # 1-3. rollout, rewards, advantages (a group lives on one rank); then the update without the rollout copy
        batch, rollout_stats = collect(policy, tokenizer, data, cfg, step, rank, world_size)
        free_weights(policy)
        t0 = time.perf_counter()
        update_stats = grpo.update(model, reference, optimizer, batch, cfg, device, world_size,
                                   length_at(step, cfg.max_response_len))
        t1 = time.perf_counter()
        step += 1
        sync_weights(policy, model)
        seconds = {"time_rollout": rollout_stats.pop("time_rollout"), "time_reward": rollout_stats.pop("time_reward"),
                   "time_update": t1 - t0, "time_sync": time.perf_counter() - t1}

        # 5. logs, evaluation, checkpoints
        row = step_metrics(step, batch, rollout_stats, update_stats, cfg, device, seconds)
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            row |= held_out_eval(policy, tokenizer, cfg, step, rank, world_size)
        run.log(row)
        for i in range(min(cfg.log_samples, len(batch["texts"]))):
            text = batch["texts"][i]
            run.log({"step": step, "prompt": data[batch["prompt_index"][i]]["prompt"], "completion": text,
                     "answer": extract_answer(text, last_number=cfg.last_number), "gold": batch["golds"][i],
                     "reward": batch["rewards"][i].item()}, "samples")
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['response_len']:.0f}",
                        trunc=f"{row['truncated']:.2f}", loss=f"{row['loss']:.4f}")
        bad = bad + 1 if row.get("skipped") else 0
        if row.get("skipped") and rank == 0:
            tqdm.write(f"step {step}: {row['skipped']} of {cfg.prompts_per_step // cfg.mini_batch_prompts} updates "
                       "had a non-finite loss or gradient: skipped")
        if bad >= cfg.max_bad_steps:
            raise RuntimeError(f"{bad} steps in a row had a non-finite loss or gradient (the last: step {step}); "
                               f"stopping. The last good checkpoint, {latest_checkpoint(cfg.out_dir)}, is untouched: "
                               "lower lr or check the rewards, then re-run to resume from it.")
        run.checkpoint(step, model, optimizer)
        if run.preempted(step, model, optimizer):
            return
    run.finish(model, tokenizer)


if __name__ == "__main__":
    launch(main, Config(), preemptible=True)
