"""What ``bench_speed.py`` prints and writes: the table, the JSON file and the cost-curve plot."""

import json
import sys
from pathlib import Path

from speed_peers import REFERENCE


def format_ratio(ratio):
    return "" if ratio is None else f"{ratio:.2f}"


def print_table(result, stream=None):
    """One line per record: img/s (best, median), the paired ratio to the reference, CPU seconds per image."""
    stream = stream or sys.stdout
    records = result["records"]
    if result["mode"] == "variants":
        ref = result["reference_variant"]
        print(f"{'model':<10} {'path':<12} {'kind':<6} {'variant':<12} {'img/s (median of rounds)':>25} {'x ' + ref:>12} "
              f"{'x ' + REFERENCE + ' (same variant)':>22}", file=stream)
        for r in records:
            print(f"{r['model']:<10} {r['path']:<12} {r['kind']:<6} {r['variant']:<12} {r['img_s_median']:>25.2f} "
                  f"{format_ratio(r['ratio_to_' + ref]):>12} {format_ratio(r['ratio_to_' + REFERENCE]):>22}", file=stream)
        return
    batch, size = result["machine"]["batch"], result["machine"]["image_size"]
    print(f"{'model':<10} {'path':<12} {'kind':<6} {'batch':>5} {'size':>4} {'img/s best':>10} {'median':>8} "
          f"{'x ' + REFERENCE:>9} {'cpu s/img':>9} {'peak MiB':>9}", file=stream)
    for r in records:
        head = f"{r['model']:<10} {r['path']:<12} {r['kind']:<6} {r.get('batch', batch):>5} {r.get('image_size', size):>4}"
        if "error" in r:
            print(f"{head} {r['error']}", file=stream)
            continue
        memory = f"{r['peak_memory_mib']:.0f}" if "peak_memory_mib" in r else ""
        print(f"{head} {r['img_s_best']:>10.2f} {r['img_s_median']:>8.2f} {format_ratio(r.get('ratio_to_' + REFERENCE)):>9} "
              f"{r['cpu_s_per_img']:>9.3f} {memory:>9}", file=stream)


def write_json(result, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1))


def plot_curve(records, png, machine):
    """Training img/s and peak memory against batch size, one line per path (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    memory_kind = ""
    for path in dict.fromkeys(r["path"] for r in records):
        points = sorted(((r["batch"], r) for r in records if r["path"] == path and r["axis"] == "batch" and "error" not in r),
                        key=lambda point: point[0])
        if not points:
            continue
        memory_kind = points[0][1]["memory_kind"]
        batches = [b for b, _ in points]
        speed.plot(batches, [r["img_s_median"] for _, r in points], marker="o", label=path)
        memory.plot(batches, [r["peak_memory_mib"] for _, r in points], marker="o", label=path)
    batches = sorted({r["batch"] for r in records if r["axis"] == "batch"})
    for axis, label in ((speed, "training img/s (median)"), (memory, f"peak memory, MiB ({memory_kind})")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(batches, [str(b) for b in batches])
        axis.set_xlabel("batch size")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"GoogLeNet training, {machine['image_size']}x{machine['image_size']}, {machine['cpu']}, "
                 f"{machine['threads']} threads, 1-min load {machine['load_average_at_start'][0]:.1f} at start, "
                 f"{machine['load_average'][0]:.1f} at end", fontsize=9)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
