"""
The miniature's report: what GRPO did from each decay branch, and the paper's findings as pre-registered
comparisons, each judged with its statistics, from the runs miniature.sh made. Every base model's greedy held-out
evaluation is out_dir/base/<branch>/; every RL run's metrics.jsonl holds its reward, accuracy, response length
and truncation at each step, and its eval/step_<N>/synth_samples.jsonl its final held-out completions.

    python -m miniature.report [--out_dir=out/miniature] [--seconds=N]

writes out_dir/results.json, out_dir/report.md, out_dir/rl_curves.png and out_dir/difficulty.png.

A comparison of X with Y is judged by the difference of their seed means of held-out accuracy, the seed spread
(the larger range of seed accuracies of the two), and a paired bootstrap interval over the held-out problems (the
same problems on both sides, resampled together): "holds" when the difference is beyond the spread and the
interval is above 0, "direction only" when it is positive but not both, else "does not hold". Strict accuracy is
the reward's (a marked final answer, right); flexible accuracy also reads an unmarked completion's last number,
so the two tell solving from formatting. What each model reads of the question is measured too: the share of the
question's changes whose number, and whose direction (gained or lost), its answer restates in order.
"""
import json
import os
import re
from dataclasses import dataclass
from statistics import mean

import numpy as np

from common import write_atomic
from configurator import configure
from grader import grade_many
from miniature.text import GAINS, LOSSES, OPENERS
from rl import length_at

BRANCHES = ["short", "short_no_instruct", "long", "hybrid", "web_only", "hybrid_half_stable", "hybrid_lowq_web"]
ARMS = BRANCHES + ["long_fix"]  # RL runs; long_fix starts from long's base model
BASE = {**{b: b for b in BRANCHES}, "long_fix": "long"}
WHAT = {"short": "stable, then short CoT QA + instructions", "short_no_instruct": "stable, then short CoT QA only",
        "long": "stable, then long CoT QA + instructions", "hybrid": "stable, then short + long QA + instructions",
        "web_only": "stable, then web pages only (control)", "hybrid_half_stable": "half the stable stage, then hybrid",
        "hybrid_lowq_web": "low-quality-web stable, then hybrid with low-quality web",
        "long_fix": "long, RL with the conversation template and a progressive limit"}
KINDS = ["chain1", "chain2", "chain3", "chain4"]


@dataclass
class Config:
    out_dir: str = "out/miniature"
    seconds: float = 0.0               # the whole run's wall time (miniature.sh passes it)
    n_boot: int = 2000                 # bootstrap resamples
    seed: int = 0

# -----------------------------------------------------------------------------
# statistics


def bootstrap_interval(x, y, n_boot=2000, seed=0, level=0.95):
    """x, y: {seed: per-problem scores (0/1)} of two arms on the same problems. The paired bootstrap interval of
    the difference of seed means: problems resampled with replacement, the same ones for both arms."""
    X = np.mean([np.asarray(v, dtype=float) for v in x.values()], axis=0)
    Y = np.mean([np.asarray(v, dtype=float) for v in y.values()], axis=0)
    if X.shape != Y.shape or not X.size:
        raise ValueError(f"the two arms must score the same problems: {X.shape} vs {Y.shape}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, X.size, size=(n_boot, X.size))
    diffs = (X - Y)[picks].mean(axis=1)
    return tuple(float(q) for q in np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]))


def compare(x, y, n_boot=2000, seed=0):
    """{difference, spread, interval, verdict} of arm x against arm y (see the module docstring)."""
    ax, ay = [float(np.mean(v)) for v in x.values()], [float(np.mean(v)) for v in y.values()]
    difference = mean(ax) - mean(ay)
    spread = max(max(ax) - min(ax), max(ay) - min(ay))
    interval = bootstrap_interval(x, y, n_boot, seed)
    verdict = ("holds" if difference > spread and interval[0] > 0 else
               "direction only" if difference > 0 else "does not hold")
    return {"difference": difference, "spread": spread, "interval": list(interval), "verdict": verdict}

# -----------------------------------------------------------------------------
# the runs


def read_jsonl(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: run miniature.sh (it makes every base evaluation and RL run)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


CHANGE = re.compile(rf"(?:{'|'.join(OPENERS)}) \w+ ({'|'.join(GAINS + LOSSES)}) (\d+)")  # a chain's clause


def reading(question, completion):
    """(numbers, directions, changes): of a chain question's changes, how many its answer restates in order with
    the right number, and with the right direction (a gain or a loss)."""
    asked, said = CHANGE.findall(question), CHANGE.findall(completion)
    numbers = sum(a[1] == b[1] for a, b in zip(asked, said))
    directions = sum((a[0] in GAINS) == (b[0] in GAINS) for a, b in zip(asked, said))
    return numbers, directions, len(asked)


def scored(samples, max_new_tokens, questions):
    """Per problem: strict (the grader's verdict as the reward reads it), flexible (an unmarked completion's last
    number counts too), truncated (the completion ran to the limit), its length in tokens, and what it read."""
    flexible = grade_many([(s["completion"], s["gold"]) for s in samples], last_number=True, rounded=False)
    return {"strict": [int(s["correct"]) for s in samples], "flexible": [int(f) for f in flexible],
            "truncated": [int((s.get("new_tokens") or 0) >= max_new_tokens) for s in samples],
            "tokens": [s.get("new_tokens") or 0 for s in samples],
            "reading": [reading(q, s["completion"]) for q, s in zip(questions, samples)]}


def reads(scores):
    """The share of the questions' changes the answers restate with the right number, and direction."""
    numbers, directions, changes = np.sum(scores["reading"], axis=0)
    return {"numbers": float(numbers / max(changes, 1)), "directions": float(directions / max(changes, 1))}


def load(out_dir):
    """{"base": {branch: scores}, "rl": {arm: {seed: scores}}, "curves": {arm: {seed: metrics rows}}, "kinds"}."""
    held_out = read_jsonl(os.path.join(out_dir, "world", "benchmarks", "synth", "test.jsonl"))
    kinds, questions = [r.get("kind", "") for r in held_out], [r["question"] for r in held_out]
    base, fewshot, rl, curves, limit = {}, {}, {}, {}, 0
    for branch in BRANCHES:
        folder = os.path.join(out_dir, "base", branch)
        with open(os.path.join(folder, "results.json")) as f:
            limit = json.load(f)["results"]["synth"].get("max_new_tokens", 0)
        base[branch] = scored(read_jsonl(os.path.join(folder, "synth_samples.jsonl")), limit, questions)
        shots = os.path.join(out_dir, "base_fewshot", branch, "synth_samples.jsonl")
        fewshot[branch] = scored(read_jsonl(shots), limit, questions) if os.path.isfile(shots) else None
    for arm in ARMS:
        root = os.path.join(out_dir, "rl", arm)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root} is missing: run miniature.sh (it makes every RL run) first")
        rl[arm], curves[arm] = {}, {}
        for seed in sorted(os.listdir(root)):
            rows = read_jsonl(os.path.join(root, seed, "metrics.jsonl"))
            with open(os.path.join(root, seed, "config.json")) as f:
                cfg = json.load(f)
            final = os.path.join(root, seed, "eval", f"step_{cfg['max_steps']:06d}", "synth_samples.jsonl")
            if not os.path.isfile(final):
                raise FileNotFoundError(f"{final} is missing: the run {root}/{seed} has not finished (re-run "
                                        "miniature.sh to resume it)")
            rl[arm][seed] = scored(read_jsonl(final), length_at(cfg["max_steps"], cfg["max_response_len"]), questions)
            curves[arm][seed] = [r for r in rows if "reward" in r]
    return {"base": base, "fewshot": fewshot, "rl": rl, "curves": curves, "kinds": kinds}


def slope(ys):
    """Least-squares slope of ys against 0, 1, 2, ...: reward gained per step."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / max(sum((x - mx) ** 2 for x in range(n)), 1e-12)


def by_kind(values, kinds):
    return {k: float(np.mean([v for v, kk in zip(values, kinds) if kk == k])) for k in KINDS if k in kinds}


def summarize(data, arm):
    """A branch's (or arm's) row: base and after-RL accuracies, lengths, truncation, reward slope."""
    base, seeds, kinds = data["base"][BASE[arm]], data["rl"][arm], data["kinds"]
    rows = data["curves"][arm]
    shots = data["fewshot"][BASE[arm]]
    seed_reads = [reads(s) for s in seeds.values()]
    per_seed = [list(by_kind(base["strict"], kinds))] + [list(by_kind(s["strict"], kinds).values())
                                                         for s in seeds.values()]  # kinds, then each seed's
    return {"base_accuracy": float(np.mean(base["strict"])), "base_flexible": float(np.mean(base["flexible"])),
            "base_fewshot": {m: float(np.mean(shots[m])) for m in ("strict", "flexible")} if shots else None,
            "rl_accuracy": [float(np.mean(s["strict"])) for s in seeds.values()],
            "rl_flexible": [float(np.mean(s["flexible"])) for s in seeds.values()],
            "response_length": {"base": float(np.mean(base["tokens"])),
                                "rl": mean(float(np.mean(s["tokens"])) for s in seeds.values())},
            "truncated": {"base": float(np.mean(base["truncated"])),
                          "rl": mean(float(np.mean(s["truncated"])) for s in seeds.values()),
                          "training": mean(mean(r.get("truncated", 0) for r in st) for st in rows.values())},
            "reward_slope": mean(slope([r["reward"] for r in st]) for st in rows.values()),
            "reads": {"base": reads(base),
                      "rl": {k: mean(r[k] for r in seed_reads) for k in ("numbers", "directions")}},
            "by_kind": {"base": by_kind(base["strict"], kinds), "base_flexible": by_kind(base["flexible"], kinds),
                        "rl": {k: mean(accs) for k, *accs in zip(*per_seed)}}}

# -----------------------------------------------------------------------------
# the findings, each fixed before any run: (name, title, the paper's numbers, x, y, what is compared)

FINDINGS = [
    ("quality", "The quality of the web corpus matters",
     "MegaMath-Web-Pro 0.37 vs FineMath-4plus 0.16 after RL", "hybrid", "hybrid_lowq_web", "strict"),
    ("qa_short", "Short-CoT QA in mid-training makes a model RL-ready",
     "Web-Pro + short QA + 1% instructions 0.42 vs Web-Pro alone 0.37", "short", "web_only", "strict"),
    ("qa_long", "Long-CoT QA in mid-training makes a model RL-ready",
     "Web-Pro + long-CoT QA 0.48 (at its peak) vs Web-Pro alone 0.37", "long", "web_only", "strict"),
    ("qa_hybrid", "Short and long QA together make a model RL-ready",
     "the hybrid recipe (released: OctoThinker-1B-Hybrid-Zero 45.0 on MATH500)", "hybrid", "web_only", "strict"),
    ("instruction", "Instruction data adds on top of QA",
     "Web-Pro + short QA + 1% instructions 0.42 vs without them 0.36", "short", "short_no_instruct", "strict"),
    ("long_fix", "A conversation template and a progressive limit steady long-CoT RL",
     "long CoT + instructions: plain template 0.51 then collapse to 0; conversation template 0.48 (8k), 0.55 "
     "with a progressive limit", "long_fix", "long", "strict"),
    ("scale", "More mid-training, better RL",
     "Web-Pro-plus 20B / 70B / 100B tokens: 0.35 / 0.40 / 0.42", "hybrid", "hybrid_half_stable", "strict"),
    ("rl_solves", "RL improves solving, not only the format (hybrid, flexible accuracy after RL vs its base)",
     "MATH500 accuracy rises from a base that already solves some problems", "hybrid", "base:hybrid", "flexible"),
]


def arm_scores(data, arm, metric):
    if arm.startswith("base:"):
        return {"base": data["base"][arm[5:]][metric]}
    return {seed: s[metric] for seed, s in data["rl"][arm].items()}


READS = 0.5  # a base model that restates fewer of the questions' numbers than this has not formed the copy
COPY_IS_THE_EFFECT = {"scale"}  # more stable steps forming the copy is what this finding measures, not a confound


def unread(data):
    """The branches whose base model restates under READS of the questions' numbers (the copy did not form)."""
    return [b for b in BRANCHES if reads(data["base"][b])["numbers"] < READS]


def judge(data, n_boot=2000, seed=0):
    """Each finding's statistics, and `confounded`: the base model of one arm reads the questions' numbers (at least
    READS of them) and the other's does not, so the comparison measures whether the stable stage formed the copy
    of each number (a step that comes or not by the machine's rounding at this budget, measured), not the data;
    except where the copy is the effect (scale: half the stable stage)."""
    missing = unread(data)
    side = lambda arm: (arm[5:] if arm.startswith("base:") else BASE[arm]) in missing  # noqa: E731
    return {name: {**compare(arm_scores(data, x, metric), arm_scores(data, y, metric), n_boot, seed),
                   "x": x, "y": y, "metric": metric,
                   "confounded": side(x) != side(y) and name not in COPY_IS_THE_EFFECT}
            for name, _, _, x, y, metric in FINDINGS}


def long_cot(summary):
    """The long-CoT finding's measures: longer responses, and truncation under the binding limit."""
    long_, short = summary["long"], summary["short"]
    return {"longer": long_["response_length"]["base"] > short["response_length"]["base"] and
            long_["response_length"]["rl"] > short["response_length"]["rl"],
            "length": {k: summary[k]["response_length"] for k in ("short", "long", "long_fix")},
            "truncated": {k: summary[k]["truncated"] for k in ("short", "long", "long_fix")}}

# -----------------------------------------------------------------------------
# plots and the report


def plot(data, summary, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    keys = ("reward", "accuracy", "response_len", "truncated")
    for arm in ARMS:
        curves = list(data["curves"][arm].values())
        n = min(map(len, curves))
        for key, ax in zip(keys, axes):
            ax.plot(range(1, n + 1), [mean(c[i].get(key, 0) for c in curves) for i in range(n)], label=arm)
    for ax, title in zip(axes, ("reward", "sampled accuracy", "response length, tokens", "truncated share")):
        ax.set_xlabel("GRPO step")
        ax.set_title(f"{title} (mean of seeds)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "rl_curves.png"), dpi=90)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(ARMS)
    for i, arm in enumerate(ARMS):
        acc = summary[arm]["by_kind"]["rl"]
        ax.bar([j + i * width for j in range(len(acc))], list(acc.values()), width, label=arm)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(KINDS))], [f"k = {k[5:]}" for k in KINDS])
    ax.set_ylabel("held-out accuracy after RL (strict)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "difficulty.png"), dpi=90)


def pct(x):
    return f"{x:.1%}"


def report(summary, findings, long, kinds, seconds, unread):
    n_problems = len(kinds)
    lines = ["# OctoThinker in miniature\n",
             "A synthetic math world and a ~1M-parameter Llama on a CPU: chained word problems (a number changed k = 1 "
             "to 4 times: the difficulty dial), web pages clean and poorer in reasoning, short and long "
             "chain-of-thought QA, instructions, then GRPO on two seeds per branch. It shows the recipe's mechanics; "
             "it "
             f"does not re-prove the paper. Accuracy is greedy, on {n_problems} held-out problems no training corpus "
             "contains: strict as the reward reads it (a marked final answer), flexible also reading an unmarked "
             "answer's last number.\n",
             "| branch | mid-training | base strict / flexible | base few-shot strict / flexible | after RL strict "
             "(per seed) | after RL flexible | reads numbers / directions, base → RL | response tokens base → RL | "
             "truncated base → RL (training) | reward slope / step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        s, r = summary[arm], summary[arm]["reads"]
        shots = s["base_fewshot"]
        shots = f"{pct(shots['strict'])} / {pct(shots['flexible'])}" if shots else "-"
        lines.append(f"| `{arm}` | {WHAT[arm]} | {pct(s['base_accuracy'])} / {pct(s['base_flexible'])} | {shots} | "
                     f"{', '.join(map(pct, s['rl_accuracy']))} | {', '.join(map(pct, s['rl_flexible']))} | "
                     f"{pct(r['base']['numbers'])} / {pct(r['base']['directions'])} → {pct(r['rl']['numbers'])} / "
                     f"{pct(r['rl']['directions'])} | "
                     f"{s['response_length']['base']:.0f} → {s['response_length']['rl']:.0f} | "
                     f"{pct(s['truncated']['base'])} → {pct(s['truncated']['rl'])} ({pct(s['truncated']['training'])}) "
                     f"| {s['reward_slope']:+.4f} |")
    lines += ["", "By difficulty (strict, base → after RL, mean of seeds; base flexible in brackets; n problems):", "",
              "| branch | " + " | ".join(f"k = {k[5:]} (n = {kinds.count(k)})" for k in KINDS) + " |",
              "|---|" + "---|" * len(KINDS)]
    for arm in ARMS:
        b = summary[arm]["by_kind"]
        lines.append(f"| `{arm}` | " + " | ".join(
            f"{pct(b['base'][k])} [{pct(b['base_flexible'][k])}] → {pct(b['rl'][k])}" for k in KINDS if k in b["base"])
            + " |")
    lines += ["", "## The paper's findings, here", "",
              "Each is a comparison fixed before the runs: the difference of seed means (X − Y), the seed spread, a "
              "95% paired bootstrap interval over the held-out problems, and the verdict: *holds* (beyond the spread "
              "and the interval above 0), *direction only*, or *does not hold*.", "",
              "| finding | X vs Y | difference | spread | interval | verdict | the paper |",
              "|---|---|---|---|---|---|---|"]
    for name, title, paper, x, y, metric in FINDINGS:
        f = findings[name]
        lo, hi = f["interval"]
        lines.append(f"| {title} | `{x}` vs `{y}` ({metric}) | {f['difference']:+.1%} | {pct(f['spread'])} | "
                     f"[{lo:+.1%}, {hi:+.1%}] | **{f['verdict']}**{' (confounded)' if f['confounded'] else ''} | "
                     f"{paper} |")
    lines += ["", f"Base models that restate under {READS:.0%} of the questions' numbers (their copy of each number "
              f"did not form): {', '.join(f'`{b}`' for b in unread) if unread else 'none'}. A finding between such a "
              "model and one that reads is marked *confounded*: it measures whether the copy formed, not the data "
              "(except more mid-training, whose effect that is)."]
    ln, tr = long["length"], long["truncated"]
    rd, half, rl = (summary["hybrid"]["reads"]["base"], summary["hybrid_half_stable"]["reads"]["base"],
                    summary["hybrid"]["reads"]["rl"])
    lines += ["", f"**Long-CoT data makes responses longer**: {'holds' if long['longer'] else 'does not hold'}. "
              f"Response tokens `long` {ln['long']['base']:.0f} → {ln['long']['rl']:.0f}, `short` "
              f"{ln['short']['base']:.0f} → {ln['short']['rl']:.0f} (base → RL). Under the binding limit, the share "
              f"of held-out answers cut off: `long` {pct(tr['long']['base'])} → {pct(tr['long']['rl'])}, `long_fix` "
              f"→ {pct(tr['long_fix']['rl'])}, `short` {pct(tr['short']['rl'])}; over training `long` "
              f"{pct(tr['long']['training'])}, `long_fix` {pct(tr['long_fix']['training'])}. The paper: long-CoT "
              "responses run to ~4450 tokens and RL collapses; see the curves for whether accuracy peaks and falls "
              "here.", "",
              f"**What the base models read**: `hybrid` restates {pct(rd['numbers'])} of the held-out questions' "
              f"changes with the right number and {pct(rd['directions'])} with the right direction (a gain or a "
              f"loss; half is chance), `hybrid_half_stable` {pct(half['numbers'])} and {pct(half['directions'])}, "
              f"and after RL `hybrid` {pct(rl['numbers'])} and {pct(rl['directions'])}. A problem is solved when "
              "every change is read and added right, so accuracy is bounded by what is read.", "",
              "What the world can and cannot show: its problems are one family a ~1M-parameter model can partly "
              "solve, so differences are about solving chained steps and giving a checkable answer, in a world far "
              "narrower than web math; two seeds make the spread a rough bound; the verdicts are what this run "
              "measured. Two caveats: `long_fix`'s conversation template is new to every model here (the "
              "instruction data is in the QA frame), so it tests a template change and a limit together; and the "
              "few-shot prompts (four worked examples, 300+ tokens) run past the 256 tokens every stage trained on, "
              "so few-shot accuracy says little at this scale (no finding uses it).",
              "", "![reward, accuracy, response length and truncation over GRPO steps](rl_curves.png)",
              "", "![held-out accuracy by difficulty after RL](difficulty.png)", ""]
    if seconds:
        lines.append(f"The whole run took {seconds / 60:.1f} minutes.")
    return lines


def main(cfg):
    data = load(cfg.out_dir)
    summary = {arm: summarize(data, arm) for arm in ARMS}
    findings = judge(data, cfg.n_boot, cfg.seed)
    long = long_cot(summary)
    results = {"seconds": cfg.seconds, "branches": {arm: {k: v for k, v in s.items()} for arm, s in summary.items()},
               "findings": findings, "long_cot": long}
    write_atomic(os.path.join(cfg.out_dir, "results.json"), json.dumps(results, indent=1))
    plot(data, summary, cfg.out_dir)
    lines = report(summary, findings, long, data["kinds"][:len(data["base"][BRANCHES[0]]["strict"])], cfg.seconds,
                   unread(data))
    write_atomic(os.path.join(cfg.out_dir, "report.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(configure(Config()))
