"""
Llama-3: the model, its loss and per-token log-probs, and Hugging Face weights in and out. Its generate
method, batched KV-cache sampling, is generation.py's.

It matches transformers' LlamaForCausalLM (RMSNorm, RoPE with llama3 frequency scaling, grouped-query
attention, SwiGLU, optionally tied embeddings), so released checkpoints such as meta-llama/Llama-3.2-1B
or OctoThinker/OctoThinker-1B-Hybrid-Base load as they are, and what we save loads in transformers and
vLLM. Module names mirror Hugging Face's, so a checkpoint's tensor name is ours with "model." in front.
"""
import glob
import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import generation
from common import local_or_hub, write_atomic
from kernels import document_bounds, flash_attention, rms_norm

# -----------------------------------------------------------------------------
# config


@dataclass
class ModelConfig:
    dim: int = 2048
    n_layers: int = 16
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = None              # None: dim // n_heads
    ffn_dim: int = 8192
    vocab_size: int = 128256
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_factor: float = 32.0         # llama3 frequency scaling; 1.0 turns it off
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_len: int = 8192     # the context length the scaling stretches from
    max_seq_len: int = 131072
    tie_embeddings: bool = True
    bos_id: int = 128000
    eos_id: int = 128001

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown model preset '{name}'; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    "llama3.2-1b": dict(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192),
    "llama3.2-3b": dict(dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, ffn_dim=8192),
    "llama3.1-8b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
                        rope_factor=8.0, tie_embeddings=False),
    # the CPU miniature's ~1M-parameter model (configs/tiny.py, configs/miniature/); trained from scratch, it gets
    # its tokenizer's vocabulary and BOS/EOS ids (these are a 1024-token BPE's)
    "miniature": dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384, vocab_size=1024,
                      rope_original_len=256, max_seq_len=1024, bos_id=1008, eos_id=1009),
}

# -----------------------------------------------------------------------------
# the layers


def rope_frequencies(cfg, device):
    """Rotary inverse frequencies with llama3 scaling: long wavelengths are stretched by rope_factor,
    short ones kept, and the band between them interpolated smoothly."""
    inv_freq = cfg.rope_theta ** -(torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim)
    if cfg.rope_factor == 1.0:
        return inv_freq
    wavelen = 2 * torch.pi / inv_freq
    low_freq_wavelen = cfg.rope_original_len / cfg.rope_low_freq_factor
    high_freq_wavelen = cfg.rope_original_len / cfg.rope_high_freq_factor
    smooth = (cfg.rope_original_len / wavelen - cfg.rope_low_freq_factor) / (
        cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
    smoothed = (1 - smooth) * inv_freq / cfg.rope_factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / cfg.rope_factor, smoothed)
    return torch.where(wavelen < high_freq_wavelen, inv_freq, scaled)


def apply_rope(x, cos, sin):
    # x (B, T, H, D); cos, sin (B, T, D/2). Hugging Face's layout: the two halves of D are rotated as pairs.
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[:, :, None], sin[:, :, None]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def doc_positions(doc_ids):
    """Each token's position inside its document: RoPE restarts where the id changes (B, T)."""
    start, _ = document_bounds(doc_ids)
    return torch.arange(doc_ids.shape[1], device=doc_ids.device) - start


def decode_attention(q, k, v, visible):
    """One decode step against the cache: q (B, 1, Hq, D), k and v (B, Hkv, S, D), visible (B, 1, 1, S)
    the slots each row sees. The query heads of a group become the query rows of one attention over
    its K/V, so K/V are read once per group and never repeated."""
    B, _, Hq, D = q.shape
    y = F.scaled_dot_product_attention(q.view(B, k.shape[1], Hq // k.shape[1], D), k, v, attn_mask=visible)
    return y.view(B, 1, Hq, D)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads, self.head_dim = layer, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, doc_ids=None, cache=None):  # cache: a generation.KVCache
        B, T, _ = x.shape
        q = apply_rope(self.q_proj(x).view(B, T, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        if cache is not None and cache.decoding:
            # a tier of the cache at a time (generation.py's short rows, then its long ones)
            y = torch.cat([decode_attention(q[rows], k_, v_, visible)
                           for rows, k_, v_, visible in cache.append(self.layer, k, v)])
        else:
            if cache is not None:
                cache.prefill(self.layer, k, v)
            y = flash_attention(q, k, v, causal=True, doc_ids=doc_ids)
        return self.o_proj(y.reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, doc_ids=None, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, doc_ids, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# -----------------------------------------------------------------------------
# the model


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.init_weights()

    def init_weights(self, seed=None):
        """Hugging Face's Llama init: normal(0, 0.02) matrices, norms at one. With a seed, parameter i is drawn
        whole from a generator seeded (seed, i), and a sharded (FSDP2) parameter keeps its own shard of it: the
        same weights on any number of ranks, for a model built on the meta device and initialised after
        sharding (train.py), never whole on every rank but one tensor at a time."""
        with torch.no_grad():
            for i, p in enumerate(self.parameters()):
                local = p.to_local() if hasattr(p, "to_local") else p  # a DTensor's shard
                if p.dim() < 2:
                    local.fill_(1.0)
                elif seed is None:
                    nn.init.normal_(p, std=0.02)
                else:
                    g = torch.Generator(device=local.device).manual_seed(seed * 1_000_003 + i)
                    full = torch.empty(p.shape, dtype=local.dtype, device=local.device).normal_(0, 0.02, generator=g)
                    if local is not p:  # this rank's shard, cut locally (every rank drew the same full tensor)
                        from torch.distributed.tensor import distribute_tensor
                        full = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local()
                    local.copy_(full)

    def forward(self, tokens, targets=None, doc_ids=None):
        """tokens (B, T) -> logits (B, T, vocab); with targets (B, T), the mean cross-entropy over the
        targets that are not -100. doc_ids (B, T): packed documents, each attending only to itself."""
        if doc_ids is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)[None]
        else:
            positions = doc_positions(doc_ids)
        h = self.hidden(tokens, positions, doc_ids)
        if targets is None:
            return self.lm_head(h)
        return chunked_cross_entropy(h, self.lm_head.weight, targets)

    def logprobs(self, tokens, targets, entropy=False, temperature=1.0, fp32_logits=True):
        """Per-token log p(target) (B, T) under the logits divided by temperature, 0 where the target is -100,
        and each position's entropy if asked: what RL needs (fp32_logits: the lm_head product in fp32, see
        token_logprobs). (Under FSDP2, register it with register_fsdp_forward_method.)"""
        h = self.hidden(tokens, torch.arange(tokens.shape[1], device=tokens.device)[None])
        return token_logprobs(h, self.lm_head.weight, targets, entropy, temperature=temperature,
                              fp32_logits=fp32_logits)

    def hidden(self, tokens, positions, doc_ids=None, cache=None):
        """The final normed hidden states (B, T, dim) of tokens at positions (B or 1, T)."""
        freqs = positions[..., None].float() * rope_frequencies(self.config, tokens.device)
        cos, sin = freqs.cos(), freqs.sin()
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, doc_ids, cache)
        return self.norm(x)

    generate = generation.generate  # batched KV-cache sampling, in generation.py

    # -------------------------------------------------------------------------
    # Hugging Face format

    @classmethod
    def from_pretrained(cls, path_or_repo_id, dtype=None, device="cpu"):
        """Load a Llama checkpoint in Hugging Face format (config.json and *.safetensors, single or
        sharded) from a folder, or from the hub when given a repo id. dtype None keeps the checkpoint's."""
        from safetensors import safe_open
        folder = local_or_hub(path_or_repo_id, "model", "A model is an HF folder (config.json, *.safetensors): a "
                              "run's hf/ or a downloaded Llama-3", allow_patterns=["config.json", "*.safetensors",
                                                                                    "model.safetensors.index.json"])
        config_path = os.path.join(folder, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{config_path} not found: a Hugging Face checkpoint folder needs its config.json")
        with open(config_path) as f:
            cfg = config_from_hf(json.load(f), config_path)
        files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {folder}: convert .bin checkpoints to safetensors first")

        handles = [safe_open(f, framework="pt") for f in files]
        where = {name: h for h, f in zip(handles, files) for name in h.keys()}
        if dtype is None:
            dtype = where["model.embed_tokens.weight"].get_slice("model.embed_tokens.weight").get_dtype() \
                if "model.embed_tokens.weight" in where else "F32"
            dtype = {"BF16": torch.bfloat16, "F16": torch.float16}.get(dtype, torch.float32)
        with torch.device("meta"):
            model = cls(cfg)
        model = model.to(dtype).to_empty(device=device)
        if cfg.tie_embeddings:  # to_empty makes new tensors, which unties them
            model.lm_head.weight = model.embed_tokens.weight

        wanted = hf_names(model)
        missing = [n for n in wanted if n not in where]
        if missing:
            raise ValueError(f"{folder}: the checkpoint has no tensor '{missing[0]}'"
                             f"{f' (and {len(missing) - 1} more missing)' if len(missing) > 1 else ''}; "
                             f"does config.json describe these weights?")
        ignorable = {"lm_head.weight"} if cfg.tie_embeddings else set()
        extra = [n for n in where if n not in wanted and n not in ignorable and not n.endswith("rotary_emb.inv_freq")]
        if extra:
            raise ValueError(f"{folder}: unexpected tensor '{extra[0]}' ({len(extra)} in all) that this Llama "
                             "does not have; is the checkpoint a plain LlamaForCausalLM?")
        with torch.no_grad():
            for name, param in wanted.items():
                t = where[name].get_tensor(name)
                if t.shape != param.shape:
                    raise ValueError(f"{folder}: tensor '{name}' has shape {tuple(t.shape)}, but config.json "
                                     f"implies {tuple(param.shape)}")
                param.copy_(t)
        return model

    def save_pretrained(self, out_dir, state_dict=None, tokenizer=None):
        """Write config.json and model.safetensors that transformers and vLLM load as they are; with a tokenizer
        (tokenizer.py's), a whole Hugging Face model folder: its files for AutoTokenizer (and ours, which
        Tokenizer.from_pretrained reads first), generation_config.json, and every EOS id (end_of_text and eot) in
        both configs, so a server knows where a response ends. A sharded (FSDP) model passes its gathered full
        state_dict. Each file is written atomically: a crash never leaves a torn one."""
        from safetensors.torch import save_file
        os.makedirs(out_dir, exist_ok=True)
        params = state_dict if state_dict is not None else dict(self.named_parameters())
        tensors = {hf_name(n): params[n].detach().cpu().contiguous() for n, _ in self.named_parameters()}
        # safetensors writes to a path: the temporary file's (not its bytes in memory: 16 GB at 8B)
        write_atomic(os.path.join(out_dir, "model.safetensors"),
                     lambda f: save_file(tensors, f.name, metadata={"format": "pt"}))
        dtype = tensors[hf_name("embed_tokens.weight")].dtype
        eos = [self.config.eos_id]
        if tokenizer is not None:
            if tokenizer.bos_id != self.config.bos_id:
                raise ValueError(f"the tokenizer's BOS {tokenizer.bos_id} is not the model's {self.config.bos_id}: "
                                 "export with the run's tokenizer")
            # the model's own EOS (an instruct model's may be eot) and the tokenizer's two, each once
            eos = list(dict.fromkeys([self.config.eos_id, tokenizer.eos_id, tokenizer.eot_id]))
            tokenizer.save(out_dir)
            tokenizer.save_hf(out_dir, self.config.max_seq_len)
            write_atomic(os.path.join(out_dir, "generation_config.json"), json.dumps(
                {"bos_token_id": self.config.bos_id, "eos_token_id": eos}, indent=2))
        write_atomic(os.path.join(out_dir, "config.json"), json.dumps(config_to_hf(self.config, dtype, eos), indent=2))


def hf_name(name):
    """A parameter's name in a Hugging Face checkpoint: ours with "model." in front, but for lm_head."""
    return name if name.startswith("lm_head.") else "model." + name


def hf_names(model):
    """Our parameters by their Hugging Face names (a tied lm_head appears once, as the embedding)."""
    return {hf_name(n): p for n, p in model.named_parameters()}


def config_from_hf(d, where="config.json"):
    """ModelConfig from a Hugging Face config.json dict; anything this model cannot represent is an error."""
    def need(key):
        if key not in d:
            raise ValueError(f"{where}: missing field '{key}'")
        return d[key]

    if d.get("model_type", "llama") != "llama":
        raise ValueError(f"{where}: model_type is '{d['model_type']}', but this model is Llama")
    for key, ok in [("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)]:
        if d.get(key, ok) != ok:
            raise ValueError(f"{where}: {key}={d[key]!r} is not supported (Llama-3 has {ok!r})")
    # transformers 4 writes rope_theta + rope_scaling, transformers 5 rope_parameters
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"{where}: rope_type '{rope_type}' is not supported (only 'llama3' or 'default')")
    scaled = rope_type == "llama3"
    eos = d.get("eos_token_id", 128001)
    return ModelConfig(
        dim=need("hidden_size"), n_layers=need("num_hidden_layers"), n_heads=need("num_attention_heads"),
        n_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
        head_dim=d.get("head_dim") or need("hidden_size") // need("num_attention_heads"),
        ffn_dim=need("intermediate_size"), vocab_size=need("vocab_size"), norm_eps=d.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", d.get("rope_theta", 10000.0)),
        rope_factor=rope["factor"] if scaled else 1.0,
        rope_low_freq_factor=rope.get("low_freq_factor", 1.0) if scaled else 1.0,
        rope_high_freq_factor=rope.get("high_freq_factor", 4.0) if scaled else 4.0,
        rope_original_len=rope.get("original_max_position_embeddings", 8192) if scaled else 8192,
        max_seq_len=d.get("max_position_embeddings", 131072), tie_embeddings=d.get("tie_word_embeddings", False),
        bos_id=d.get("bos_token_id", 128000), eos_id=eos[0] if isinstance(eos, list) else eos,
    )


def config_to_hf(cfg, dtype=torch.bfloat16, eos_ids=None):
    """config.json's fields, every one transformers and vLLM read for Llama; eos_ids: all the ids that end a
    response (one id is written as itself, as Llama-3.2's base models have it)."""
    rope_scaling = None
    if cfg.rope_factor != 1.0:
        rope_scaling = {"rope_type": "llama3", "factor": cfg.rope_factor, "low_freq_factor": cfg.rope_low_freq_factor,
                        "high_freq_factor": cfg.rope_high_freq_factor,
                        "original_max_position_embeddings": cfg.rope_original_len}
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "intermediate_size": cfg.ffn_dim,
        "vocab_size": cfg.vocab_size, "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
        "rope_scaling": rope_scaling, "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu", "attention_bias": False,
        "mlp_bias": False, "bos_token_id": cfg.bos_id,
        "eos_token_id": eos_ids[0] if eos_ids and len(eos_ids) == 1 else (eos_ids or cfg.eos_id),
        # transformers 4 and vLLM read torch_dtype, transformers 5 dtype
        "torch_dtype": str(dtype).removeprefix("torch."), "dtype": str(dtype).removeprefix("torch."),
        "initializer_range": 0.02, "use_cache": True,
    }

# -----------------------------------------------------------------------------
# loss


def chunked_cross_entropy(h, weight, targets):
    """Mean cross-entropy of logits h @ weight.T against targets, -100 ignored."""
    logprobs, _ = token_logprobs(h, weight, targets)
    return -logprobs.sum() / (targets != -100).sum().clamp(min=1)


def token_logprobs(h, weight, targets, entropy=False, chunk_elems=2**26, temperature=1.0, fp32_logits=True):
    """log p(target) of each token under logits h @ weight.T (0 where the target is -100) and, if asked,
    the entropy of each token's distribution. A chunk of tokens at a time, forward and backward (the logits
    recomputed there), so fp32 logits never exist for the whole batch (with a 128k vocabulary, 8 x 4096 tokens'
    are 17 GB). fp32_logits: the product itself in fp32 (else in the weight's dtype, as a plain forward pass
    gives it: bf16 logits carry 8 bits, noise in a loss and in RL's ratios)."""
    shape, h, targets = targets.shape, h.flatten(0, -2), targets.flatten()
    chunk = max(1, chunk_elems // weight.shape[0])
    logprobs, ent = ChunkedLogprobs.apply(h, weight, targets, chunk, temperature, entropy, fp32_logits)
    return logprobs.view(shape), ent.view(shape) if entropy else None


def logits_of(h, weight, fp32_logits):
    """h @ weight.T, in at least fp32. With fp32_logits and bf16 operands: on CUDA the bf16 product accumulated
    and returned in fp32 (torch.mm's out_dtype, where this torch has it: no slower than a bf16 result); else
    the operands in fp32."""
    if fp32_logits and h.dtype in (torch.bfloat16, torch.float16):
        if h.is_cuda:
            try:
                return torch.mm(h, weight.t(), out_dtype=torch.float32)
            except (TypeError, RuntimeError, NotImplementedError):
                pass
        return F.linear(h.float(), weight.float())
    logits = F.linear(h, weight)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


class ChunkedLogprobs(torch.autograd.Function):
    """token_logprobs' chunks, with a backward of its own: each chunk's logits are recomputed, and the weight's
    gradient is summed over the chunks in fp32 (autograd would sum 30-70 per-chunk gradients in the weight's
    dtype, bf16 under FSDP2: a rounding at every addition), then rounded once to the weight's dtype."""

    @staticmethod
    def forward(ctx, h, weight, targets, chunk, temperature, entropy, fp32_logits):
        ctx.save_for_backward(h, weight, targets)
        ctx.chunk, ctx.temperature, ctx.fp32_logits = chunk, temperature, fp32_logits
        outs = [chunk_logprobs(logits_of(hc, weight, fp32_logits) / temperature, tc, entropy)
                for hc, tc in zip(h.split(chunk), targets.split(chunk))]
        logprobs = torch.cat([lp for lp, _ in outs])
        ents = torch.cat([e for _, e in outs]) if entropy else logprobs.new_zeros(())
        return logprobs, ents

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        h, weight, targets = ctx.saved_tensors
        grad_h = torch.empty_like(h)
        grad_weight = torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                                  device=weight.device)
        entropy = grad_entropy is not None and grad_entropy.dim() > 0
        for start in range(0, h.shape[0], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            hc, tc = h[part], targets[part]
            g = grad_logprobs[part].to(grad_weight.dtype) * (tc != -100)
            logp = (logits_of(hc, weight, ctx.fp32_logits) / ctx.temperature).log_softmax(dim=-1)
            p = logp.exp()
            # z = logits / temperature; d log p(t) / dz = onehot(t) - p; d entropy / dz = -p (log p + entropy)
            dz = -p * g[:, None]
            dz[torch.arange(len(tc), device=tc.device), tc.clamp(min=0)] += g
            if entropy:
                ent = -(p * logp).sum(dim=-1, keepdim=True)
                dz -= grad_entropy[part].to(dz.dtype)[:, None] * p * (logp + ent)
            dz = (dz / ctx.temperature).to(weight.dtype)
            grad_h[part] = dz @ weight
            grad_weight += logits_of(dz.t(), hc.t(), True)  # dz.T @ h, summed in fp32 over the chunks
        return grad_h, grad_weight.to(weight.dtype), None, None, None, None, None


def chunk_logprobs(logits, targets, entropy):
    """Per-token log p(target) (0 where the target is -100) and, if asked, entropy, from a chunk's fp32 logits."""
    logprobs = -F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
    if not entropy:
        return logprobs, None
    return logprobs, logits.logsumexp(dim=-1) - (logits.softmax(dim=-1) * logits).sum(dim=-1)


if __name__ == "__main__":
    # The demo: a small random Llama-3 saved in Hugging Face format, loaded back, and sampled from.
    import tempfile
    import time
    torch.manual_seed(0)
    cfg = ModelConfig.preset("miniature")
    model = Llama(cfg).eval()
    print(f"a random 'miniature' Llama-3: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters,",
          {k: v for k, v in asdict(cfg).items() if k in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size")})
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        print(f"saved to {d}: {sorted(os.listdir(d))}")
        reloaded = Llama.from_pretrained(d).eval()
    prompts = [[cfg.bos_id, 17, 42], [cfg.bos_id] + list(range(100, 130)), [cfg.bos_id, 7]]
    same = torch.equal(model(torch.tensor([prompts[1]])), reloaded(torch.tensor([prompts[1]])))
    print(f"reloaded model gives identical logits: {same}")
    t0 = time.perf_counter()
    tokens, logprobs = reloaded.generate(prompts, max_new_tokens=32, temperature=1.0, top_p=0.9, seed=0)
    dt = time.perf_counter() - t0
    for p, t, lp in zip(prompts, tokens, logprobs):
        print(f"prompt of {len(p):2d} tokens -> {t[:12]}... mean log-prob {sum(lp) / len(lp):.2f}")
    print(f"generated {sum(map(len, tokens))} tokens in {dt:.2f}s")
