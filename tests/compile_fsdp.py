"""Run by tests/test_scale.py under torchrun (2 gloo ranks): 3 training steps of a small model through
common.parallelize with compile, activation checkpointing and FSDP2 all on, and again with all off (eager, the
same weights and batches). Rank 0 prints both runs' losses and dynamo's counts after each step: frames compiled
and graph breaks."""
import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import parallelize  # noqa: E402
from model import Llama, ModelConfig  # noqa: E402


def losses(compiled):
    from torch._dynamo.utils import counters
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=256, max_seq_len=64)
    torch.manual_seed(0)
    model = parallelize(Llama(cfg), SimpleNamespace(compile=compiled, activation_checkpointing=compiled),
                        dist.get_world_size(), torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(1 + dist.get_rank())
    out, seen = [], []
    for _ in range(3):
        x = torch.randint(0, 256, (2, 33), generator=data)
        doc_ids = torch.cat([torch.zeros(2, 20, dtype=torch.long), torch.ones(2, 12, dtype=torch.long)], 1)
        loss = model(x[:, :-1], x[:, 1:], doc_ids=doc_ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total)
        out.append(total.item() / dist.get_world_size())
        seen.append((sum(counters["frames"].values()), sum(counters["graph_break"].values())))
    return out, seen


def main():
    dist.init_process_group("gloo")
    eager, _ = losses(False)
    compiled, seen = losses(True)
    if dist.get_rank() == 0:
        print("eager", *eager)
        print("compiled", *compiled)
        print("dynamo", *(f"{frames}/{breaks}" for frames, breaks in seen), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
