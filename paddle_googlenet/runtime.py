"""The process around Paddle: cores, thread count, math-library kernels, importing Paddle and its version,
and holding back the messages it prints (``quiet_stderr``).

``configure_threads()`` must run before Paddle is imported anywhere in the process: ``import paddle``
pins its math library to one thread unless ``MKL_NUM_THREADS`` (or ``OMP_NUM_THREADS``) is already
set, and the MKL inside Paddle chooses its kernels once, when it first runs. ``train.py``,
``infer.py``, ``python -m paddle_googlenet.export`` and the benchmarks call it first; a library user
who only imports a model gets Paddle's own defaults. See docs/performance.md.
"""

import contextlib
import os
import sys
import tempfile
import warnings

# NumPy before Paddle: Paddle 2.6 imported first breaks OpenCV's PNG decoding in the same process
# (libpng reports "bad parameters to zlib", or the process crashes). The package's modules import
# this one first, and so does a rank started by ``train.py --nproc`` (it re-imports train.py, which
# imports this package, before Paddle).
import numpy  # noqa: F401  (imported for its load order)


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


def amd_cpu_with_avx2(cpuinfo="/proc/cpuinfo"):
    """True when the first CPU listed in ``cpuinfo`` is an AMD one with AVX2 (False where there is no such file)."""
    fields = {}
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    break  # the end of the first processor's block
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        return False
    return fields.get("vendor_id") == "AuthenticAMD" and "avx2" in fields.get("flags", "").split()


def configure_threads(threads=None):
    """Set up Paddle's math library (MKL) for this process; call it before Paddle is imported.

    * Threads: lets Paddle's convolutions (MKL's SGEMM, nearly all the parallel work) use ``threads``
      threads (default: ``default_thread_count()``) by setting ``MKL_NUM_THREADS``.
      ``OMP_NUM_THREADS`` is left to Paddle (1): raising it changed nothing measurable and makes Paddle warn.
    * Kernels: on an AMD CPU with AVX2, sets ``MKL_DEBUG_CPU_TYPE=5``. The MKL that Paddle bundles
      (2019) otherwise runs its generic, slower kernels on every non-Intel CPU; this variable makes it use
      its AVX2 ones (newer MKL versions ignore it and choose well by themselves).

    A variable the user set already is left as it is (``MKL_DEBUG_CPU_TYPE=`` with an empty value
    keeps MKL's own choice). Returns the thread count in force, or None when Paddle was already
    imported (too late to change anything).
    """
    if "paddle" in sys.modules:
        return None
    os.environ.setdefault("MKL_NUM_THREADS", str(threads or default_thread_count()))
    if amd_cpu_with_avx2():
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    return int(os.environ["MKL_NUM_THREADS"])


@contextlib.contextmanager
def quiet_stderr():
    """Hold back what this process writes to its standard error during the block, both through
    ``sys.stderr`` (progress bars, logging) and to file descriptor 2 (Paddle's C++ messages); it is
    shown only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        held_text = open(held.fileno(), "w", encoding="utf-8", errors="replace", closefd=False)
        os.dup2(held.fileno(), 2)
        try:
            with contextlib.redirect_stderr(held_text):
                yield
        except BaseException:
            held_text.flush()
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", errors="replace"))
            raise
        finally:
            held_text.close()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


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
