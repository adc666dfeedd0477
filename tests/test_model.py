"""model.py and generation.py against independent references: transformers' LlamaForCausalLM (logits,
weights, greedy generation), F.cross_entropy on full logits, uncached forward passes, and hand-computed
distributions."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from generation import KVCache, row_seeds, sample, uniforms
from model import Llama, ModelConfig, chunked_cross_entropy, config_from_hf, token_logprobs

transformers = pytest.importorskip("transformers")

# A small Llama-3 with everything that can go wrong: GQA (4 query heads per 2 KV heads), tied embeddings,
# llama3 rope scaling from a 32-token original context, with rope_theta chosen so the head's frequencies
# fall in all three bands (kept, interpolated, stretched), and sequences longer than that context.
HF_CONFIG = dict(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=512, tie_word_embeddings=True,
                 rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 32})


def make_hf(tied=True, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**{**HF_CONFIG, "tie_word_embeddings": tied})
    config._attn_implementation = "eager"
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger than the 0.02 init, so that logits are far from uniform
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if p.dim() == 1 else 0.15 * torch.randn_like(p))
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=160, vocab_size=256,
                                rope_theta=10000.0, rope_factor=8.0, rope_original_len=32, max_seq_len=512),
                         **overrides})
    model = Llama(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.15)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_transformers(tmp_path, tied):
    hf = make_hf(tied)
    hf.save_pretrained(tmp_path)
    ours = Llama.from_pretrained(str(tmp_path))
    assert ours.config.tie_embeddings == tied and ours.config.n_kv_heads == 2 and ours.config.rope_factor == 8.0
    tokens = torch.randint(0, 384, (2, 160))  # 5x the rope scaling's original context
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens)
    assert got.shape == (2, 160, 384)
    assert (got - expected).abs().max() < 1e-4
    assert expected.std() > 1.0  # the comparison is not between two near-zero tensors


def test_sharded_checkpoint_loads(tmp_path):
    hf = make_hf()
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    tokens = torch.randint(0, 384, (1, 40))
    with torch.no_grad():
        assert (Llama.from_pretrained(str(tmp_path))(tokens) - hf(tokens).logits).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_through_transformers(tmp_path, dtype):
    ours = small_model(tie_embeddings=False).to(dtype)
    ours.save_pretrained(tmp_path / "ours")
    assert sorted(os.listdir(tmp_path / "ours")) == ["config.json", "model.safetensors"]
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "ours", dtype=torch.float32).eval()
    tokens = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        expected = ours.float()(tokens)
        assert (hf(tokens).logits - expected).abs().max() < 1e-4
    # and back: transformers -> its own save -> ours, bit for bit
    hf.to(dtype).save_pretrained(tmp_path / "hf")
    back = Llama.from_pretrained(str(tmp_path / "hf"))
    assert back.lm_head.weight.dtype == dtype
    for (name, p), q in zip(back.state_dict().items(), ours.to(dtype).state_dict().values()):
        assert torch.equal(p, q), name


def test_bad_checkpoints_are_clear_errors(tmp_path):
    from safetensors.torch import load_file, save_file
    hf = make_hf()
    hf.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())

    name = "model.layers.1.mlp.up_proj.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        Llama.from_pretrained(str(tmp_path))
    save_file({**tensors, name: tensors[name][:, :-1].contiguous()}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=rf"{name}.*shape"):
        Llama.from_pretrained(str(tmp_path))
    save_file({**tensors, "model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="q_proj.bias"):
        Llama.from_pretrained(str(tmp_path))

    for field, value in [("hidden_act", "gelu"), ("attention_bias", True), ("model_type", "mistral")]:
        with pytest.raises(ValueError, match=field):
            config_from_hf({**config, field: value})
    with pytest.raises(ValueError, match="rope_type"):
        config_from_hf({**config, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(FileNotFoundError, match="neither"):
        Llama.from_pretrained(str(tmp_path / "nowhere"))


def test_presets_match_released_configs():
    one, three, eight = (ModelConfig.preset(n) for n in ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b"))
    assert (one.dim, one.n_layers, one.n_heads, one.n_kv_heads, one.head_dim, one.ffn_dim) == (2048, 16, 32, 8, 64, 8192)
    assert (three.dim, three.n_layers, three.n_heads, three.head_dim, three.tie_embeddings) == (3072, 28, 24, 128, True)
    assert (eight.ffn_dim, eight.rope_factor, eight.tie_embeddings, eight.vocab_size) == (14336, 8.0, False, 128256)
    with torch.device("meta"):  # parameter counts of the released models: 1.24B, 3.21B, 8.03B
        counts = [sum(p.numel() for p in Llama(c).parameters()) for c in (one, three, eight)]
    assert [round(c / 1e9, 2) for c in counts] == [1.24, 3.21, 8.03]


def test_chunked_loss_equals_full_cross_entropy():
    model = small_model().double()
    tokens, targets = torch.randint(0, 256, (3, 50)), torch.randint(0, 256, (3, 50))
    targets[0, :7] = -100
    targets[2, 30:] = -100
    h = model.hidden(tokens, torch.arange(50)[None])
    logprobs, _ = token_logprobs(h, model.lm_head.weight, targets, chunk_elems=256 * 16)  # 16 tokens a chunk
    loss = -logprobs.sum() / (targets != -100).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    ref = F.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), ignore_index=-100)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    assert abs(loss.item() - ref.item()) < 1e-12
    for g, r in zip(grads, ref_grads):
        assert (g - r).abs().max() < 1e-12
    assert abs(model(tokens, targets).item() - ref.item()) < 1e-12


def test_loss_never_keeps_full_logits_for_backward():
    model = small_model()
    tokens = torch.randint(0, 256, (4, 64))
    h = model.hidden(tokens, torch.arange(64)[None]).detach().requires_grad_()
    full_logits = 4 * 64 * 256

    def largest_saved(loss_fn):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = loss_fn()
        loss.backward()
        return max(saved)

    naive = largest_saved(lambda: F.cross_entropy(model.lm_head(h).flatten(0, 1), tokens.flatten()))
    assert naive >= full_logits  # what the hook sees when logits are kept for backward
    chunked = largest_saved(lambda: token_logprobs(h, model.lm_head.weight, tokens, entropy=True,
                                                   chunk_elems=256 * 32)[0].sum())
    assert chunked <= 256 * 64  # only the inputs (h, the weight) are kept: logits are recomputed per chunk


def test_per_token_logprobs_and_entropy_match_full_logits():
    model = small_model().double()
    tokens, targets = torch.randint(0, 256, (2, 40)), torch.randint(0, 256, (2, 40))
    targets[1, 25:] = -100
    logprobs, entropy = model.logprobs(tokens, targets, entropy=True)
    full = F.log_softmax(model(tokens), dim=-1)
    expected = full.gather(-1, targets.clamp(min=0)[..., None])[..., 0].masked_fill(targets == -100, 0)
    assert (logprobs - expected).abs().max() < 1e-12
    assert (entropy - -(full.exp() * full).sum(-1)).abs().max() < 1e-12
    g, = torch.autograd.grad((logprobs * entropy).sum(), model.lm_head.weight)
    r, = torch.autograd.grad((expected * -(full.exp() * full).sum(-1)).sum(), model.lm_head.weight)
    assert (g - r).abs().max() < 1e-10
    # at a sampling temperature (rl.py's learner): the tempered distribution the rollout drew from
    hot, hot_entropy = model.logprobs(tokens, targets, entropy=True, temperature=0.7)
    tempered = F.log_softmax(model(tokens) / 0.7, dim=-1)
    expected = tempered.gather(-1, targets.clamp(min=0)[..., None])[..., 0].masked_fill(targets == -100, 0)
    assert (hot - expected).abs().max() < 1e-12 and (hot - logprobs).abs().max() > 1e-3
    assert (hot_entropy - -(tempered.exp() * tempered).sum(-1)).abs().max() < 1e-12


def greedy_uncached(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            seq.append(model(torch.tensor([seq]))[0, -1].argmax().item())
    return seq[len(prompt):]


PROMPTS = [[5, 17, 99, 3], [200], [8] * 37, [44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54]]


def test_cached_greedy_equals_uncached_and_batched_equals_alone():
    model = small_model()
    batched, logprobs = model.generate(PROMPTS, max_new_tokens=24, temperature=0)
    for p, out, lp in zip(PROMPTS, batched, logprobs):
        assert out == greedy_uncached(model, p, 24)
        alone, alone_lp = model.generate([p], max_new_tokens=24, temperature=0)
        assert alone[0] == out
        assert max(abs(a - b) for a, b in zip(alone_lp[0], lp)) < 1e-5


def test_greedy_equals_transformers_generate(tmp_path):
    hf = make_hf()
    hf.save_pretrained(tmp_path)
    ours = Llama.from_pretrained(str(tmp_path))
    prompts = [[p % 384 for p in prompt] for prompt in PROMPTS]
    tokens, _ = ours.generate(prompts, max_new_tokens=40, temperature=0)
    for prompt, got in zip(prompts, tokens):
        expected = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False)[0, len(prompt):]
        assert got == expected.tolist()


def test_sampling_is_per_prompt_and_logprobs_match_a_fresh_forward():
    model = small_model()
    seeds = [11, 22, 33, 44]
    tokens, logprobs = model.generate(PROMPTS, max_new_tokens=30, temperature=0.9, top_p=0.95, seed=seeds)
    for i, (p, out, lp) in enumerate(zip(PROMPTS, tokens, logprobs)):
        alone, _ = model.generate([p], max_new_tokens=30, temperature=0.9, top_p=0.95, seed=[seeds[i]])
        assert alone[0] == out
        with torch.no_grad():
            logits = model(torch.tensor([p + out]))[0, len(p) - 1:-1]
        expected = F.log_softmax(logits.double(), -1).gather(1, torch.tensor(out)[:, None])[:, 0]
        assert (torch.tensor(lp, dtype=torch.float64) - expected).abs().max() < 1e-4
    again, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0.9, top_p=0.95, seed=seeds)
    assert again == tokens
    other, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0.9, top_p=0.95, seed=[1, 2, 3, 4])
    assert other != tokens
    # an int seed gives prompt i the stream (seed, i), whatever else is in the batch
    first, _ = model.generate(PROMPTS, max_new_tokens=10, seed=7)
    assert model.generate(PROMPTS[:2], max_new_tokens=10, seed=7)[0] == first[:2]


def test_stop_ids_end_each_row_at_its_first_stop():
    model = small_model()
    free, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0)
    stop = free[0][6]
    tokens, logprobs = model.generate(PROMPTS, max_new_tokens=30, temperature=0, stop_ids=[stop])
    for full, out, lp in zip(free, tokens, logprobs):
        end = full.index(stop) + 1 if stop in full else 30
        assert out == full[:end] and len(lp) == len(out)
    assert len(tokens[0]) <= 7


def test_cache_copies_read_every_source_before_writing_any_target():
    cfg = small_model().config
    cache = KVCache(cfg, [(3, 4), (2, 6)], dtype=torch.float32, device="cpu")
    for tier, base in zip(cache.k + cache.v, (0.0, 10.0, 0.0, 10.0)):  # each row filled with its own number
        for buffer in tier:
            buffer.copy_(base + torch.arange(float(buffer.shape[0]))[:, None, None, None].expand_as(buffer))
    # rows 0 and 1 of the short tier trade places; short row 2 moves up into long row 0, whose row 1 moves down
    cache.copy([((0, 0), (0, 1), 4), ((0, 1), (0, 0), 4), ((0, 2), (1, 0), 4), ((1, 1), (0, 2), 4)])
    for short, long in zip(cache.k[0] + cache.v[0], cache.k[1] + cache.v[1]):
        assert torch.equal(short[:, 0, :, 0], torch.tensor([[1.0] * 4, [0.0] * 4, [11.0] * 4]))
        assert torch.equal(long[0, 0, :, 0], torch.tensor([2.0] * 4 + [10.0] * 2))  # past 4: untouched
        assert torch.equal(long[1, 0, :, 0], torch.tensor([11.0] * 6))
    assert cache.nbytes() == (3 * 4 + 2 * 6) * 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 4


def test_compiled_decode_step_samples_what_eager_samples():
    model = small_model()
    free, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0)
    stops = [free[0][3], free[2][9]]  # rows finish at different steps, so the batch shrinks under the graph
    for prompts in (PROMPTS, PROMPTS[1:2], PROMPTS[:3]):  # and the batch size and cache length change
        args = dict(max_new_tokens=30, temperature=0.9, top_p=0.95, seed=5, stop_ids=stops)
        eager, eager_lp = model.generate(prompts, **args)
        compiled, compiled_lp = model.generate(prompts, **args, compile=True)
        assert compiled == eager
        assert max(abs(a - b) for x, y in zip(eager_lp, compiled_lp) for a, b in zip(x, y)) < 1e-4
    assert len(set(map(len, model.generate(PROMPTS, **args, compile=True)[0]))) > 1


def test_stop_strings_end_a_row_at_the_token_completing_them():
    model = small_model()
    free, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0)
    decode = lambda ids: "".join(f"<{i}>" for i in ids)  # a toy tokenizer: every id its own text
    stop = f"<{free[1][4]}><{free[1][5]}>"  # spans two tokens of row 1
    tokens, _ = model.generate(PROMPTS, max_new_tokens=30, temperature=0, stop_strings=[stop], decode=decode)
    for full, out in zip(free, tokens):
        text = decode(full)
        end = len(full) if stop not in text else next(n for n in range(1, 31) if stop in decode(full[:n]))
        assert out == full[:end]
    assert len(tokens[1]) <= 6
    with pytest.raises(ValueError, match="decode"):
        model.generate(PROMPTS, max_new_tokens=3, stop_strings=["x"])


def test_sampler_draws_from_the_tempered_top_p_distribution():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    n = 40000
    u = uniforms(row_seeds(0, n), 0)
    logits = probs.log().expand(n, 4)
    for temperature, top_p, expected in [
        (1.0, 1.0, probs),
        (2.0, 1.0, probs.sqrt() / probs.sqrt().sum()),
        (1.0, 0.7, torch.tensor([2 / 3, 1 / 3, 0, 0])),  # 0.5 + 0.25 is the smallest prefix holding 0.7
    ]:
        tok, logp = sample(logits, temperature, top_p, u)
        freq = torch.bincount(tok, minlength=4).double() / n
        assert (freq - expected.double()).abs().max() < 0.01, (temperature, top_p, freq)
        assert torch.allclose(logp, probs.log()[tok])
    assert torch.equal(sample(logits[:3], 0, 1.0, u[:3])[0], torch.zeros(3, dtype=torch.long))


def test_packed_documents_equal_documents_run_alone():
    model = small_model()
    a, b = torch.randint(0, 256, (1, 23)), torch.randint(0, 256, (1, 41))
    doc_ids = torch.tensor([[0] * 23 + [1] * 41])
    with torch.no_grad():
        packed = model(torch.cat([a, b], 1), doc_ids=doc_ids)
        alone = torch.cat([model(a), model(b)], 1)
        assert (packed - alone).abs().max() < 1e-5
        assert (model(torch.cat([a, b], 1)) - alone).abs().max() > 1e-2  # unpacked, b would see a


def test_generate_rejects_bad_input():
    model = small_model()
    for prompts, match in [([], "non-empty"), ([[1, 2], []], "prompt 1 is empty"), ([[1, 256]], "outside")]:
        with pytest.raises(ValueError, match=match):
            model.generate(prompts, max_new_tokens=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.generate([[1] * 500], max_new_tokens=20)
    with pytest.raises(ValueError, match="one per prompt"):
        model.generate([[1], [2]], max_new_tokens=2, seed=[1])
