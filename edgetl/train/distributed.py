"""torchrun as the engine across processes, GPUs and machines: which rank this is, and the
two collectives feature extraction needs (a broadcast of the work list and a barrier).

`edgetl finetune --nproc N` starts `torchrun --standalone --nproc-per-node N -m edgetl
finetune ...`; a user's own `torchrun --nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT
-m edgetl finetune ...` runs across machines (with a --cache-dir every node can read). gloo
on CPUs, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """This rank's GPU when the run is on CUDA (one GPU per local rank)."""
        if requested.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return requested

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


def join() -> Group | None:
    """The process group when started by torchrun (WORLD_SIZE > 1), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def leave(group: Group | None, failed: bool = False) -> None:
    """Every rank done: a barrier, then the group closed. `failed`: closed at once."""
    if group is not None and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()
