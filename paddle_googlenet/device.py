"""Device choice, mixed precision (float16 on GPU; the CPU trains in float32) and the malloc policy of training."""

import contextlib
import ctypes
import os
import platform

from . import distributed
from .cli import notice
from .errors import UserError
from .runtime import import_paddle

paddle = import_paddle()


# glibc's mallopt() parameters (malloc.h) and the environment variables that set them at start-up.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory():
    """Make glibc's malloc serve large tensors from its heap and keep freed memory for the next step.

    By default glibc gives every allocation above 32 MiB (and, adaptively, many smaller ones) fresh
    pages from mmap and unmaps them on free, so each step pays the kernel to zero-fill its
    activations again; after this call freed memory stays in the heap for the next step, for
    somewhat more peak memory (docs/performance.md). Call it before the big allocations. Returns
    whether it took effect: not on other C libraries, and not when the user chose a policy through
    MALLOC_* variables.
    """
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in MALLOC_ENV):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**30))


class DeviceError(UserError):
    """The requested device is not available."""


def gpu_available():
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def resolve_device(choice="auto"):
    """``"gpu"`` or ``"cpu"`` for ``--device auto|cpu|gpu``; DeviceError for a GPU that is not there."""
    if choice not in ("auto", "cpu", "gpu"):
        raise DeviceError(f"--device must be auto, cpu or gpu, got {choice!r}")
    if choice == "gpu" and not gpu_available():
        built = "with" if paddle.device.is_compiled_with_cuda() else "without"
        raise DeviceError(
            f"--device gpu: no GPU is usable (this Paddle was built {built} CUDA"
            f"{', but no device is visible' if built == 'with' else '; install paddlepaddle-gpu'}). Use --device cpu."
        )
    return "gpu" if choice != "cpu" and gpu_available() else "cpu"


def select_device(choice="auto"):
    """Set and return Paddle's device: ``gpu:<local rank>`` when asked or available, else ``cpu``."""
    device = resolve_device(choice)
    if device == "gpu":
        device = f"gpu:{paddle.distributed.ParallelEnv().device_id}"
    paddle.set_device(device)
    return device


def setup_training_process(device_choice, keep_memory=True):
    """The process-wide settings of a training process: its device and, on CPU, the malloc policy; returns the device."""
    if keep_memory:
        keep_freed_memory()
    return select_device(device_choice)


class Precision:
    """Float32, or with ``amp`` on a GPU automatic mixed precision: float16 (O1) with loss scaling.

    Paddle's dygraph has no bfloat16 convolution kernels on CPU, so ``--amp`` on a CPU keeps float32
    and says so once, rather than pretending.
    """

    def __init__(self, device, amp=False):
        self.dtype = None
        self.scaler = None
        if amp and device.startswith("gpu"):
            self.dtype = "float16"
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15)
        elif amp and distributed.is_main_process():
            notice("--amp on CPU: Paddle's dygraph has no bfloat16 convolution kernels, so training stays float32 "
                   "(see docs/performance.md for the fast CPU paths)")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level="O1", dtype=self.dtype)

    def backward_and_step(self, loss, optimizer):
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.minimize(optimizer, self.scaler.scale(loss))
        optimizer.clear_grad()
