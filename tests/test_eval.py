"""eval.py: oracle scores on every shipped benchmark, prompt structure, avg@k / pass@k, stop strings, and the
CLI end to end on a tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eval as E
from data import Tokenizer
from grader import extract_answer
from model import Llama, ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def oracle_answer(example):
    """The reference solution where it marks its final answer, else the gold answer in \\boxed{}."""
    solution = example.get("solution")
    if solution and ("\\boxed" in solution or "####" in solution):
        return solution
    return f"So the final answer is $\\boxed{{{example['answer']}}}$."


@pytest.mark.parametrize("name", E.BENCHMARKS)
def test_oracles_score_right_and_neighbours_score_chance(name):
    examples = E.load_benchmark(name)[:600]
    assert len(examples) >= 30 and all(e["question"] and e["answer"] for e in examples)
    by_prompt = {E.build_prompt(e, name): i for i, e in enumerate(examples)}
    right = E.evaluate(lambda ps: [oracle_answer(examples[by_prompt[p]]) for p in ps], name, limit=600)[name]
    assert right["n"] == len(examples) and right["accuracy"] >= 0.99, right
    neighbour = lambda ps: [oracle_answer(examples[(by_prompt[p] + 1) % len(examples)]) for p in ps]
    wrong = E.evaluate(neighbour, name, limit=600)[name]
    # chance: neighbours whose gold answers are the same string
    chance = sum(e["answer"] == examples[(i + 1) % len(examples)]["answer"] for i, e in enumerate(examples)) / len(examples)
    assert wrong["accuracy"] <= chance + 0.01, (wrong, chance)


def test_avg_and_pass_at_k():
    examples = E.load_benchmark("amc23")
    calls = iter(range(10**6))
    every_other = lambda ps: [f"\\boxed{{{examples[i // 4]['answer'] if next(calls) % 2 else 'no'}}}"
                              for i, _ in enumerate(ps)]
    r = E.evaluate(every_other, "amc23", n_samples=4)["amc23"]
    assert r["accuracy"] == 0.5 and r["pass@4"] == 1.0 and r["n"] == 40


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
    for shot in E.exemplars(name):  # exemplars grade right against their own answers
        assert extract_answer(f"{shot['solution']} The final answer is ${shot['answer']}$.") == shot["answer"]


@pytest.mark.parametrize("template", list(E.TEMPLATES))
def test_zeroshot_prompts_are_the_rl_templates(template):
    example = E.load_benchmark("math500")[0]
    prompt = E.build_prompt(example, "math500", "zeroshot", template)
    assert prompt == E.render(example["question"], template) and "Problem:" not in prompt
    assert example["question"] in prompt
    assert prompt.rstrip().endswith(("Assistant:", "Answer:", "\\boxed{}."))
    with pytest.raises(ValueError, match="choose one of"):
        E.render("1+1?", "chat")


def test_stop_strings_cut_a_completion_that_runs_into_a_new_problem():
    completion = "2 + 2 = 4. The final answer is $4$.\n\nProblem:\nWhat is 3 + 3?\n\nSolution:\n6"
    assert E.cut_at_stop(completion, E.stop_strings("fewshot")) == "2 + 2 = 4. The final answer is $4$.\n\n"
    r = E.evaluate(lambda ps: [completion.replace("4", "18") for _ in ps], "gsm8k", limit=1)["gsm8k"]
    assert r["accuracy"] == 1.0  # gsm8k[0] is 18: graded on the cut text, not the invented problem's "6"
    talk = "I think 5.\nUser: and now?\nAssistant: 7"
    assert E.cut_at_stop(talk, E.TEMPLATES["conversation"]["stop"]) == "I think 5.\n"


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark 'gsm9k'"):
        E.load_benchmark("gsm9k")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "test.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n{"question": "x"}\n')
    with pytest.raises(ValueError, match="line 2.*'answer'"):
        E.load_benchmark("broken", data_dir=tmp_path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    texts = [e["question"] for e in E.load_benchmark("gsm8k")[:300]]
    tokenizer = Tokenizer.train(texts, 400)
    torch.manual_seed(0)
    Llama(ModelConfig.preset("tiny", vocab_size=512, max_seq_len=8192)).save_pretrained(folder / "hf")
    tokenizer.save(folder / "hf")
    return folder


def test_cli_end_to_end(tiny_model):
    cmd = [sys.executable, "eval.py", f"--model={tiny_model}", "--benchmarks=gsm8k,mmlu_stem,amc23", "--limit=3",
           "--max_new_tokens=6", "--batch_size=2"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "| gsm8k | 3 |" in run.stdout and "| mmlu_stem | 3 |" in run.stdout
    results = json.loads((tiny_model / "eval" / "results.json").read_text())["results"]
    assert set(results) == {"gsm8k", "mmlu_stem", "amc23"} and results["gsm8k"]["n"] == 3
    samples = [json.loads(line) for line in (tiny_model / "eval" / "gsm8k_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and set(samples[0]) == {"prompt", "completion", "extracted", "gold", "correct"}
    assert samples[0]["gold"] == "18" and samples[0]["prompt"].count("Problem:") == 9
    missing = subprocess.run([sys.executable, "eval.py", f"--model={tiny_model / 'nowhere'}"], cwd=ROOT,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "nowhere" in missing.stderr
