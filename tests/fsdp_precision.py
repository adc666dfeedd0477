"""Run by tests/test_scale.py under torchrun (2 gloo ranks): a model sharded with the GPU's FSDP2 mixed-precision
policy (bf16 parameters), one forward pass; prints, from rank 0, the dtypes of the activations and of RoPE's cos and
sin as each block's attention receives them."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402
from common import mixed_precision  # noqa: E402


def main():
    dist.init_process_group("gloo")
    from torch.distributed.fsdp import fully_shard
    cfg = M.ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=256, max_seq_len=64)
    torch.manual_seed(0)
    model = M.Llama(cfg)
    policy = mixed_precision(torch.device("cuda"))  # the policy train.py and rl.py use on GPUs; built, not run there
    for block in model.layers:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    seen, rope = [], M.apply_rope

    def watched(x, cos, sin):
        seen.append((str(x.dtype), str(cos.dtype), str(sin.dtype)))
        return rope(x, cos, sin)

    M.apply_rope = watched
    model(torch.randint(0, 256, (2, 16)))
    if dist.get_rank() == 0:
        print("dtypes", sorted(set(seen)), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
