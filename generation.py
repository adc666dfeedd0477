"""
Sampling from model.py's Llama, many prompts at once: the generate loop (it is the model's generate method),
its KV cache, and a sampler whose every draw is a pure function of (the prompt's seed, the token's index), so
a prompt's sample does not depend on what else is being generated, up to floating-point rounding: in fp32 the
tokens are those of the prompt generated alone; in bf16 a matrix product's rounding differs with the batch's
size, and a token drawn close to a boundary of the distribution can come out differently.

The loop is continuous batching under a memory budget (kv_budget: a token count, or a size like "20GB"; the
default on CUDA is most of the memory free after the weights, elsewhere a row for every prompt). Prompts wait
in a queue in the order given; whenever rows are free, the next prompts join: their prompts are run through
the model once (prompts repeated in the queue, a GRPO group's or avg@k's samples, run once and their keys and
values copied into each sample's row), then every decoding row adds one token per step. A row that finishes (a
stop id, a stop string, max_new_tokens) leaves at once, so a long answer never holds up the rest.

The cache is fixed rows in two tiers. Long rows hold the longest prompt plus max_new_tokens; short rows the
longest prompt plus a quarter of that (SHORT_NEW). Most answers are much shorter than the limit, so a budget
too small for a long row per prompt keeps half of it as long rows and the other half as short ones: up to 2.5
times as many rows in the same memory when prompts are short next to max_new_tokens (1.6 times in
bench/generate.py's RL workload), and more rows decoding at once is what makes a step's work pay. A prompt joins a short
row; one that fills its short row waits there, not decoding, until a long row is free, and then its keys and
values move up. Long rows always finish, so waiting rows always move on. Within a tier the decoding rows are
the first rows (the waiting ones after them), so each tier's attention reads one slice of its cache, and a
decode step's batch is the short tier's decoding rows, then the long tier's. Rows move only when the set of
rows changes (a finish, a join, a move up), copying just the rows whose slot must change. Memory never exceeds
kv_budget, whatever the number of prompts; kv_budget="all" is one long row per prompt: everything in one
batch, as a plain batched loop does.

Per step the host copies the new tokens and their log-probs from the device once, appends them, and decodes
text only for the rows whose new token may finish a stop string; rows joining, leaving and moving cost work
then only.
"""
import functools
import re
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

JOIN_SHARE = 0.125  # of the cache's rows, how many must be free before waiting prompts join (a batched prefill)
GPU_SHARE = 0.7  # of the CUDA memory free at the call, what the default kv_budget takes (the rest: activations)
SHORT_NEW = 0.25  # of max_new_tokens, what a short row holds after the longest prompt
SHORT_SHARE = 0.5  # of a budget too small for a long row per prompt, the share given to short rows; 0: long rows
                   # only (if most answers outgrow a short row, only the long half of the budget decodes)
MIN_GAIN = 1.25  # short rows are used only if the budget then holds this many times the rows it holds as long ones


class KVCache:
    """Keys and values in tiers of fixed rows: tier t is shapes[t] = (rows, row_len), preallocated as
    (rows, Hkv, row_len, D) per layer, shortest tier first; a row's tokens sit at positions [0, its length).
    The decoding rows of tier t are its first active[t] rows, and a decode step's batch is tier 0's decoding
    rows, then tier 1's. model.py's attention fills it while prefilling (self.fill) and reads it while decoding."""

    def __init__(self, cfg, shapes, dtype, device):
        # zeros, not empty: a masked slot gets weight 0, and 0 * NaN from stale memory would be NaN
        def zeros(rows, row_len):
            return torch.zeros((rows, cfg.n_kv_heads, row_len, cfg.head_dim), dtype=dtype, device=device)
        self.shapes = list(shapes)
        self.k = [[zeros(*shape) for _ in range(cfg.n_layers)] for shape in self.shapes]
        self.v = [[zeros(*shape) for _ in range(cfg.n_layers)] for shape in self.shapes]
        self.active, self.decoding, self.fill = [0] * len(self.shapes), False, {}

    def nbytes(self):
        return sum(t.numel() * t.element_size() for tier in self.k + self.v for t in tier)

    def prefill(self, layer, k, v):
        """Prompts (right-padded, k and v (B, T, Hkv, D)) into rows from position 0: self.fill is
        {tier: (which of the B, their rows)}."""
        for t, (which, rows) in self.fill.items():
            width = min(k.shape[1], self.shapes[t][1])  # past a prompt's own length it is padding, never seen
            self.k[t][layer][rows, :, :width] = k[which, :width].transpose(1, 2)
            self.v[t][layer][rows, :, :width] = v[which, :width].transpose(1, 2)

    def copy(self, moves):
        """moves: [((tier, row), (tier, row), positions)], each target row taking the first `positions` of its
        source's; every source is read before any target is written, so rows may trade places."""
        groups = {}
        for (ts, s), (td, d), n in moves:
            sources, targets, width = groups.setdefault((ts, td), ([], [], [0]))
            sources.append(s), targets.append(d)
            width[0] = max(width[0], n)
        for buffers in (self.k, self.v):
            for layer in range(len(buffers[0])):
                read = [(td, d, w[0], buffers[ts][layer][s, :, :w[0]]) for (ts, td), (s, d, w) in groups.items()]
                for td, d, w, rows in read:
                    buffers[td][layer][d, :, :w] = rows

    def set_positions(self, pos, lengths):
        """Decode next at position pos[b] of the batch's row b (a tensor in batch order); lengths[t] = the
        largest position of tier t's decoding rows + 1, python ints (no GPU sync). The masks of visible
        positions are made here once per step, not once per layer."""
        self.decoding, self.pos, self.lengths, self.parts = True, pos, lengths, []
        start = 0
        for t, n in enumerate(self.active):
            if n:
                p = pos[start:start + n]
                visible = (torch.arange(lengths[t], device=pos.device) <= p[:, None])[:, None, None, :]
                self.parts.append((t, start, torch.arange(n, device=pos.device), p, visible))
                start += n

    def append(self, layer, k, v):
        """One new token per decoding row (k, v (B, 1, Hkv, D)) into its row; per tier with decoding rows,
        (the batch's rows, visible keys, values, mask) to attend over."""
        out = []
        for t, start, rows, p, visible in self.parts:
            K, V, n = self.k[t][layer], self.v[t][layer], len(p)
            K[rows, :, p] = k[start:start + n, 0]
            V[rows, :, p] = v[start:start + n, 0]
            out.append((slice(start, start + n), K[:n, :, :visible.shape[-1]], V[:n, :, :visible.shape[-1]], visible))
        return out


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_p=1.0, stop_ids=(), seed=None,
             stop_strings=(), decode=None, compile=False, kv_budget=None, max_batch=None, on_done=None,
             tempered_logprobs=False):
    """Sample continuations of prompts (lists of token ids, any lengths).
    Returns (tokens, logprobs): per prompt, its new token ids, ending with the first stop id or the
    token that completes a stop string (both kept) or after max_new_tokens, and the model's
    log-probability of each (log-softmax of the raw logits, before temperature and top-p; with
    tempered_logprobs, of the logits over temperature: the distribution a token was drawn from, before top-p).
    temperature=0 is greedy. seed: an int, where prompt i then draws from (seed, i), or one seed per
    prompt; a prompt's sample depends only on its own seed, not on the rest of the batch or the queue (up to
    rounding: see the module docstring).
    None draws the seed from torch's global generator. stop_strings need decode (token ids -> str).
    kv_budget: the cache's size, in tokens (an int, or its digits) or bytes ("20GB", "512MB"); None: the
    default (see the module docstring); "all": a row per prompt. max_batch caps the cache's rows. on_done(i) is
    called as prompt i finishes. compile: run each decode step through torch.compile (dynamic shapes: a few
    graphs, one for each tier or both, a tier of one row among them, not one per batch size or cache length;
    worth its compile time on long generations, on a GPU above all)."""
    cfg, device, dtype = model.config, model.lm_head.weight.device, model.lm_head.weight.dtype
    check_generate_args(prompts, max_new_tokens, temperature, top_p, cfg)
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=, e.g. tokenizer.decode, to read the generated text")
    B, lens = len(prompts), [len(p) for p in prompts]
    if max(lens) + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"the longest prompt ({max(lens)} tokens) plus max_new_tokens={max_new_tokens} "
                         f"exceeds the model's max_seq_len={cfg.max_seq_len}; shorten one or the other")
    tokens = budget_tokens(kv_budget, max(lens) + max_new_tokens, cfg, dtype, device)
    cache = KVCache(cfg, layout(min(B, max_batch or B), max(lens), max_new_tokens, tokens), dtype, device)
    caps = [row_len for _, row_len in cache.shapes]
    seeds, stop_ids = row_seeds(seed, B), set(stop_ids)
    stops = StopStrings(stop_strings, decode)
    out_tokens, out_logprobs = [[] for _ in range(B)], [[] for _ in range(B)]
    queue = deque(range(B))
    tiers = [[] for _ in caps]  # per tier, the prompt in each of its live rows: decoding ones, then waiting ones
    where = {}  # a live prompt's (tier, row)
    done, changed = set(), False  # prompts that finished; whether one finished or filled its row last step
    batch, step_logits = [], compiled(decode_step) if compile else decode_step
    rows_in_all = sum(n for n, _ in cache.shapes)

    def position(i):  # where prompt i's next token goes (its last new token is not in the cache yet)
        return lens[i] + len(out_tokens[i]) - 1

    def finished(i, t):  # whether prompt i's new token t ends it
        return t in stop_ids or len(out_tokens[i]) == max_new_tokens or stops.end(out_tokens[i])

    def recorded(rows, tok, logp):  # append the new tokens; whether a row finished or filled its row
        ended = record(rows, tok, logp, out_tokens, out_logprobs, finished)
        done.update(ended)
        for i in ended if on_done else ():
            on_done(i)
        return bool(ended) or any(position(i) >= caps[where[i][0]] for i in rows)

    while queue or where:
        free = rows_in_all - len(where)
        if changed or (queue and free >= min(len(queue), max(1, int(JOIN_SHARE * rows_in_all)))):
            joining = schedule(tiers, cache, where, done, queue, lens, position)
            changed = False
            if joining:
                logits = prefill(model, cache, [prompts[i] for i in joining], [where[i] for i in joining])
                tok, logp = sample(logits, temperature, top_p, uniforms(seeds[joining], 0), tempered_logprobs)
                changed = recorded(joining, tok, logp)
                if changed:  # some ended on their first token: out before decoding
                    continue
            batch = [i for t, rows in enumerate(tiers) for i in rows[:cache.active[t]]]
            if not batch:
                continue
            tok = torch.tensor([out_tokens[i][-1] for i in batch], device=device)
            pos = torch.tensor([position(i) for i in batch], device=device)
            lengths = [max((position(i) for i in rows[:n]), default=-1) + 1 for rows, n in zip(tiers, cache.active)]
        cache.set_positions(pos, lengths)
        logits = step_logits(model, tok, cache)
        steps = np.array([len(out_tokens[i]) for i in batch], dtype=np.uint64)
        tok, logp = sample(logits, temperature, top_p, uniforms(seeds[batch], steps), tempered_logprobs)
        changed = recorded(batch, tok, logp)
        pos, lengths = pos + 1, [n and n + 1 for n in lengths]
    return out_tokens, out_logprobs


def schedule(tiers, cache, where, done, queue, lens, position):
    """The cache's rows after a change: finished prompts (done) leave, prompts that filled a short row move
    up to free long rows, and the next prompts in the queue join (when JOIN_SHARE of the rows are free, or
    none is live). Each tier's rows are then laid out decoding first, waiting after; a row keeps its place if
    it is in its part already, and only the others are copied. Returns the prompts joining (their rows are
    in `where`, to prefill)."""
    caps = [row_len for _, row_len in cache.shapes]
    room = [rows for rows, _ in cache.shapes]
    gone = [i for rows in tiers for i in rows if i in done]
    new = [[i for i in rows if i not in done] for rows in tiers]
    for t in range(len(new) - 2, -1, -1):  # up a tier as rows free there, those already waiting first
        full = sorted((i for i in new[t] if position(i) >= caps[t]), key=lambda i: where[i][1] < cache.active[t])
        up = full[:room[t + 1] - len(new[t + 1])]
        new[t], new[t + 1] = [i for i in new[t] if i not in up], new[t + 1] + up
    free = sum(room) - sum(map(len, new))
    joining = []
    if queue and (not any(new) or free >= min(len(queue), max(1, int(JOIN_SHARE * sum(room))))):
        while queue:  # in order: a short row if the prompt fits one, else a long one
            t = next((t for t in range(len(new)) if len(new[t]) < room[t] and lens[queue[0]] < caps[t]), None)
            if t is None:
                break
            joining.append(queue.popleft())
            new[t].append(joining[-1])
    moves = []
    for t, rows in enumerate(new):
        decoding = [i for i in rows if position(i) < caps[t]]  # a joiner's position is its prompt's last
        waiting = [i for i in rows if position(i) >= caps[t]]
        parts = [(decoding, range(len(decoding))), (waiting, range(len(decoding), len(rows)))]
        laid = [None] * len(rows)
        for part, slots in parts:
            stay = {i for i in part if where.get(i, (None,))[0] == t and where[i][1] in slots}
            for i in stay:
                laid[where[i][1]] = i
            free_slots = iter(s for s in slots if laid[s] is None)
            for i in part:
                if i not in stay:
                    laid[next(free_slots)] = i
        for s, i in enumerate(laid):
            if i in where and where[i] != (t, s):
                moves.append((where[i], (t, s), position(i)))
        tiers[t], cache.active[t] = laid, len(decoding)
    cache.copy(moves)
    for i in gone:
        del where[i]
    where.update({i: (t, s) for t, rows in enumerate(tiers) for s, i in enumerate(rows)})
    return joining


def layout(n, longest, max_new_tokens, tokens):
    """The cache's tiers [(rows, row_len)], shortest first, for n prompts within `tokens` cached tokens: one
    long row a prompt if they fit, else short rows and long rows (see the module docstring)."""
    full = longest + max_new_tokens
    if tokens >= n * full:
        return [(n, full)]
    single = [(min(n, tokens // full), full)]
    if SHORT_SHARE <= 0:
        return single
    short = longest + max(1, int(SHORT_NEW * max_new_tokens))
    long_rows = max(1, int((1 - SHORT_SHARE) * tokens) // full)
    short_rows = min(n - long_rows, (tokens - long_rows * full) // short)
    if short_rows < 1 or long_rows + short_rows < MIN_GAIN * single[0][0]:  # not worth a second tier
        return single
    return [(short_rows, short), (long_rows, full)]


def prefill(model, cache, prompts, targets):
    """Run prompts through the model into their cache rows targets [(tier, row)]; each distinct prompt once,
    its keys and values copied to the rows of its repeats. Returns each prompt's next-token logits (len, V)."""
    device = cache.k[0][0].device
    first = {}  # a prompt's first index among these
    for j, p in enumerate(prompts):
        first.setdefault(tuple(p), j)
    unique = sorted(set(first.values()))
    width = max(len(prompts[j]) for j in unique)
    tokens = torch.zeros(len(unique), width, dtype=torch.long)
    cache.decoding, cache.fill = False, {}
    for r, j in enumerate(unique):  # right-padded: causal attention never lets a prompt see its padding
        tokens[r, :len(prompts[j])] = torch.tensor(prompts[j])
        which, rows = cache.fill.setdefault(targets[j][0], ([], []))
        which.append(r), rows.append(targets[j][1])
    h = model.hidden(tokens.to(device), torch.arange(width, device=device)[None], cache=cache)
    last = torch.tensor([len(prompts[j]) - 1 for j in unique], device=device)
    logits = model.lm_head(h[torch.arange(len(unique), device=device), last])
    source = [first[tuple(p)] for p in prompts]
    cache.copy([(targets[source[j]], targets[j], len(prompts[j])) for j in range(len(prompts)) if source[j] != j])
    return logits[torch.tensor([unique.index(s) for s in source], device=device)]


def record(rows, tok, logp, out_tokens, out_logprobs, finished):
    """Append each row's new token and log-prob (one device-to-host copy); the prompts that finished."""
    both = torch.stack([tok.double(), logp.double()]).cpu()
    done = []
    for i, t, lp in zip(rows, both[0].long().tolist(), both[1].tolist()):
        out_tokens[i].append(t)
        out_logprobs[i].append(lp)
        if finished(i, t):
            done.append(i)
    return done


def decode_step(model, tok, cache):
    """Next-token logits (B, vocab) after one new token per row, at the positions the cache was set to."""
    return model.lm_head(model.hidden(tok[:, None], cache.pos[:, None], cache=cache))[:, 0]


@functools.cache  # compiled on first use, not at import (importing dynamo costs every script a second)
def compiled(fn):
    # dynamic: the batch shrinks as rows finish and the cache grows each step; neither should recompile. Each
    # pattern of tiers (short, long, both; a tier of one row) is a graph of its own: more than dynamo's default
    # limit of 8 would silently fall back to eager
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), 32))
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


def budget_tokens(kv_budget, row_len, cfg, dtype, device):
    """How many tokens kv_budget lets the cache hold (see generate); an error if not one row of row_len."""
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
    return tokens


def kv_token_bytes(cfg, dtype):
    """The bytes one token takes in the cache: its key and value in every layer."""
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * torch.tensor([], dtype=dtype).element_size()


def parse_size(text):
    """Bytes in a size like '20GB', '512MB', '1.5GiB' (GB and GiB alike are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])i?B\s*", text, re.I)
    if not match:
        raise ValueError(f"kv_budget={text!r}: give a number of tokens or a size like '20GB' or '512MB'")
    return int(float(match[1]) * 1024 ** ("KMGT".index(match[2].upper()) + 1))


def sample(logits, temperature, top_p, u, tempered=False):
    """One token per row of logits (B, V) and its log-prob under the raw logits (tempered: under logits /
    temperature, when temperature > 0). u (B,): uniforms in [0, 1) that pick the token by inverting the CDF,
    so each row's draw depends on its own u alone."""
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
    logp = F.log_softmax(logits / temperature if tempered and temperature > 0 else logits, dim=-1)
    logp = logp.gather(1, tok[:, None])[:, 0]
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
