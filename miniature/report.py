"""
The miniature's report: what GRPO did from each decay branch, and the paper's four findings measured in miniature,
from the runs miniature.sh made. Each RL run's metrics.jsonl holds its held-out greedy evaluation at its start (the
decayed base model) and end, and its reward and response length at every step.

    python -m miniature.report [--out_dir=out/miniature] [--seconds=N]

writes out_dir/results.json, out_dir/report.md and out_dir/rl_curves.png.
"""
import json
import os
from dataclasses import dataclass
from statistics import mean

from common import write_atomic
from configurator import configure

BRANCHES = ["short", "long", "hybrid", "web_only", "hybrid_half_stable", "hybrid_lowq_web"]
WHAT = {"short": "stable, then short CoT QA", "long": "stable, then long CoT QA",
        "hybrid": "stable, then short + long QA + instructions", "web_only": "stable, then web pages only (control)",
        "hybrid_half_stable": "half the stable stage, then hybrid", "hybrid_lowq_web": "noisy-web stable, then hybrid"}


@dataclass
class Config:
    out_dir: str = "out/miniature"
    seconds: float = 0.0               # the whole run's wall time (miniature.sh passes it)


def runs(out_dir, branch):
    """{seed folder: metrics rows} of a branch's RL runs."""
    root = os.path.join(out_dir, "rl", branch)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is missing: run miniature.sh (it makes every branch's RL runs) first")
    out = {}
    for seed in sorted(os.listdir(root)):
        with open(os.path.join(root, seed, "metrics.jsonl")) as f:
            out[seed] = [json.loads(line) for line in f]
    return out


def slope(ys):
    """Least-squares slope of ys against 0, 1, 2, ...: reward gained per step."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / max(sum((x - mx) ** 2 for x in range(n)), 1e-12)


def summarize(seeds):
    evals = {s: [r for r in rows if "eval/synth" in r] for s, rows in seeds.items()}
    steps = {s: [r for r in rows if "reward" in r] for s, rows in seeds.items()}
    for s, e in evals.items():
        if not e or e[0]["step"] != 0 or len(e) < 2:
            raise ValueError(f"seed {s}: a run needs its held-out evaluation at step 0 and at its end; is it finished?")
    return {"base_accuracy": mean([e[0]["eval/synth"] for e in evals.values()]),  # one model, greedy: equal
            "rl_accuracy": [e[-1]["eval/synth"] for e in evals.values()],
            "response_length": {"base": mean([e[0]["eval/synth_response_len"] for e in evals.values()]),
                                "rl": mean([e[-1]["eval/synth_response_len"] for e in evals.values()])},
            "reward_slope": mean([slope([r["reward"] for r in st]) for st in steps.values()]),
            "curves": {s: {"reward": [r["reward"] for r in st], "response_len": [r["response_len"] for r in st]}
                       for s, st in steps.items()}}


def compare(b, x, y):
    """x's RL accuracy against y's, with the spread over seeds: (difference of means, spread, text)."""
    diff = mean(b[x]["rl_accuracy"]) - mean(b[y]["rl_accuracy"])
    spread = max(max(b[k]["rl_accuracy"]) - min(b[k]["rl_accuracy"]) for k in (x, y))
    verdict = "more than" if abs(diff) > spread else "within"
    return diff, spread, (f"`{x}` {mean(b[x]['rl_accuracy']):.1%} vs `{y}` {mean(b[y]['rl_accuracy']):.1%} after RL: "
                          f"{diff:+.1%}, {verdict} the seed spread ({spread:.1%})")


def findings(b):
    out = []
    for title, paper, x, y in [
            ("QA data in mid-training makes a model RL-ready", "web-only mid-training, then RL: MATH500 0.37 "
             "(MegaMath-Web-Pro) vs 0.42 with short QA and instructions", "hybrid", "web_only"),
            ("The quality of the web corpus matters", "FineMath-4plus 0.16 vs MegaMath-Web-Pro 0.37", "hybrid",
             "hybrid_lowq_web"),
            ("More mid-training, better RL", "20B / 70B / 100B tokens: 0.35 / 0.40 / 0.42", "hybrid",
             "hybrid_half_stable")]:
        diff, spread, text = compare(b, x, y)
        out.append((title, paper, text, "holds" if diff > spread else "does not hold here"))
    long_, short = b["long"]["response_length"], b["short"]["response_length"]
    longer = long_["base"] > short["base"] and long_["rl"] > short["rl"]
    _, _, text = compare(b, "long", "short")
    out.append(("Long-CoT data makes responses longer",
                "long-CoT QA 0.48 then collapse, responses ~4450 tokens; short QA 0.36",
                f"responses of `long` {long_['base']:.0f} → {long_['rl']:.0f} tokens, `short` {short['base']:.0f} → "
                f"{short['rl']:.0f} (base → RL); {text}", "holds" if longer else "does not hold here"))
    return out


def plot(b, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in BRANCHES:
        for key, ax in zip(("reward", "response_len"), axes):
            curves = [c[key] for c in b[name]["curves"].values()]
            n = min(map(len, curves))
            ax.plot(range(1, n + 1), [sum(c[i] for c in curves) / len(curves) for i in range(n)], label=name)
    for ax, title in zip(axes, ("mean reward (mean of seeds)", "mean response length, tokens")):
        ax.set_xlabel("GRPO step")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(cfg):
    b = {name: summarize(runs(cfg.out_dir, name)) for name in BRANCHES}
    results = {"seconds": cfg.seconds, "branches": {n: {k: v for k, v in s.items() if k != "curves"} for n, s in b.items()}}
    write_atomic(os.path.join(cfg.out_dir, "results.json"), json.dumps(results, indent=1))
    plot(b, os.path.join(cfg.out_dir, "rl_curves.png"))
    with open(os.path.join(cfg.out_dir, "world", "world.json")) as f:
        boxed = json.load(f)["config"]["qa_boxed"]
    lines = ["# OctoThinker in miniature\n",
             "A synthetic math world and a ~1M-parameter Llama on a CPU, sized so that the effects of mid-training data "
             "on RL show at this scale. It shows the recipe's mechanics; it does not re-prove the paper. Accuracy is "
             "greedy, on the world's 200 held-out problems, which no training corpus contains. The world's QA data "
             f"boxes only {boxed:.0%} of its answers, so greedy base models seldom give a checkable one: their accuracy is "
             "near 0, and what RL teaches first is to answer in \\boxed{}.\n",
             "| branch | mid-training | base accuracy | RL accuracy (per seed) | response length base → RL | "
             "reward slope / step |", "|---|---|---|---|---|---|"]
    for name in BRANCHES:
        s = b[name]
        accs = ", ".join(f"{a:.1%}" for a in s["rl_accuracy"])
        lines.append(f"| `{name}` | {WHAT[name]} | {s['base_accuracy']:.1%} | {accs} | "
                     f"{s['response_length']['base']:.0f} → {s['response_length']['rl']:.0f} | {s['reward_slope']:+.4f} |")
    lines += ["", "## The paper's findings, here", ""]
    for title, paper, here, verdict in findings(b):
        lines += [f"**{title}**: {verdict}. Here: {here}. The paper (Llama-3.2-3B, MATH500): {paper}.", ""]
    lines += ["![reward and response length over GRPO steps](rl_curves.png)", ""]
    if cfg.seconds:
        lines.append(f"The whole run took {cfg.seconds / 60:.1f} minutes.")
    write_atomic(os.path.join(cfg.out_dir, "report.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(configure(Config()))
