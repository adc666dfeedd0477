"""kernels.py against float64 references: flash attention (causal, GQA, packed documents, any T)
and RMSNorm, forward and backward.

Without a GPU the kernels run in Triton's interpreter, which must be switched on
(TRITON_INTERPRET=1) before triton is first imported. Other test files may import model.py, and so
triton, before this one; so when this process was started without it, test_interpreter reruns this
file in a fresh process that has it (TRITON_INTERPRET=1 pytest tests/test_kernels.py runs it directly).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels

CUDA = torch.cuda.is_available()
KERNELS = CUDA or kernels.INTERPRET  # can the Triton kernels run in this process?
DEVICE = "cuda" if CUDA else "cpu"
needs_kernels = pytest.mark.skipif(not KERNELS, reason="run by test_interpreter in a fresh process")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def rel_err(x, ref):
    # relative to the reference's norm, floored at an RMS of 1e-2 for references that are ~0
    # (a query that sees one key has zero dq: its softmax is constant)
    return ((x.double() - ref).norm() / max(ref.norm(), 1e-2 * ref.numel() ** 0.5)).item()


def reference_attention(q, k, v, causal, doc_ids, scale):
    """Plain attention in whatever dtype it is given; K/V repeated per group; same-id masking."""
    B, T, H, D = q.shape
    k = k.repeat_interleave(H // k.shape[2], 2)
    v = v.repeat_interleave(H // v.shape[2], 2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    keep = torch.ones(T, T, dtype=torch.bool, device=q.device)
    if causal:
        keep = keep.tril()
    keep = keep.expand(B, 1, T, T)
    if doc_ids is not None:
        keep = keep & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    scores = scores.masked_fill(~keep, float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)


def random_documents(B, T, n_docs, generator):
    """(B, T) ids of contiguous documents with random boundaries, different in each row."""
    ids = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        cuts = torch.randperm(T - 1, generator=generator)[: n_docs - 1] + 1
        ids[b, cuts] = 1
    return ids.cumsum(1)


def attention_errors(B, T, H, HKV, D, causal, docs, dtype=torch.float32, scale=None, seed=0):
    """Relative errors of flash_attention's output and gradients against float64."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, T, h, D, generator=g) for h in (H, HKV, HKV))
    do = torch.randn(B, T, H, D, generator=g)
    q, k, v, do = (x.to(DEVICE, dtype) for x in (q, k, v, do))
    doc_ids = None
    if docs == "random":
        doc_ids = random_documents(B, T, 5, g).to(DEVICE)
    elif docs == "singletons":  # every token its own document: attends only to itself
        doc_ids = torch.arange(T, device=DEVICE).expand(B, T)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out = kernels.flash_attention(q, k, v, causal=causal, doc_ids=doc_ids, scale=scale)
    out.backward(do)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = reference_attention(q64, k64, v64, causal, doc_ids, scale or D ** -0.5)
    ref.backward(do.double())
    assert out.dtype == dtype and out.shape == (B, T, H, D)
    return {"out": rel_err(out, ref), "dq": rel_err(q.grad, q64.grad),
            "dk": rel_err(k.grad, k64.grad), "dv": rel_err(v.grad, v64.grad)}


# (B, T, Hq, Hkv, D, causal, docs): blocks are 32 under the interpreter, so most T are not multiples
CASES = {
    "causal": (1, 64, 2, 2, 64, True, None),
    "gqa2-odd-T": (1, 100, 4, 2, 64, True, None),
    "gqa8-d128": (1, 70, 8, 1, 128, True, None),
    "docs": (2, 150, 4, 2, 64, True, "random"),
    "docs-d128": (1, 97, 2, 1, 128, True, "random"),
    "one-token-docs": (1, 45, 2, 1, 64, True, "singletons"),
    "T-below-block": (2, 5, 2, 1, 64, True, None),
    "bidirectional": (1, 90, 4, 4, 64, False, None),
    "bidirectional-docs": (2, 90, 4, 2, 64, False, "random"),
}


@needs_kernels
@pytest.mark.parametrize("case", CASES)
def test_attention_fp32(case):
    errors = attention_errors(*CASES[case])
    assert max(errors.values()) < 1e-4, errors


def test_the_launch_grid_folds_any_batch_within_cudas_limits():
    """Rows (batch x heads) over axes 1 and 2, each <= 65,535: every row gets a program, past the last row only
    a few (< Z) redo it, and 65,535 rows or fewer launch as before (Z = 1)."""
    for rows in [1, 7, 65_535, 65_536, 131_071, 200_003, 70_000 * 64, 65_535**2]:
        blocks, y, z = kernels._grid(9, rows)
        assert blocks == 9 and y <= kernels.MAX_GRID and z <= kernels.MAX_GRID and 0 <= y * z - rows < z
        if rows <= 200_003:
            assert {min(a + b * y, rows - 1) for a in range(y) for b in range(z)} == set(range(rows))
    assert kernels._grid(4, 65_535) == (4, 65_535, 1)


@needs_kernels
def test_attention_with_the_rows_folded(monkeypatch):
    """The kernels with rows folded over two axes (the limit lowered to 3, so 8 rows and 4 KV rows fold) equal
    float64 attention, forward and backward."""
    monkeypatch.setattr(kernels, "MAX_GRID", 3)
    assert kernels._grid(1, 8) == (1, 3, 3)
    errors = attention_errors(2, 70, 4, 2, 64, True, "random")
    assert max(errors.values()) < 1e-4, errors


@needs_kernels
def test_attention_custom_scale():
    errors = attention_errors(1, 40, 2, 1, 64, True, None, scale=0.3)
    assert max(errors.values()) < 1e-4, errors


@needs_kernels
@pytest.mark.filterwarnings("ignore:All-NaN slice")  # the interpreter's numpy, on the poisoned rows
def test_documents_skip_other_blocks():
    # Two documents split at 64, a multiple of every block size used for fp32. NaN in one document
    # may not reach the other: it would if the kernels loaded a block they claim to skip, since
    # 0 * NaN is NaN even where the mask zeroes a probability.
    B, T, H, HKV, D, split = 1, 100, 2, 1, 64, 64
    g = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(B, T, h, D, generator=g).to(DEVICE) for h in (H, HKV, HKV, H))
    doc_ids = (torch.arange(T, device=DEVICE) >= split).long().expand(B, T)

    def run(q, k, v):
        q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
        kernels.flash_attention(q, k, v, doc_ids=doc_ids).backward(do)
        return q.grad, k.grad, v.grad

    def alone(sl):  # the document on its own, in float64
        q64, k64, v64 = (x[:, sl].double().requires_grad_() for x in (q, k, v))
        reference_attention(q64, k64, v64, True, None, D ** -0.5).backward(do[:, sl].double())
        return q64.grad, k64.grad, v64.grad

    poisoned = lambda x, sl: x.clone().index_fill_(1, torch.arange(T, device=DEVICE)[sl], float("nan"))
    first, second = slice(0, split), slice(split, T)
    # keys/values of the first document are never read for queries of the second
    dq, dk, dv = run(q, poisoned(k, first), poisoned(v, first))
    for got, ref in zip((dq, dk, dv), alone(second)):
        assert rel_err(got[:, second], ref) < 1e-4
    # queries of the second document are never read for keys of the first
    dq, dk, dv = run(poisoned(q, second), k, v)
    for got, ref in zip((dk, dv), alone(first)[1:]):
        assert rel_err(got[:, first], ref) < 1e-4


def reference_rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rms_norm_errors(shape, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(DEVICE, dtype).requires_grad_()
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(DEVICE, dtype).requires_grad_()
    dy = torch.randn(*shape, generator=g).to(DEVICE, dtype)
    y = kernels.rms_norm(x, w, 1e-5)
    y.backward(dy)
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    ref = reference_rms_norm(x64, w64, 1e-5)
    ref.backward(dy.double())
    assert y.dtype == dtype and y.shape == x.shape
    return {"y": rel_err(y, ref), "dx": rel_err(x.grad, x64.grad), "dw": rel_err(w.grad, w64.grad)}


@needs_kernels
@pytest.mark.parametrize("shape", [(2, 37, 96), (300, 64)])
def test_rms_norm_fp32(shape):
    errors = rms_norm_errors(shape)
    assert max(errors.values()) < 1e-4, errors


# ----------------------------------------------------------------------------- without the kernels

def test_interpreter():
    if KERNELS:
        pytest.skip("the kernels run in this process")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, (f"TRITON_INTERPRET=1 {' '.join(cmd)} failed:\n"
                                 f"{run.stdout[-6000:]}{run.stderr[-2000:]}")


def test_document_bounds():
    ids = torch.tensor([[5, 5, 1, 1, 1, 5], [0, 1, 2, 2, 2, 2]])
    start, end = kernels.document_bounds(ids)
    assert start.tolist() == [[0, 0, 2, 2, 2, 5], [0, 1, 2, 2, 2, 2]]
    assert end.tolist() == [[2, 2, 5, 5, 5, 6], [1, 2, 6, 6, 6, 6]]
    mask = kernels.attention_mask(ids)[:, 0]
    assert mask[0, 5].tolist() == [False] * 5 + [True]  # id 5 again: a new document
    assert mask[1, 4].tolist() == [False, False, True, True, True, False]


@pytest.mark.parametrize("case", ["gqa2-odd-T", "docs", "bidirectional-docs"])
def test_torch_fallback(case, monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", False)
    errors = attention_errors(*CASES[case])
    assert max(errors.values()) < 1e-4, errors
    errors = rms_norm_errors((2, 37, 96))
    assert max(errors.values()) < 1e-4, errors


# ----------------------------------------------------------------------------- CUDA only

@needs_cuda
@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 8e-3), (torch.float16, 2e-3)])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("docs", [None, "random"])
def test_attention_low_precision(dtype, tol, D, docs):
    # tol is about 3x the error of rounding P, dS and the outputs to dtype (fp32 accumulation)
    errors = attention_errors(2, 300, 8, 2, D, True, docs, dtype=dtype)
    assert max(errors.values()) < tol, errors


@needs_cuda
@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 8e-3), (torch.float16, 2e-3)])
def test_rms_norm_low_precision(dtype, tol):
    errors = rms_norm_errors((4, 300, 2048), dtype=dtype)
    assert max(errors.values()) < tol, errors


@needs_cuda
def test_compiled_matches_eager():
    torch.manual_seed(0)
    q = torch.randn(2, 256, 8, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(2, 256, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    doc_ids = random_documents(2, 256, 4, torch.Generator().manual_seed(0)).cuda()

    def f(q, kv, w):
        out = kernels.flash_attention(kernels.rms_norm(q, w, 1e-5), kv, kv, doc_ids=doc_ids)
        return out.float().square().sum()

    eager = torch.autograd.grad(f(q, kv, w), (q, kv, w))
    compiled = torch.autograd.grad(torch.compile(f, fullgraph=True)(q, kv, w), (q, kv, w))
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-2)


@needs_kernels
def test_model_triton_matches_torch_path(monkeypatch):
    # the whole model, packed documents included: bf16 on a GPU, fp32 in the interpreter
    from model import Llama, ModelConfig

    torch.manual_seed(0)
    dtype, tol = (torch.bfloat16, 5e-2) if CUDA else (torch.float32, 1e-4)
    dim = 256 if CUDA else 64
    cfg = ModelConfig(dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=2 * dim, vocab_size=512)
    model = Llama(cfg).to(DEVICE, dtype)
    tokens = torch.randint(0, 512, (2, 97), device=DEVICE)
    doc_ids = random_documents(2, 96, 3, torch.Generator().manual_seed(0)).to(DEVICE)

    def loss_and_grads(enabled):
        monkeypatch.setattr(kernels, "ENABLED", enabled)
        model.zero_grad(set_to_none=True)
        loss = model(tokens[:, :-1], tokens[:, 1:], doc_ids=doc_ids)
        loss.backward()
        return loss.float(), {n: p.grad.float() for n, p in model.named_parameters()}

    loss, grads = loss_and_grads(True)
    loss_torch, grads_torch = loss_and_grads(False)
    assert abs(loss.item() - loss_torch.item()) < tol * abs(loss_torch.item())
    for name, g in grads.items():
        assert rel_err(g, grads_torch[name].double()) < tol, name
