"""
Evaluation speed: prompts/s and generated tokens/s of the full MATH500 few-shot run (500 four-shot prompts,
greedy) through eval.py's model wrapper, for the tiny model on CPU or the Llama-3.2-1B shapes on a GPU, random
weights (so every completion runs to max_new_tokens: the worst case).

    python bench/eval.py                        # CPU: tiny, 128 new tokens; GPU: 1B, 1024 new tokens
    python bench/eval.py --limit=16 --max_new_tokens=16   # a quick smoke run
"""
import argparse
import os
import platform
import sys
import time
from datetime import date

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import eval as E  # noqa: E402
from data import Tokenizer  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--max_new_tokens", type=int, default=1024 if cuda else 128)
    ap.add_argument("--batch_size", type=int, default=128 if cuda else 64)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    examples = E.load_benchmark("math500")[:args.limit]
    # a BPE trained here on the prompts' own text (Llama-3's tokenizer is not available offline), so the
    # model's vocabulary is that tokenizer's: on a GPU, Llama-3.2-1B's body with a small embedding
    tokenizer = Tokenizer.train([E.build_prompt(e, "math500") for e in examples], 2048)
    torch.manual_seed(0)
    cfg = ModelConfig.preset("llama3.2-1b" if cuda else "tiny", vocab_size=tokenizer.n_vocab, max_seq_len=16384)
    model = Llama(cfg).to(device, dtype).eval()
    generate = E.model_generate(model, tokenizer, args.max_new_tokens, args.batch_size, E.stop_strings("fewshot"))
    prompts = [E.build_prompt(e, "math500") for e in examples]
    prompt_tokens = sum(len(tokenizer.encode(p)) + 1 for p in prompts)
    generate(prompts[:args.batch_size])  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    completions = generate(prompts)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    new_tokens = sum(len(tokenizer.encode(c)) for c in completions)
    name = torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    params = sum(p.numel() for p in model.parameters())
    lines = ["# eval.py speed: MATH500, 4-shot, greedy\n",
             f"{name}, {date.today()}, torch {torch.__version__}, {str(dtype)[6:]}; model {params / 1e6:,.1f}M "
             f"parameters (random weights: every completion runs to max_new_tokens), batch {args.batch_size}, "
             f"longest prompts first.\n",
             "| prompts | prompt tokens | max new tokens | seconds | prompts/s | generated tokens/s |",
             "|---|---|---|---|---|---|",
             f"| {len(prompts)} | {prompt_tokens:,} | {args.max_new_tokens} | {seconds:.1f} | {len(prompts) / seconds:.2f} "
             f"| {new_tokens / seconds:,.0f} |"]
    print("\n".join(lines))
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"eval_{device}.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
