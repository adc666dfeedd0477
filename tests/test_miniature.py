"""miniature.sh end to end with tiny budgets on a fresh copy of the repo: every stage runs, the report covers every
branch, and a re-run does nothing again. (That no held-out problem is in any training corpus, and that every answer
of the world verifies with grader.py, is tests/test_world.py's.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miniature.report import BRANCHES

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"TRAIN_ARGS": "--max_steps=4 --ckpt_every=2",
         "RL_ARGS": "--max_steps=2 --prompts_per_step=4 --samples_per_prompt=2 --mini_batch_prompts=4 "
                    "--eval_limit=10 --max_response_len={0:24}"}


def miniature(root):
    env = {**os.environ, **SMOKE, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", "miniature.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_miniature_smoke(tmp_path):
    for f in ROOT.iterdir():
        if f.suffix in (".py", ".sh") or f.name in ("configs", "data", "miniature"):
            (tmp_path / f.name).symlink_to(f)
    miniature(tmp_path)
    out = tmp_path / "out" / "miniature"
    results = json.loads((out / "results.json").read_text())
    assert results["seconds"] > 0 and sorted(results["branches"]) == sorted(BRANCHES)
    for name, b in results["branches"].items():
        assert 0 <= b["base_accuracy"] <= 1 and len(b["rl_accuracy"]) == 2, name
        assert b["response_length"]["base"] > 0 and b["response_length"]["rl"] > 0, name
    # the shorter stable stage is the stable run's midpoint: its branch starts from step 2 of 4
    meta = json.loads((out / "hybrid_half_stable" / "config.json").read_text())
    assert meta["init_from"].endswith("stable/ckpt/step_000002")
    report = (out / "report.md").read_text()
    assert all(f"`{name}`" in report for name in BRANCHES) and "does not re-prove" in report
    assert (out / "rl_curves.png").stat().st_size > 1000
    again = miniature(tmp_path)  # everything is finished: every stage says so and nothing is trained again
    assert again.count("nothing to do") == 2 + 6 + 12 and again.count("already prepared") == 5
