"""What a cluster run takes that a CPU run does not, tested here where it can be: precision under FSDP2's bf16
policy and in the chunked loss, the kernels' launch grid at any batch, the torch fallback's memory, compile with
activation checkpointing and FSDP2 together, preemption, resume decisions, and the memory plan."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, free_port


def torchrun(script, *args, timeout=300):
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(Path(__file__).parent / script), *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_rope_tables_stay_fp32_under_the_bf16_policy():
    """2 gloo ranks, blocks sharded with the GPU policy (bf16 parameters): attention gets bf16 activations and fp32
    cos/sin (FSDP2's default casts every floating input of a block, the tables too)."""
    line = next(x for x in torchrun("fsdp_precision.py").splitlines() if x.startswith("dtypes"))
    assert line == "dtypes [('torch.bfloat16', 'torch.float32', 'torch.float32')]", line


def test_the_chunked_loss_sums_the_lm_head_gradient_in_fp32():
    """bf16 hidden states and weight over 50 chunks: the weight's gradient is within about one bf16 rounding of
    the float64 full-logits gradient (measured 1.07x); summed per chunk in bf16, as autograd would, it is 5x."""
    import torch.nn.functional as F

    from model import token_logprobs
    torch.manual_seed(0)
    n, dim, vocab, chunks = 4096, 64, 512, 50
    h, w = torch.randn(n, dim).bfloat16(), (0.3 * torch.randn(vocab, dim)).bfloat16()
    targets = torch.randint(0, vocab, (n,))
    ref = w.double().requires_grad_()
    F.cross_entropy(h.double() @ ref.t(), targets).backward()
    one_rounding = (ref.grad.bfloat16().double() - ref.grad).norm()
    ours = w.clone().requires_grad_()
    logprobs, _ = token_logprobs(h, ours, targets, chunk_elems=n // chunks * vocab)
    (-logprobs.sum() / n).backward()
    assert ours.grad.dtype == torch.bfloat16
    assert (ours.grad.double() - ref.grad).norm() <= 1.25 * one_rounding
    summed = torch.zeros(vocab, dim, dtype=torch.bfloat16)  # the old way: each chunk's gradient added in bf16
    for hc, tc in zip(h.split(n // chunks), targets.split(n // chunks)):
        part = w.clone().requires_grad_()
        F.cross_entropy(F.linear(hc, part).float(), tc, reduction="sum").div(n).backward()
        summed += part.grad
    assert (summed.double() - ref.grad).norm() > 3 * one_rounding


def test_rl_log_probs_with_an_fp32_lm_head_product_are_closer_to_exact():
    """A bf16 model: the learner's log-probs with fp32_logits (rl.py's fp32_logprobs, the default) are nearer the
    float64 values of the same bf16 weights than with the product in bf16."""
    from model import Llama, ModelConfig
    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=64, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=2048,
                              max_seq_len=64)).bfloat16()
    tokens, targets = torch.randint(0, 2048, (4, 32)), torch.randint(0, 2048, (4, 32))
    with torch.no_grad():
        h = model.hidden(tokens, torch.arange(32)[None])
        exact = torch.log_softmax(h.double() @ model.lm_head.weight.double().t(), -1)
        exact = exact.gather(-1, targets[..., None])[..., 0]
        err = {fp32: (model.logprobs(tokens, targets, fp32_logits=fp32)[0].double() - exact).abs().max()
               for fp32 in (True, False)}
    assert err[True] < 1e-5 < err[False], err


def test_where_to_resume_is_rank_0s_decision(tmp_path):
    """Rank 1 finds no checkpoint where rank 0 finds step 4: both resume from rank 0's; a rank that cannot see that
    checkpoint at all is a clear error about a shared filesystem."""
    (tmp_path / "ckpt" / "step_000004").mkdir(parents=True)
    line = next(x for x in torchrun("resume_decision.py", str(tmp_path)).splitlines() if x.startswith("resume"))
    step = tmp_path / "ckpt" / "step_000004"
    assert line == f"resume 0:{step} 1:{step}"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(Path(__file__).parent / "resume_decision.py"),
                          str(tmp_path), "hidden"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode != 0 and "must be on a filesystem every node shares" in out.stdout, out.stdout[-2000:]


def test_grader_workers_come_from_the_cpus_this_rank_may_use(monkeypatch):
    import grader
    node = set(range(128))
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: node)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert grader.default_workers() == 8                    # 128 CPUs / 8 ranks = 16 each, capped at 8
    node = set(range(16))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert grader.default_workers() == 2                    # 16 CPUs shared by 8 ranks
    node = {3, 4, 5}                                        # pinned (SLURM's --cpus-per-task=3): already its share
    assert grader.default_workers() == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    node = set(range(16))
    assert grader.default_workers() == 8                    # one process: its CPUs, at most 8


def test_mfu_counts_attention_per_document_and_the_peak_by_device_name():
    import train
    from model import ModelConfig
    cfg = ModelConfig(dim=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=256)
    per_pair = 12 * 3 * 4 * 16  # layers x heads x head_dim, 4 multiply-adds forward (x2 FLOPs), x3 with backward
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2, 2], [5] * 10])  # documents of 3, 2, 5 and 10 tokens
    assert train.attention_flops(doc_ids, cfg) == per_pair * (6 + 3 + 15 + 55)
    matmul, attn = train.flops_per_token(cfg)
    assert attn * (10 + 1) / 2 * 10 == per_pair * 55  # one whole-window row: the causal-T count
    assert train.peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and train.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert train.peak_flops("NVIDIA H100 NVL") == 835e12 and train.peak_flops("NVIDIA H200") == 989e12
    assert train.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and train.peak_flops("Tesla T4") == 0


def test_the_torch_fallback_with_documents_and_gqa_holds_one_query_chunk_of_scores(monkeypatch):
    """kernels.ENABLED = False with packed documents and GQA, SDPA forced to its math backend (what CUDA picks for
    a mask with GQA): equal to float64 attention, forward and backward, and no saved tensor as large as the
    (B, H, T, T) scores: one chunk of queries at a time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import kernels
    from test_kernels import random_documents, reference_attention
    monkeypatch.setattr(kernels, "ENABLED", False)
    monkeypatch.setattr(kernels, "FALLBACK_QUERIES", 32)
    B, T, H, HKV, D = 2, 128, 4, 2, 16
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, T, h, D, generator=g, requires_grad=True) for h in (H, HKV, HKV))
    doc_ids = random_documents(B, T, 4, g)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):  # the largest tensor any op makes, forward and backward
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    Largest.largest = max(Largest.largest, t.numel())
            return out

    with sdpa_kernel(SDPBackend.MATH), Largest():  # backward too: its recomputation picks the same backend
        out = kernels.flash_attention(q, k, v, doc_ids=doc_ids)
        out.sum().backward()
    assert Largest.largest == B * H * 32 * T  # one chunk's scores, never (B, H, T, T)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = reference_attention(q64, k64, v64, True, doc_ids, D ** -0.5)
    ref.sum().backward()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    for x, r in ((q, q64), (k, k64), (v, v64)):
        torch.testing.assert_close(x.grad.double(), r.grad, atol=1e-4, rtol=0)
    assert kernels.sdpa_backend(q, k, v, True, None) in ("flash_attention", "efficient_attention", "math")


def test_the_plan_adds_up_by_hand_and_chooses_checkpointing_per_model_size():
    """train.py --plan on meta tensors: the sharded states are 16 bytes a parameter over the GPUs, the activations
    are the per-token count times the micro-batch's tokens and the layers; 1B at 2 x 8192 does not need
    activation checkpointing on an 80 GB GPU, 3B and 8B do. And the command runs with no GPU and no hub."""
    import re

    import train
    from configurator import configure
    cfg = configure(train.Config(), [str(ROOT / "configs/stable.py")])
    text = train.plan(cfg, 8)
    gib = {name.strip(): float(v) for name, v in re.findall(r"^  (.+?)\s+([\d.]+) GiB", text, re.M)}
    P = 1_235_814_400  # Llama-3.2-1B, tied embeddings
    assert gib["parameters, fp32 shards"] == pytest.approx(4 * P / 8 / 2**30, abs=0.005)
    assert gib["AdamW moments, fp32 shards"] == pytest.approx(8 * P / 8 / 2**30, abs=0.005)
    per_token = 2 * (6 * 2048 + 2 * 512 + 4 * 8192) + 4 * (2048 + 512)
    assert gib["activations, no checkpointing"] == pytest.approx(per_token * 2 * 8192 * 16 / 2**30, abs=0.005)
    assert "activation_checkpointing=False (not needed)" in text and "this config has False" in text
    for preset in ("llama3.2-3b", "llama3.1-8b"):
        big = configure(train.Config(), [str(ROOT / "configs/stable.py"), "--init_from=", f"--model={preset}"])
        assert "activation_checkpointing=True (needed)" in train.plan(big, 8), preset
    out = subprocess.run([sys.executable, "train.py", "configs/stable.py", "--plan"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0 and "tokens: 4,194,304 a step = 8 GPUs x 32 micro-batches x 2 x 8192" in out.stdout


def test_compile_activation_checkpointing_and_fsdp2_together_equal_eager():
    """2 gloo ranks, the torch path: 3 steps with compile + activation checkpointing + FSDP2 give the eager run's
    losses; dynamo compiles in the first step only (no recompiles after it) and breaks no graph."""
    out = torchrun("compile_fsdp.py", timeout=600).splitlines()
    eager, compiled = ([float(v) for v in next(x for x in out if x.startswith(k + " ")).split()[1:]]
                       for k in ("eager", "compiled"))
    assert compiled == pytest.approx(eager, rel=1e-5) and eager[0] != eager[-1]
    counts = next(x for x in out if x.startswith("dynamo ")).split()[1:]
    frames, breaks = zip(*(c.split("/") for c in counts))
    assert int(frames[0]) > 0 and len(set(frames)) == 1 and set(breaks) == {"0"}, counts
