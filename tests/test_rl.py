"""rl.py's steps on hand-made batches (grpo.py's maths has tests/test_grpo.py): the reward graded as eval.py grades,
every metric of a step against values computed here, zero-advantage rows skipped with the same update, the
learner's log-probs at the sampling temperature, redraws pure functions of the step on any split over ranks, the
weight sync a tensor at a time (its peak memory measured over 2 gloo ranks); and, end to end on a fresh copy of
the repo, configs/rl_tiny.py learning on two seeds, exact resume after kill -9, and a 2-process run equal to a
1-process one."""
import json
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
import grpo
import rl as R
from common import load_checkpoint
from configurator import configure
from grader import grade_many
from model import Llama
from rl import Config, ensure_init, length_at, prompt_indices, sample_seed
from test_model import small_model
from tokenizer import Tokenizer


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
            tokens = [tokenizer.encode(text) + [tokenizer.eos_id] for text in TEXTS][:len(prompts)]
            return tokens, [[0.0] * len(t) for t in tokens]

    TEXTS = ["The answer is 42", "So x = 3.\n\nProblem: next", "The answer is 42."]
    cfg = Config(template="qa")
    _, tokens, _, texts, truncated = R.rollout(Scripted(), tokenizer, ["q"] * 3, [1, 2, 3], cfg, 16)
    assert truncated == [False] * 3
    stops = evaluation.TEMPLATES["qa"]["stop"]
    assert texts == [evaluation.completion_text(t, tokenizer, stops) for t in tokens]
    assert "<|end_of_text|>" not in "".join(texts) and texts[0] == "The answer is 42"
    assert grade_many([(t, "42") for t in texts]) == [True, False, True]  # as eval.py grades the same completions


@pytest.fixture(scope="module")
def world():
    """A tokenizer and a small random model on its vocabulary, and two prompts with their answers."""
    tokenizer = Tokenizer.train(["Question: what is 6 times 7? Answer: The answer is 42. 41 9 no"] * 20, 300)
    model = small_model(vocab_size=300).float()
    data = [{"prompt": evaluation.render(q, "qa"), "answer": a} for q, a in [("6 times 7?", "42"), ("3 plus 6?", "9")]]
    return tokenizer, model, data


class Scripted:
    """A policy whose completions are answer(prompt text, the call's index of it) then EOS (or, for a token list,
    just those tokens), with log-probs 0; it counts its calls."""

    def __init__(self, tokenizer, answer):
        self.tokenizer, self.answer, self.calls = tokenizer, answer, []

    def generate(self, prompts, max_new_tokens, *args, **kwargs):
        texts = [self.answer(self.tokenizer.decode(p), i) for i, p in enumerate(prompts)]
        self.calls.append(len(prompts))
        tokens = [t if isinstance(t, list) else self.tokenizer.encode(t) + [self.tokenizer.eos_id] for t in texts]
        return tokens, [[0.0] * len(t) for t in tokens]


def test_a_hand_made_step_logs_every_metric(world):
    tokenizer, model, data = world
    long = tokenizer.encode("41 " * 40)[:40]  # 40 tokens, no stop: cut at the limit (an answer, wrong)
    scripts = {"6 times": ["The answer is 42", "The answer is 41", long, "Let me think. First we add"],  # 1, 0, 0, -1
               "3 plus": ["The answer is 9"] * 4}  # every sample of the second prompt right: a uniform group
    policy = Scripted(tokenizer, lambda prompt, i: scripts[next(k for k in scripts if k in prompt)][i % 4])
    cfg = Config(template="qa", prompts_per_step=2, samples_per_prompt=4, mini_batch_prompts=2, micro_batch=3,
                 max_response_len=40, reward_no_answer=-1.0, lr=0.0, temperature=0.7)
    batch, stats = R.collect(policy, tokenizer, data, cfg, step=0, rank=0, world_size=1)
    first = prompt_indices(0, 2, 2, 0)[0]  # which prompt the step's slot 0 holds
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    out = grpo.update(model, None, optimizer, batch, cfg, torch.device("cpu"), 1, 40)
    seconds = {"time_rollout": 1.0, "time_reward": 0.5, "time_update": 2.0, "time_sync": 0.25}
    row = R.step_metrics(1, batch, stats, out, cfg, torch.device("cpu"), seconds)
    rewards = [[1.0, 0.0, 0.0, -1.0], [1.0] * 4]
    lengths = sorted(len(r) for r in batch["responses"])
    assert row["reward"] == pytest.approx(4 / 8) and row["accuracy"] == pytest.approx(5 / 8)
    assert batch["rewards"].tolist() == sum(rewards if "6 times" in data[first]["prompt"] else rewards[::-1], [])
    assert row["truncated"] == 1 / 8 and row["no_answer"] == 1 / 8 and row["uniform_groups"] == 1 / 2
    assert (row["response_len_max"], row["response_len_p50"], row["response_len_p90"]) == \
        (lengths[-1], lengths[4], lengths[6])
    assert row["response_len"] == pytest.approx(sum(lengths) / 8)
    # advantage 0, no pass: the uniform group's rows, and the two whose reward (0) is their group's mean
    assert row["rows_run"] == 2 / 8
    assert row["clip_frac"] == row["clip_frac_low"] == row["clip_frac_high"] == 0  # on-policy: every ratio is 1
    assert row["kl_old_new"] == 0 and row["grader_timeouts"] == 0 and "skipped" not in row
    assert {k: row[k] for k in seconds} == seconds and row["update_tok_per_s"] == pytest.approx(sum(
        len(r) for r in batch["responses"]) / 2.0)
    # the entropy and the gap to the rollout's log-probs (0 here), over the rows that ran, computed here
    x, y, mask, _ = grpo.sequences(batch["prompt_tokens"], batch["responses"], batch["rollout_logprobs"])
    ran = batch["advantages"] != 0
    with torch.no_grad():
        logprobs, entropy = model.logprobs(x[ran], y[ran], entropy=True, temperature=0.7)
    m = mask[ran]
    assert row["logprob_gap"] == pytest.approx(logprobs[m].abs().mean().item(), rel=1e-5)
    assert row["logprob_gap_max"] == pytest.approx(logprobs[m].abs().max().item(), rel=1e-5)
    assert row["entropy"] == pytest.approx(entropy[m].mean().item(), rel=1e-5)


def test_zero_advantage_rows_skipped_give_the_same_update(world):
    tokenizer, _, data = world
    g = torch.Generator().manual_seed(4)
    batch = {"prompt_tokens": [[tokenizer.bos_id] + tokenizer.encode(data[i % 2]["prompt"]) for i in range(8)],
             "responses": [torch.randint(0, 300, (n,), generator=g).tolist() for n in (5, 3, 7, 2, 6, 4, 1, 8)],
             "truncated": [False] * 8, "keep": torch.ones(8, dtype=torch.bool),
             "advantages": torch.tensor([0.5, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, -0.3])}
    batch["rollout_logprobs"] = [[-1.0] * len(r) for r in batch["responses"]]
    steps = []
    for skip in (False, True):
        model = small_model(vocab_size=300).float()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the step is the gradient
        cfg = Config(prompts_per_step=2, samples_per_prompt=4, mini_batch_prompts=2, micro_batch=8, grad_clip=1e9,
                     skip_zero_advantage=skip, temperature=1.0)
        out = grpo.update(model, None, optimizer, batch, cfg, torch.device("cpu"), 1, 8)
        assert out["rows_run"] == (4 if skip else 8)
        steps.append([b - p.detach() for b, p in zip(before, model.parameters())])
    assert any(s.abs().max() > 1e-4 for s in steps[0])  # the update does something
    for a, b in zip(*steps):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)  # the same gradient (up to the batch's rounding)


def test_learner_log_probs_are_at_the_sampling_temperature(world):
    """Rollout and learner agree on every token's log-prob at the sampling temperature; at temperature 1 the
    learner would be off-policy by far more."""
    tokenizer, model, data = world
    cfg = Config(template="qa", prompts_per_step=2, samples_per_prompt=4, mini_batch_prompts=2, micro_batch=8,
                 max_response_len=12, lr=0.0, temperature=0.7)
    batch, _ = R.collect(model, tokenizer, data, cfg, step=0, rank=0, world_size=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    batch["advantages"] = torch.ones(8)  # every row runs its pass
    same = grpo.update(model, None, optimizer, batch, cfg, torch.device("cpu"), 1, 12)
    assert same["logprob_gap_max"] < 1e-4 and same["tokens_run"] > 20
    other = grpo.update(model, None, optimizer, batch, Config(**{**cfg.__dict__, "temperature": 1.0}),
                     torch.device("cpu"), 1, 12)
    assert other["logprob_gap"] / other["tokens_run"] > 0.05


def test_dynamic_sampling_redraws_a_uniform_group_the_same_way_on_any_ranks(world):
    tokenizer, _, data = world
    data = data * 5  # 10 prompts: 5 whose answer is 42, 5 whose answer is 9
    right = lambda prompt, i: "The answer is 42" if i % 2 else "The answer is 9"  # noqa: E731
    uniform = lambda prompt, i: "The answer is 42"  # noqa: E731  (right for one kind of prompt, wrong for the other)
    cfg = Config(template="qa", prompts_per_step=4, samples_per_prompt=2, mini_batch_prompts=4, dynamic_sampling=True,
                 max_redraws=2, max_response_len=8)
    for answer in (right, uniform):
        one = Scripted(tokenizer, answer)
        whole, stats = R.collect(one, tokenizer, data, cfg, step=3, rank=0, world_size=1)
        again, _ = R.collect(Scripted(tokenizer, answer), tokenizer, data, cfg, step=3, rank=0, world_size=1)
        assert whole["prompt_index"] == again["prompt_index"] and whole["rewards"].tolist() == again["rewards"].tolist()
        parts = [R.collect(Scripted(tokenizer, answer), tokenizer, data, cfg, step=3, rank=r, world_size=2)[0]
                 for r in (0, 1)]
        # rank r holds slots r, r + 2: the whole step's slots are 0, 1, 2, 3 in that order
        slots = [parts[j % 2]["prompt_index"][(j // 2) * 2:(j // 2 + 1) * 2] for j in range(4)]
        assert [i for part in slots for i in part] == whole["prompt_index"]
        if answer is right:  # every group mixes right and wrong: nothing redrawn
            assert stats["redraws"] == 0 and one.calls == [8] and whole["keep"].all()
        else:  # a group of the "9" prompts is all wrong: drawn again, until a "42" prompt or max_redraws
            assert stats["uniform_groups"] == 4 and stats["redraws"] > 0 and len(one.calls) > 1
            assert not whole["keep"].any()  # "42" prompts are all right: uniform too, masked after the last draw


def test_the_weight_sync_holds_one_tensor_at_a_time_beyond_the_models():
    """2 gloo ranks, a model sharded over them: the resident memory sync_weights adds at its peak is about one
    tensor, not the whole model gathered (measured: the process's high-water mark, reset before the sync)."""
    script = Path(__file__).parent / "sync_memory.py"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(script)], capture_output=True, text=True,
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [x for x in out.stdout.splitlines() if x.startswith("sync ")]
    assert len(lines) == 2, out.stdout[-3000:]
    for line in lines:
        _, rank, model_mb, tensor_mb, extra_mb, equal = line.split()
        assert equal == "True"  # the copy holds the policy's weights
        assert float(extra_mb) < 3 * float(tensor_mb) < 0.25 * float(model_mb), line


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
TIMING = ("rollout_tok_per_s", "update_tok_per_s", "time_rollout", "time_reward", "time_update", "time_sync")


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
    loss_fn = grpo.policy_loss

    def poisoned(*args, **kwargs):  # 4 calls a step (2 updates x 2 micro-batches): steps 2 and 4 on give NaN
        calls["n"] += 1
        loss, stats = loss_fn(*args, **kwargs)
        step = (calls["n"] - 1) // 4 + 1
        return (loss * float("nan"), stats) if step == 2 or step >= 4 else (loss, stats)

    monkeypatch.setattr(grpo, "policy_loss", poisoned)
    monkeypatch.chdir(clone)
    # every row runs its pass (none skipped for a zero advantage), so each step makes the same 4 calls
    cfg = configure(Config(), ["configs/rl_tiny.py", *SMALL, "--out_dir=out/nan", "--skip_zero_advantage=False"])
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


def test_rl_sigterm_checkpoints_the_step_exits_0_and_resumes_exactly(clone):
    """SIGTERM mid-run (SLURM's end of a job): the step finishes, its checkpoint is written between ckpt_every's,
    rl.py exits 0 without an export, and re-running gives the uninterrupted run's metrics and samples."""
    straight = clone / "out" / "straight_preempt"
    rl(clone, *SMALL, "--ckpt_every=100", f"--out_dir={straight}")
    out = clone / "out" / "preempted"
    proc = subprocess.Popen([sys.executable, "rl.py", "configs/rl_tiny.py", *SMALL, "--ckpt_every=100",
                             f"--out_dir={out}"], cwd=clone, env=script_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    log = out / "metrics.jsonl"
    while not (log.exists() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    stopped = len(rows(out / "metrics.jsonl"))
    assert 2 <= stopped < 6 and f"SIGTERM: stopped after step {stopped}" in stdout
    assert os.listdir(out / "ckpt") == [f"step_{stopped:06d}"] and not (out / "hf").exists()
    rl(clone, *SMALL, "--ckpt_every=100", f"--out_dir={out}")
    assert rows(out / "metrics.jsonl") == rows(straight / "metrics.jsonl")
    assert rows(out / "samples.jsonl") == rows(straight / "samples.jsonl")


@pytest.mark.slow
def test_rl_two_processes_equal_one(clone):
    # a clip range of 0.1% clips by construction: the second mini-batch's ratios are taken after the first
    # mini-batch's AdamW step (lr 1e-4 on every weight), which moves log-probs by far more than 0.1%, on any CPU
    # the held-out eval at steps 0 and 3: two ranks split its prompts and must score what one process does
    # and dynamic sampling: a uniform group's slot is drawn again, the same prompts on one rank as on two
    args = [*SMALL, "--max_steps=3", "--ckpt_every=3", "--clip_low=0.001", "--clip_high=0.001", "--eval_every=3",
            "--eval_limit=12", "--dynamic_sampling=True"]
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
        for key in ("reward", "accuracy", "response_len", "response_len_p90", "truncated", "uniform_groups", "redraws",
                    "rows_run"):
            assert a[key] == b[key], (key, a, b)
        for key in ("loss", "clip_frac", "entropy", "grad_norm", "logprob_gap", "kl_old_new"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (key, a, b)
    assert any(r["loss"] != 0 for r in one) and any(r["clip_frac"] > 0 for r in one)  # the checks check something
    assert any(r["redraws"] > 0 for r in one)


def test_wandb_offline_gets_the_config_every_metrics_row_the_samples_and_eval_results(clone, tmp_path):
    """WANDB_MODE=offline: rl.py's resolved config, every metrics row at its step and each step's samples as a
    table; then eval.py's results; metrics.jsonl and results.json stay what they were."""
    from conftest import wandb_logged
    env = {**script_env(), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run([sys.executable, "rl.py", "configs/rl_tiny.py", *SMALL, "--max_steps=3", "--eval_every=3",
                          "--log_samples=2", "--out_dir=out/tracked", "--wandb_project=octothinker-test"],
                         cwd=clone, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    logged = wandb_logged(clone / "out/tracked")
    assert logged["config"]["lr"] == 1e-4 and logged["config"]["samples_per_prompt"] == 4
    metrics = [json.loads(line) for line in (clone / "out/tracked/metrics.jsonl").read_text().splitlines()]
    history = [h for h in logged["history"] if "reward" in h or "eval/synth" in h]
    assert [h["_step"] for h in history] == [r["step"] for r in metrics] == [0, 1, 2, 3]  # 0: eval_at_start
    for h, r in zip(history, metrics):
        assert all(h[k] == v for k, v in r.items() if k != "step"), (h, r)
    assert "eval/synth" in history[0] and "eval/synth" in history[-1]
    tables = [h for h in logged["history"] if h.get("samples/_type") == "table-file"]
    assert [h["_step"] for h in tables] == [1, 2, 3] and all(h["samples/nrows"] == 2 for h in tables)
    table = json.loads(next((clone / "out/tracked/wandb").glob("offline-run-*/files/" + tables[0]["samples/path"]))
                       .read_text())
    first = [json.loads(line) for line in (clone / "out/tracked/samples.jsonl").read_text().splitlines()][:2]
    assert [dict(zip(table["columns"], row)) for row in table["data"]] == first
    out = subprocess.run([sys.executable, "eval.py", "--model=out/tracked", "--benchmarks=synth",
                          "--data_dir=out/world/benchmarks", "--mode=zeroshot", "--template=qa", "--limit=8",
                          "--max_new_tokens=40", "--out_dir=out/tracked_eval", "--wandb_project=octothinker-test"],
                         cwd=clone, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((clone / "out/tracked_eval/results.json").read_text())["results"]["synth"]
    summary = wandb_logged(clone / "out/tracked_eval")["summary"]
    assert summary["synth/accuracy"] == results["accuracy"] and summary["synth/n"] == 8
