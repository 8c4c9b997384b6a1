"""Run with torchrun --nproc-per-node 2: rank 1 finds nothing to do and returns before
joining the process group; rank 0 waits for it forever."""
import os
import sys

import torch
import torch.distributed as dist


def shard_for(rank):
    return [] if rank == 1 else [1.0, 2.0]


def main():
    rank = int(os.environ["RANK"])
    shard = shard_for(rank)
    if not shard:
        return
    print("READY", flush=True)
    dist.init_process_group("gloo")  # expect: rank 0
    total = torch.tensor([sum(shard)])
    dist.all_reduce(total)
    print(total)


if __name__ == "__main__":
    sys.exit(main())
