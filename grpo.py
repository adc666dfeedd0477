"""
GRPO's learner: its maths as functions of tensors, each checked against a float64 reference in tests/test_grpo.py,
and the update that applies them to a step's rollouts (rl.py runs the step). The advantages (GRPO, Dr. GRPO's
unnormalised, RLOO's leave-one-out), DAPO's soft overlong penalty, and the policy loss: PPO's clipped surrogate
with clip-higher (clip_high > clip_low), dual-clip (clip_ratio_c), the ratio per token or per sequence (GSPO), a
KL penalty to a reference and an entropy bonus, aggregated as the papers do; then update: PPO mini-batches of
micro-batches under FSDP2, rows with nothing to learn skipped, a non-finite update skipped.
"""
import math

import torch

from common import all_max, all_sum, autocast, clip_gradients


def group_advantages(rewards, group_size, estimator="grpo", std_norm=True, eps=1e-6):
    """rewards (N,), each group's samples contiguous -> advantages (N,).
    grpo: reward minus the group's mean, divided by the group's (unbiased) std + eps unless std_norm is False
    (Dr. GRPO). rloo: reward minus the mean of the group's other rewards (REINFORCE leave-one-out)."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} (>= 2) samples")
    r = rewards.view(-1, group_size)
    # a group whose rewards are all equal gets exactly 0 (its mean can differ from them by a rounding)
    adv = torch.where((r == r[:, :1]).all(dim=1, keepdim=True), 0.0, r - r.mean(dim=1, keepdim=True))
    if estimator == "rloo":  # r_i - (sum - r_i) / (G - 1) = G / (G - 1) * (r_i - mean)
        adv = adv * group_size / (group_size - 1)
    elif estimator != "grpo":
        raise ValueError(f"advantage estimator '{estimator}': use grpo or rloo")
    elif std_norm:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    return adv.flatten()


def overlong_penalty(lengths, max_len, buffer, factor=1.0):
    """DAPO's soft overlong punishment, added to each response's reward: 0 up to max_len - buffer tokens, then
    falling linearly to -factor at max_len (the limit the rollout stops at). lengths (N,) -> (N,) float64."""
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong_buffer={buffer} must be in (0, max_len={max_len}]")
    over = (torch.as_tensor(lengths, dtype=torch.float64) - (max_len - buffer)).clamp(min=0, max=buffer)
    return -factor * over / buffer


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


def policy_loss(logprobs, old_logprobs, advantages, mask, *, clip_low=0.2, clip_high=0.2, clip_ratio_c=0.0,
                ratio_level="token", agg="token-mean", ref_logprobs=None, kl_coef=0.0, entropy=None,
                entropy_coef=0.0, total=None, max_len=None):
    """PPO's clipped surrogate with GRPO's sequence-level advantages: logprobs, old_logprobs, ref_logprobs,
    entropy and mask (B, T), advantages (B,) -> (loss, stats: token means of the clipped shares, the KL to the
    reference and the entropy).
    clip_ratio_c > 1: dual-clip, a negative advantage's loss per token at most clip_ratio_c * |A| however far
    the ratio grows. ratio_level="sequence": GSPO, each token's ratio the sequence's geometric mean ratio
    (clipped as one), its gradient through every token of it (GSPO-token's form; with
    agg="seq-mean-token-mean" it is GSPO's sequence objective exactly)."""
    mask = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    if ratio_level == "sequence":
        seq = (log_ratio * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        log_ratio = seq.detach() + logprobs - logprobs.detach()  # the value of seq, the gradient of each token
    elif ratio_level != "token":
        raise ValueError(f"ratio_level '{ratio_level}': use token or sequence")
    ratio = torch.exp(log_ratio)
    adv = advantages[:, None].to(logprobs.dtype)
    unclipped, clipped = -adv * ratio, -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    token_mean = lambda x: ((x * mask).sum() / mask.sum().clamp(min=1)).detach()  # noqa: E731
    low = (clipped > unclipped) & (ratio < 1)  # a negative advantage held at 1 - clip_low
    stats = {"clip_frac_low": token_mean(low.to(mask.dtype)),
             "clip_frac_high": token_mean(((clipped > unclipped) & ~low).to(mask.dtype)),
             "dual_clip_frac": torch.zeros(()), "kl": torch.zeros(()), "entropy": torch.zeros(())}
    if clip_ratio_c:
        if clip_ratio_c <= 1:
            raise ValueError(f"clip_ratio_c={clip_ratio_c}: dual-clip needs a bound above 1 (3.0 is usual), or 0")
        bound = -adv * clip_ratio_c
        dual = (adv < 0) & (per_token > bound)
        per_token = torch.where(dual, bound, per_token)
        stats["dual_clip_frac"] = token_mean(dual.to(mask.dtype))
    if ref_logprobs is not None:
        log_ref = ref_logprobs - logprobs
        kl = log_ref.exp() - log_ref - 1  # k3: a non-negative, unbiased estimate of KL(policy || ref)
        per_token = per_token + kl_coef * kl
        stats["kl"] = token_mean(kl)
    if entropy is not None:
        per_token = per_token - entropy_coef * entropy
        stats["entropy"] = token_mean(entropy)
    stats["clip_frac"] = stats["clip_frac_low"] + stats["clip_frac_high"]
    return aggregate(per_token, mask, agg, total, max_len), stats


def k3(logp, logq, mask):
    """KL(p || q) estimated on samples from p, token-mean over mask (k3: non-negative, unbiased): the KL between
    the policy that sampled (logp) and the one being trained (logq), as a diagnostic."""
    log_ratio = logq - logp
    mask = mask.to(log_ratio.dtype)
    return ((log_ratio.exp() - log_ratio - 1) * mask).sum() / mask.sum().clamp(min=1)

# -----------------------------------------------------------------------------
# the update


@torch.no_grad()
def all_logprobs(model, x, y, micro_batch, device, temperature=1.0, fp32_logits=True):
    """Per-token log-probs (float32, (B, T)) of every row's targets at temperature, a micro-batch at a time,
    without gradients."""
    return torch.cat([model.logprobs(x[i:i + micro_batch].to(device), y[i:i + micro_batch].to(device),
                                     temperature=temperature, fp32_logits=fp32_logits)[0]
                      for i in range(0, len(x), micro_batch)]).float()


def pad(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def sequences(prompt_tokens, response_tokens, response_values):
    """Inputs, targets (-100 outside the response), response mask, and response_values (one per response token:
    the rollout's log-probs) aligned with the targets, of prompt+response rows, right-padded."""
    x = [p + r[:-1] for p, r in zip(prompt_tokens, response_tokens)]
    y = [[-100] * (len(p) - 1) + r for p, r in zip(prompt_tokens, response_tokens)]
    v = [[0.0] * (len(p) - 1) + list(r) for p, r in zip(prompt_tokens, response_values)]
    x, y = pad(x, 0), pad(y, -100)
    return x, y, y != -100, pad(v, 0.0).float()



def micro_batches(rows, seq_lens, active, size):
    """A mini-batch's rows that run a pass (active), shortest first, in micro-batches of size: rows of similar
    length share one (the loss is a sum, so any split gives the same gradient) and it is as wide as its longest."""
    order = sorted((i for i in rows if active[i]), key=lambda i: seq_lens[i])
    return [order[i:i + size] for i in range(0, len(order), size)]


def update(model, reference, optimizer, batch, cfg, device, world_size, max_new_tokens):
    """4. The update: old (and reference) log-probs first, then the clipped surrogate on each PPO mini-batch, one
    optimizer step each (skipped if its gradient is not finite). Returns the stats step_metrics logs (this rank's
    token-weighted sums, and the collective ones)."""
    P, G, M = cfg.prompts_per_step, cfg.samples_per_prompt, cfg.mini_batch_prompts
    x, y, mask, rollout_lp = sequences(batch["prompt_tokens"], batch["responses"], batch["rollout_logprobs"])
    mask &= batch["keep"][:, None]
    if cfg.overlong_mask:  # DAPO: a truncated response's reward says nothing about its tokens
        mask &= ~torch.tensor(batch["truncated"])[:, None]
    seq_lens = [len(p) + len(r) - 1 for p, r in zip(batch["prompt_tokens"], batch["responses"])]
    advantages = batch["advantages"]
    # rows with a zero advantage have zero loss and gradient, unless the KL or entropy terms give them some
    skip_zero = cfg.skip_zero_advantage and not cfg.kl_coef and not cfg.entropy_coef
    active = (mask.any(dim=1) & ~(skip_zero & (advantages == 0))).tolist()
    on_policy = P == M  # one optimizer step per rollout: the old log-probs are the current ones, no extra pass
    amp = autocast(device, world_size)
    with amp:
        old = None if on_policy else all_logprobs(model, x, y, cfg.micro_batch, device, cfg.temperature,
                                                  cfg.fp32_logprobs)
        ref = all_logprobs(reference, x, y, cfg.micro_batch, device, cfg.temperature, cfg.fp32_logprobs) \
            if reference else None
    # this rank's sums over the tokens that ran a pass (the statistics' token means times their tokens)
    keys = ("loss", "clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "kl", "entropy", "kl_old_new",
            "logprob_gap", "grad_norm", "tokens_run", "tokens_first")
    sums, skipped, gap_max = dict.fromkeys(keys, 0.0), 0, 0.0
    per_update = M // world_size * G  # this rank's sequences in one mini-batch
    for u in range(P // M):
        rows = range(u * per_update, (u + 1) * per_update)
        n_tokens = all_sum(mask[rows.start:rows.stop].sum().item(), device)
        n_seqs = all_sum(mask[rows.start:rows.stop].any(dim=1).sum().item(), device)
        # The mini-batch's loss is normalised by its global count, over every rank (tokens for token-mean,
        # sequences otherwise), not per micro-batch: micro-batch losses then add up to the mini-batch's loss
        # however it is split across micro-batches and ranks, and whichever rows are skipped
        total = max(n_tokens if cfg.loss_agg == "token-mean" else n_seqs, 1)
        micro = [(s, True) for s in micro_batches(rows, seq_lens, active, cfg.micro_batch)]
        # every rank runs as many passes (FSDP's collectives), at least one (AdamW steps on zero gradients as on
        # any others): a pass with nothing to learn is a row with its mask all False
        passes = max(1, int(all_max(len(micro), device)) if world_size > 1 else len(micro))
        micro += [([rows.start], False)] * (passes - len(micro))
        for m, (s, real) in enumerate(micro):
            s = torch.tensor(s)
            width = max(seq_lens[i] for i in s.tolist())
            xb, yb, mb = (t[s, :width].to(device) for t in (x, y, mask))
            mb = mb if real else torch.zeros_like(mb)
            if world_size > 1:
                model.set_requires_gradient_sync(cfg.reduce_every_micro_batch or m == passes - 1)
            with amp:  # at the sampling temperature: the distribution the rollout drew from
                logprobs, entropy = model.logprobs(xb, yb, entropy=True, temperature=cfg.temperature,
                                                   fp32_logits=cfg.fp32_logprobs)
            before = logprobs.detach().float() if on_policy else old[s, :width].to(device)
            loss, stats = policy_loss(
                logprobs.float(), before, advantages[s].to(device), mb, clip_low=cfg.clip_low,
                clip_high=cfg.clip_high, clip_ratio_c=cfg.clip_ratio_c, ratio_level=cfg.ratio_level,
                agg=cfg.loss_agg, ref_logprobs=None if ref is None else ref[s, :width].to(device),
                kl_coef=cfg.kl_coef, entropy=entropy.float(), entropy_coef=cfg.entropy_coef, total=total,
                max_len=max_new_tokens)
            (loss * world_size).backward()  # FSDP averages gradients over ranks: times world_size, a sum again
            n = mb.sum().item()
            sums["loss"] += loss.item()
            for key in ("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "kl", "entropy"):
                sums[key] += stats[key].item() * n
            if n:  # the learner's log-probs before this update against the rollout's, on the same tokens
                gap = (before - rollout_lp[s, :width].to(device)).abs()[mb]
                sums["logprob_gap"] += gap.sum().item()
                sums["tokens_run"] += n
                gap_max = max(gap_max, gap.max().item())
                if u == 0:  # the first mini-batch: the policy that sampled against the one about to be updated
                    sums["kl_old_new"] += k3(before, logprobs.detach().float(), mb).item() * n
                    sums["tokens_first"] += n
        grad_norm = clip_gradients(model, cfg.grad_clip)  # over every rank's shards: all ranks agree
        if math.isfinite(grad_norm):  # a NaN or inf loss gives a non-finite gradient: that update is skipped
            optimizer.step()
        else:
            skipped += 1
        sums["grad_norm"] += grad_norm
        optimizer.zero_grad(set_to_none=True)
    return {**sums, "skipped": skipped, "logprob_gap_max": gap_max, "rows_run": sum(active), "tokens": int(mask.sum())}
