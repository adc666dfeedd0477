"""Flash attention throughput: kernels.flash_attention against torch SDPA with a fixed backend.

    python bench/attention.py             # GPU: bf16, T 1k..16k, D 64 and 128; the table goes to
                                          #      stdout and bench/results/attention.md
    python bench/attention.py --dry-run   # CPU (or GPU): tiny shapes through every path, checked
                                          #      against float64; on CPU via Triton's interpreter

TFLOP/s count the causal forward as half of 4*B*H*T^2*D and the backward as 2.5x the forward (five
matmuls to two). SDPA gets K/V already repeated to Hq heads (not every backend has GQA), made
outside the timed region. Times are medians over repeats after warm-up (CUDA events on a GPU).
"""
import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--dry-run", action="store_true", help="tiny shapes, correctness checks, no file written")
parser.add_argument("--tokens", type=int, default=16384, help="B * T of every call")
parser.add_argument("--heads", type=int, nargs=2, default=(32, 8), metavar=("HQ", "HKV"))
parser.add_argument("--out", default=None,
                    help="markdown path (default bench/results/attention.md; none in a dry run)")
args = parser.parse_args()

CUDA = torch.cuda.is_available()
if args.dry_run and not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton, by kernels
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import kernels  # noqa: E402
import triton  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
DTYPE = torch.bfloat16 if CUDA else torch.float32  # the interpreter has no bfloat16
HQ, HKV = args.heads
TOKENS, SEQ_LENS, HEAD_DIMS = args.tokens, [1024, 2048, 4096, 8192, 16384], [64, 128]
PACKED = (8192, 8)  # row length, documents per row
WARMUP, REPEAT = 5, 20
if args.dry_run:
    HQ, HKV, TOKENS, SEQ_LENS, PACKED, WARMUP, REPEAT = 4, 2, 160, [80, 160], (256, 8), 1, 2
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
DEVICE_NAME = torch.cuda.get_device_name() if CUDA else "CPU, Triton interpreter (dry run)"


def median_ms(fn):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPEAT):
        if CUDA:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def inputs(B, T, D, seed=0):
    """q, k, v (requiring grad) and an upstream gradient, (B, T, H, D) like the model's."""
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(B, T, h, D, generator=g) for h in (HQ, HKV, HKV, HQ))
    return [x.to(DEVICE, DTYPE).requires_grad_() for x in (q, k, v)] + [do.to(DEVICE, DTYPE)]


def sdpa_inputs(q, k, v, do):
    """The same tensors as SDPA wants them: (B, H, T, D), K/V repeated to Hq heads."""
    q, k, v = (x.detach().transpose(1, 2).repeat_interleave(HQ // x.shape[2], 1).contiguous()
               for x in (q, k, v))
    return [x.requires_grad_() for x in (q, k, v)] + [do.transpose(1, 2).contiguous()]


def time_fwd_bwd(name, fn, q, k, v, do):
    """(forward ms, forward+backward ms), or None where the backend refuses these inputs."""
    try:
        fwd = median_ms(lambda: fn(q, k, v))
        both = median_ms(lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), do))
    except RuntimeError as e:  # cuDNN missing, or a backend with no kernel for this device/dtype
        print(f"  {name}: skipped, {str(e).splitlines()[0][:100]}")
        return None
    print(f"  {name}: forward {fwd:.3f} ms, forward+backward {both:.3f} ms")
    return fwd, both


def flops(B, T, D):
    return 4 * B * HQ * T * T * D * 0.5  # causal: half the score matrix


def check_against_float64(B, T, D, doc_ids=None):
    """Largest relative error of the kernel's output and gradients against a float64 reference."""
    q, k, v, do = inputs(B, T, D)
    out = kernels.flash_attention(q, k, v, doc_ids=doc_ids)
    grads = torch.autograd.grad(out, (q, k, v), do)
    mask = torch.ones(T, T, dtype=torch.bool, device=DEVICE).tril().expand(B, 1, T, T)
    if doc_ids is not None:  # contiguous documents here, so equal ids mean the same document
        mask = mask & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    q64, k64, v64 = (x.detach().double().transpose(1, 2).requires_grad_() for x in (q, k, v))
    ref = F.scaled_dot_product_attention(q64, k64, v64, attn_mask=mask, enable_gqa=True)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), do.double().transpose(1, 2))
    pairs = [(out, ref.transpose(1, 2))] + [(g, r.transpose(1, 2)) for g, r in zip(grads, ref_grads)]
    return max(((a.double() - b).norm() / b.norm()).item() for a, b in pairs)


def cell(x, fmt="{:.3g}"):
    return "n/a" if x is None else fmt.format(x)


def main():
    print(f"device: {DEVICE_NAME}, {DTYPE}, Hq={HQ}, Hkv={HKV}, {TOKENS} tokens per call, causal; "
          f"torch {torch.__version__}, triton {triton.__version__}")
    T = SEQ_LENS[0] + 3  # not a multiple of any block
    docs = (torch.arange(T, device=DEVICE) // 37).expand(2, T)
    for D in HEAD_DIMS:
        errors = check_against_float64(2, T, D), check_against_float64(2, T, D, docs)
        print(f"D={D}: relative error against float64 {errors[0]:.1e} causal, {errors[1]:.1e} packed")
        if max(errors) > (2e-2 if DTYPE == torch.bfloat16 else 1e-4):
            raise SystemExit(f"flash_attention is wrong at D={D}, T={T}: relative errors {errors}")

    rows = []  # (D, T, B, {method: (fwd TFLOP/s, fwd+bwd TFLOP/s) or None})
    for D in HEAD_DIMS:
        for T in SEQ_LENS:
            B = max(1, TOKENS // T)
            print(f"D={D} T={T} B={B}")
            q, k, v, do = inputs(B, T, D)
            ms = {"triton": time_fwd_bwd("triton", kernels.flash_attention, q, k, v, do)}
            for name, backend in BACKENDS.items():
                def sdpa(q, k, v, backend=backend):
                    with sdpa_kernel(backend):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
                ms[name] = time_fwd_bwd(f"sdpa-{name}", sdpa, *sdpa_inputs(q, k, v, do))
            work = flops(B, T, D)
            tflops = {n: r and (work / r[0] / 1e9, 3.5 * work / r[1] / 1e9) for n, r in ms.items()}
            rows.append((D, T, B, tflops))
            del q, k, v, do

    pT, n_docs = PACKED
    pD, pB = HEAD_DIMS[-1], max(1, TOKENS // pT)
    print(f"packed: D={pD} T={pT} B={pB}, {n_docs} documents per row")
    q, k, v, do = inputs(pB, pT, pD)
    doc_ids = (torch.arange(pT, device=DEVICE) // (pT // n_docs)).expand(pB, pT)
    causal = time_fwd_bwd("triton causal", kernels.flash_attention, q, k, v, do)
    packed = time_fwd_bwd("triton packed", lambda q, k, v: kernels.flash_attention(q, k, v, doc_ids=doc_ids),
                          q, k, v, do)
    speedup = [c / p for c, p in zip(causal, packed)]

    def ratio(t, i):  # same FLOPs, so the TFLOP/s ratio is the inverse time ratio
        return None if t["triton"] is None or t["flash"] is None else t["triton"][i] / t["flash"][i]

    long_ratios = [ratio(t, 1) for D, T, B, t in rows if T >= 2048]
    fwd_8k = [t["triton"][0] for D, T, B, t in rows if D == 128 and T == 8192]
    targets = {
        "fwd+bwd >= 1.0x SDPA-flash at T >= 2k":
            bool(long_ratios) and None not in long_ratios and min(long_ratios) >= 1.0,
        "fwd >= 450 TFLOP/s at D=128, T=8k": bool(fwd_8k) and fwd_8k[0] >= 450,
        "packed fwd+bwd >= 3x cheaper than causal": speedup[1] >= 3.0,
    }
    header = ["D", "T", "B", "fwd triton", "fwd flash", "fwd cudnn", "fwd triton/flash",
              "fwd+bwd triton", "fwd+bwd flash", "fwd+bwd cudnn", "fwd+bwd triton/flash"]
    lines = [
        "# Flash attention: kernels.flash_attention vs torch SDPA",
        "",
        f"- device: {DEVICE_NAME}",
        f"- date: {datetime.date.today()}, torch {torch.__version__}, triton {triton.__version__}",
        f"- {DTYPE}, causal, Hq={HQ}, Hkv={HKV}, B*T={TOKENS}; TFLOP/s with causal FLOPs halved and "
        "backward = 2.5x forward; triton/flash > 1 means triton is faster",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for D, T, B, t in rows:
        cells = ([D, T, B] + [cell(t[n] and t[n][0]) for n in t] + [cell(ratio(t, 0), "{:.2f}")]
                 + [cell(t[n] and t[n][1]) for n in t] + [cell(ratio(t, 1), "{:.2f}")])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        f"Packed rows, {n_docs} documents of {pT // n_docs} tokens per row of {pT} (D={pD}, B={pB}): forward "
        f"{causal[0]:.3g} -> {packed[0]:.3g} ms ({speedup[0]:.1f}x cheaper), forward+backward "
        f"{causal[1]:.3g} -> {packed[1]:.3g} ms ({speedup[1]:.1f}x cheaper) than the same rows unpacked "
        f"(causal); ideal {n_docs}x.",
        "",
        "Targets (H100): " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}"
                                       for name, ok in targets.items())
        + (" (meaningless in a dry run)" if args.dry_run else "."),
    ]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    out = args.out or (None if args.dry_run else ROOT / "bench" / "results" / "attention.md")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
