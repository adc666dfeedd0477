"""
GRPO's maths as functions of tensors, each checked against a float64 reference in tests/test_grpo.py; rl.py runs
them. The advantages (GRPO, Dr. GRPO's unnormalised, RLOO's leave-one-out), DAPO's soft overlong penalty, and the
policy loss: PPO's clipped surrogate with clip-higher (clip_high > clip_low), dual-clip (clip_ratio_c), the ratio
per token or per sequence (GSPO), a KL penalty to a reference and an entropy bonus, aggregated as the papers do.
"""
import torch


def group_advantages(rewards, group_size, estimator="grpo", std_norm=True, eps=1e-6):
    """rewards (N,), each group's samples contiguous -> advantages (N,).
    grpo: reward minus the group's mean, divided by the group's (unbiased) std + eps unless std_norm is False
    (Dr. GRPO). rloo: reward minus the mean of the group's other rewards (REINFORCE leave-one-out)."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} (>= 2) samples")
    r = rewards.view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)
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
            raise ValueError(f"clip_ratio_c={clip_ratio_c}: dual-clip needs a bound above 1 (3.0 is usual), or 0 for off")
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
