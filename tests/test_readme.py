"""Every command README.md documents, as written: the CPU recipe run in order on a fresh copy of the repo (small
budgets appended where a run would take minutes; eval.py keeps its max_new_tokens default), the at-scale commands
resolved against their scripts' configs (they need GPUs and the hub), and the two setup commands checked against
what CI and tests/test_miniature.py run. A documented command cannot break unseen."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import data
import eval as E
import rl
import train
from configurator import configure

ROOT = Path(__file__).resolve().parents[1]
# appended to the README's own arguments (the last --key wins): minutes become seconds
SMALL = {"train.py": ["--max_steps=8", "--ckpt_every=4"],
         "rl.py": ["--max_steps=2", "--prompts_per_step=4", "--samples_per_prompt=2", "--mini_batch_prompts=4",
                   "--eval_every=2", "--eval_limit=10"],
         "eval.py": ["--limit=5"]}
CONFIGS = {"train.py": train.Config, "rl.py": rl.Config, "eval.py": E.Config}


def commands(section):
    """The commands of a README section's bash blocks: continuation lines joined, comments dropped."""
    text = re.split(r"^## ", (ROOT / "README.md").read_text(), flags=re.M)
    body = next(s for s in text if s.startswith(section))
    lines = "\n".join(re.findall(r"```bash\n(.*?)```", body, flags=re.S)).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def script_args(argv):
    """(script, its arguments) of `python script.py ...`, `python -m pkg.mod ...`, `torchrun [flags] script.py ...`."""
    if argv[0] == "torchrun":
        i = next(i for i, a in enumerate(argv) if a.endswith(".py"))
        return argv[i], argv[i + 1:]
    assert argv[0] == "python", argv
    return (argv[2], argv[3:]) if argv[1] == "-m" else (argv[1], argv[2:])


def test_the_setup_commands_are_what_ci_and_the_miniature_test_run():
    demo, tests = (" ".join(c) for c in commands("Two commands"))
    assert demo.endswith("&& bash miniature.sh")  # tests/test_miniature.py runs miniature.sh itself
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert shlex.split(ci) == shlex.split(tests)


def test_the_at_scale_commands_resolve():
    for argv in commands("At scale"):
        if argv[0] in ("vllm", "lm_eval"):  # other tools reading an export: not this repo's scripts
            assert any(a.startswith(("out/", "pretrained=out/")) and "/hf" in a for a in argv), argv
            continue
        script, args = script_args(argv)
        if script == "data.py":
            assert args[0] == "prepare"
            cfg = configure(data.PrepareConfig(), args[1:])
            assert cfg.inputs and cfg.out_dir and cfg.tokenizer
            continue
        cfg = configure(CONFIGS[script](), [str(ROOT / a) if a.endswith(".py") else a for a in args])
        assert cfg.out_dir or script == "eval.py", argv


def fresh_copy(folder):
    """A fresh clone's working copy of the repo in folder: its scripts, configs and data, nothing under out/."""
    for f in ROOT.iterdir():
        if f.suffix == ".py" or f.name in ("configs", "data", "miniature"):
            (folder / f.name).symlink_to(f)
    return folder


def test_a_fresh_clone_says_what_to_make_first(tmp_path):
    fresh_copy(tmp_path)
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                                       env={**os.environ, "HF_HUB_OFFLINE": "1"})  # a hub id never goes online
    out = run("train.py", "configs/tiny.py")  # its tokenizer is the world's, not made yet
    assert out.returncode != 0 and "tokenizer=out/world/tokenizer" in out.stderr
    assert "python data.py train_tokenizer" in out.stderr and "repo id" not in out.stderr.lower()
    out = run("train.py", "configs/decay_short.py")  # its init_from, out/stable, not trained yet
    assert out.returncode != 0 and "init_from=out/stable is neither a local file or folder nor a hub id" in out.stderr
    assert "python train.py configs/stable.py" in out.stderr


@pytest.mark.slow
def test_the_recipe_by_hand_runs_as_documented(tmp_path):
    fresh_copy(tmp_path)
    ran = []
    for argv in commands("The recipe on a CPU, by hand"):
        script, _ = script_args(argv)
        out = subprocess.run([sys.executable, *argv[1:], *SMALL.get(script, [])], cwd=tmp_path, capture_output=True,
                             text=True)
        assert out.returncode == 0, f"$ {shlex.join(argv)}\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
        ran.append(script)
    assert {"miniature.world", "data.py", "train.py", "eval.py", "rl.py", "model.py"} <= set(ran)
    assert (tmp_path / "out" / "rl_tiny" / "hf" / "model.safetensors").exists()
