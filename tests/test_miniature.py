"""miniature.sh end to end with tiny budgets on a fresh copy of the repo: every stage runs, the report covers every
branch and finding, and a re-run does nothing again; and the report's statistics (difference of seed means, seed
spread, paired bootstrap interval, verdict) on hand-made results. (That no held-out problem is in any training
corpus, and that every answer of the world verifies with grader.py, is tests/test_world.py's.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import numpy as np

from miniature.report import ARMS, BRANCHES, FINDINGS, bootstrap_interval, compare, judge, reading, reads

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"TRAIN_ARGS": "--max_steps=4 --ckpt_every=2", "EVAL_ARGS": "--limit=10",
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
    assert results["seconds"] > 0 and sorted(results["branches"]) == sorted(ARMS)
    assert sorted(results["findings"]) == sorted(name for name, *_ in FINDINGS)
    for f in results["findings"].values():
        assert f["verdict"] in ("holds", "direction only", "does not hold") and f["interval"][0] <= f["interval"][1]
    for name, b in results["branches"].items():
        assert 0 <= b["base_accuracy"] <= 1 and len(b["rl_accuracy"]) == 2, name
        assert b["response_length"]["base"] > 0 and b["response_length"]["rl"] > 0, name
    # the shorter stable stage is the stable run's midpoint: its branch starts from step 2 of 4
    meta = json.loads((out / "hybrid_half_stable" / "config.json").read_text())
    assert meta["init_from"].endswith("stable/ckpt/step_000002")
    report = (out / "report.md").read_text()
    assert all(f"`{name}`" in report for name in ARMS) and "does not re-prove" in report
    assert (out / "rl_curves.png").stat().st_size > 1000 and (out / "difficulty.png").stat().st_size > 1000
    again = miniature(tmp_path)  # everything is finished: every stage says so and nothing is trained again
    assert again.count("nothing to do") == 2 + len(BRANCHES) + 2 * len(ARMS) and again.count("already prepared") == 5


def arm(accuracies, n=400, seed=0):
    """An arm's per-problem scores, one list per seed, each seed right on exactly its share of n problems."""
    rng = np.random.default_rng(seed)
    return {f"seed{i}": rng.permutation([1] * round(a * n) + [0] * (n - round(a * n))).tolist()
            for i, a in enumerate(accuracies)}


def test_a_clear_difference_holds_and_its_interval_is_the_binomials():
    x, y = arm([0.60, 0.62], seed=1), arm([0.40, 0.41], seed=2)
    f = compare(x, y, n_boot=4000)
    assert f["difference"] == pytest.approx(0.61 - 0.405) and f["spread"] == pytest.approx(0.02)
    assert f["verdict"] == "holds"
    # independent problems: the difference's standard error is about sqrt(p(1-p)/n / 2 + q(1-q)/n / 2)
    se = np.sqrt(0.61 * 0.39 / 800 + 0.405 * 0.595 / 800)  # 2 seeds x 400 problems each side
    lo, hi = f["interval"]
    assert lo < f["difference"] < hi and (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.35)


def test_verdicts_direction_only_and_does_not_hold():
    wide = compare(arm([0.55, 0.40]), arm([0.45, 0.46]))  # +2 points, within a 15-point seed spread
    assert wide["difference"] == pytest.approx(0.02) and wide["verdict"] == "direction only"
    assert compare(arm([0.40, 0.41]), arm([0.50, 0.50])) ["verdict"] == "does not hold"
    same = {"a": [1, 0, 1, 1]}
    assert compare(same, same)["difference"] == 0 and compare(same, same)["verdict"] == "does not hold"


def test_a_finding_between_a_model_that_reads_and_one_that_does_not_is_confounded():
    # hand-made: every base model restates 3 of 4 numbers but hybrid_lowq_web's (1 of 4), so the findings with it on
    # one side are confounded, and none other (long_fix's base is long's; rl_solves compares hybrid with its base)
    scores = lambda numbers: {"strict": [1, 0], "flexible": [1, 0], "reading": [(numbers, 2, 4), (0, 0, 0)]}
    data = {"base": {b: scores(1 if b == "hybrid_lowq_web" else 3) for b in BRANCHES},
            "rl": {a: {0: {"strict": [1, 0], "flexible": [1, 1]}} for a in ARMS}}
    findings = judge(data, n_boot=10)
    assert {n for n, f in findings.items() if f["confounded"]} == {"quality"}
    data["base"]["long"] = scores(0)  # now long and long_fix read nothing: qa_long compares it with web_only
    assert {n for n, f in judge(data, n_boot=10).items() if f["confounded"]} == {"quality", "qa_long"}
    data["base"]["hybrid_half_stable"] = scores(0)  # half the stable stage not reading is scale's effect itself
    assert not judge(data, n_boot=10)["scale"]["confounded"]


def test_the_bootstrap_pairs_problems():
    # y is x with one problem flipped: paired, the interval is tiny; every resample keeps problems together
    x = {"s": [1, 0] * 100}
    y = {"s": [0, 0] + [1, 0] * 99}
    lo, hi = bootstrap_interval(x, y, n_boot=2000)
    assert 0 <= lo <= hi <= 0.03
    with pytest.raises(ValueError, match="same problems"):
        bootstrap_interval(x, {"s": [1, 0, 1]})


def test_reading_counts_each_change_restated_with_its_number_and_direction():
    q = "Jo has 9 eggs. Then Jo gets 3. Next Jo loses 2. After that Jo loses 4. How many eggs does Jo have now?"
    right = "Jo has 9 eggs. Then Jo gets 3, so 9 + 3 = 12. Next Jo loses 2, so 12 - 2 = 10. After that Jo loses 4,"
    assert reading(q, right) == (3, 3, 3)
    # the second change's direction wrong and the third missing; then the first's number and the third's direction wrong
    wrong = "Jo has 9 eggs. Then Jo gets 3, so 9 + 3 = 12. Next Jo gets 2, so 12 + 2 = 14. So Jo has 14 eggs now."
    assert reading(q, wrong) == (2, 1, 3)
    assert reading(q, "Jo has 9 eggs. Then Jo gets 1, so 9 + 1 = 10. Next Jo loses 2, so 10 - 2 = 8. After that "
                      "Jo gets 4, so") == (2, 2, 3)
    scores = {"reading": [reading(q, right), reading(q, wrong)]}
    assert reads(scores) == {"numbers": 5 / 6, "directions": 4 / 6}
