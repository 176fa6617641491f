"""Data-parallel helpers: one code path for a single process and for ``paddle.distributed`` runs."""

import numpy as np

from .runtime import import_paddle, quiet_stderr

paddle = import_paddle()
dist = paddle.distributed


def init():
    """Join the process group when started by ``paddle.distributed.launch`` or ``spawn``; return the world size.

    Paddle's messages while joining (its modified-flags banner, the TCP store's log lines) are held back,
    and shown only if joining fails.
    """
    if dist.get_world_size() > 1 and not dist.is_initialized():
        with quiet_stderr():
            dist.init_parallel_env()
    return dist.get_world_size()


def world_size():
    """Processes in the run (known from the launcher's environment before ``init``)."""
    return dist.get_world_size()


def rank():
    return dist.get_rank()


def is_main_process():
    """Rank 0 writes logs, metrics and checkpoints; the other ranks only compute."""
    return dist.get_rank() == 0


def all_reduce_sum(values):
    """Sum a list of floats over all ranks (a no-op in a single process)."""
    if dist.get_world_size() == 1:
        return list(values)
    tensor = paddle.to_tensor(list(values), dtype="float64")
    dist.all_reduce(tensor)
    return tensor.tolist()


def concat_over_ranks(arrays):
    """Concatenate this rank's list of arrays with every other rank's (in rank order)."""
    local = np.concatenate(arrays) if arrays else np.zeros((0,))
    if dist.get_world_size() == 1:
        return local
    gathered = []
    dist.all_gather_object(gathered, local)
    return np.concatenate([part for part in gathered if part.size])
