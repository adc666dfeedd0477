"""
Sampling from model.py's Llama, many prompts at once: a preallocated KV cache, the generate loop (it is
the model's generate method), and a sampler whose every draw is a pure function of (the prompt's seed,
the step), so a prompt's sample never depends on what else is in its batch.
"""
import functools

import numpy as np
import torch
import torch.nn.functional as F


class KVCache:
    """Keys and values of a batch, preallocated as (B, Hkv, S, D) per layer: row b's tokens sit at
    slots [0, its length). Rows may have different lengths; finished rows are dropped with drop().
    model.py's attention fills it during the prefill and reads it while decoding."""

    def __init__(self, cfg, batch_size, max_len, dtype, device):
        # zeros, not empty: a masked slot gets weight 0, and 0 * NaN from stale memory would be NaN
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.decoding = False

    def prefill(self, layer, k, v):  # the prompts, right-padded, from slot 0
        self.k[layer][:, :, :k.shape[1]] = k.transpose(1, 2)
        self.v[layer][:, :, :v.shape[1]] = v.transpose(1, 2)

    def set_positions(self, pos, length):
        """Decode next at slot pos[b] of each row; length = max(pos) + 1, a python int (no GPU sync).
        The mask of visible slots is made here once per step, not once per layer."""
        self.decoding, self.pos, self.length = True, pos, length
        self.rows = torch.arange(len(pos), device=pos.device)
        self.visible = (torch.arange(length, device=pos.device) <= pos[:, None])[:, None, None, :]

    def append(self, layer, k, v):  # one new token per row; returns the visible cache
        self.k[layer][self.rows, :, self.pos] = k[:, 0]
        self.v[layer][self.rows, :, self.pos] = v[:, 0]
        return self.k[layer][:, :, :self.length], self.v[layer][:, :, :self.length]

    def drop(self, finished):
        """Take rows out of the batch: the last live rows move into their slots and the batch becomes a
        prefix of the buffers, so a finish copies one row, not the whole cache. Returns, for each row
        of the new batch, the index it had in the old one."""
        n, finished = self.k[0].shape[0], set(finished)
        m = n - len(finished)
        holes = [j for j in sorted(finished) if j < m]
        movers = [j for j in range(m, n) if j not in finished]
        if holes:
            for buffer in self.k + self.v:
                buffer[holes] = buffer[movers]
        self.k, self.v = [k[:m] for k in self.k], [v[:m] for v in self.v]
        order = list(range(m))
        for hole, mover in zip(holes, movers):
            order[hole] = mover
        return order


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_p=1.0, stop_ids=(), seed=None,
             stop_strings=(), decode=None, compile=False):
    """Sample continuations of prompts (lists of token ids, any lengths), all in one batch.
    Returns (tokens, logprobs): per prompt, its new token ids, ending with the first stop id or the
    token that completes a stop string (both kept) or after max_new_tokens, and the model's
    log-probability of each (log-softmax of the raw logits, before temperature and top-p).
    temperature=0 is greedy. seed: an int, where prompt i then draws from (seed, i), or one seed per
    prompt; a prompt's sample depends only on its own seed, never on the rest of the batch. None
    draws the seed from torch's global generator. stop_strings need decode (token ids -> str).
    compile: run each decode step through torch.compile (one graph for every batch size and cache
    length; worth its compile time on long generations, on a GPU above all)."""
    cfg, device = model.config, model.lm_head.weight.device
    check_generate_args(prompts, max_new_tokens, temperature, top_p, cfg)
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=, e.g. tokenizer.decode, to read the generated text")
    tail = max(map(len, stop_strings), default=0) + 1  # a stop string of n chars ends within n+1 tokens
    B, lens = len(prompts), [len(p) for p in prompts]
    if max(lens) + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"the longest prompt ({max(lens)} tokens) plus max_new_tokens={max_new_tokens} "
                         f"exceeds the model's max_seq_len={cfg.max_seq_len}; shorten one or the other")
    seeds = row_seeds(seed, B)
    stop_ids = set(stop_ids)
    cache = KVCache(cfg, B, max(lens) + max_new_tokens, model.lm_head.weight.dtype, device)

    # prefill: the prompts right-padded; each row's next-token logits come from its last prompt token
    tokens = torch.zeros(B, max(lens), dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, :len(p)] = torch.tensor(p)
    h = model.hidden(tokens.to(device), torch.arange(max(lens), device=device)[None], cache=cache)
    lens_t = torch.tensor(lens, device=device)
    logits = model.lm_head(h[torch.arange(B, device=device), lens_t - 1])

    out_tokens, out_logprobs = [[] for _ in range(B)], [[] for _ in range(B)]
    rows = list(range(B))  # the prompt index of each row still generating
    step_logits = compiled(decode_step) if compile else decode_step
    for step in range(max_new_tokens):
        tok, logp = sample(logits, temperature, top_p, uniforms(seeds[rows], step))
        finished = []
        for j, (t, lp) in enumerate(zip(tok.tolist(), logp.tolist())):
            out_tokens[rows[j]].append(t)
            out_logprobs[rows[j]].append(lp)
            if t in stop_ids or (stop_strings and any(
                    s in decode(out_tokens[rows[j]][-tail:]) for s in stop_strings)):
                finished.append(j)
        if step == max_new_tokens - 1 or len(finished) == len(rows):
            break
        if finished:  # drop them from the batch so they cost nothing more
            order = cache.drop(finished)
            rows = [rows[j] for j in order]
            order = torch.tensor(order, device=device)
            tok, lens_t = tok[order], lens_t[order]
        cache.set_positions(lens_t + step, max(lens[r] for r in rows) + step + 1)
        logits = step_logits(model, tok, cache)
    return out_tokens, out_logprobs


def decode_step(model, tok, cache):
    """Next-token logits (B, vocab) after one new token per row, at the positions the cache was set to."""
    return model.lm_head(model.hidden(tok[:, None], cache.pos[:, None], cache=cache))[:, 0]


@functools.cache  # compiled on first use, not at import (importing dynamo costs every script a second)
def compiled(fn):
    # dynamic: the batch shrinks as rows finish and the cache grows each step; neither should recompile
    return torch.compile(fn, dynamic=True)


def sample(logits, temperature, top_p, u):
    """One token per row of logits (B, V) and its log-prob under the raw logits. u (B,): uniforms in
    [0, 1) that pick the token by inverting the CDF, so each row's draw depends on its own u alone."""
    logits = logits.float()
    if temperature == 0:
        tok = logits.argmax(dim=-1)
    else:
        probs = F.softmax(logits / temperature, dim=-1)
        order = None
        if top_p < 1.0:  # keep the most likely tokens until they hold top_p of the mass
            probs, order = probs.sort(dim=-1, descending=True)
            probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, 0.0)
        cdf = probs.double().cumsum(dim=-1)
        u = torch.as_tensor(u, dtype=torch.float64, device=logits.device)
        tok = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0].clamp(max=cdf.shape[1] - 1)
        if order is not None:
            tok = order.gather(1, tok[:, None])[:, 0]
    logp = F.log_softmax(logits, dim=-1).gather(1, tok[:, None])[:, 0]
    return tok, logp


def splitmix64(x):
    """A strong 64-bit integer hash (numpy uint64 arrays, wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_seeds(seed, n):
    """One 64-bit seed per prompt: from (seed, prompt index), or from a list given per prompt."""
    if seed is None:
        seed = int(torch.randint(2**62, ()).item())
    if isinstance(seed, int):
        base = splitmix64(np.array([seed % 2**64], dtype=np.uint64))
        return splitmix64(base + np.arange(n, dtype=np.uint64))
    if len(seed) != n:
        raise ValueError(f"seed has {len(seed)} entries for {n} prompts; give one per prompt, or one int")
    return splitmix64(np.array([s % 2**64 for s in seed], dtype=np.uint64))


def uniforms(seeds, step):
    """Uniforms in [0, 1) for each row's step-th token: a pure function of (seed, step), 53 bits."""
    h = splitmix64(seeds ^ splitmix64(np.array([step], dtype=np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def check_generate_args(prompts, max_new_tokens, temperature, top_p, cfg):
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts must be a non-empty list of token-id lists")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: start it with at least one token (e.g. the BOS id)")
        if min(p) < 0 or max(p) >= cfg.vocab_size:
            raise ValueError(f"prompt {i} has a token id outside [0, {cfg.vocab_size}): check the tokenizer "
                             "matches the model")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
