"""rl.py's maths against values written out by hand and a float64 reference of the formulas; and, end to end
on a fresh copy of the repo, configs/rl_tiny.py learning on two seeds, exact resume after kill -9, and a 2-process
run equal to a 1-process one."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port

import eval as evaluation
import rl as R
from common import load_checkpoint
from configurator import configure
from grader import grade_many
from model import Llama
from rl import Config, aggregate, ensure_init, group_advantages, length_at, policy_loss, prompt_indices, sample_seed
from tokenizer import Tokenizer


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
    loss, stats = policy_loss(logprobs, old, ADV, MASK, 0.2, 0.2, agg)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["clip_frac"].item() == pytest.approx(2 / 5)


def test_policy_loss_gradient_by_hand():
    logprobs, old = inputs()
    loss, _ = policy_loss(logprobs, old, ADV, MASK, 0.2, 0.2, "token-mean")
    loss.backward()
    # d/dlogp of -A * ratio is -A * ratio where the unclipped term is taken; 0 where the clip is active
    expected = torch.tensor([[-1.0, 0.0, -0.5], [2 * 1.1, 0.0, 0.0]], dtype=torch.float64) / 5
    assert torch.allclose(logprobs.grad, expected, atol=1e-12)


def test_clip_higher_widens_only_the_upper_side():
    logprobs, old = inputs()
    _, stats = policy_loss(logprobs, old, ADV, MASK, 0.2, 0.6, "token-mean")
    assert stats["clip_frac"].item() == pytest.approx(1 / 5)  # 1.5 < 1.6 now passes; 0.7 < 0.8 still clipped


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
    loss, stats = policy_loss(logprobs, old, adv, mask, 0.2, 0.28, agg, ref, 0.1, entropy, 0.01)
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


def test_prompts_and_seeds_are_pure_functions_of_the_step():
    n, per_step = 10, 4
    seen = [i for step in range(5) for i in prompt_indices(step, n, per_step, seed=3)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))  # epochs
    assert seen[:10] != seen[10:20]  # a new permutation each epoch
    assert prompt_indices(2, n, per_step, 3) == seen[8:12]
    assert prompt_indices(2, n, per_step, 4) != seen[8:12]
    assert sample_seed(0, 1, 2, 3) == sample_seed(0, 1, 2, 3) != sample_seed(0, 1, 2, 4)


def test_reward_grades_the_text_eval_grades():
    """The stop token is no text of a completion: "The answer is 42<|end_of_text|>" would be no answer."""
    tokenizer = Tokenizer.train(["The answer is 42. So x = 3, and Problem: next."] * 20, 300)

    class Scripted:  # a policy that answers every prompt with the same tokens, then EOS
        def generate(self, prompts, *args, **kwargs):
            return [tokenizer.encode(text) + [tokenizer.eos_id] for text in TEXTS][:len(prompts)], None

    TEXTS = ["The answer is 42", "So x = 3.\n\nProblem: next", "The answer is 42."]
    cfg = Config(template="qa")
    _, tokens, texts = R.rollout(Scripted(), tokenizer, ["q"] * 3, [1, 2, 3], cfg, 16)
    stops = evaluation.TEMPLATES["qa"]["stop"]
    assert texts == [evaluation.completion_text(t, tokenizer, stops) for t in tokens]
    assert "<|end_of_text|>" not in "".join(texts) and texts[0] == "The answer is 42"
    assert grade_many([(t, "42") for t in texts]) == [True, False, True]  # as eval.py grades the same completions


def test_top_p_below_one_is_refused():
    with pytest.raises(ValueError, match="top_p=0.9.*off-policy"):
        R.check_config(Config(top_p=0.9, prompts_per_step=4, mini_batch_prompts=2), 1)


def test_progressive_response_length():
    assert [length_at(s, {0: 4096, 100: 8192}) for s in (0, 99, 100, 500)] == [4096, 4096, 8192, 8192]
    assert length_at(7, 256) == 256


def test_init_commands_run_with_this_interpreter_outside_torchruns_world(tmp_path, monkeypatch):
    out = tmp_path / "seen.txt"
    write = f"open({str(out)!r}, 'w').write(os.environ.get('RANK', '-') + ' ' + sys.executable)"
    cfg = Config(init_from=str(tmp_path / "made"),
                 init_commands=[f'python -c "import os, sys; {write}"', f"mkdir {tmp_path / 'made'}"])
    monkeypatch.setenv("RANK", "0")  # as torchrun sets it for rank 0
    monkeypatch.setenv("PATH", script_env()["PATH"])  # a venv not activated
    assert ensure_init(cfg, rank=0) == str(tmp_path / "made")
    assert out.read_text() == f"- {sys.executable}"
    with pytest.raises(FileNotFoundError, match="init_from=.*nowhere.*set init_commands"):
        ensure_init(Config(init_from=str(tmp_path / "nowhere")), rank=0)


# -----------------------------------------------------------------------------
# end to end: python rl.py configs/rl_tiny.py on a fresh clone

ROOT = Path(__file__).resolve().parents[1]
# a few small steps from the tiny model: 2 PPO mini-batches a step, so the second one is off-policy
SMALL = ["--prompts_per_step=4", "--samples_per_prompt=4", "--mini_batch_prompts=2", "--micro_batch=4",
         "--max_steps=6", "--ckpt_every=2", "--eval_every=0", "--max_response_len={0: 40}", "--log_samples=16"]
TIMING = ("rollout_tok_per_s", "update_tok_per_s")


def script_env():
    """PATH without this interpreter's folder, as for `.venv/bin/python rl.py ...` with the venv not activated:
    init_commands' `python` must still be this interpreter, not whatever `python` PATH finds first."""
    here = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != here)}


def rl(root, *args, launcher=(sys.executable,)):
    out = subprocess.run([*launcher, "rl.py", "configs/rl_tiny.py", *args], cwd=root, env=script_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def rows(path, drop=TIMING):
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone's working copy (the repo's scripts and configs, nothing under out/) after rl_tiny ran on it
    with seed 0, its init_commands first, then with seed 1 from the same mid-trained model."""
    root = tmp_path_factory.mktemp("clone")
    for f in ROOT.iterdir():
        if f.suffix == ".py" or f.name in ("configs", "data", "miniature"):
            (root / f.name).symlink_to(f)
    start = time.monotonic()
    rl(root)
    print(f"rl_tiny from a fresh clone: {time.monotonic() - start:.0f} s")
    rl(root, "--seed=1", "--out_dir=out/rl_tiny_seed1")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("out", ["out/rl_tiny", "out/rl_tiny_seed1"])
def test_rl_tiny_learns(clone, out):
    metrics = rows(clone / out / "metrics.jsonl")
    steps = [r for r in metrics if "reward" in r]
    evals = [(r["step"], r["eval/synth"]) for r in metrics if "eval/synth" in r]
    assert [r["step"] for r in steps] == list(range(1, 41)) and [s for s, _ in evals] == [0, 20, 40]
    first, last = (sum(r["reward"] for r in part) / 10 for part in (steps[:10], steps[-10:]))
    assert last >= first + 0.2, (first, last)
    assert evals[-1][1] >= evals[0][1] + 0.05, evals  # held-out greedy accuracy, 200 problems never trained on
    assert (clone / out / "hf" / "model.safetensors").exists()


@pytest.mark.slow
def test_non_finite_updates_are_skipped_then_the_run_stops_with_its_checkpoints_intact(clone, monkeypatch):
    calls = {"n": 0}
    loss_fn = R.policy_loss

    def poisoned(*args, **kwargs):  # 4 calls a step (2 updates x 2 micro-batches): steps 2 and 4 on give NaN
        calls["n"] += 1
        loss, stats = loss_fn(*args, **kwargs)
        step = (calls["n"] - 1) // 4 + 1
        return (loss * float("nan"), stats) if step == 2 or step >= 4 else (loss, stats)

    monkeypatch.setattr(R, "policy_loss", poisoned)
    monkeypatch.chdir(clone)
    cfg = configure(Config(), ["configs/rl_tiny.py", *SMALL, "--out_dir=out/nan"])
    with pytest.raises(RuntimeError, match="3 steps in a row"):
        R.main(cfg)
    metrics = [r for r in rows(clone / "out/nan/metrics.jsonl") if "reward" in r]
    assert [(r["step"], r.get("skipped")) for r in metrics if r.get("skipped")] == [(2, 2), (4, 2), (5, 2), (6, 2)]
    assert sorted(os.listdir(clone / "out/nan/ckpt")) == ["step_000002", "step_000004"]  # not step 6
    assert not (clone / "out/nan/hf").exists()
    model = Llama.from_pretrained(str(clone / "out/rl_tiny/hf"))  # (shapes); the checkpoint's weights are finite
    load_checkpoint(str(clone / "out/nan/ckpt/step_000004"), model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_rl_kill_and_resume_gives_identical_metrics(clone):
    rl(clone, *SMALL, "--out_dir=out/straight")
    out = clone / "out" / "killed"
    proc = subprocess.Popen([sys.executable, "rl.py", "configs/rl_tiny.py", *SMALL, f"--out_dir={out}"], cwd=clone,
                            env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "ckpt" / "step_000004").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= len(rows(out / "metrics.jsonl")) < 6, "the kill should land mid-run, after the step-4 checkpoint"
    rl(clone, *SMALL, f"--out_dir={out}")
    straight = clone / "out" / "straight"
    assert rows(out / "metrics.jsonl") == rows(straight / "metrics.jsonl")
    assert [r["step"] for r in rows(out / "metrics.jsonl")] == list(range(1, 7))
    assert rows(out / "samples.jsonl") == rows(straight / "samples.jsonl")  # the same prompts and samples


@pytest.mark.slow
def test_rl_two_processes_equal_one(clone):
    # a clip range of 0.1% clips by construction: the second mini-batch's ratios are taken after the first
    # mini-batch's AdamW step (lr 1e-4 on every weight), which moves log-probs by far more than 0.1%, on any CPU
    # the held-out eval at steps 0 and 3: two ranks split its prompts and must score what one process does
    args = [*SMALL, "--max_steps=3", "--ckpt_every=3", "--clip_low=0.001", "--clip_high=0.001", "--eval_every=3",
            "--eval_limit=12"]
    rl(clone, *args, "--out_dir=out/one")
    rl(clone, *args, "--out_dir=out/two", launcher=(sys.executable, "-m", "torch.distributed.run",
                                                    "--nproc_per_node=2", f"--master_port={free_port()}"))
    one, two = rows(clone / "out/one/metrics.jsonl"), rows(clone / "out/two/metrics.jsonl")
    evals = [[{k: v for k, v in r.items() if k.startswith("eval/")} for r in run if "eval/synth" in r]
             for run in (one, two)]
    assert len(evals[0]) == 2 and evals[0] == evals[1], evals
    one, two = [r for r in one if "reward" in r], [r for r in two if "reward" in r]
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert (a["reward"], a["accuracy"], a["response_len"]) == (b["reward"], b["accuracy"], b["response_len"])
        for key in ("loss", "clip_frac", "entropy", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (key, a, b)
    assert any(r["loss"] != 0 for r in one) and any(r["clip_frac"] > 0 for r in one)  # the checks check something
