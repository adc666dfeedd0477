"""train.py: a tiny run end to end, exact resume after kill -9, 2-process FSDP = 1 process, the schedule
of every config, the NaN guard, and config errors."""
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port

import train
from common import load_checkpoint
from configurator import configure
from data import MixtureLoader, prepare
from model import Llama
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
# a small model and batch, so that a run of tens of steps takes seconds
SMALL = ["--model_args={'dim': 64, 'n_layers': 2, 'n_heads': 4, 'n_kv_heads': 2, 'ffn_dim': 128, "
         "'vocab_size': 512, 'max_seq_len': 512, 'rope_original_len': 64}",
         "--seq_len=64", "--batch_tokens=512", "--micro_batch=2", "--lr=3e-3", "--min_lr=3e-4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two prepared sources of little arithmetic stories and the tokenizer they were prepared with."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    stories, sums = [], []
    for _ in range(2000):
        a, b = rng.randint(1, 40), rng.randint(1, 40)
        stories.append({"text": f"{rng.choice(['Ann', 'Bob', 'Cy'])} had {a} marbles and found {b}. "
                                f"Now there are {a + b} marbles."})
        sums.append({"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}."})
    for name, rows in [("stories", stories), ("sums", sums)]:
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = Tokenizer.train([r["text"] for r in stories], 512)
    tokenizer.save(root / "tok")
    prepare(str(root / "stories.jsonl"), root / "stories", tokenizer, workers=1)
    prepare(str(root / "sums.jsonl"), root / "sums", tokenizer, fmt="qa", workers=1)
    mixture = {"stories": (str(root / "stories"), 0.7), "sums": (str(root / "sums"), 0.3)}
    return [f"--tokenizer={root / 'tok'}", f"--mixture={mixture!r}"]


def run(args, out_dir, check=True, **kw):
    cmd = [sys.executable, "train.py", "configs/tiny.py", *args, f"--out_dir={out_dir}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=check, **kw)


def metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_exports(corpus, tmp_path):
    out = tmp_path / "tiny"
    run(corpus + ["--max_steps=80"], out)  # tiny.py itself: its model, batch and schedule
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 81))
    assert all(k in rows[0] for k in ("loss", "lr", "tokens", "grad_norm", "tok_per_s"))
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    # the export loads as it is, with the tokenizer beside it, and matches the final checkpoint
    model = Llama.from_pretrained(str(out / "hf"))
    assert sum(p.numel() for p in model.parameters()) < 1.5e6
    tokenizer = Tokenizer.from_pretrained(out / "hf")
    prompt = [tokenizer.bos_id] + tokenizer.encode("Bob had 3 marbles and found 4. Now there are")
    tokens, _ = model.generate([prompt], max_new_tokens=3, temperature=0)
    assert tokenizer.decode(tokens[0]).strip().split(" ")[1] == "marbles"  # it learned the stories' shape
    assert model.config.vocab_size == tokenizer.n_vocab  # a model from scratch gets its tokenizer's vocabulary
    assert sorted(os.listdir(out / "ckpt")) == ["step_000050", "step_000080"]  # keep_checkpoints=2
    # a finished run re-run does nothing
    again = run(corpus + ["--max_steps=80"], out)
    assert "nothing to do" in again.stdout and len(metrics(out)) == 80


def test_wandb_is_asked_for_or_never_imported_and_a_resumed_run_is_a_new_wandb_run_in_its_group(corpus, tmp_path):
    """4 steps, the step-4 checkpoint lost (a crash after it was written), then on to 6: two wandb runs in one
    group, each with steps only going forward, the resumed one from its checkpoint's step 2; every row is
    metrics.jsonl's."""
    import shutil

    from conftest import wandb_runs
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = tmp_path / "tracked"
    run(corpus + SMALL + ["--max_steps=4", "--ckpt_every=2", "--wandb_project=octothinker-test"], out, env=env)
    shutil.rmtree(out / "ckpt" / "step_000004")
    run(corpus + SMALL + ["--max_steps=6", "--ckpt_every=2", "--wandb_project=octothinker-test"], out, env=env)
    first, resumed = wandb_runs(out)
    assert first["group"] == resumed["group"] and (first["name"], resumed["name"]) == ("tracked", "tracked@2")
    steps = [[h["_step"] for h in r["history"] if "loss" in h] for r in (first, resumed)]
    assert steps == [[1, 2, 3, 4], [3, 4, 5, 6]]
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    kept = [h for h in first["history"] if "loss" in h and h["_step"] <= 2] + resumed["history"]  # the jsonl's rows
    for h in (h for h in kept if "loss" in h):
        assert h["loss"] == rows[h["_step"] - 1]["loss"] and h["lr"] == rows[h["_step"] - 1]["lr"]
    assert resumed["config"]["max_steps"] == 6 and resumed["config"]["mixture"]
    # without wandb_project, none of the scripts imports wandb
    check = "import sys, train, rl, eval; assert 'wandb' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, check=True)


def test_validation_loss_is_the_held_out_token_mean_and_changes_no_training_step(corpus, tmp_path):
    root = Path(corpus[0].split("=", 1)[1]).parent  # the corpus fixture's folder
    tokenizer = Tokenizer.from_pretrained(root / "tok")
    rng = random.Random(1)  # stories with numbers the training stories never have (they stop at 40)
    held = [{"text": f"Cy had {rng.randint(41, 90)} marbles and found {rng.randint(41, 90)}. Now there are many."}
            for _ in range(300)]
    (tmp_path / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    prepare(str(tmp_path / "held.jsonl"), tmp_path / "held", tokenizer, workers=1)
    val = {"held": (str(tmp_path / "held"), 1.0)}
    args = corpus + SMALL + ["--max_steps=6", "--ckpt_every=3"]
    run(args, tmp_path / "plain")
    run(args + [f"--val_mixture={val!r}", "--eval_every=4", "--val_batches=2"], tmp_path / "val")
    plain, rows = metrics(tmp_path / "plain"), metrics(tmp_path / "val")
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 6]  # every eval_every steps, and the last
    assert [(r["loss"], r["grad_norm"]) for r in rows] == [(r["loss"], r["grad_norm"]) for r in plain]
    # the last val_loss is the exported model's mean loss over the same held-out windows, recomputed here document
    # by document (each its own forward pass from position 0, no packing) in float64
    model = Llama.from_pretrained(str(tmp_path / "val" / "hf"), dtype=torch.float64)
    loader = MixtureLoader(val, 64, 512 // 64, seed=0, tokenizer=tokenizer)
    total, n = 0.0, 0
    for _ in range(2):
        x, y, doc_ids = next(loader)
        for row in range(len(x)):
            for d in doc_ids[row].unique():
                run_ = doc_ids[row] == d
                logits = model(x[row][run_][None])[0]
                total += torch.nn.functional.cross_entropy(logits, y[row][run_], reduction="sum").item()
                n += int(run_.sum())
    assert rows[-1]["val_loss"] == pytest.approx(total / n, rel=1e-5)
    assert rows[3]["val_loss"] != rows[-1]["val_loss"]  # it follows the model
    with pytest.raises(subprocess.CalledProcessError) as e:
        run(args + [f"--val_mixture={val!r}"], tmp_path / "no_every")
    assert "eval_every" in e.value.stderr


def test_kill_and_resume_gives_identical_losses(corpus, tmp_path):
    args = corpus + SMALL + ["--max_steps=40", "--ckpt_every=10"]
    run(args, tmp_path / "straight")
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "train.py", "configs/tiny.py", *args, f"--out_dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "ckpt" / "step_000020").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(metrics(out))
    assert 20 <= killed_at < 40, "the kill should land mid-run, after the step-20 checkpoint"
    run(args, out)
    straight, resumed = metrics(tmp_path / "straight"), metrics(out)
    assert [r["step"] for r in resumed] == list(range(1, 41))
    assert [(r["loss"], r["grad_norm"]) for r in resumed] == [(r["loss"], r["grad_norm"]) for r in straight]


def test_a_preemption_signal_checkpoints_the_step_and_exits_0_then_resumes_exactly(corpus, tmp_path):
    """SLURM's warning (SIGUSR1; SIGTERM in test_rl.py) mid-run: the current step finishes, its checkpoint is
    written (between ckpt_every's), the run exits 0 without an export; re-running gives the uninterrupted run's
    losses."""
    sig = signal.SIGUSR1
    args = corpus + SMALL + ["--max_steps=40", "--ckpt_every=100"]
    straight = tmp_path / "straight"
    run(args, straight)
    out = tmp_path / "preempted"
    proc = subprocess.Popen([sys.executable, "train.py", "configs/tiny.py", *args, f"--out_dir={out}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 5) \
            and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    stopped = len(metrics(out))
    assert 5 <= stopped < 40 and f"stopped after step {stopped}" in stdout
    assert os.listdir(out / "ckpt") == [f"step_{stopped:06d}"] and not (out / "hf").exists()
    again = run(args, out)
    assert f"resuming from {out / 'ckpt' / f'step_{stopped:06d}'}" in again.stdout
    pairs = [[(r["loss"], r["grad_norm"]) for r in metrics(folder)] for folder in (out, straight)]
    assert pairs[0] == pairs[1]


def test_decay_branches_start_from_the_stable_checkpoint(corpus, tmp_path):
    stable = tmp_path / "stable"
    run(corpus + SMALL + ["--max_steps=20", "--warmup=0.2", "--decay=0"], stable)
    weights, first = {}, {}
    for init_optimizer in (False, True):
        decay = tmp_path / f"decay_{init_optimizer}"
        run(corpus + SMALL + ["--max_steps=6", "--warmup=0", "--decay=1.0", f"--init_from={stable}",
                              f"--init_optimizer={init_optimizer}", "--tokenizer=", "--seed=1"], decay)
        rows = metrics(decay)
        assert rows[-1]["lr"] == pytest.approx(3e-4) and rows[0]["lr"] < 3e-3  # decays to the floor
        first[init_optimizer] = rows[0]["loss"]
        weights[init_optimizer] = Llama.from_pretrained(str(decay / "hf")).state_dict()
    s = metrics(stable)
    # both start where the stable run ended (same weights, same first batch), not from scratch
    assert first[False] == first[True] < 0.7 * s[0]["loss"]
    # ... and a few steps from its weights: AdamW moves each weight by about lr a step at most
    model = Llama(train.ModelConfig(**json.loads((stable / "ckpt" / "step_000020" / "meta.json").read_text())["model_config"]))
    load_checkpoint(str(stable / "ckpt" / "step_000020"), model)
    for n, p in model.named_parameters():
        assert (weights[False][n] - p).abs().max() < 6 * 3e-3 * 1.5, n
    # the stable run's optimizer state changes the updates: its moments, not fresh ones, are used
    assert any(not torch.equal(weights[False][n], weights[True][n]) for n in weights[False])


def test_a_branch_can_start_from_an_earlier_checkpoint_of_the_stable_run(corpus, tmp_path):
    stable = tmp_path / "stable"
    run(corpus + SMALL + ["--max_steps=8", "--ckpt_every=4", "--warmup=0.2", "--decay=0"], stable)
    earlier = stable / "ckpt" / "step_000004"
    branch = tmp_path / "branch"  # lr 0: its export is exactly the weights it started from
    run(corpus + SMALL + ["--max_steps=1", "--lr=0", "--min_lr=0", f"--init_from={earlier}", "--tokenizer="], branch)
    meta = json.loads((earlier / "meta.json").read_text())
    model = Llama(train.ModelConfig(**meta["model_config"]))
    load_checkpoint(str(earlier), model)
    start, last = Llama.from_pretrained(str(branch / "hf")).state_dict(), Llama.from_pretrained(str(stable / "hf")).state_dict()
    for n, p in model.named_parameters():
        assert torch.equal(start[n], p.detach()), n
    assert any(not torch.equal(start[n], last[n]) for n in start)  # not the stable run's last weights


def test_two_process_fsdp_equals_one_process(corpus, tmp_path):
    args = corpus + SMALL + ["--max_steps=12", "--ckpt_every=6"]
    run(args, tmp_path / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "train.py", "configs/tiny.py", *args, f"--out_dir={tmp_path / 'two'}"]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(one) == len(two) == 12
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]), (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * abs(a["grad_norm"]), (a, b)
    assert a["loss"] < 0.8 * one[0]["loss"]  # and it learned something
    # the sharded checkpoint exports the same weights as the single-process one
    w1, w2 = (Llama.from_pretrained(str(tmp_path / d / "hf")).state_dict() for d in ("one", "two"))
    for name in w1:
        assert torch.allclose(w1[name], w2[name], rtol=1e-4, atol=1e-6), name


def lrs(config_file, *args):
    cfg = configure(train.Config(), [config_file, *args])
    return cfg, [train.lr_at(s, cfg) for s in range(cfg.max_steps)]


@pytest.mark.parametrize("config_file", ["configs/stable.py", "configs/tiny.py"])
def test_stable_schedules_warm_up_then_hold(config_file):
    cfg, lr = lrs(str(ROOT / config_file), "--max_steps=40")
    warmup = train.steps_of(cfg.warmup, 40)
    assert warmup >= 1 and lr[0] == pytest.approx(cfg.lr / warmup)
    assert all(a < b for a, b in zip(lr[:warmup - 1], lr[1:warmup]))
    assert lr[warmup - 1] == pytest.approx(cfg.lr)
    decay = train.steps_of(cfg.decay, 40)
    assert all(x == pytest.approx(cfg.lr) for x in lr[warmup:40 - decay])
    if decay:  # tiny.py: warmup, stable and decay in one run
        assert 40 - decay - warmup >= 5 and lr[-1] == pytest.approx(cfg.min_lr)
        assert all(a > b for a, b in zip(lr[-decay:], lr[-decay + 1:]))
    else:
        assert lr[-1] == pytest.approx(cfg.lr)


@pytest.mark.parametrize("branch", ["short", "long", "hybrid"])
def test_decay_branches_decay_from_the_stable_run_to_the_floor(branch):
    stable, _ = lrs(str(ROOT / "configs/stable.py"))
    cfg, lr = lrs(str(ROOT / f"configs/decay_{branch}.py"), "--max_steps=40")
    assert cfg.init_from == stable.out_dir and cfg.lr == stable.lr
    assert lr[0] == pytest.approx(cfg.lr, rel=0.01) and lr[-1] == pytest.approx(cfg.min_lr)
    assert all(a > b for a, b in zip(lr, lr[1:]))
    assert set(cfg.mixture) != set(stable.mixture)


@pytest.mark.parametrize("shape, midpoint", [("linear", 0.5), ("cosine", 0.5), ("1-sqrt", 1 - math.sqrt(0.5))])
def test_decay_shapes(shape, midpoint):
    cfg = train.Config(lr=1.0, min_lr=0.0, max_steps=100, warmup=0, decay=1.0, decay_shape=shape)
    assert train.lr_at(49, cfg) == pytest.approx(midpoint)
    assert train.lr_at(99, cfg) == 0.0


def test_nan_guard_skips_then_stops_without_touching_the_checkpoint(corpus, tmp_path, monkeypatch):
    cfg = configure(train.Config(), [str(ROOT / "configs/tiny.py"), *corpus, *SMALL, "--max_steps=30",
                                     "--ckpt_every=10", f"--out_dir={tmp_path}"])
    forward = Llama.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):  # micro-batches of steps 12 and 21 on give NaN
        calls["n"] += 1
        loss = forward(self, *args, **kwargs)
        step = (calls["n"] - 1) // 4 + 1  # 4 micro-batches a step
        return loss * float("nan") if step == 12 or step >= 21 else loss

    monkeypatch.setattr(Llama, "forward", poisoned)
    with pytest.raises(RuntimeError, match="3 steps in a row"):
        train.main(cfg)
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows if r.get("skipped")] == [12, 21, 22, 23]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["step_000010", "step_000020"]
    assert not (tmp_path / "hf").exists()
    # the skipped step changed nothing: the checkpoint after it holds finite weights
    meta = json.loads((tmp_path / "ckpt" / "step_000020" / "meta.json").read_text())
    model = Llama(train.ModelConfig(**meta["model_config"]))
    load_checkpoint(str(tmp_path / "ckpt" / "step_000020"), model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'lrate'.*valid keys:.*\blr\b"):
        configure(train.Config(), ["--lrate=3"])
    with pytest.raises(ValueError, match="expected a dict"):
        configure(train.Config(), ["--mixture=3"])
    cfg = configure(train.Config(), [str(ROOT / "configs/tiny.py"), "--max_steps=7", "--compile=true"])
    assert (cfg.max_steps, cfg.compile, cfg.seq_len) == (7, True, 256)
    with pytest.raises(ValueError, match="batch_tokens"):
        train.main(train.Config(batch_tokens=1000, seq_len=64, out_dir=str(tmp_path / "never"), mixture={"a": ("x", 1)}))
    assert not (tmp_path / "never").exists()  # checked before anything is written
