"""Run by tests/test_rl.py under torchrun (2 gloo ranks): rl.sync_weights from an FSDP2-sharded fp32 model into a
full copy, printing (from rank 0, so the two ranks' lines never interleave) per rank the model's size, its largest
tensor's, and the resident memory the sync added at its peak (Linux's VmHWM, reset just before), all in MB, and
whether the copy then equals the model."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rl  # noqa: E402
from common import parallelize  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402


def high_water_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main():
    dist.init_process_group("gloo")
    cfg = ModelConfig(dim=256, n_layers=24, n_heads=4, n_kv_heads=2, ffn_dim=1024, vocab_size=4096, max_seq_len=64)
    torch.manual_seed(0)
    full = Llama(cfg)
    torch.manual_seed(0)  # the same weights, then sharded over the ranks
    model = parallelize(Llama(cfg), rl.Config(), dist.get_world_size(), torch.device("cpu"))
    copy = Llama(cfg)
    with torch.no_grad():
        for p in copy.parameters():
            p.zero_()
    sizes = [p.numel() * 4 for p in full.parameters()]
    with open("/proc/self/clear_refs", "w") as f:  # the high-water mark starts again from what is resident now
        f.write("5")
    start = high_water_mb()
    rl.sync_weights(copy, model)
    extra = high_water_mb() - start
    equal = all(torch.equal(a, b) for a, b in zip(copy.parameters(), full.parameters()))
    row = f"sync {dist.get_rank()} {sum(sizes) / 2**20:.1f} {max(sizes) / 2**20:.1f} {extra:.1f} {equal}"
    rows = [None] * dist.get_world_size()
    dist.all_gather_object(rows, row)
    if dist.get_rank() == 0:
        print("\n".join(rows), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
