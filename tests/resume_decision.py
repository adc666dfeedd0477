"""Run by tests/test_scale.py under torchrun (2 gloo ranks): start_run on an out_dir whose checkpoints rank 1
cannot list (as on a node-local disk: its latest_checkpoint is made to find none). Prints each rank's resume
decision from rank 0; with `hidden`, rank 1 cannot see rank 0's checkpoint at all and must fail clearly."""
import os
import sys
from dataclasses import dataclass

import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


@dataclass
class Config:
    out_dir: str = ""
    seed: int = 0
    max_steps: int = 10
    dist_timeout_min: float = 5


def main():
    out_dir, hidden = sys.argv[1], sys.argv[2:] == ["hidden"]
    if os.environ["RANK"] == "1":
        common.latest_checkpoint = lambda folder: None
        if hidden:
            real = os.path.isdir
            os.path.isdir = lambda p: False if "step_" in str(p) else real(p)
    try:
        run = common.start_run(Config(out_dir=out_dir))
        rows = [None, None]
        dist.all_gather_object(rows, f"{run.rank}:{run.resume}")
        if run.rank == 0:
            print("resume", " ".join(rows), flush=True)
        dist.destroy_process_group()  # as common.launch does: without it gloo's threads can abort the exit (SIGABRT)
    except FileNotFoundError as e:
        print("error", e, flush=True)
        os._exit(3)  # the other rank would wait in a collective for this one


if __name__ == "__main__":
    main()
