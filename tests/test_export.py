"""An export (out_dir/hf/, Llama.save_pretrained with a tokenizer) is a Hugging Face model folder: transformers'
AutoTokenizer, AutoConfig, GenerationConfig and AutoModelForCausalLM load it as they are and agree with ours
(the reference: transformers itself), for a BPE trained here and Llama-3's real ranks (Meta's llama-models
package, whose own tokenizer class is the reference for ours); and a folder transformers writes loads back."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from model import Llama, ModelConfig
from tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

HOSTILE = ["naïve café — 𝔸𝔹ℂ 😀👩‍👩‍👧 ﷽ \u200b\u200d \ufeff x\r\ny\t\t z  ", "Ω≈ç√∫˜µ≤≥÷ 日本語の テキスト 한국어",
           "\x00\x01 \\frac{1}{2} $$x^2$$ 1,234,567.890 0.000001 ١٢٣"]
SPECIALS_AS_TEXT = ["<|begin_of_text|>Q: 1+1?<|eot_id|> A: 2<|end_of_text|>", "not special: <|eot_id >, <|x|>"]


def real_texts(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:20]]
    texts = [r["question"] + "\n" + r["answer"] for r in rows]
    rows = [json.loads(line) for line in (shared_data / "benchmarks" / "math500" / "test.jsonl").read_text()
            .splitlines()[:20]]
    return texts + [r["problem"] + "\n\n" + r["solution"] for r in rows] + HOSTILE


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small Llama and a 700-token BPE trained here (16 special tokens), exported as one folder."""
    texts = ["The answer is \\boxed{42}. " * 3, "Janet has 3 apples and buys 4 more: 3 + 4 = 7.", *HOSTILE] * 20
    tok = Tokenizer.train(texts, 716)
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=tok.n_vocab,
                      max_seq_len=256, rope_original_len=64, bos_id=tok.bos_id, eos_id=tok.eos_id)
    torch.manual_seed(0)
    model = Llama(cfg)
    folder = tmp_path_factory.mktemp("export") / "hf"
    model.save_pretrained(folder, tokenizer=tok)
    return model, tok, folder


def check_tokenizer(tok, folder, texts):
    """AutoTokenizer on the folder: our vocabulary, BOS and EOS, BOS added, every text to exactly our ids and back,
    special tokens included (spelled in text they are special to transformers, as to our allow_special=True, and
    plain text with split_special_tokens, as to our default)."""
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    assert len(hf) == tok.n_vocab
    assert (hf.bos_token_id, hf.eos_token_id) == (tok.bos_id, tok.eos_id)
    assert (hf.bos_token, hf.eos_token) == ("<|begin_of_text|>", "<|end_of_text|>")
    assert hf("1 + 1")["input_ids"][0] == tok.bos_id and hf.convert_tokens_to_ids("<|eot_id|>") == tok.eot_id
    for text in texts + SPECIALS_AS_TEXT:
        ours = tok.encode(text, allow_special=True)
        assert hf(text)["input_ids"] == [tok.bos_id] + ours, text
        assert hf(text, add_special_tokens=False)["input_ids"] == ours, text
        assert hf(text, split_special_tokens=True, add_special_tokens=False)["input_ids"] == tok.encode(text), text
        assert hf.decode([tok.bos_id] + ours) == "<|begin_of_text|>" + text == tok.decode([tok.bos_id] + ours)
    assert hf.decode([tok.eot_id, tok.eos_id]) == "<|eot_id|><|end_of_text|>"
    assert hf.decode([tok.bos_id, *tok.encode("x = 2"), tok.eos_id], skip_special_tokens=True) == "x = 2"


def test_an_export_is_a_hugging_face_model_folder(trained):
    _, tok, folder = trained
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "generation_config.json"} <= {p.name for p in folder.iterdir()}
    gen = transformers.GenerationConfig.from_pretrained(folder)
    assert gen.bos_token_id == tok.bos_id and gen.eos_token_id == [tok.eos_id, tok.eot_id]
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.eos_token_id == [tok.eos_id, tok.eot_id] and config.bos_token_id == tok.bos_id
    raw = json.loads((folder / "config.json").read_text())
    for key in ["torch_dtype", "rope_scaling", "tie_word_embeddings", "max_position_embeddings", "bos_token_id",
                "eos_token_id", "rope_theta", "head_dim", "num_key_value_heads"]:
        assert key in raw, key
    config_file = json.loads((folder / "tokenizer_config.json").read_text())
    assert "chat_template" not in config_file and config_file["model_max_length"] == 256


def test_autotokenizer_encodes_and_decodes_as_ours_with_a_trained_bpe(trained, shared_data):
    _, tok, folder = trained
    check_tokenizer(tok, folder, real_texts(shared_data))


def test_automodel_gives_our_logits_and_greedy_tokens(trained):
    model, tok, folder = trained
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = [[tok.bos_id] + tok.encode(t) for t in ["Janet has 3 apples", "The answer is", "x"]]
    with torch.no_grad():
        for prompt in prompts:
            x = torch.tensor([prompt])
            torch.testing.assert_close(model(x), hf(x).logits, atol=1e-4, rtol=0)
    ours, _ = model.generate(prompts, max_new_tokens=12, temperature=0)
    for prompt, tokens in zip(prompts, ours):
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=[],
                          pad_token_id=tok.eos_id)
        assert out[0, len(prompt):].tolist() == tokens


def test_a_folder_transformers_writes_loads_back_into_ours(trained, tmp_path):
    model, tok, folder = trained
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    hf_model.save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    back, back_tok = Llama.from_pretrained(tmp_path), Tokenizer.from_pretrained(tmp_path)
    x = torch.tensor([[tok.bos_id] + tok.encode("Janet has 3 apples")])
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), atol=1e-6, rtol=0)
    assert back_tok.ranks == tok.ranks and back_tok.special_tokens == tok.special_tokens
    assert back.config.eos_id == tok.eos_id


# -----------------------------------------------------------------------------
# Llama-3's real tokenizer, offline: Meta's llama-models package


@pytest.fixture(scope="module")
def llama3():
    pytest.importorskip("llama_models")  # in requirements-test.txt
    return Tokenizer.from_pretrained("llama3")


def test_llama3_is_metas_tokenizer(llama3, shared_data):
    from llama_models.llama3.tokenizer import Tokenizer as Meta
    meta = Meta.get_instance()
    assert llama3.n_vocab == meta.n_words == 128256
    assert (llama3.bos_id, llama3.eos_id, llama3.eot_id) == (meta.bos_id, meta.eos_id, meta.eot_id)
    # the same 256 special ids; the named ones at the same ids (Meta numbers its reserved slots from a later id)
    ids = list(range(128000, 128256))
    assert sorted(llama3.special_tokens.values()) == sorted(meta.special_tokens.values()) == ids
    named = {k: v for k, v in meta.special_tokens.items() if "reserved" not in k and k not in ("<|step_id|>",
                                                                                              "<|image|>")}
    assert {k: llama3.special_tokens[k] for k in named} == named and len(named) == 8
    for text in real_texts(shared_data) + SPECIALS_AS_TEXT:
        ids = llama3.encode(text)
        assert ids == meta.encode(text, bos=False, eos=False), text
        assert llama3.encode(text, allow_special=True) == meta.encode(text, bos=False, eos=False,
                                                                      allowed_special="all"), text
        assert llama3.decode(ids) == meta.decode(ids) == text
    special_ids = [meta.bos_id, meta.eot_id, meta.eom_id, meta.eos_id]
    assert llama3.decode(special_ids) == meta.decode(special_ids)


def test_autotokenizer_encodes_and_decodes_as_llama3_with_its_real_ranks(llama3, shared_data, tmp_path):
    llama3.save_hf(tmp_path, 131072)
    check_tokenizer(llama3, tmp_path, real_texts(shared_data))


def test_a_tokenizer_an_export_cannot_number_is_an_error_at_once():
    tok = Tokenizer.train(["abc abd"] * 5, 300)
    gap = Tokenizer(tok.ranks, {name: i + 5 for name, i in tok.special_tokens.items()})
    with pytest.raises(ValueError, match="not numbered on from"):
        gap.check_hf()


def test_llama3_without_the_package_says_how_to_get_it(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install llama-models"):
        Tokenizer.from_pretrained("llama3")


@pytest.mark.slow
def test_llama3_end_to_end_prepare_train_export_and_load_in_transformers(llama3, shared_data, tmp_path):
    """Real GSM8K prepared with Llama-3's tokenizer, a few steps of a small model with its 128,256-token
    vocabulary, the export loaded by transformers: tokenizer (Llama-3's ids) and model (our logits)."""
    def run(*args):
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, text=True)
    gsm8k = tmp_path / "gsm8k.jsonl"
    gsm8k.write_text("".join((shared_data / "gsm8k" / "train.jsonl").read_text().splitlines(True)[:200]))
    run("data.py", "prepare", f"--inputs={gsm8k}", "--fmt=qa", "--tokenizer=llama3", f"--out_dir={tmp_path / 'data'}")
    mixture = {"gsm8k": (str(tmp_path / "data"), 1.0)}
    run("train.py", "configs/tiny.py", "--tokenizer=llama3", f"--mixture={mixture!r}", "--max_steps=3",
        "--model_args={'dim': 32, 'n_layers': 1, 'n_heads': 2, 'n_kv_heads': 1, 'ffn_dim': 64}",
        "--seq_len=64", "--batch_tokens=128", "--micro_batch=2", f"--out_dir={tmp_path / 'run'}")
    folder = tmp_path / "run" / "hf"
    model = Llama.from_pretrained(folder)
    assert model.config.vocab_size == 128256
    text = json.loads(gsm8k.read_text().splitlines()[0])["question"]
    check_tokenizer(llama3, folder, [text])
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    x = torch.tensor([[llama3.bos_id] + llama3.encode(text)])
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, atol=1e-4, rtol=0)
