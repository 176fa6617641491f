"""paddle-googlenet: the classic paddle.v2 image classifiers (GoogLeNet, AlexNet, VGG, ResNet) on PaddlePaddle 3.x.

Importing the package makes Paddle use the machine's cores: ``import paddle`` pins itself to one
thread unless told otherwise, so ``MKL_NUM_THREADS`` (the convolutions' SGEMM, nearly all the parallel
work) is set here, before Paddle is imported anywhere, and split between the local processes of a
distributed run. ``OMP_NUM_THREADS`` is left to Paddle (1): raising it changed nothing measurable
(docs/performance.md) and makes Paddle print a warning.
"""

import os
import sys
import warnings

__version__ = "0.1.0"


def _local_process_count():
    """Processes sharing this machine in a ``paddle.distributed`` run (1 when not distributed)."""
    for name in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def default_thread_count():
    """CPU threads for one process: the usable cores divided among the local processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // _local_process_count())


def _use_all_cores():
    if "paddle" in sys.modules:  # too late: Paddle has already fixed its thread count
        return
    os.environ.setdefault("MKL_NUM_THREADS", str(default_thread_count()))


_use_all_cores()


def import_paddle():
    """Import Paddle, or fail with a message naming the two packages that provide it."""
    warnings.filterwarnings("ignore", message="No ccache found")  # noise from paddle.utils.cpp_extension
    try:
        import paddle
    except ImportError as exc:  # pragma: no cover - exercised only without Paddle
        raise ImportError(
            "paddle-googlenet needs PaddlePaddle, which is not installed. Install the CPU build with "
            "`pip install paddlepaddle` (or `pip install -e \".[cpu]\"` from this repository), or the "
            "CUDA build with `pip install paddlepaddle-gpu` (see https://www.paddlepaddle.org.cn/install)."
        ) from exc
    return paddle
