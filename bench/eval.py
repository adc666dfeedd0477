"""
Evaluation speed: prompts/s and generated tokens/s of the full MATH500 few-shot run (500 four-shot prompts,
greedy) through eval.py's model wrapper: the miniature's model on CPU, the Llama-3.2-1B shapes on a GPU. Random
weights, so no completion stops early: every one runs to max_new_tokens, the worst case of a real run.
Writes its row into bench/results/eval.md, keeping the rows of other devices.

    python bench/eval.py                 # GPU: 1B, 1024 new tokens as eval.py; CPU: the miniature's, 128
    python bench/eval.py --limit=16 --max_new_tokens=16 --repeats=1 --out=/tmp/eval.md   # a quick smoke run
"""
import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import eval as E  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402

HEADER = ["# eval.py speed: MATH500, 4-shot, greedy", "",
          "Random weights (every completion runs to max new tokens), prompts longest first, a BPE of 2,048 tokens "
          "trained on the prompts (Llama-3's is not available offline), so the 1B row is Llama-3.2-1B's body with a "
          "small vocabulary. Seconds: the median of the repeats after a warm-up batch.", "",
          "| device | model | dtype | prompts | prompt tokens | max new tokens | batch | seconds | prompts/s "
          "| generated tokens/s | date, torch |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama3.2-1b" if cuda else "miniature", help="a model.py preset")
    ap.add_argument("--max_new_tokens", type=int, default=1024 if cuda else 128)
    ap.add_argument("--batch_size", type=int, default=128 if cuda else 64)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "eval.md"))
    args = ap.parse_args()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    prompts = [E.build_prompt(e, "math500") for e in E.load_benchmark("math500")[:args.limit]]
    tokenizer = Tokenizer.train(prompts, 2048)
    torch.manual_seed(0)
    cfg = ModelConfig.preset(args.model, vocab_size=tokenizer.n_vocab, bos_id=tokenizer.bos_id,
                             eos_id=tokenizer.eos_id, max_seq_len=16384)
    model = Llama(cfg).to(device, dtype).eval()
    generate = E.model_generate(model, tokenizer, args.max_new_tokens, args.batch_size, E.stop_strings("fewshot"))
    prompt_tokens = sum(len(tokenizer.encode(p)) + 1 for p in prompts)

    generate(prompts[:args.batch_size])  # warm-up: allocator, kernels
    times = []
    for _ in range(args.repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(prompts)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"{times[-1]:.1f} s", flush=True)
    seconds, new_tokens = statistics.median(times), sum(generate.new_tokens)

    name = torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    params = sum(p.numel() for p in model.parameters())
    row = (f"| {name} | {args.model} ({params / 1e6:,.1f}M) | {str(dtype)[6:]} | {len(prompts)} | {prompt_tokens:,} "
           f"| {args.max_new_tokens} | {args.batch_size} | {seconds:.1f} | {len(prompts) / seconds:.2f} "
           f"| {new_tokens / seconds:,.0f} | {date.today()}, {torch.__version__} |")
    print(row)
    others = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            others = [l.rstrip("\n") for l in f if l.startswith("| ") and not l.startswith(("| device", f"| {name} |"))]
    with open(args.out, "w") as f:
        f.write("\n".join(HEADER + others + [row]) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
