"""eval.py: oracle scores on every shipped benchmark, prompt structure, avg@k / pass@k, stop strings, the model
wrapper, the errors a user meets, and the CLI end to end on a tiny model."""
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from conftest import free_port

import eval as E
from configurator import configure
from grader import grade_many
from model import Llama, ModelConfig
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def reference_answer(example):
    """The reference solution where it marks its final answer, else the gold answer in \\boxed{}."""
    solution = example.get("solution")
    if solution and ("\\boxed" in solution or "####" in solution):
        return solution
    return f"So the final answer is $\\boxed{{{example['answer']}}}$."


def by_position(examples, answer):
    """A generate that answers the i-th prompt with answer(i), checking the i-th prompt is examples[i]'s
    (CollegeMath repeats some questions, so prompts cannot be looked up by text)."""
    def generate(prompts):
        assert len(prompts) == len(examples)
        assert all(E.with_choices(e) in p for e, p in zip(examples, prompts))
        return [answer(i) for i in range(len(prompts))]
    return generate


@pytest.mark.parametrize("name", E.BENCHMARKS)
def test_reference_answers_score_right_and_neighbours_score_chance(name):
    examples = E.load_benchmark(name)
    assert all(e["question"].strip() and e["answer"].strip() for e in examples)
    right = E.evaluate(by_position(examples, lambda i: reference_answer(examples[i])), name)[name]
    assert right["n"] == len(examples) and right["accuracy"] >= 0.99, right
    # the few-shot answer format; some CollegeMath golds are whole paragraphs no "final answer" line can hold
    fewshot = E.evaluate(by_position(examples, lambda i: f"So. The final answer is ${examples[i]['answer']}$.\n\n"),
                         name)[name]
    assert fewshot["accuracy"] >= (0.9 if name == "college_math" else 0.99), fewshot
    neighbour = E.evaluate(by_position(examples, lambda i: reference_answer(examples[(i + 1) % len(examples)])),
                           name)[name]
    n = len(examples)
    chance = sum(e["answer"] == examples[(i + 1) % n]["answer"] for i, e in enumerate(examples)) / n
    assert neighbour["accuracy"] <= chance + 0.01, (neighbour, chance)


def test_golds_are_read_from_each_layout():
    gsm8k, minerva = E.load_benchmark("gsm8k")[0], E.load_benchmark("minerva_math")[0]
    assert gsm8k["answer"] == "18" and minerva["answer"] == "1.6"
    mmlu = E.load_benchmark("mmlu_stem")[0]
    assert mmlu["answer"] == "C" and len(mmlu["choices"]) == 4  # index 2 of the record
    olympiad = {e["answer"] for e in E.load_benchmark("olympiadbench")}
    assert "69, 84" in olympiad and not any("$" in a for a in olympiad)  # "$69$,$84$": one gold, two answers
    assert E.load_benchmark("college_math")[0]["answer"] == "10-4 n"  # "$10-4 n$"
    assert grade_many([("\\boxed{84, 69}", "69, 84"), ("\\boxed{69}", "69, 84")]) == [True, False]


def test_avg_and_pass_at_k():
    examples = E.load_benchmark("amc23")
    calls = itertools.count()
    every_other = lambda ps: [f"\\boxed{{{examples[i // 4]['answer'] if next(calls) % 2 else 'no'}}}"
                              for i in range(len(ps))]
    r = E.evaluate(every_other, "amc23", n_samples=4)["amc23"]
    assert r["accuracy"] == 0.5 and r["pass@4"] == 1.0 and r["n"] == 40
    # right only in the first sample of even problems: avg@4 1/8, pass@4 1/2
    once = lambda ps: [f"\\boxed{{{examples[i // 4]['answer'] if i % 8 == 0 else 'no'}}}" for i in range(len(ps))]
    r = E.evaluate(once, "amc23", n_samples=4)["amc23"]
    assert r["accuracy"] == 0.125 and r["pass@4"] == 0.5 and r["no_answer"] == 0


@pytest.mark.parametrize("name, shots", [("gsm8k", 8), ("math500", 4), ("minerva_math", 4), ("olympiadbench", 4),
                                         ("college_math", 4), ("mmlu_stem", 4), ("aime24", 0), ("amc23", 0)])
def test_fewshot_prompt_structure(name, shots):
    example = E.load_benchmark(name)[3]
    prompt = E.build_prompt(example, name, "fewshot")
    assert prompt.count("Problem:\n") == shots + 1 and prompt.count("The final answer is") == shots
    if name == "mmlu_stem":  # the question, then its choices, then the answer slot
        choices = "\n".join(f"({l}) {c}" for l, c in zip("ABCD", example["choices"]))
        assert prompt.endswith(f"Problem:\n{example['question']}\n{choices}\n\nSolution:\n")
    else:
        assert prompt.endswith(f"Problem:\n{example['question']}\n\nSolution:\n")
    assert prompt.startswith("Problem:\n") and prompt.count(example["question"]) == 1


def test_exemplars_are_right_and_not_test_problems(shared_data):
    pool = E.fewshot_pool()
    shots = [s for group in pool.values() for s in group]
    assert [len(pool[k]) for k in ("gsm8k", "math", "mmlu_stem")] == [8, 4, 4]
    # each exemplar, as the prompt shows it, grades right against its own answer
    assert all(grade_many([(f"{s['solution']} The final answer is ${s['answer']}$.", s["answer"]) for s in shots]))
    tests = {E.with_choices(e) for name in E.BENCHMARKS for e in E.load_benchmark(name)}
    assert not any(E.with_choices(s) in tests for s in shots)
    with open(shared_data / "gsm8k" / "train.jsonl") as f:
        train = {json.loads(line)["question"] for line in f}
    assert all(s["question"] in train for s in pool["gsm8k"])  # GSM8K's from its training split


@pytest.mark.parametrize("template", list(E.TEMPLATES))
def test_zeroshot_prompts_are_the_rl_templates(template):
    head, tail = E.render("\0", template).split("\0")
    for name in ("math500", "mmlu_stem"):
        example = E.load_benchmark(name)[0]
        prompt = E.build_prompt(example, name, "zeroshot", template)
        assert prompt == head + E.with_choices(example) + tail and "Problem:" not in prompt
        assert E.with_choices(example).startswith(example["question"])
    assert "{" not in tail.replace("\\boxed{}", "")  # the format braces were filled
    assert E.stop_strings("zeroshot", template) == E.TEMPLATES[template]["stop"]
    with pytest.raises(ValueError, match="choose one of boxed, conversation, qa"):
        E.render("1+1?", "chat")


def test_stop_strings_cut_a_completion_that_runs_into_a_new_problem():
    completion = "2 + 2 = 4. The final answer is $4$.\n\nProblem:\nWhat is 3 + 3?\n\nSolution:\nThe answer is $6$."
    assert E.cut_at_stop(completion, E.stop_strings("fewshot")) == "2 + 2 = 4. The final answer is $4$.\n\n"
    r = E.evaluate(lambda ps: [completion.replace("4", "18") for _ in ps], "gsm8k", limit=1)["gsm8k"]
    assert r["accuracy"] == 1.0  # gsm8k[0] is 18: graded on the cut text, not the invented problem's "6"
    talk = "I think \\boxed{5}.\nUser: and now?\nAssistant: \\boxed{7}"
    assert E.cut_at_stop(talk, E.TEMPLATES["conversation"]["stop"]) == "I think \\boxed{5}.\n"
    assert E.cut_at_stop("no stop here", ["Problem:"]) == "no stop here"


@pytest.fixture(scope="module")
def tokenizer():
    texts = [e["question"] for e in E.load_benchmark("gsm8k")[:200]] + ["Problem: Solution: The final answer is"]
    return Tokenizer.train(texts, 400)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer):
    """A run folder as train.py leaves it: <run>/hf/ with the weights and the tokenizer."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192, rope_original_len=64, max_seq_len=8192,
                      vocab_size=tokenizer.n_vocab, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    Llama(cfg).save_pretrained(run / "hf")
    tokenizer.save(run / "hf")
    return run


class ScriptedModel:
    """model.generate stand-in: answers each prompt with a fixed text and EOS, recording its batches."""
    def __init__(self, tokenizer, text, max_seq_len=1 << 20):
        self.tokenizer, self.text, self.calls = tokenizer, text, []
        self.config = types.SimpleNamespace(max_seq_len=max_seq_len)

    def generate(self, prompts, max_new_tokens, temperature, top_p, stop_ids, seed, stop_strings, decode, compile,
                 kv_budget, max_batch, on_done):
        self.calls.append({"prompts": prompts, "seed": seed, "stop_ids": stop_ids, "stop_strings": stop_strings,
                           "compile": compile, "max_new_tokens": max_new_tokens, "kv_budget": kv_budget,
                           "max_batch": max_batch})
        for i in range(len(prompts)):
            on_done(i)
        return [self.tokenizer.encode(self.text) + [self.tokenizer.eos_id] for _ in prompts], None


def test_model_wrapper_batches_longest_first_and_cuts_stops(tokenizer):
    model = ScriptedModel(tokenizer, "so 5. The final answer is $5$.\n\nProblem:\nmore")
    generate = E.model_generate(model, tokenizer, 16, batch_size=2, stop=E.FEWSHOT_STOP, seed=3, kv_budget="1GB")
    prompts = ["a", "a much longer prompt than the others", "medium prompt", "b c"]
    completions = generate(prompts)
    assert completions == ["so 5. The final answer is $5$.\n\n"] * 4  # no stop string, no "<|end_of_text|>"
    assert generate.new_tokens == [len(tokenizer.encode(model.text)) + 1] * 4
    (call,) = model.calls  # one call: the engine keeps batch_size rows decoding, refilled from the queue
    sent = call["prompts"]
    assert (call["max_batch"], call["kv_budget"]) == (2, "1GB") and sent == sorted(sent, key=len, reverse=True)
    assert sent[0] == [tokenizer.bos_id] + tokenizer.encode(prompts[1])
    assert call["seed"][:2] == [(3 << 32) + 1, (3 << 32) + 2]  # a prompt's seed is its own, whatever its batch
    assert set(model.calls[0]["stop_ids"]) == {tokenizer.eos_id, tokenizer.eot_id}
    assert not model.calls[0]["compile"]
    E.model_generate(model, tokenizer, 16, compile=True)(["a"])
    assert model.calls[-1]["compile"]  # eval.py --compile reaches the model
    model = ScriptedModel(tokenizer, "so \\boxed{5}")  # ends at EOS, which is no text of the completion
    assert E.model_generate(model, tokenizer, 16)(["a"]) == ["so \\boxed{5}"]


def test_max_new_tokens_is_capped_at_what_the_context_leaves(tokenizer, capsys):
    prompts = ["a", "a much longer prompt than the others"]
    longest = 1 + len(tokenizer.encode(prompts[1]))  # BOS and the prompt
    model = ScriptedModel(tokenizer, "so \\boxed{5}", max_seq_len=longest + 10)
    generate = E.model_generate(model, tokenizer, 1024, batch_size=1)
    generate(prompts)
    assert [c["max_new_tokens"] for c in model.calls] == [10] and generate.max_new_tokens == 10  # one cap a call
    assert f"max_new_tokens=1024 capped at 10: the longest prompt has {longest} tokens" in capsys.readouterr().out
    E.model_generate(model, tokenizer, 8)(prompts)
    assert model.calls[-1]["max_new_tokens"] == 8  # below the cap: as asked
    generate = E.model_generate(ScriptedModel(tokenizer, "so \\boxed{5}", max_seq_len=1000), tokenizer, 1024)
    results = E.evaluate(generate, "amc23", mode="zeroshot", limit=1)
    assert results["amc23"]["max_new_tokens"] == generate.max_new_tokens < 1024  # the cap used is in results.json
    with pytest.raises(ValueError, match="fills the model's whole context"):
        E.model_generate(ScriptedModel(tokenizer, "x", max_seq_len=3), tokenizer, 8)(prompts)


def test_model_wrapper_gives_each_prompt_the_same_completion_whatever_its_batch(tiny_run, tokenizer):
    model = Llama.from_pretrained(tiny_run / "hf")
    prompts = [E.build_prompt(e, "amc23") for e in E.load_benchmark("amc23")[:5]]
    for temperature in (0.0, 1.0):
        alone = E.model_generate(model, tokenizer, 8, batch_size=1, temperature=temperature)(prompts)
        together = E.model_generate(model, tokenizer, 8, batch_size=5, temperature=temperature)(prompts)
        assert alone == together and all(isinstance(c, str) for c in alone)


def test_errors_name_what_is_wrong(tmp_path, tiny_run, monkeypatch):
    with pytest.raises(FileNotFoundError, match="benchmark 'gsm9k'.*gsm8k, math500"):
        E.load_benchmark("gsm9k")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "test.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n{"question": "x"}\n')
    with pytest.raises(ValueError, match="broken/test.jsonl, line 2.*'answer'"):
        E.load_benchmark("broken", data_dir=tmp_path)
    with pytest.raises(ValueError, match="generate returned 0 completions for 1 prompts"):
        E.evaluate(lambda ps: [], "gsm8k", limit=1)
    # model folders: missing pieces are named
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json, no weights.*no tokenizer"):
        E.find_model(str(empty))
    (tmp_path / "half").mkdir()
    for f in ("config.json", "model.safetensors"):
        (tmp_path / "half" / f).write_bytes((tiny_run / "hf" / f).read_bytes())
    with pytest.raises(FileNotFoundError, match="half: no tokenizer"):
        E.find_model(str(tmp_path / "half"))
    (tmp_path / "training" / "ckpt").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="without its hf/ export"):
        E.find_model(str(tmp_path / "training"))
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        E.find_model(str(tmp_path / "nowhere"))
    assert E.find_model("meta-llama/Llama-3.2-1B") == ("meta-llama/Llama-3.2-1B", "out/eval/meta-llama--Llama-3.2-1B")
    assert E.find_model(str(tiny_run)) == (str(tiny_run / "hf"), str(tiny_run / "eval"))
    # no --model: the newest run under out/, or what to do when there is none
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="nothing under out/.*--model="):
        E.find_model("")
    for age, run in ((100, "new"), (200, "old")):  # "old" written last, but its export is older
        shutil.copytree(tiny_run / "hf", tmp_path / "out" / run / "hf")
        os.utime(tmp_path / "out" / run / "hf" / "config.json", (time.time() - age,) * 2)
    assert E.find_model("") == (os.path.join("out", "new", "hf"), os.path.join("out", "new", "eval"))
    with pytest.raises(ValueError, match="identical samples.*--temperature"):
        E.main(E.Config(model=str(tiny_run), n_samples=4))


def test_cli_end_to_end(tiny_run, tmp_path):
    cmd = [sys.executable, "eval.py", f"--model={tiny_run}", "--benchmarks=gsm8k,mmlu_stem,amc23", "--limit=3",
           "--max_new_tokens=6", "--batch_size=2"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "| gsm8k | 3 |" in run.stdout and "| mmlu_stem | 3 |" in run.stdout and "| amc23 | 3 |" in run.stdout
    results = json.loads((tiny_run / "eval" / "results.json").read_text())["results"]
    assert set(results) == {"gsm8k", "mmlu_stem", "amc23"} and results["gsm8k"]["n"] == 3
    assert 1 <= results["gsm8k"]["mean_response_tokens"] <= 6
    assert json.loads((tiny_run / "eval" / "config.json").read_text())["max_new_tokens"] == 6
    samples = [json.loads(line) for line in (tiny_run / "eval" / "gsm8k_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and set(samples[0]) == {"prompt", "completion", "extracted", "gold", "correct",
                                                           "new_tokens"}
    assert samples[0]["gold"] == "18" and samples[0]["prompt"].count("Problem:") == 9
    assert all("Problem:" not in s["completion"] for s in samples)
    # zero-shot, sampled: avg@k and pass@k, written where --out_dir says, and reproducible from the seed
    args = [f"--model={tiny_run}", "--benchmarks=amc23", "--limit=2", "--max_new_tokens=4", "--mode=zeroshot",
            "--template=conversation", "--n_samples=2", "--temperature=1.0", f"--out_dir={tmp_path}"]
    results = E.main(configure(E.Config(), args))["amc23"]
    assert set(results) >= {"accuracy", "pass@2", "n", "mean_response_tokens"} and results["n"] == 2
    samples = (tmp_path / "amc23_samples.jsonl").read_text()
    E.main(configure(E.Config(), args))
    assert (tmp_path / "amc23_samples.jsonl").read_text() == samples
    samples = [json.loads(line) for line in samples.splitlines()]
    assert len(samples) == 4 and samples[0]["prompt"] == samples[1]["prompt"]
    assert samples[0]["prompt"].endswith("Assistant:") and samples[0]["completion"] != samples[1]["completion"]


def test_rounded_answers_only_where_the_benchmark_rounds(tmp_path):
    for name, record in [("minerva_math", {"problem": "Light travels how far?", "solution": "So \\boxed{3.14}."}),
                         ("math500", {"problem": "What is it?", "answer": "3.14"})]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.jsonl").write_text(json.dumps(record) + "\n")
    results = E.evaluate(lambda prompts: ["so it is \\boxed{\\pi}"] * len(prompts), ["minerva_math", "math500"],
                         mode="zeroshot", data_dir=tmp_path)
    assert E.ROUNDED == {"minerva_math", "college_math"}
    assert results["minerva_math"]["accuracy"] == 1.0 and results["math500"]["accuracy"] == 0.0


def test_an_unmarked_answer_is_read_for_its_last_number_unless_told_not(tmp_path):
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").write_text(json.dumps({"problem": "How many?", "answer": "12"}) + "\n")
    unmarked = lambda prompts: ["Therefore, there are 12 such sequences."] * len(prompts)  # noqa: E731
    read = E.evaluate(unmarked, "math500", mode="zeroshot", data_dir=tmp_path)["math500"]
    strict = E.evaluate(unmarked, "math500", mode="zeroshot", data_dir=tmp_path, last_number=False)["math500"]
    assert E.Config.last_number and read["accuracy"] == 1.0 and read["no_answer"] == 0.0  # as the harnesses read it
    assert strict["accuracy"] == 0.0 and strict["no_answer"] == 1.0  # as rl.py's reward reads it (its default)
    import rl
    assert rl.Config.last_number is False


def test_eval_over_two_ranks_equals_one_process(tiny_run, tmp_path):
    """torchrun eval.py: each rank generates its share of the prompts, rank 0 grades and writes; the samples and
    results are the ones one process gives (every prompt samples from its own seed)."""
    args = [f"--model={tiny_run}", "--benchmarks=gsm8k,amc23", "--limit=5", "--max_new_tokens=5", "--batch_size=2",
            "--mode=zeroshot", "--template=qa", "--n_samples=2", "--temperature=1.0"]
    one = subprocess.run([sys.executable, "eval.py", *args, f"--out_dir={tmp_path / 'one'}"], cwd=ROOT,
                         capture_output=True, text=True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", "eval.py", *args, f"--out_dir={tmp_path / 'two'}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    for name in ["gsm8k_samples.jsonl", "amc23_samples.jsonl"]:
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    results = [json.loads((tmp_path / run / "results.json").read_text())["results"] for run in ("one", "two")]
    for r in results:
        for scores in r.values():
            scores.pop("seconds")
    assert results[0] == results[1] and results[0]["gsm8k"]["n"] == 5
    assert two.stdout.count("| gsm8k | 5 |") == 1  # the table is printed once, by rank 0


def test_ranks_get_whole_runs_of_a_prompt_and_like_shares():
    encoded = [[1, 2, 3]] * 3 + [[4, 5]] * 3 + [[6]] * 3 + [[7]] * 3  # avg@3: each prompt three times in a row
    order = sorted(range(12), key=lambda i: -len(encoded[i]))
    shares = [E.deal(order, encoded, r, 2) for r in range(2)]
    assert shares == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]]  # one rank prefills each prompt, longest dealt first
    assert sorted(shares[0] + shares[1]) == list(range(12))
    assert E.deal(order, encoded, 0, 1) == order and E.deal(order[:3], encoded, 1, 2) == []  # a rank may get none


def test_a_benchmark_folder_can_bring_its_own_fewshot_exemplars(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "test.jsonl").write_text(json.dumps({"question": "2 + 2?", "answer": "4"}) + "\n")
    shots = [{"question": "1 + 1?", "solution": "1 + 1 = 2.", "answer": "2"},
             {"question": "3 + 1?", "solution": "3 + 1 = 4.", "answer": "4"}]
    (tmp_path / "toy" / "fewshot.jsonl").write_text("".join(json.dumps(s) + "\n" for s in shots))
    example = E.load_benchmark("toy", str(tmp_path))[0]
    prompt = E.build_prompt(example, "toy", "fewshot", data_dir=str(tmp_path))
    assert prompt == ("Problem:\n1 + 1?\n\nSolution:\n1 + 1 = 2. The final answer is $2$.\n\n"
                      "Problem:\n3 + 1?\n\nSolution:\n3 + 1 = 4. The final answer is $4$.\n\n"
                      "Problem:\n2 + 2?\n\nSolution:\n")
    assert E.exemplars("gsm8k", str(tmp_path)) == E.exemplars("gsm8k")  # without a file: the shipped ones
