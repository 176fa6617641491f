"""The timing harness of ``bench_speed.py``: round-robin trials, paired ratios, summaries, peak memory
and a summary of the machine and its load.

Nothing here knows what is being measured: a *step* is any callable that runs one batch and returns
once the work has finished (each step of ``speed_peers`` ends by reading a value back to the host).
"""

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

LOAD_AT_START = os.getloadavg()  # 1, 5 and 15-minute load averages: how busy the machine was before the run


def time_block(step, steps):
    """Wall and process-CPU seconds of ``steps`` calls of ``step``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def round_robin(steps_by_path, *, warmup, trials, steps, pause):
    """Warm every step up, then time one block of ``steps`` calls per path per trial, the paths in turn.

    Returns ``{path: [(wall, cpu), ...]}``, one pair per trial. A change in the machine's load during
    the run hits every path alike. The ``pause`` (seconds) before each block lets the previous path's
    spinning OpenMP threads go to sleep (Intel OpenMP spins 200 ms by default), so paths do not slow
    each other down.
    """
    for step in steps_by_path.values():
        for _ in range(warmup):
            step()
    times = {path: [] for path in steps_by_path}
    for _ in range(trials):
        for path, step in steps_by_path.items():
            time.sleep(pause)
            times[path].append(time_block(step, steps))
    return times


def summarise(times, images):
    """img/s (best, median, every trial) and process-CPU seconds per image from a list of (wall, cpu) blocks."""
    rates = [images / wall for wall, _ in times]
    return {
        "img_s_best": max(rates),
        "img_s_median": statistics.median(rates),
        "img_s_trials": rates,
        "cpu_s_per_img": statistics.median(cpu / images for _, cpu in times),
    }


def paired_ratio(rates, reference_rates):
    """Median over trials of (this path's img/s / the reference's img/s in the same trial)."""
    return statistics.median(a / b for a, b in zip(rates, reference_rates))


def median_or_none(values):
    """Median of the values that are not None; None if there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def peak_memory_bytes():
    """Paddle's allocator peak when Paddle computes on a GPU; otherwise the process's peak resident set size."""
    paddle = sys.modules.get("paddle")
    if paddle is not None and paddle.device.get_device().startswith("gpu"):
        return int(paddle.device.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def profile_step(title, step, steps):
    """Print paddle.profiler's time per operator (forward ops and their grad nodes) over ``steps`` calls."""
    from paddle import profiler

    print(f"\n== paddle.profiler: {title}, {steps} train step(s) ==", flush=True)
    session = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    session.start()
    for _ in range(steps):
        step()
    session.stop()
    session.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, views=profiler.SummaryView.OperatorView)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_summary(batch, image_size, threads, malloc):
    """The machine, its load at the start and at the end of the run, the settings and the framework versions."""
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START, "load_average": os.getloadavg(), "batch": batch, "image_size": image_size,
            "threads": threads, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "malloc": malloc,
            "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE")}
    for name in ("paddle", "torch"):
        if name in sys.modules:
            info[name] = sys.modules[name].__version__
    return info
