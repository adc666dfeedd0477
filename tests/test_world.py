"""miniature/world.py: every answer checks out (grader and an independent solver), held-out problems never appear in
training text, the same seed gives the same bytes, the data has the shapes the miniature measures, and data.py
prepares every file."""
import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from data import prepare
from grader import extract_answer, grade_many
from miniature import text, world
from miniature.problems import CHAINS
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
FILES = ["web_hq", "web_lq", "qa_short", "qa_long", "instruct", "rl", "benchmarks/synth/test"]
SMALL = dict(web_docs=300, qa_short=400, qa_long=400, instruct=100, rl=400, eval=300)
FACT = re.compile(r"(\d+) (\+|-|\\times|\\div) (\d+) = (\d+)")


def read(folder):
    return {name: [json.loads(line) for line in (Path(folder) / f"{name}.jsonl").read_text().splitlines()]
            for name in FILES}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    world.generate_world(str(out), seed=0, **SMALL)
    return out, read(out)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The default-sized world: rare events (a damaged page, a slip) happen thousands of times here."""
    out = tmp_path_factory.mktemp("full")
    world.generate_world(str(out), seed=0)
    return read(out)

# -----------------------------------------------------------------------------
# answers


def frac(p, q):
    return Fraction(p, q)


# The question templates, solved here from the words alone: a second computation, not world.py's own.
SOLVERS = [
    (r"^\w+ has (\d+) \w+ and gets (\d+) more\. How many", lambda a, b: a + b),
    (r"^\w+ picks (\d+) \w+ in the morning and (\d+) in the afternoon\.", lambda a, b: a + b),
    (r"^\w+ has (\d+) \w+ and gives (\d+) of them to \w+\.", lambda a, b: a - b),
    (r"^There are (\d+) \w+ in a box\. \w+ takes out (\d+)\.", lambda a, b: a - b),
    (r"^\w+ has (\d+) \w+, buys (\d+) more, then gives (\d+) to", lambda a, b, c: a + b - c),
    (r"^A shelf holds (\d+) \w+\. \w+ puts (\d+) more on it and \w+ takes (\d+) away\.", lambda a, b, c: a + b - c),
    (r"^\w+ buys (\d+) bags with (\d+) \w+ in each bag\.", lambda a, b: a * b),
    (r"^There are (\d+) rows of \w+ with (\d+) \w+ in each row\.", lambda a, b: a * b),
    (r"^\w+ shares (\d+) \w+ equally among (\d+) friends\.", frac),
    (r"^(\d+) \w+ are packed in boxes of (\d+)\.", frac),
    (r"^Solve for \$x\$: \$(\d+)x \+ (\d+) = (\d+)\$\.$", lambda k, b, c: frac(c - b, k)),
    (r"^\w+ thinks of a number, multiplies it by (\d+) and adds (\d+)\. The result is (\d+)\.",
     lambda k, b, c: frac(c - b, k)),
    (r"^\w+ cuts a pie into (\d+) equal pieces and eats (\d+) of them\.", lambda q, p: frac(q - p, q)),
    (r"^A bag holds (\d+) \w+\. \w+ takes (\d+) of them\. What fraction", lambda q, p: frac(q - p, q)),
]


def solve(question):
    hits = [(f, m) for pattern, f in SOLVERS if (m := re.search(pattern, question))]
    assert len(hits) == 1, f"{len(hits)} templates match {question!r}"
    f, m = hits[0]
    return Fraction(f(*map(int, m.groups())))


def value(answer):
    """A gold answer as a number: an integer, or \\frac{p}{q} in lowest terms."""
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", answer)
    if m:
        p, q = map(int, m.groups())
        assert p < q and Fraction(p, q).numerator == p, f"{answer} is not a proper fraction in lowest terms"
        return Fraction(p, q)
    assert re.fullmatch(r"\d+", answer), f"{answer!r} is neither an integer nor \\frac{{p}}{{q}}"
    return Fraction(int(answer))


def test_every_answer_is_the_solvers(small):
    _, files = small
    for name in ["qa_short", "qa_long", "rl", "benchmarks/synth/test"]:
        for r in files[name]:
            v = solve(r["question"])
            assert value(r["answer"]) == v, (name, r)
            assert 0 < v < 200  # small enough for a tiny model's vocabulary of numbers
    kinds = {p for r in files["benchmarks/synth/test"] for p, _ in SOLVERS if re.search(p, r["question"])}
    assert len(kinds) == len(SOLVERS)  # the held-out set has every template


def test_solutions_grade_right_and_neighbours_wrong(small):
    _, files = small
    pairs, expected = [], []
    for name in ["qa_short", "qa_long"]:
        rows = files[name]
        boxed = ["\\boxed" in r["solution"] for r in rows]
        assert abs(np.mean(boxed) - world.Config.qa_boxed) < 0.08  # the rest state their answer in prose only
        for i, r in enumerate(rows):
            last = r["solution"].rsplit("So ", 1)[1]  # "So Kim has 20 cards now." (and the boxed answer)
            assert re.search(rf"(?<![\d/{{]){re.escape(r['answer'])}(?![\d}}])", last.split("The answer is")[0]) or \
                r["answer"].startswith("\\frac"), (r["solution"], r["answer"])
            if "\\boxed" not in r["solution"]:  # the answer in prose only, or, where the working is in math mode
                # ("So $x = 4$."), as the last math-mode expression, which a grader reads as a careful reader would
                stated = f"x = {r['answer']}" if r["question"].startswith("Solve for") else None
                assert extract_answer(r["solution"]) == stated and r["solution"].endswith(".")
                continue
            assert extract_answer(r["solution"]) == r["answer"]
            assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}.") and r["solution"].count("\\boxed") == 1
            pairs.append((r["solution"], r["answer"]))
            expected.append(True)
            other = rows[(i + 1) % len(rows)]["answer"]  # a neighbour's answer is wrong unless equal in value
            pairs.append((r["solution"], other))
            expected.append(value(other) == value(r["answer"]))
    for name in ["rl", "benchmarks/synth/test"]:
        rows = files[name]
        for i, r in enumerate(rows):
            v = solve(r["question"])
            latex = str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}"
            pairs.append((f"So the answer is \\boxed{{{latex}}}.", r["answer"]))
            expected.append(True)
            other = rows[(i + 1) % len(rows)]["answer"]
            pairs.append((f"So the answer is \\boxed{{{latex}}}.", other))
            expected.append(value(other) == v)
    assert expected.count(False) > len(pairs) // 3  # the shifted check really tests something
    got = grade_many(pairs)
    wrong = [(p, e) for p, g, e in zip(pairs, got, expected) if g != e]
    assert not wrong, wrong[:5]


def test_arithmetic_is_right_except_where_meant(small):
    """Clean text states only true facts; low-quality pages some false ones; a long solution only a slip it
    then catches."""
    _, files = small

    def facts(text):
        return [(m, int(m[4]) == {"+": int(m[1]) + int(m[3]), "-": int(m[1]) - int(m[3]),
                                  "\\times": int(m[1]) * int(m[3]), "\\div": int(m[1]) / int(m[3])}[m[2]])
                for m in FACT.finditer(text)]

    for name, field in [("web_hq", "text"), ("qa_short", "solution")]:
        found = [ok for r in files[name] for _, ok in facts(r[field])]
        assert len(found) > len(files[name]) and all(found), name
    lq = [ok for r in files["web_lq"] for _, ok in facts(r["text"])]
    assert 0.01 < lq.count(False) / len(lq) < 0.2
    slips = 0
    for r in files["qa_long"]:
        for m, ok in facts(r["solution"]):
            if not ok:
                slips += 1
                assert re.match(r"[^.]*\. Wait, let me check: ", r["solution"][m.end():]), r["solution"]
    assert 0.1 < slips / len(files["qa_long"]) < 0.8

# -----------------------------------------------------------------------------
# held out


def normalise(text):
    """Lowercase, punctuation stripped, whitespace collapsed, padded so a match is whole words."""
    return " " + " ".join(re.sub(r"[^a-z0-9\s]", " ", text.lower()).split()) + " "


def test_held_out_problems_never_appear_in_training_text(full):
    training = [r["text"] for name in ["web_hq", "web_lq"] for r in full[name]]
    training += [r["question"] + "\n" + r["solution"] for name in ["qa_short", "qa_long", "instruct"]
                 for r in full[name]]
    exact, norm = "\x00".join(training), "\x00".join(map(normalise, training))
    held = {name: [r["question"] for r in full[name]] for name in ["rl", "benchmarks/synth/test"]}
    for name, questions in held.items():
        assert not [q for q in questions if q in exact], name
        assert not [q for q in questions if normalise(q) in norm], name
    # the check finds what is there: every training question, in both forms
    assert all(r["question"] in exact and normalise(r["question"]) in norm for r in full["qa_short"][:300])
    evaluation = [normalise(q) for q in held["benchmarks/synth/test"]]
    assert len(set(evaluation)) == len(evaluation) == world.Config().eval  # distinct problems
    assert not set(evaluation) & {normalise(q) for q in held["rl"]}
    # and distinct as problems, not only as text: no two share a template and numbers
    keys = [(p, m.groups()) for q in held["benchmarks/synth/test"] for p, _ in SOLVERS if (m := re.search(p, q))]
    assert len(set(keys)) == len(keys) == len(evaluation)
    train_keys = {(p, m.groups()) for r in full["qa_short"] + full["qa_long"] for p, _ in SOLVERS
                  if (m := re.search(p, r["question"]))}
    rl_keys = {(p, m.groups()) for q in held["rl"] for p, _ in SOLVERS if (m := re.search(p, q))}
    assert not set(keys) & train_keys and not set(keys) & rl_keys and not rl_keys & train_keys

# -----------------------------------------------------------------------------
# the shapes the miniature measures


def test_long_solutions_are_longer_and_web_rarely_boxes(full):
    words = lambda name: np.mean([len(r["solution"].split()) for r in full[name]])
    assert 2.0 < words("qa_long") / words("qa_short") < 4.0
    assert all("Let me check:" in r["solution"] for r in full["qa_long"])
    assert not any("Let me check" in r["solution"] or "Wait" in r["solution"] for r in full["qa_short"])
    # the answer format is the QA data's: few web pages box an answer
    assert 0 < np.mean(["\\boxed" in r["text"] for r in full["web_hq"]]) < 0.3
    assert all("\\boxed" not in r["question"] for r in full["rl"] + full["benchmarks/synth/test"])
    # questions are short; the low-quality web is the same kind of text, degraded, not noise
    assert max(len(r["question"].split()) for r in full["rl"]) <= 40
    hq, lq = full["web_hq"], full["web_lq"]
    assert len(hq) == len(lq) and all(r["text"].count("Example:") >= 1 for r in hq)
    assert np.mean([r["text"].count("Example:") >= 1 for r in lq]) > 0.9
    assert not any(junk in r["text"] for r in hq for junk in text.JUNK_TOP + text.JUNK_END)
    assert all(r["text"].split("\n")[0] in text.JUNK_TOP for r in lq)


def test_prepare_reads_every_file(small, tmp_path):
    out, files = small
    texts = [r["text"] for r in files["web_hq"][:200]]
    texts += [f"{r['question']}\n{r['solution']}" for name in ["qa_short", "qa_long", "instruct"]
              for r in files[name][:100]]
    tokenizer = Tokenizer.train(texts, 1024)  # the miniature's size
    fmts = {"web_hq": "text", "web_lq": "text", "qa_short": "{solution}", "qa_long": "{solution}",
            "instruct": "{question}\n{solution}", "rl": "qa", "benchmarks/synth/test": "qa"}
    tokens_per_doc = {}
    for name, fmt in fmts.items():
        index = prepare(str(out / f"{name}.jsonl"), str(tmp_path / name.replace("/", "_")), tokenizer, fmt, workers=1)
        assert index["complete"] and index["n_docs"] == len(files[name])
        tokens_per_doc[name] = index["n_tokens"] / index["n_docs"]
        first = np.fromfile(tmp_path / name.replace("/", "_") / "shard_000000.bin", np.uint32)
        first = first[:int(np.load(tmp_path / name.replace("/", "_") / "shard_000000.idx")[0])]
        row = files[name][0]
        text = {"text": "{text}", "qa": "Question: {question}\nAnswer: {answer}"}.get(fmt, fmt).format_map(row)
        assert tokenizer.decode(first[1:-1]) == text and first[0] == tokenizer.bos_id and first[-1] == tokenizer.eos_id
    # sizes the miniature's seq_len of 256 holds: a QA document or most of a web page fits one window
    assert tokens_per_doc["instruct"] < 20 < tokens_per_doc["qa_short"] < 60, tokens_per_doc
    assert 2 * tokens_per_doc["qa_short"] < tokens_per_doc["qa_long"] < 160, tokens_per_doc
    assert 100 < tokens_per_doc["web_hq"] < 350, tokens_per_doc

# -----------------------------------------------------------------------------
# files, determinism, the command line


def test_same_seed_same_bytes_and_a_finished_world_is_kept(tmp_path):
    paths = {}
    for folder, seed in [("a", 3), ("b", 3), ("c", 4)]:
        world.generate_world(str(tmp_path / folder), seed=seed, **SMALL)
        paths[folder] = {name: (tmp_path / folder / f"{name}.jsonl") for name in FILES}
    for name in FILES:
        assert paths["a"][name].read_bytes() == paths["b"][name].read_bytes(), name
        assert paths["a"][name].read_bytes() != paths["c"][name].read_bytes(), name
    # the same config again does nothing; another config rewrites
    before = {name: p.stat().st_mtime_ns for name, p in paths["a"].items()}
    done = world.generate_world(str(tmp_path / "a"), seed=3, **SMALL)
    assert done["counts"]["rl"] == SMALL["rl"] and before == {n: p.stat().st_mtime_ns for n, p in paths["a"].items()}
    done = world.generate_world(str(tmp_path / "a"), seed=3, **{**SMALL, "rl": 50})
    assert len(paths["a"]["rl"].read_text().splitlines()) == 50 == done["counts"]["rl"]
    marker = json.loads((tmp_path / "a" / "world.json").read_text())
    assert marker["config"]["rl"] == 50 and not list((tmp_path / "a").glob("*.tmp*"))


def test_command_line_and_config_errors(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "miniature.world", *args], cwd=ROOT, capture_output=True,
                                        text=True)
    out = tmp_path / "w"
    r = run(f"--out_dir={out}", "--seed=1", "--web_docs=7", "--qa_short=5", "--qa_long=5", "--instruct=3", "--rl=4",
            "--eval=6", "--mix={'add': 1.0, 'equation': 2.0}")
    assert r.returncode == 0, r.stderr
    marker = json.loads((out / "world.json").read_text())
    assert marker["counts"]["benchmarks/synth/test"] == 6 and marker["config"]["mix"] == {"add": 1.0, "equation": 2.0}
    assert all("Solve for" in q or "thinks of a number" in q or "more" in q or "afternoon" in q
               for q in (json.loads(line)["question"] for line in (out / "rl.jsonl").read_text().splitlines()))
    r = run(f"--out_dir={out}", "--max_ad=5")
    assert r.returncode != 0 and "unknown config key 'max_ad'" in r.stderr
    with pytest.raises(ValueError, match="positive weight"):
        world.build(world.Config(mix={"addition": 1.0}))
    with pytest.raises(ValueError, match="problems can be held out, not eval=50"):
        world.build(world.Config(mix={"mul": 1.0}, max_mul=4, web_docs=1, qa_short=1, qa_long=1, rl=1, eval=50))

# -----------------------------------------------------------------------------
# the miniature's world: chained problems (configs/miniature/world.py)


def solve_chain(question):
    """A chain question solved from its words: the start, then each change by its verb."""
    m = re.match(r"^(\w+) has (\d+) (\w+)\.((?: (?:Then|Next|After that|Last) \1 [a-z ]+ \d+\.)+) How many \3 "
                 r"does \1 have now\?$", question)
    assert m, question
    total = int(m[2])
    changes = re.findall(r"(?:Then|Next|After that|Last) \w+ ([a-z ]+) (\d+)\.", m[4])
    for verb, b in changes:
        total += {"finds": 1, "gets": 1, "gives away": -1, "loses": -1}[verb] * int(b)
    return total, len(changes)


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    out = tmp_path_factory.mktemp("chains")
    from configurator import configure
    cfg = configure(world.Config(), [str(ROOT / "configs" / "miniature" / "world.py"), "--web_docs=600",
                                     "--qa_short=800", "--qa_long=800", "--instruct=300", "--rl=300", "--eval=300"])
    world.generate_world(**{**world.asdict(cfg), "out_dir": str(out)})
    return read(out)


def test_chain_answers_check_out_and_held_out_problems_stay_out(chains):
    pairs = []
    for name in ["qa_short", "qa_long", "rl", "benchmarks/synth/test"]:
        for r in chains[name]:
            total, k = solve_chain(r["question"])
            assert int(r["answer"]) == total and 1 <= k <= 4, r
            pairs.append((f"So the answer is \\boxed{{{total}}}.", r["answer"]))
    assert all(grade_many(pairs))
    assert {r["kind"] for r in chains["benchmarks/synth/test"]} == set(CHAINS)
    assert all(int(r["kind"][5:]) == solve_chain(r["question"])[1] for r in chains["benchmarks/synth/test"])
    training = "\x00".join([r["text"] for name in ["web_hq", "web_lq"] for r in chains[name]] +
                           [r["question"] + r["solution"] for name in ["qa_short", "qa_long", "instruct"]
                            for r in chains[name]])
    held = [r["question"] for name in ["rl", "benchmarks/synth/test"] for r in chains[name]]
    assert not [q for q in held if q in training]
    assert all(r["question"] in training for r in chains["qa_short"][:100])  # the check finds what is there
    # nor as the first steps of a longer chain: no training or RL chain starts as a held-out one does
    def start(q):
        m = re.match(r"^\w+ has (\d+) \w+\. Then \w+ ([a-z ]+) (\d+)\.", q)
        return int(m[1]), {"finds": 1, "gets": 1, "gives away": -1, "loses": -1}[m[2]] * int(m[3])
    starts = {name: {start(r["question"]) for r in chains[name]} for name in ["qa_short", "qa_long", "rl",
                                                                              "benchmarks/synth/test"]}
    trained = starts["qa_short"] | starts["qa_long"] | {start(m[0]) for r in chains["web_hq"] + chains["web_lq"]
                                                        for m in re.finditer(r"\w+ has \d+ \w+\. Then \w+ [a-z ]+ "
                                                                             r"\d+\.", r["text"])}
    assert not starts["benchmarks/synth/test"] & (trained | starts["rl"]) and not starts["rl"] & trained


def test_low_quality_pages_lose_reasoning_and_instructions_ask_for_the_box(chains):
    lq, hq = "\n".join(r["text"] for r in chains["web_lq"]), "\n".join(r["text"] for r in chains["web_hq"])
    assert "Exercise:" in lq and "Answer:" in lq and "Exercise:" not in hq and "Answer:" not in hq
    assert lq.count(" = ") < 0.8 * hq.count(" = ")  # less worked arithmetic
    asks = [r for r in chains["instruct"] if r["question"].endswith(text.BOX_ASKS[0])]
    assert len(asks) > 0.1 * len(chains["instruct"]) and all(r["solution"].endswith("}.") for r in asks)
    # the RL template asks in exactly those words
    import eval as evaluation
    assert evaluation.render("Q", "qa_boxed") == f"Question: Q {text.BOX_ASKS[0]}\nAnswer:"
