"""The process around Paddle: cores, thread count, importing Paddle and its version.

``configure_threads()`` must run before Paddle is imported anywhere in the process: ``import paddle``
pins its math library to one thread unless ``MKL_NUM_THREADS`` (or ``OMP_NUM_THREADS``) is already
set. ``train.py``, ``infer.py``, ``python -m paddle_googlenet.export`` and the benchmarks call it
first; a library user who only imports a model gets Paddle's own default. See docs/performance.md.
"""

import os
import sys
import warnings


def usable_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_process_count():
    """Processes sharing this machine in a ``paddle.distributed`` run (1 when not distributed)."""
    for name in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def default_thread_count():
    """CPU threads for one process: the usable cores divided among the local processes."""
    return max(1, usable_cores() // local_process_count())


def configure_threads(threads=None):
    """Let Paddle's convolutions (MKL's SGEMM, nearly all the parallel work) use ``threads`` threads
    (default: ``default_thread_count()``) by setting ``MKL_NUM_THREADS``, unless the user set it.

    Returns the thread count in force, or None when Paddle was already imported (too late to change).
    ``OMP_NUM_THREADS`` is left to Paddle (1): raising it changed nothing measurable and makes Paddle warn.
    """
    if "paddle" in sys.modules:
        return None
    os.environ.setdefault("MKL_NUM_THREADS", str(threads or default_thread_count()))
    return int(os.environ["MKL_NUM_THREADS"])


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


def paddle_major_version():
    """Paddle's major version; development builds (``0.0.0``) count as the newest."""
    version = import_paddle().__version__
    major = version.split(".")[0]
    return 99 if version.startswith("0.0.0") or not major.isdigit() else int(major)
