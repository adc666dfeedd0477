"""
Sampling from model.py's Llama, many prompts at once: the generate loop (it is the model's generate method),
its KV cache, and a sampler whose every draw is a pure function of (the prompt's seed, the token's index), so
a prompt's sample does not depend on what else is being generated, up to floating-point rounding: in fp32 the
tokens are those of the prompt generated alone; in bf16 a matrix product's rounding differs with the batch's
size, and a token drawn close to a boundary of the distribution can come out differently.

The loop is continuous batching under a memory budget. The cache is `slots` fixed rows, each long enough for
the longest prompt plus max_new_tokens, as many as kv_budget holds (a token count, or a size like "20GB";
the default on CUDA is most of the memory free after the weights, elsewhere a row for every prompt). Prompts
wait in a queue in the order given; whenever rows are free, the next prompts join: their prompts are run
through the model once (prompts repeated in the queue, a GRPO group's or avg@k's samples, run once and their
keys and values copied into each sample's row), then every live row decodes one token per step. A row that
finishes (a stop id, a stop string, max_new_tokens) leaves at once and the last live row moves into its
place, so the live rows are always a prefix of the cache and a long answer never holds up the rest. Memory
never exceeds slots x row length, whatever the number of prompts. kv_budget="all" is one row per prompt:
everything in one batch, as a plain batched loop does.

Per step the host copies the new tokens and their log-probs from the device once, appends them, and decodes
text only for the rows whose new token may finish a stop string; rows joining and leaving cost work then only.
"""
import functools
import re
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

JOIN_SHARE = 0.125  # of the cache's rows, how many must be free before waiting prompts join (a batched prefill)
GPU_SHARE = 0.7  # of the CUDA memory free at the call, what the default kv_budget takes (the rest: activations)


class KVCache:
    """Keys and values of `slots` rows of up to `row_len` tokens, preallocated as (slots, Hkv, row_len, D) per
    layer: row b's tokens sit at positions [0, its length). The live rows are the prefix [0, n). model.py's
    attention fills it while prefilling (rows `self.fill`, from position 0) and reads it while decoding."""

    def __init__(self, cfg, slots, row_len, dtype, device):
        # zeros, not empty: a masked slot gets weight 0, and 0 * NaN from stale memory would be NaN
        shape = (slots, cfg.n_kv_heads, row_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.n, self.decoding, self.fill = 0, False, None

    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def prefill(self, layer, k, v):  # prompts (right-padded) into rows self.fill, from position 0
        self.k[layer][self.fill, :, :k.shape[1]] = k.transpose(1, 2)
        self.v[layer][self.fill, :, :v.shape[1]] = v.transpose(1, 2)

    def copy_rows(self, sources, targets, length):
        """Rows targets take the first `length` positions of rows sources (a shared prompt)."""
        for buffer in self.k + self.v:
            buffer[targets, :, :length] = buffer[sources, :, :length]

    def set_positions(self, pos, length):
        """Decode next at position pos[b] of live row b; length = max(pos) + 1, a python int (no GPU sync).
        The mask of visible positions is made here once per step, not once per layer."""
        self.decoding, self.pos, self.length = True, pos, length
        self.rows = torch.arange(len(pos), device=pos.device)
        self.visible = (torch.arange(length, device=pos.device) <= pos[:, None])[:, None, None, :]

    def append(self, layer, k, v):  # one new token per live row; returns the visible cache
        self.k[layer][self.rows, :, self.pos] = k[:, 0]
        self.v[layer][self.rows, :, self.pos] = v[:, 0]
        return self.k[layer][:self.n, :, :self.length], self.v[layer][:self.n, :, :self.length]

    def drop(self, finished):
        """Take live rows out: the last live rows move into their places, so a finish copies one row, not the
        whole cache, and the live rows stay a prefix. Returns, for each row left, the index it had before."""
        n, finished = self.n, set(finished)
        m = n - len(finished)
        holes = [j for j in sorted(finished) if j < m]
        movers = [j for j in range(m, n) if j not in finished]
        if holes:
            for buffer in self.k + self.v:
                buffer[holes] = buffer[movers]
        self.n = m
        order = list(range(m))
        for hole, mover in zip(holes, movers):
            order[hole] = mover
        return order


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_p=1.0, stop_ids=(), seed=None,
             stop_strings=(), decode=None, compile=False, kv_budget=None, max_batch=None, on_done=None):
    """Sample continuations of prompts (lists of token ids, any lengths).
    Returns (tokens, logprobs): per prompt, its new token ids, ending with the first stop id or the
    token that completes a stop string (both kept) or after max_new_tokens, and the model's
    log-probability of each (log-softmax of the raw logits, before temperature and top-p).
    temperature=0 is greedy. seed: an int, where prompt i then draws from (seed, i), or one seed per
    prompt; a prompt's sample depends only on its own seed, not on the rest of the batch or the queue (up to
    rounding: see the module docstring).
    None draws the seed from torch's global generator. stop_strings need decode (token ids -> str).
    kv_budget: the cache's size, in tokens (an int, or its digits) or bytes ("20GB", "512MB"); None: the
    default (see the module docstring); "all": a row per prompt. max_batch caps the rows decoding at once. on_done(i) is
    called as prompt i finishes. compile: run each decode step through torch.compile (dynamic shapes: a few
    graphs, a batch of one row among them, not one per batch size or cache length; worth its compile time on
    long generations, on a GPU above all)."""
    cfg, device, dtype = model.config, model.lm_head.weight.device, model.lm_head.weight.dtype
    check_generate_args(prompts, max_new_tokens, temperature, top_p, cfg)
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=, e.g. tokenizer.decode, to read the generated text")
    B, lens = len(prompts), [len(p) for p in prompts]
    row_len = max(lens) + max_new_tokens
    if row_len > cfg.max_seq_len:
        raise ValueError(f"the longest prompt ({max(lens)} tokens) plus max_new_tokens={max_new_tokens} "
                         f"exceeds the model's max_seq_len={cfg.max_seq_len}; shorten one or the other")
    slots = min(B, max_batch or B, budget_rows(kv_budget, row_len, cfg, dtype, device))
    seeds, stop_ids = row_seeds(seed, B), set(stop_ids)
    stops = StopStrings(stop_strings, decode)
    cache = KVCache(cfg, slots, row_len, dtype, device)
    out_tokens, out_logprobs = [[] for _ in range(B)], [[] for _ in range(B)]
    queue, rows = deque(range(B)), []  # rows: the prompt index of each live row
    tok = pos = None  # per live row, on the device: its last token, and the position it goes to
    length = 0  # max(pos) + 1 (a python int)
    step_logits = compiled(decode_step) if compile else decode_step

    def finished(i, t):  # whether prompt i's new token t ends it
        return t in stop_ids or len(out_tokens[i]) == max_new_tokens or stops.end(out_tokens[i])

    while queue or rows:
        # free rows: the next prompts join, each with its first token; a few at a time (JOIN_SHARE of the rows, or
        # all when no row is left), so that a prefill is a batch, not a forward pass for every row that finishes
        if queue and (not rows or slots - len(rows) >= min(len(queue), max(1, int(JOIN_SHARE * slots)))):
            joining = [queue.popleft() for _ in range(min(slots - len(rows), len(queue)))]
            logits = prefill(model, cache, [prompts[i] for i in joining], len(rows))
            new_tok, new_logp = sample(logits, temperature, top_p, uniforms(seeds[joining], 0))
            new_pos = torch.tensor([lens[i] for i in joining], device=device)  # where each first token goes
            tok = new_tok if tok is None else torch.cat([tok, new_tok])
            pos = new_pos if pos is None else torch.cat([pos, new_pos])
            rows, cache.n = rows + joining, len(rows) + len(joining)
            length = max(length, max(lens[i] for i in joining) + 1)
            done = record(joining, new_tok, new_logp, out_tokens, out_logprobs, finished)
            offset = len(rows) - len(joining)
            tok, pos, rows, length = leave(cache, [offset + j for j in done], tok, pos, rows, length, lens,
                                           out_tokens, on_done)
            if not rows:
                continue
        cache.set_positions(pos, length)
        logits = step_logits(model, tok, cache)
        steps = np.array([len(out_tokens[i]) for i in rows], dtype=np.uint64)
        tok, logp = sample(logits, temperature, top_p, uniforms(seeds[rows], steps))
        done = record(rows, tok, logp, out_tokens, out_logprobs, finished)
        pos, length = pos + 1, length + 1
        tok, pos, rows, length = leave(cache, done, tok, pos, rows, length, lens, out_tokens, on_done)
    return out_tokens, out_logprobs


def prefill(model, cache, prompts, start):
    """Run prompts through the model into cache rows start, start + 1, ...; each distinct prompt once, its
    keys and values copied to the rows of its repeats. Returns each row's next-token logits (len(prompts), V)."""
    device = cache.k[0].device
    first = {}  # a prompt's first row among these
    for j, p in enumerate(prompts):
        first.setdefault(tuple(p), j)
    unique = sorted(set(first.values()))
    width = max(len(prompts[j]) for j in unique)
    tokens = torch.zeros(len(unique), width, dtype=torch.long)
    for r, j in enumerate(unique):  # right-padded: causal attention never lets a prompt see its padding
        tokens[r, :len(prompts[j])] = torch.tensor(prompts[j])
    cache.decoding, cache.fill = False, torch.tensor([start + j for j in unique], device=device)
    h = model.hidden(tokens.to(device), torch.arange(width, device=device)[None], cache=cache)
    last = torch.tensor([len(prompts[j]) - 1 for j in unique], device=device)
    logits = model.lm_head(h[torch.arange(len(unique), device=device), last])
    source = [first[tuple(p)] for p in prompts]
    repeats = [j for j in range(len(prompts)) if source[j] != j]
    if repeats:
        cache.copy_rows([start + source[j] for j in repeats], [start + j for j in repeats],
                        max(len(prompts[j]) for j in repeats))
    return logits[torch.tensor([unique.index(s) for s in source], device=device)]


def record(rows, tok, logp, out_tokens, out_logprobs, finished):
    """Append each live row's new token and log-prob (one device-to-host copy); the rows that finished."""
    both = torch.stack([tok.double(), logp.double()]).cpu()
    done = []
    for j, (i, t, lp) in enumerate(zip(rows, both[0].long().tolist(), both[1].tolist())):
        out_tokens[i].append(t)
        out_logprobs[i].append(lp)
        if finished(i, t):
            done.append(j)
    return done


def leave(cache, done, tok, pos, rows, length, lens, out_tokens, on_done):
    """Take finished rows out of the cache and of the per-row state; (tok, pos, rows, length) after."""
    if not done:
        return tok, pos, rows, length
    if on_done:
        for j in done:
            on_done(rows[j])
    order = cache.drop(done)
    rows = [rows[j] for j in order]
    index = torch.tensor(order, device=tok.device, dtype=torch.long)
    length = max((lens[i] + len(out_tokens[i]) for i in rows), default=0)
    return tok[index], pos[index], rows, length


def decode_step(model, tok, cache):
    """Next-token logits (B, vocab) after one new token per row, at the positions the cache was set to."""
    return model.lm_head(model.hidden(tok[:, None], cache.pos[:, None], cache=cache))[:, 0]


@functools.cache  # compiled on first use, not at import (importing dynamo costs every script a second)
def compiled(fn):
    # dynamic: the batch shrinks as rows finish and the cache grows each step; neither should recompile
    return torch.compile(fn, dynamic=True)


class StopStrings:
    """Whether a row's tokens end in a stop string, decoding only rows whose last token can complete one:
    its text holds a stop string's last character (or is part of a multi-byte character). Which tokens can
    is learnt token by token, so each distinct token is decoded once."""

    def __init__(self, strings, decode):
        self.strings, self.decode, self.closes = list(strings), decode, {}
        self.tail = max(map(len, self.strings), default=0) + 1  # a stop string of n chars ends within n+1 tokens
        self.last = {s[-1] for s in self.strings}

    def end(self, tokens):
        if not self.strings:
            return False
        t = tokens[-1]
        if t not in self.closes:
            text = self.decode([t])
            self.closes[t] = "\ufffd" in text or any(c in text for c in self.last)
        return self.closes[t] and any(s in self.decode(tokens[-self.tail:]) for s in self.strings)


def budget_rows(kv_budget, row_len, cfg, dtype, device):
    """How many cache rows of row_len tokens kv_budget holds (see generate); an error if not even one."""
    per_token = kv_token_bytes(cfg, dtype)
    if kv_budget == "all" or (kv_budget is None and torch.device(device).type != "cuda"):
        return 2**62
    if kv_budget is None:  # most of what is free now: the weights are loaded, activations need the rest
        free = torch.cuda.mem_get_info(device)[0]  # + what torch holds cached for reuse (a last call's cache)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        tokens = int(GPU_SHARE * free) // per_token
    elif isinstance(kv_budget, str) and not kv_budget.strip().isdigit():
        tokens = parse_size(kv_budget) // per_token
    else:
        tokens = int(kv_budget)
    if tokens < row_len:
        raise ValueError(f"kv_budget={kv_budget!r} holds {tokens} tokens, less than one row: the longest prompt plus "
                         f"max_new_tokens is {row_len} tokens ({row_len * per_token / 2**20:.1f} MiB); raise the "
                         "budget or lower max_new_tokens")
    return tokens // row_len


def kv_token_bytes(cfg, dtype):
    """The bytes one token takes in the cache: its key and value in every layer."""
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * torch.tensor([], dtype=dtype).element_size()


def parse_size(text):
    """Bytes in a size like '20GB', '512MB', '1.5GiB' (GB and GiB alike are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])i?B\s*", text, re.I)
    if not match:
        raise ValueError(f"kv_budget={text!r}: give a number of tokens or a size like '20GB' or '512MB'")
    return int(float(match[1]) * 1024 ** ("KMGT".index(match[2].upper()) + 1))


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
    """Uniforms in [0, 1) for each row's step-th token (step: one int, or one per row): a pure function of
    (seed, step), 53 bits."""
    h = splitmix64(seeds ^ splitmix64(np.atleast_1d(np.asarray(step, dtype=np.uint64))))
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
