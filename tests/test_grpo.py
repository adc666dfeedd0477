"""grpo.py's maths against values written out by hand and float64 references of each formula, term by term:
the advantages (GRPO, Dr. GRPO, RLOO), DAPO's overlong penalty, the clipped surrogate with clip-higher, dual-clip,
GSPO's sequence ratio, KL and entropy, and the aggregations."""
import math

import pytest
import torch

from grpo import aggregate, group_advantages, k3, overlong_penalty, policy_loss


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    a = 0.5 / math.sqrt(1 / 3)  # group std (unbiased) of {1, 0, 0, 1} is sqrt(1/3)
    b = 0.75 / math.sqrt(0.25)  # {0, 0, 0, 1}: mean 0.25, unbiased std 0.5
    expected = [a, -a, -a, a, 0, 0, 0, 0, -0.25 / 0.5, -0.25 / 0.5, -0.25 / 0.5, b]
    assert torch.allclose(group_advantages(rewards, 4), torch.tensor(expected), atol=1e-5)
    dr_grpo = group_advantages(rewards, 4, std_norm=False)
    assert torch.allclose(dr_grpo, torch.tensor([.5, -.5, -.5, .5, 0, 0, 0, 0, -.25, -.25, -.25, .75]))
    with pytest.raises(ValueError, match="groups of 5"):
        group_advantages(rewards, 5)


# ratios chosen so that each side of the clip range is hit with a positive and a negative advantage
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 1.3]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)  # ragged: the second response is 2 tokens


def inputs():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.5, -2.5]], dtype=torch.float64)
    return (old + RATIOS.log()).requires_grad_(), old


@pytest.mark.parametrize("agg, expected", [
    # per-token losses: row 0 (A=1): -1, -1.2 (clipped at 1.2), -0.5; row 1 (A=-2): 2.2, 1.6 (clipped at 0.8), masked
    ("token-mean", (-1 - 1.2 - 0.5 + 2.2 + 1.6) / 5),
    ("seq-mean-token-mean", ((-1 - 1.2 - 0.5) / 3 + (2.2 + 1.6) / 2) / 2),
    ("seq-mean-token-sum-norm", ((-1 - 1.2 - 0.5) / 3 + (2.2 + 1.6) / 3) / 2),
])
def test_policy_loss_by_hand(agg, expected):
    logprobs, old = inputs()
    loss, stats = policy_loss(logprobs, old, ADV, MASK, clip_low=0.2, clip_high=0.2, agg=agg)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["clip_frac"].item() == pytest.approx(2 / 5)
    # 1.5 with A > 0 is held at 1.2 (high); 0.7 with A < 0 at 0.8 (low)
    assert stats["clip_frac_low"].item() == pytest.approx(1 / 5) == stats["clip_frac_high"].item()


def test_policy_loss_gradient_by_hand():
    logprobs, old = inputs()
    loss, _ = policy_loss(logprobs, old, ADV, MASK, clip_low=0.2, clip_high=0.2, agg="token-mean")
    loss.backward()
    # d/dlogp of -A * ratio is -A * ratio where the unclipped term is taken; 0 where the clip is active
    expected = torch.tensor([[-1.0, 0.0, -0.5], [2 * 1.1, 0.0, 0.0]], dtype=torch.float64) / 5
    assert torch.allclose(logprobs.grad, expected, atol=1e-12)


def test_clip_higher_widens_only_the_upper_side():
    logprobs, old = inputs()
    _, stats = policy_loss(logprobs, old, ADV, MASK, clip_low=0.2, clip_high=0.6)
    assert stats["clip_frac"].item() == pytest.approx(1 / 5)  # 1.5 < 1.6 now passes; 0.7 < 0.8 still clipped
    assert stats["clip_frac_high"].item() == 0 and stats["clip_frac_low"].item() == pytest.approx(1 / 5)


def reference_loss(logprobs, old, adv, mask, ref, kl_coef, entropy, entropy_coef, agg, lo=0.2, hi=0.2):
    """The same objective written out in float64, token by token."""
    B, T = len(logprobs), len(logprobs[0])
    rows = []
    for b in range(B):
        terms = []
        for t in range(T):
            if not mask[b][t]:
                continue
            r = math.exp(logprobs[b][t] - old[b][t])
            term = max(-adv[b] * r, -adv[b] * min(max(r, 1 - lo), 1 + hi))
            d = ref[b][t] - logprobs[b][t]
            terms.append(term + kl_coef * (math.exp(d) - d - 1) - entropy_coef * entropy[b][t])
        rows.append(terms)
    if agg == "token-mean":
        return sum(map(sum, rows)) / sum(map(len, rows))
    if agg == "seq-mean-token-mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    return sum(sum(r) / T for r in rows) / len(rows)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_policy_loss_with_kl_and_entropy_matches_reference(agg):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 9
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    logprobs = old + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    entropy = torch.rand(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 4, 7, 2])
    mask = torch.arange(T)[None] < lengths[:, None]
    loss, stats = policy_loss(logprobs, old, adv, mask, clip_low=0.2, clip_high=0.28, agg=agg, ref_logprobs=ref,
                              kl_coef=0.1, entropy=entropy, entropy_coef=0.01)
    expected = reference_loss(logprobs.tolist(), old.tolist(), adv.tolist(), mask.tolist(), ref.tolist(), 0.1,
                              entropy.tolist(), 0.01, agg, 0.2, 0.28)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    d = (ref - logprobs)[mask]
    assert stats["kl"].item() == pytest.approx((d.exp() - d - 1).mean().item(), rel=1e-12)
    assert stats["kl"].item() > 0


def test_global_denominators_make_micro_batches_add_up():
    # the loss of a batch equals the sum of its slices' losses given the whole batch's denominators
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 7, generator=g, dtype=torch.float64)
    mask = torch.arange(7)[None] < torch.tensor([7, 3, 5, 1, 6, 2])[:, None]
    for agg, total in [("token-mean", mask.sum()), ("seq-mean-token-mean", 6), ("seq-mean-token-sum-norm", 6)]:
        whole = aggregate(x, mask, agg, max_len=7)
        parts = sum(aggregate(x[i:i + 2], mask[i:i + 2], agg, total=total, max_len=7) for i in range(0, 6, 2))
        assert parts.item() == pytest.approx(whole.item(), rel=1e-12)


def test_rloo_is_each_reward_minus_the_mean_of_the_others():
    g = torch.Generator().manual_seed(2)
    rewards = torch.rand(12, generator=g, dtype=torch.float64)
    got = group_advantages(rewards, 4, "rloo")
    r = rewards.tolist()
    expected = [r[i] - sum(r[j] for j in range(4 * (i // 4), 4 * (i // 4) + 4) if j != i) / 3 for i in range(12)]
    assert got.tolist() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="grpo or rloo"):
        group_advantages(rewards, 4, "ppo")


def test_overlong_penalty_by_hand():
    # limit 100, buffer 20: nothing up to 80 tokens, then -1/20 a token down to -0.5 (factor 0.5) at 100
    got = overlong_penalty([10, 80, 81, 90, 100], 100, 20, factor=0.5)
    assert got.tolist() == pytest.approx([0, 0, -0.025, -0.25, -0.5], abs=1e-15)
    with pytest.raises(ValueError, match="overlong_buffer=0"):
        overlong_penalty([10], 100, 0)


def test_dual_clip_bounds_a_negative_advantage_loss():
    # ratios 5 and 2 with A = -1: PPO's loss is 5 and 2; dual-clip at c = 3 holds the first at 3
    old = torch.zeros(1, 3, dtype=torch.float64)
    logprobs = torch.tensor([[5.0, 2.0, 0.5]], dtype=torch.float64).log().requires_grad_()
    adv, mask = torch.tensor([-1.0], dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    loss, stats = policy_loss(logprobs, old, adv, mask, clip_ratio_c=3.0)
    assert loss.item() == pytest.approx((3 + 2 + 0.8) / 3, abs=1e-12)  # 0.5 is held at 1 - 0.2 = 0.8 as ever
    assert stats["dual_clip_frac"].item() == pytest.approx(1 / 3)
    loss.backward()
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, 2 / 3, 0.0], abs=1e-12)  # bounded, clipped: no gradient
    positive, _ = policy_loss(logprobs, old, -adv, mask, clip_ratio_c=3.0)
    assert positive.item() == pytest.approx(-(1.2 + 1.2 + 0.5) / 3, abs=1e-12)  # A > 0: untouched
    with pytest.raises(ValueError, match="above 1"):
        policy_loss(logprobs, old, adv, mask, clip_ratio_c=0.5)


def test_sequence_ratio_is_gspos_objective_and_gradient():
    g = torch.Generator().manual_seed(3)
    B, T = 4, 6
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2
    logprobs = (old + 0.01 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.arange(T)[None] < torch.tensor([6, 2, 4, 5])[:, None]
    lo, hi = 3e-3, 4e-3
    loss, _ = policy_loss(logprobs, old, adv, mask, clip_low=lo, clip_high=hi, ratio_level="sequence",
                          agg="seq-mean-token-mean")
    loss.backward()
    # GSPO in float64: s_i = exp(mean over the response of log pi/pi_old), J = mean_i min(s_i A_i, clip(s_i) A_i)
    x = logprobs.detach().clone().requires_grad_()
    n = mask.sum(dim=1)
    s = torch.exp(((x - old) * mask).sum(dim=1) / n)
    expected = -torch.minimum(s * adv, s.clamp(1 - lo, 1 + hi) * adv).mean()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(logprobs.grad, x.grad, rtol=1e-10, atol=1e-14)
    assert (s < 1 - lo).any() or (s > 1 + hi).any()  # some sequence is clipped, as one


def test_k3_is_the_kl_of_the_sampler_to_the_learner():
    p = torch.tensor([[-0.5, -1.0, -2.0]], dtype=torch.float64)
    q = torch.tensor([[-0.6, -1.0, -1.5]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    expected = sum(math.exp(b - a) - (b - a) - 1 for a, b in [(-0.5, -0.6), (-1.0, -1.0)]) / 2
    assert k3(p, q, mask).item() == pytest.approx(expected, rel=1e-12) and k3(p, p, mask).item() == 0


def test_a_group_of_equal_rewards_has_advantage_exactly_zero():
    # 0.1 * 3 / 3 is not 0.1 in floats: a mean taken naively would leave advantages of ~1e-17 (and / std, ~1)
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.2, 0.7, 0.9], dtype=torch.float64)
    for estimator, std_norm in [("grpo", True), ("grpo", False), ("rloo", True)]:
        adv = group_advantages(rewards, 3, estimator, std_norm)
        assert adv[:3].tolist() == [0.0, 0.0, 0.0] and (adv[3:] != 0).all()
