"""Run with torchrun --nproc-per-node 2: rank 1 skips the barrier and goes on to all_reduce,
so the ranks wait in different collectives."""

import torch
import torch.distributed as dist


def sync_metrics(value):
    tensor = torch.tensor([value])
    dist.all_reduce(tensor)  # expect: rank 1
    return tensor.item()


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0:
        print("READY", flush=True)
        dist.barrier()  # expect: rank 0
    sync_metrics(float(rank))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
