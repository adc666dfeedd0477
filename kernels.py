"""Triton kernels for the model's hot paths: flash attention and RMSNorm, forward and backward.

    flash_attention(q, k, v, causal=True, doc_ids=None, scale=None)  # q (B,T,Hq,D), k/v (B,T,Hkv,D)
    rms_norm(x, weight, eps)                                         # HF Llama numerics

Where they run:
- CUDA tensors: the Triton kernels.
- CPU tensors with TRITON_INTERPRET=1 set before triton was imported: the same kernels through
  Triton's interpreter (how tests/test_kernels.py checks them without a GPU; slow; bf16, which the
  interpreter cannot compute, takes the torch path).
- Otherwise, or anywhere when ENABLED is False: plain torch (the CPU demo), same maths.

Attention is FlashAttention-2: the forward streams K/V blocks past a block of queries with an online
softmax and saves the log-sum-exp; the backward recomputes the probabilities in two kernels, one per
KV block (dK, dV: it loops over the query heads of its GQA group, so nothing is summed with atomics
or held Hq-sized) and one per query block (dQ). Packed rows: `doc_ids` marks documents as runs of
equal ids; a token sees only earlier tokens of its own run, and the kernels skip every block that
lies wholly outside the runs a block touches, so cost grows with sum(len^2) rather than T^2.

Both ops are torch.library.triton_op's (torch >= 2.6) with autograd registered, so torch.compile
traces into the kernels and FSDP2 sees ordinary ops.
"""
import os
from typing import Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.utils.checkpoint import checkpoint

ENABLED = True  # False: the plain-torch path everywhere, CUDA included (tests compare the two)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")
LOG2E = 1.4426950408889634  # the kernels use exp2: scores are pre-multiplied by log2(e)


def _use_triton(x):
    if not ENABLED or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False  # float64 (reference computations) takes the torch path
    if x.is_cuda:
        return True
    # the interpreter computes in numpy, which has no bfloat16
    return INTERPRET and x.device.type == "cpu" and x.dtype != torch.bfloat16


def _launch(kernel):
    # wrap_triton lets torch.compile see the launch; an interpreted kernel is just called
    return kernel if INTERPRET else torch.library.wrap_triton(kernel)


# ----------------------------------------------------------------------------- documents

def document_bounds(doc_ids):
    """For each token of doc_ids (B, T): the index of the first token of its document and one past
    the last, both int32 (B, T). A document is a run of equal ids."""
    B, T = doc_ids.shape
    pos = torch.arange(T, device=doc_ids.device).expand(B, T)
    change = doc_ids[:, 1:] != doc_ids[:, :-1]
    edge = torch.ones_like(change[:, :1])
    first = torch.cat([edge, change], 1)
    last = torch.cat([change, edge], 1)
    start = torch.where(first, pos, 0).cummax(1).values
    end = torch.where(last, pos + 1, T).flip(1).cummin(1).values.flip(1)
    return start.to(torch.int32).contiguous(), end.to(torch.int32).contiguous()


def attention_mask(doc_ids, causal=True):
    """Boolean (B, 1, T, T) SDPA mask, True where query i may attend to key j: same document (run of
    equal ids), and j <= i if causal. The kernels apply exactly this mask."""
    start, end = document_bounds(doc_ids)
    j = torch.arange(doc_ids.shape[1], device=doc_ids.device)
    mask = (j >= start[..., None]) & (j < end[..., None])
    if causal:
        mask = mask & (j[None, :] <= j[:, None])
    return mask[:, None]


# ----------------------------------------------------------------------------- attention kernels
# Layout: q, o (B, T, H, D) and k, v (B, T, HKV, D), contiguous; LSE and Delta (B, H, T) fp32.
# Every block applies one mask (key in range, causal, same document) with tl.where; scores of
# masked keys are -inf so they add exactly 0. The running max starts at -1e30 rather than -inf so
# a row with no visible key yet (padding rows) never computes inf - inf.
#
# Offsets, in elements (the pointers are typed, so no byte sizes appear):
#   q[b, t, h, d]   at ((b*T + t)*H + h)*D + d  =  (b*T*H + h)*D  +  t*(H*D)  +  d
#                      a base for (batch b, head h) at t = 0, then H*D per token and 1 per channel
#   k[b, t, kh, d]  at (b*T*HKV + kh)*D  +  t*(HKV*D)  +  d           (v, dk, dv alike; o, do, dq as q)
#   lse[b, h, t]    at (b*H + h)*T + t  =  bh*T + t                   (delta alike)
#   doc[b, t]       at b*T + t                                        (DocStart, DocEnd)
# Grid: axis 0 is a block of BLOCK_M queries (BLOCK_N keys in the dK/dV kernel), axis 1 folds batch
# and head into one index, bh = b*H + h (b*HKV + kh in the dK/dV kernel). GQA: G = H // HKV query
# heads share a KV head, query head h reads KV head h // G, KV head kh serves heads kh*G .. kh*G + G-1.
# Index vectors: rows = the block's query positions t, cols = the key positions, dims = 0..D-1 (D is
# a power of two, so dims needs no mask); rows[:, None] and cols[:, None] make a (block, D) tile of
# offsets with dims[None, :]. The last block runs past T: loads there read 0 and stores are masked off.
# Batch offsets are taken in int64 (b.to(tl.int64)): B*T*H*D can pass 2**31.

MAX_GRID = 65535  # CUDA's limit on a launch grid's axes 1 and 2 (axis 0 takes 2**31 - 1)


def _grid(blocks, rows):
    """A launch grid for `blocks` blocks of positions x `rows` (batch x heads): rows folded over axes 1 and 2,
    each at most MAX_GRID, so any batch launches. Axis 1 has GRID_Y = ceil(rows / Z) programs for the smallest
    Z that fits; the < Z programs past the last row redo it (see _row)."""
    z = triton.cdiv(rows, MAX_GRID)
    return (blocks, triton.cdiv(rows, z), z)


@triton.jit
def _row(ROWS, GRID_Y):
    # the program's row of (batch x heads) in a _grid launch: a program past the last row computes the last one
    # again and writes the same values (no branch, no masks: the few duplicates are benign)
    return tl.minimum(tl.program_id(1) + tl.program_id(2) * GRID_Y, ROWS - 1)


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, DocStart, DocEnd, T, H, G, qk_scale, ROWS, GRID_Y,
              D: tl.constexpr, CAUSAL: tl.constexpr, DOCS: tl.constexpr, PRECISION: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # One program per (query block, batch x head): queries start_m .. start_m + BLOCK_M - 1 of head h.
    start_m = tl.program_id(0) * BLOCK_M  # the block's first query position
    bh = _row(ROWS, GRID_Y)  # b * H + h
    b = bh // H
    h = bh % H
    HKV = H // G
    rows = start_m + tl.arange(0, BLOCK_M)  # query positions t of the block
    dims = tl.arange(0, D)  # channels of a head
    # q[b, rows, h, :] as a (BLOCK_M, D) tile: (b, h)'s base, H*D per token, 1 per channel
    q_off = (b.to(tl.int64) * T * H + h) * D + rows[:, None] * (H * D) + dims[None, :]
    kv_base = (b.to(tl.int64) * T * HKV + h // G) * D  # k[b, 0, h // G, 0]: the KV head of query head h
    q = tl.load(Q + q_off, mask=rows[:, None] < T, other=0.0)

    # the keys [lo, hi) this block walks; every key outside is masked for all of its queries
    lo = 0
    hi = T
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, T)  # one past the block's last query: later keys are all future
    if DOCS:
        # each query's document: keys [row_start, row_end); rows past T get [0, T), never stored
        row_start = tl.load(DocStart + b * T + rows, mask=rows < T, other=0)
        row_end = tl.load(DocEnd + b * T + rows, mask=rows < T, other=T)
        # documents are runs in order, so the first query's document starts first: no query of the
        # block sees a key before it (lo need not be a multiple of BLOCK_N: cols below start at it)
        lo = tl.load(DocStart + b * T + start_m)  # keys before the block's first document: skipped
        if not CAUSAL:
            # and the last query's document (its row, clipped to T - 1) ends last
            hi = tl.load(DocEnd + b * T + tl.minimum(start_m + BLOCK_M, T) - 1)

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)  # key positions of this KV block
        kv_off = kv_base + cols[:, None] * (HKV * D) + dims[None, :]  # k[b, cols, h // G, :], (BLOCK_N, D)
        k = tl.load(K + kv_off, mask=cols[:, None] < T, other=0.0)
        v = tl.load(V + kv_off, mask=cols[:, None] < T, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N): [query, key]
        keep = cols[None, :] < T  # the mask, indexed [query, key] like s: keys past T
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        if DOCS:
            keep = keep & (cols[None, :] >= row_start[:, None]) & (cols[None, :] < row_end[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new

    l_i = tl.where(l_i > 0.0, l_i, 1.0)  # a row that saw nothing: output 0, finite LSE
    tl.store(O + q_off, (acc / l_i[:, None]).to(O.dtype.element_ty), mask=rows[:, None] < T)  # o as q
    # lse[b, h, rows] at bh*T + rows: log2 of the row's sum of exp2(scores), what the backward subtracts
    tl.store(LSE + bh.to(tl.int64) * T + rows, m_i + tl.log2(l_i), mask=rows < T)


@triton.jit
def _attn_bwd_delta(O, DO, Delta, T, H, ROWS, GRID_Y, D: tl.constexpr, BLOCK_M: tl.constexpr):
    # delta_i = sum_d dO_id * O_id = sum_j P_ij dP_ij, the softmax backward's row term
    # Grid and offsets as the forward's: a block of BLOCK_M queries of one (batch, head), bh = b*H + h.
    start_m = tl.program_id(0) * BLOCK_M
    bh = _row(ROWS, GRID_Y)
    b = bh // H
    h = bh % H
    rows = start_m + tl.arange(0, BLOCK_M)
    off = (b.to(tl.int64) * T * H + h) * D + rows[:, None] * (H * D) + tl.arange(0, D)[None, :]  # o, do[b, rows, h, :]
    o = tl.load(O + off, mask=rows[:, None] < T, other=0.0).to(tl.float32)
    do = tl.load(DO + off, mask=rows[:, None] < T, other=0.0).to(tl.float32)
    tl.store(Delta + bh.to(tl.int64) * T + rows, tl.sum(o * do, 1), mask=rows < T)


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, LSE, Delta, DK, DV, DocStart, DocEnd, T, H, G, qk_scale, sm_scale, ROWS, GRID_Y,
                   D: tl.constexpr, CAUSAL: tl.constexpr, DOCS: tl.constexpr,
                   PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # One program per (KV block, KV head): dK and dV stay in registers while it walks every query
    # head of the group and every query block that can see these keys.
    start_n = tl.program_id(0) * BLOCK_N  # the block's first key position
    bkv = _row(ROWS, GRID_Y)  # b * HKV + kvh: the grid's rows are B * HKV here, not B * H
    HKV = H // G
    b = bkv // HKV
    kvh = bkv % HKV
    cols = start_n + tl.arange(0, BLOCK_N)  # key positions of the block
    dims = tl.arange(0, D)
    # k, v, dk, dv[b, cols, kvh, :] as a (BLOCK_N, D) tile: (b, kvh)'s base, HKV*D per token
    kv_off = (b.to(tl.int64) * T * HKV + kvh) * D + cols[:, None] * (HKV * D) + dims[None, :]
    k = tl.load(K + kv_off, mask=cols[:, None] < T, other=0.0)
    v = tl.load(V + kv_off, mask=cols[:, None] < T, other=0.0)
    dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, D], dtype=tl.float32)

    # the queries [lo, hi) that may see a key of this block (the mirror of the forward's key range)
    lo = 0
    hi = T
    if CAUSAL:
        lo = start_n  # earlier queries see none of these keys
    if DOCS:
        # queries past the last key's document see none of them either (the last key: clipped to T - 1)
        hi = tl.load(DocEnd + b * T + tl.minimum(start_n + BLOCK_N, T) - 1)
        if not CAUSAL:
            lo = tl.load(DocStart + b * T + start_n)  # nor queries before the first key's document

    for g in range(G):  # the query heads of KV head kvh: h = kvh * G + g
        bh = b * H + kvh * G + g  # (b, h) folded as in the forward's grid: the row of lse and delta
        q_base = (b.to(tl.int64) * T * H + kvh * G + g) * D  # q[b, 0, h, 0]
        for start_m in range(lo, hi, BLOCK_M):
            rows = start_m + tl.arange(0, BLOCK_M)  # query positions (lo need not be block-aligned)
            q_off = q_base + rows[:, None] * (H * D) + dims[None, :]  # q, do[b, rows, h, :]
            q = tl.load(Q + q_off, mask=rows[:, None] < T, other=0.0)
            do = tl.load(DO + q_off, mask=rows[:, None] < T, other=0.0)
            lse = tl.load(LSE + bh.to(tl.int64) * T + rows, mask=rows < T, other=0.0)
            delta = tl.load(Delta + bh.to(tl.int64) * T + rows, mask=rows < T, other=0.0)
            # transposed: s_t, p_t, ds_t are (BLOCK_N, BLOCK_M), [key, query], so keys index rows here
            s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
            keep = rows[None, :] < T
            if CAUSAL:
                keep = keep & (cols[:, None] <= rows[None, :])
            if DOCS:
                # the queries' documents, as in the forward; the key must lie in its query's document
                row_start = tl.load(DocStart + b * T + rows, mask=rows < T, other=0)
                row_end = tl.load(DocEnd + b * T + rows, mask=rows < T, other=T)
                keep = keep & (cols[:, None] >= row_start[None, :]) & (cols[:, None] < row_end[None, :])
            p_t = tl.exp2(tl.where(keep, s_t, float("-inf")) - lse[None, :])  # P^T, from the saved lse
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            ds_t = p_t * (dp_t - delta[None, :])
            dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)

    tl.store(DK + kv_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=cols[:, None] < T)
    tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=cols[:, None] < T)


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, LSE, Delta, DQ, DocStart, DocEnd, T, H, G, qk_scale, sm_scale, ROWS, GRID_Y,
                 D: tl.constexpr, CAUSAL: tl.constexpr, DOCS: tl.constexpr,
                 PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # Grid, offsets and the key range [lo, hi) exactly as in _attn_fwd: one program per (query block,
    # b * H + h); q, do and dq share q_off; lse and delta are read at bh*T + rows.
    start_m = tl.program_id(0) * BLOCK_M
    bh = _row(ROWS, GRID_Y)
    b = bh // H
    h = bh % H
    HKV = H // G
    rows = start_m + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D)
    q_off = (b.to(tl.int64) * T * H + h) * D + rows[:, None] * (H * D) + dims[None, :]
    kv_base = (b.to(tl.int64) * T * HKV + h // G) * D
    q = tl.load(Q + q_off, mask=rows[:, None] < T, other=0.0)
    do = tl.load(DO + q_off, mask=rows[:, None] < T, other=0.0)
    lse = tl.load(LSE + bh.to(tl.int64) * T + rows, mask=rows < T, other=0.0)
    delta = tl.load(Delta + bh.to(tl.int64) * T + rows, mask=rows < T, other=0.0)
    dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)

    lo = 0
    hi = T
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, T)
    if DOCS:
        row_start = tl.load(DocStart + b * T + rows, mask=rows < T, other=0)
        row_end = tl.load(DocEnd + b * T + rows, mask=rows < T, other=T)
        lo = tl.load(DocStart + b * T + start_m)
        if not CAUSAL:
            hi = tl.load(DocEnd + b * T + tl.minimum(start_m + BLOCK_M, T) - 1)

    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        kv_off = kv_base + cols[:, None] * (HKV * D) + dims[None, :]  # k, v[b, cols, h // G, :]
        k = tl.load(K + kv_off, mask=cols[:, None] < T, other=0.0)
        v = tl.load(V + kv_off, mask=cols[:, None] < T, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [query, key], as in the forward
        keep = cols[None, :] < T
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        if DOCS:
            keep = keep & (cols[None, :] >= row_start[:, None]) & (cols[None, :] < row_end[:, None])
        p = tl.exp2(tl.where(keep, s, float("-inf")) - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)

    tl.store(DQ + q_off, (dq * sm_scale).to(DQ.dtype.element_ty), mask=rows[:, None] < T)


def _attn_configs(D, dtype):
    """Launch settings (block sizes, warps, pipeline stages) for the forward, dK/dV and dQ kernels.
    Starting points for H100 in the Triton tutorial's class, not yet tuned on one."""
    if INTERPRET:  # one program at a time in numpy: small blocks; warps and stages are ignored
        small = dict(BLOCK_M=32, BLOCK_N=32)
        return small, small, small
    if dtype == torch.float32 or D > 128:  # twice the bytes per tile: keep shared memory in budget
        return (dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2),
                dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2),
                dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2))
    warps = 4 if D <= 64 else 8
    return (dict(BLOCK_M=128, BLOCK_N=64, num_warps=warps, num_stages=3),
            dict(BLOCK_M=32, BLOCK_N=128, num_warps=warps, num_stages=3),
            dict(BLOCK_M=128, BLOCK_N=32, num_warps=warps, num_stages=3))


def _precision(dtype):
    return "ieee" if dtype == torch.float32 else "tf32"  # fp32 inputs stay exact (no TF32)


@torch.library.triton_op("octothinker::flash_attn_fwd", mutates_args=())
def _flash_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, doc_start: Optional[torch.Tensor],
               doc_end: Optional[torch.Tensor], causal: bool, scale: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    B, T, H, D = q.shape
    fwd, _, _ = _attn_configs(D, q.dtype)
    o = torch.empty_like(q)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    docs = doc_start is not None
    grid = _grid(triton.cdiv(T, fwd["BLOCK_M"]), B * H)  # (query blocks, batch x query heads): bh = b * H + h
    _launch(_attn_fwd)[grid](  # without documents lse stands in for DocStart, DocEnd: never read (DOCS=False)
        q, k, v, o, lse, doc_start if docs else lse, doc_end if docs else lse,
        T, H, H // k.shape[2], scale * LOG2E, B * H, grid[1],
        D=D, CAUSAL=causal, DOCS=docs, PRECISION=_precision(q.dtype), **fwd)
    return o, lse


@torch.library.triton_op("octothinker::flash_attn_bwd", mutates_args=())
def _flash_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
               lse: torch.Tensor, doc_start: Optional[torch.Tensor], doc_end: Optional[torch.Tensor],
               causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, H, D = q.shape
    HKV = k.shape[2]
    _, kv_cfg, q_cfg = _attn_configs(D, q.dtype)
    do = do.contiguous()
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    docs = doc_start is not None
    doc_start, doc_end = (doc_start, doc_end) if docs else (lse, lse)
    common = dict(D=D, CAUSAL=causal, DOCS=docs, PRECISION=_precision(q.dtype))
    grid = _grid(triton.cdiv(T, 64), B * H)
    _launch(_attn_bwd_delta)[grid](o, do, delta, T, H, B * H, grid[1], D=D, BLOCK_M=64)
    # dK, dV: (key blocks, batch x KV heads), b * HKV + kvh; dQ: (query blocks, batch x query heads)
    grid = _grid(triton.cdiv(T, kv_cfg["BLOCK_N"]), B * HKV)
    _launch(_attn_bwd_dkdv)[grid](
        q, k, v, do, lse, delta, dk, dv, doc_start, doc_end, T, H, H // HKV, scale * LOG2E, scale, B * HKV, grid[1],
        **common, **kv_cfg)
    grid = _grid(triton.cdiv(T, q_cfg["BLOCK_M"]), B * H)
    _launch(_attn_bwd_dq)[grid](
        q, k, v, do, lse, delta, dq, doc_start, doc_end, T, H, H // HKV, scale * LOG2E, scale, B * H, grid[1],
        **common, **q_cfg)
    return dq, dk, dv


def _flash_setup(ctx, inputs, output):
    q, k, v, doc_start, doc_end, causal, scale = inputs
    ctx.save_for_backward(q, k, v, *output, doc_start, doc_end)
    ctx.causal, ctx.scale = causal, scale


def _flash_backward(ctx, do, _dlse):
    q, k, v, o, lse, doc_start, doc_end = ctx.saved_tensors
    dq, dk, dv = _flash_bwd(do, q, k, v, o, lse, doc_start, doc_end, ctx.causal, ctx.scale)
    return dq, dk, dv, None, None, None, None


_flash_fwd.register_autograd(_flash_backward, setup_context=_flash_setup)


FALLBACK_QUERIES = 1024  # the torch path with documents: queries a chunk at a time, so memory is O(chunk x T)


def _attention_torch(q, k, v, causal, doc_ids, scale):
    """SDPA. Without documents: is_causal, which every fused backend takes. With documents a mask is needed, and
    with a mask (and GQA) SDPA may fall to its math backend, whose (B, H, T, T) scores are kept for backward:
    16 GB at 8k for a 1B model's micro-batch of 2. So queries go FALLBACK_QUERIES at a time, each chunk
    recomputed in backward: whatever the backend, at most one chunk's scores exist."""
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = q.shape[2] != k.shape[2]
    if doc_ids is None:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=scale, enable_gqa=gqa)
        return out.transpose(1, 2).contiguous()
    mask = attention_mask(doc_ids, causal)

    def chunk(qc, mc, kt, vt):
        return F.scaled_dot_product_attention(qc, kt, vt, attn_mask=mc, scale=scale, enable_gqa=gqa)

    grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    outs = [checkpoint(chunk, qt[:, :, i:i + FALLBACK_QUERIES],
                       mask[:, :, i:i + FALLBACK_QUERIES], kt, vt, use_reentrant=False)
            if grad else chunk(qt[:, :, i:i + FALLBACK_QUERIES], mask[:, :, i:i + FALLBACK_QUERIES], kt, vt)
            for i in range(0, q.shape[1], FALLBACK_QUERIES)]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous()


def sdpa_backend(q, k, v, causal=True, doc_ids=None):
    """The SDPA backend the torch path runs for these inputs (B, T, H, D): flash, efficient or math (benchmarks
    say which baseline they measured)."""
    from torch.nn.attention import SDPBackend
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    mask = None if doc_ids is None else attention_mask(doc_ids, causal)[:, :, :FALLBACK_QUERIES]
    choice = torch._fused_sdp_choice(qt[:, :, :FALLBACK_QUERIES] if mask is not None else qt, kt, vt, mask, 0.0,
                                     causal and mask is None, scale=None, enable_gqa=q.shape[2] != k.shape[2])
    return SDPBackend(choice).name.lower()


def flash_attention(q, k, v, causal=True, doc_ids=None, scale=None):
    """Softmax attention of q (B, T, Hq, D) over k, v (B, T, Hkv, D), Hq a multiple of Hkv (query
    head h reads KV head h // (Hq // Hkv)). causal: a query sees keys at or before it. doc_ids
    (B, T) integers: a query sees only keys of its own document (run of equal ids). scale defaults
    to D ** -0.5. Returns (B, T, Hq, D) in q's dtype; differentiable in q, k and v."""
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"flash_attention: q must be (B, T, Hq, D) and k, v (B, T, Hkv, D); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, T, H, D = q.shape
    if k.shape[0] != B or k.shape[1] != T or k.shape[3] != D or H % k.shape[2]:
        raise ValueError(f"flash_attention: k, v {tuple(k.shape)} must share B, T, D with q "
                         f"{tuple(q.shape)}, and Hq must be a multiple of Hkv")
    if doc_ids is not None and tuple(doc_ids.shape) != (B, T):
        raise ValueError(f"flash_attention: doc_ids must be (B, T) = {(B, T)}, got {tuple(doc_ids.shape)}")
    scale = D ** -0.5 if scale is None else float(scale)
    if not _use_triton(q):
        return _attention_torch(q, k, v, causal, doc_ids, scale)
    if D not in (16, 32, 64, 128, 256) or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"flash_attention: the Triton kernels need D in 16..256, a power of two "
                         f"(got {D}), and one dtype for q, k, v (got {q.dtype}, {k.dtype}, {v.dtype}); "
                         f"set kernels.ENABLED = False for the plain-torch path")
    doc_start, doc_end = document_bounds(doc_ids) if doc_ids is not None else (None, None)
    o, _ = _flash_fwd(q.contiguous(), k.contiguous(), v.contiguous(), doc_start, doc_end, causal, scale)
    return o


# ----------------------------------------------------------------------------- RMSNorm
# HF Llama: y = weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(x.dtype). The cast back to
# x's dtype before the weight is part of the numerics, so the kernel rounds there too.

@triton.jit
def _rms_norm_fwd(X, W, Y, Rstd, N, eps, BLOCK: tl.constexpr):
    # One program per row of x as (M, N), row-major: x[row, cols] at row * N + cols. BLOCK is N rounded
    # up to a power of two (tl.arange needs one); cols >= N are masked, read as 0, so the sum is exact.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    x = tl.load(X + row * N + cols, mask=cols < N, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / N + eps)
    normed = (x * rstd).to(X.dtype.element_ty).to(tl.float32)
    w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, (normed * w).to(Y.dtype.element_ty), mask=cols < N)
    tl.store(Rstd + row, rstd)


@triton.jit
def _rms_norm_bwd(X, W, DY, Rstd, DX, DW, M, N, BLOCK: tl.constexpr):
    # Each program takes every P-th row and keeps its own dW partial sum (summed in torch after),
    # which needs no atomics and is deterministic.
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    for row in range(pid.to(tl.int64), M, tl.num_programs(0)):  # rows pid, pid + P, pid + 2P, ...
        off = row * N + cols  # x, dy, dx[row, cols], row-major (M, N) as in the forward
        x = tl.load(X + off, mask=cols < N, other=0.0).to(tl.float32)
        dy = tl.load(DY + off, mask=cols < N, other=0.0).to(tl.float32)
        rstd = tl.load(Rstd + row)
        normed = x * rstd
        dnormed = dy * w
        dx = rstd * (dnormed - normed * (tl.sum(dnormed * normed, 0) / N))
        tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=cols < N)
        dw += dy * normed.to(X.dtype.element_ty).to(tl.float32)
    tl.store(DW + pid.to(tl.int64) * N + cols, dw, mask=cols < N)  # row pid of the (P, N) partial sums


@torch.library.triton_op("octothinker::rms_norm_fwd", mutates_args=())
def _rms_fwd(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    N = x.shape[-1]
    x2 = x.reshape(-1, N)
    y = torch.empty(x2.shape, device=x.device, dtype=torch.promote_types(x.dtype, weight.dtype))
    rstd = torch.empty(x2.shape[0], device=x.device, dtype=torch.float32)
    block = triton.next_power_of_2(N)
    _launch(_rms_norm_fwd)[(x2.shape[0],)](x2, weight, y, rstd, N, eps, BLOCK=block,
                                           num_warps=8 if block >= 4096 else 4)
    return y.view(x.shape), rstd


@torch.library.triton_op("octothinker::rms_norm_bwd", mutates_args=())
def _rms_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    N = x.shape[-1]
    x2, dy2 = x.reshape(-1, N), dy.contiguous().reshape(-1, N)
    M = x2.shape[0]
    programs = torch.cuda.get_device_properties(x.device).multi_processor_count * 2 if x.is_cuda else 4
    programs = max(1, min(M, programs))
    dx = torch.empty_like(x2)
    dw = torch.empty(programs, N, device=x.device, dtype=torch.float32)
    block = triton.next_power_of_2(N)
    _launch(_rms_norm_bwd)[(programs,)](x2, weight, dy2, rstd, dx, dw, M, N, BLOCK=block,
                                        num_warps=8 if block >= 4096 else 4)
    return dx.view(x.shape), dw.sum(0).to(weight.dtype)


def _rms_setup(ctx, inputs, output):
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight, output[1])


def _rms_backward(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = _rms_bwd(dy, x, weight, rstd)
    return dx, dw, None


_rms_fwd.register_autograd(_rms_backward, setup_context=_rms_setup)


def _rms_norm_torch(x, weight, eps):
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rms_norm(x, weight, eps):
    """RMSNorm over the last dimension with HF Llama numerics (fp32 inside, cast to x's dtype before
    the weight); output in the promoted dtype of x and weight. Differentiable in x and weight."""
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm: weight {tuple(weight.shape)} must be ({x.shape[-1]},), the last "
                         f"dimension of x {tuple(x.shape)}")
    if not _use_triton(x):
        return _rms_norm_torch(x, weight, eps)
    y, _ = _rms_fwd(x.contiguous(), weight.contiguous(), float(eps))
    return y
