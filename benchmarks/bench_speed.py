#!/usr/bin/env python
"""Training and evaluation speed of paddle-googlenet against ``paddle.vision.models`` (and PyTorch if installed).

Three modes, all printing a table and writing JSON with ``--json PATH``:

``compare`` (the default)
    Training img/s (forward, loss with the auxiliary heads for GoogLeNet, backward, Momentum step)
    and evaluation img/s of each model under each *path* (``ours``, ``vision``, ``torch``, ...; see
    ``--list-paths``), at one batch and image size. The paths run round-robin, one timed block each
    per trial, so a change in machine load hits them all alike; ratios to the reference path are
    taken trial by trial and their median is reported, with the best and median img/s.

``curve``
    Training img/s and peak memory against batch size (at ``--image-size``) and against image size
    (at ``--batch``), one fresh process per point so that each peak is its own: peak RSS on CPU,
    Paddle's allocator peak (``max_memory_allocated``) on GPU. ``--plot PNG`` draws img/s and memory
    against batch size for each path.

``variants``
    Settings that only take effect at process start (thread environment variables, oneDNN flags,
    data-parallel processes): each variant runs ``compare`` in a child process, variants alternate
    for ``--rounds`` rounds, and every variant's img/s is divided by the first variant's of the same
    round.

Examples::

    python benchmarks/bench_speed.py --models googlenet alexnet vgg16 resnet50 --json speed.json
    python benchmarks/bench_speed.py --models googlenet --paths ours vision ours-static-onednn torch
    python benchmarks/bench_speed.py curve --paths ours vision torch --plot docs/img/throughput_vs_batch.png
    python benchmarks/bench_speed.py variants --variants omp-mkl mkl-only one-thread dp-2x1

On a machine shared with other work, trust the ratios (measured interleaved) more than the
absolute figures, and repeat a run before believing a difference under about 1.2x.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD_AT_START = os.getloadavg()  # 1, 5 and 15-minute load averages: how busy the machine was before the run
MODELS = ("googlenet", "alexnet", "vgg16", "resnet50")
AUX_WEIGHT = 0.3
BF16_FP32_OPS = {"elementwise_add", "relu", "pool2d", "max_pool2d_with_index", "concat", "reshape2", "split"}
VISION_224_ONLY = ("googlenet", "alexnet")  # paddle.vision's fc sizes are fixed for 224x224 input

# What paddle_googlenet.device.keep_freed_memory() sets, as environment variables read at process start.
HEAP_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**30)}

# Settings read once at process start, for ``variants`` (environment of the child, number of processes).
VARIANTS = {
    "omp-mkl": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}"}, 1),
    "mkl-only": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "{t}"}, 1),
    "one-thread": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, 1),
    "blocktime-0": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}", "KMP_BLOCKTIME": "0"}, 1),
    "onednn-flag": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}", "FLAGS_use_mkldnn": "1"}, 1),
    "dp-2x1": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, 2),
    "heap-malloc": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "{t}", **HEAP_MALLOC}, 1),
    "dp-2x1-heap": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **HEAP_MALLOC}, 2),
}


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Training/evaluation img/s of paddle-googlenet vs paddle.vision.models (and PyTorch).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("mode", nargs="?", default="compare", choices=("compare", "curve", "variants", "point"),
                        help="compare: paths side by side; curve: cost against batch and image size; variants: start-up settings")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to measure")
    parser.add_argument("--paths", nargs="+", help="implementations to measure (default: ours vision, plus torch when installed); see --list-paths")
    parser.add_argument("--list-paths", action="store_true", help="print the available paths and exit")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width")
    parser.add_argument("--num-classes", type=int, default=102, help="classifier outputs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per path before the trials")
    parser.add_argument("--trials", type=int, default=5, help="timed blocks per path (round-robin over the paths)")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed block")
    parser.add_argument("--no-eval", action="store_true", help="measure training only")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before each timed block (lets spinning OpenMP threads sleep)")
    parser.add_argument("--threads", type=int, help="CPU threads (OMP_NUM_THREADS and MKL_NUM_THREADS; default: the usable cores)")
    parser.add_argument("--nproc", type=int, default=1, help="compare: data-parallel processes (CPU: gloo, threads split; dygraph paths only)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU when Paddle sees one")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc at its defaults (by default every path runs with freed memory kept for reuse, as train.py does)")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--profile", action="store_true", help="compare: print paddle.profiler's operator table of each Paddle path's train step")
    curve = parser.add_argument_group("curve")
    curve.add_argument("--curve-batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64], help="batch sizes (at --image-size)")
    curve.add_argument("--curve-sizes", nargs="+", type=int, default=[64, 96, 128, 160, 224, 299], help="image sizes (at --batch)")
    curve.add_argument("--plot", metavar="PNG", help="draw img/s and peak memory against batch size")
    var = parser.add_argument_group("variants")
    var.add_argument("--variants", nargs="+", default=["omp-mkl", "mkl-only", "dp-2x1"], choices=sorted(VARIANTS),
                     help="start-up settings to compare; the first is the reference")
    var.add_argument("--rounds", type=int, default=3, help="variants: alternating rounds")
    return parser


def apply_thread_environment(threads):
    """Fix the thread count before Paddle (or torch) is imported; both read it only once."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


# ----------------------------------------------------------------------------------------------
# Paths: each builds (train_step, eval_step) for one model; a step runs one batch and returns when done.
# ----------------------------------------------------------------------------------------------

def import_paddle():
    sys.path.insert(0, str(REPO))
    import paddle_googlenet  # noqa: F401  (sets the thread count before Paddle is imported)

    return paddle_googlenet.import_paddle()


def apply_allocator_policy(args):
    """Keep freed memory for reuse as train.py does (for every path of the process alike), unless --system-malloc."""
    if not args.system_malloc:
        import_paddle()
        from paddle_googlenet.device import keep_freed_memory

        keep_freed_memory()


def paddle_batch(paddle, batch, image_size, num_classes, data_format="NCHW"):
    shape = [batch, 3, image_size, image_size] if data_format == "NCHW" else [batch, image_size, image_size, 3]
    images = paddle.randn(shape, dtype="float32")
    labels = paddle.randint(0, num_classes, [batch], dtype="int64")
    return images, labels


def paddle_loss(paddle, outputs, labels):
    """Cross-entropy of the main head plus 0.3 x each auxiliary head's (GoogLeNet returns three heads)."""
    F = paddle.nn.functional
    if isinstance(outputs, (tuple, list)):
        main, *aux = outputs
        return F.cross_entropy(main, labels) + AUX_WEIGHT * sum(F.cross_entropy(a, labels) for a in aux)
    return F.cross_entropy(outputs, labels)


def momentum(paddle, parameters):
    return paddle.optimizer.Momentum(0.001, 0.9, parameters=parameters, weight_decay=paddle.regularizer.L2Decay(5e-4))


def dygraph_steps(paddle, model, images, labels, wrap=None):
    """Train and eval steps of a dygraph model (``wrap``: e.g. ``paddle.jit.to_static``, ``DataParallel``)."""
    runner = wrap(model) if wrap else model
    optimizer = momentum(paddle, model.parameters())

    def train_step():
        model.train()
        loss = paddle_loss(paddle, runner(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss)

    @paddle.no_grad()
    def eval_step():
        model.eval()
        outputs = runner(images)  # paddle.vision's GoogLeNet returns its three heads in eval mode too
        return float((outputs[0] if isinstance(outputs, (tuple, list)) else outputs).mean())

    return train_step, eval_step


def ours(name, batch, image_size, num_classes, wrap=None):
    paddle = import_paddle()
    from paddle_googlenet.models import get_model

    model = get_model(name, num_classes=num_classes)
    return dygraph_steps(paddle, model, *paddle_batch(paddle, batch, image_size, num_classes), wrap)


def vision(name, batch, image_size, num_classes, wrap=None):
    if name in VISION_224_ONLY and image_size != 224:
        print(f"note: paddle.vision's {name} accepts only 224x224 input; the vision path is skipped", file=sys.stderr)
        return None
    paddle = import_paddle()
    model = getattr(paddle.vision.models, name)(num_classes=num_classes)
    return dygraph_steps(paddle, model, *paddle_batch(paddle, batch, image_size, num_classes), wrap)


def ours_nhwc(name, batch, image_size, num_classes):
    """Our GoogLeNet switched to channels-last (NHWC) layer by layer (googlenet only)."""
    if name != "googlenet":
        return None
    paddle = import_paddle()
    from paddle_googlenet.models import get_model

    model = with_channels_last(get_model(name, num_classes=num_classes))
    return dygraph_steps(paddle, model, *paddle_batch(paddle, batch, image_size, num_classes, data_format="NHWC"))


def with_channels_last(model):
    """Prototype: our GoogLeNet computing in NHWC (convolutions, pools, concatenation and aux heads)."""
    paddle = import_paddle()
    from paddle_googlenet.models.googlenet import Inception, InceptionAux

    F = paddle.nn.functional
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            layer._data_format, layer._channel_dim = "NHWC", 3
        elif isinstance(layer, (paddle.nn.MaxPool2D, paddle.nn.AvgPool2D)):
            layer.data_format = "NHWC"
        elif isinstance(layer, paddle.nn.AdaptiveAvgPool2D):
            layer._data_format = "NHWC"

    def inception_forward(self, x):
        branches = [self.conv1(x), self.conv3(self.conv3r(x)), self.conv5(self.conv5r(x)), self.proj(self.pool(x))]
        return paddle.concat(branches, axis=3)

    def aux_forward(self, x):
        x = self.pool(x) if x.shape[1] == self.LEGACY_MAP_SIZE else F.adaptive_avg_pool2d(x, 4, data_format="NHWC")
        return self.fc2(self.fc1(self.conv(x).flatten(1)))

    for layer in model.sublayers():
        if isinstance(layer, Inception):
            layer.forward = inception_forward.__get__(layer)
        elif isinstance(layer, InceptionAux):
            layer.forward = aux_forward.__get__(layer)
    return model


def ours_jit(name, batch, image_size, num_classes):
    paddle = import_paddle()
    return ours(name, batch, image_size, num_classes, wrap=paddle.jit.to_static)


def ours_static(name, batch, image_size, num_classes, onednn=False, bf16=False):
    """The whole train step as one classic ("old IR") static program, optionally with oneDNN convolutions.

    Paddle reaches its oneDNN convolutions only from static programs (dygraph and ``to_static``
    run im2col + MKL SGEMM whatever the flags). ``FLAGS_use_mkldnn`` on a whole training program
    fails (``pool2d_grad``, ``elementwise_add_grad`` raise ``dnnl::error``; a PIR program segfaults),
    so only ``conv2d`` and ``conv2d_grad`` are marked ``use_mkldnn`` here. ``bf16``: the static AMP
    rewrite runs the convolutions in bfloat16 (oneDNN) and keeps the other ops, which have no CPU
    bfloat16 kernels (``elementwise_add`` fails on bfloat16 input), in float32 with casts between.
    """
    paddle = import_paddle()
    from paddle_googlenet.models import get_model

    old_ir = getattr(paddle.pir_utils, "OldIrGuard", contextlib.nullcontext)  # Paddle 2.6 builds old IR anyway
    with old_ir(), static_mode(paddle):
        main, startup = paddle.static.Program(), paddle.static.Program()
        with paddle.static.program_guard(main, startup):
            images = paddle.static.data("images", [batch, 3, image_size, image_size], "float32")
            labels = paddle.static.data("labels", [batch], "int64")
            model = get_model(name, num_classes=num_classes)
            model.train()
            outputs = model(images)
            logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            eval_program = main.clone(for_test=True)  # dropout off; pruned to the main logits when run
            loss = paddle_loss(paddle, outputs, labels)
            optimizer = momentum(paddle, None)
            if bf16:
                amp = paddle.static.amp.bf16
                lists = amp.AutoMixedPrecisionListsBF16(custom_bf16_list={"conv2d"}, custom_fp32_list=BF16_FP32_OPS)
                optimizer = amp.decorate_bf16(optimizer, amp_lists=lists, use_bf16_guard=False, use_pure_bf16=False)
            optimizer.minimize(loss)
        for program, op_types in ((main, ("conv2d", "conv2d_grad")), (eval_program, ("conv2d",))):
            for op in program.global_block().ops:
                if onednn and op.type in op_types:
                    op._set_attr("use_mkldnn", True)
        place = paddle.CUDAPlace(0) if paddle.device.get_device().startswith("gpu") else paddle.CPUPlace()
        executor, scope = paddle.static.Executor(place), paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            executor.run(startup)
    image_batch, label_batch = (t.numpy() for t in paddle_batch(paddle, batch, image_size, num_classes))

    def run(program, feed, fetch):
        with old_ir(), static_mode(paddle), paddle.static.scope_guard(scope):
            return float(executor.run(program, feed=feed, fetch_list=[fetch], use_prune=program is eval_program)[0].mean())

    def train_step():
        return run(main, {"images": image_batch, "labels": label_batch}, loss)

    def eval_step():
        return run(eval_program, {"images": image_batch}, logits.name)

    return train_step, None if bf16 else eval_step  # the eval program is cloned before the bf16 rewrite


@contextlib.contextmanager
def static_mode(paddle):
    paddle.enable_static()
    try:
        yield
    finally:
        paddle.disable_static()


def ours_static_onednn(name, batch, image_size, num_classes):
    return ours_static(name, batch, image_size, num_classes, onednn=True)


def ours_static_onednn_bf16(name, batch, image_size, num_classes):
    return ours_static(name, batch, image_size, num_classes, onednn=True, bf16=True)




def torch_steps(name, batch, image_size, num_classes, channels_last=False, bf16=False):
    """PyTorch GoogLeNet of our architecture (the only torch model here); eager, optionally NHWC and bf16 autocast."""
    if name != "googlenet":
        return None
    import torch

    device = "cuda" if torch.cuda.is_available() and os.environ.get("BENCH_DEVICE") == "gpu" else "cpu"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = torch_googlenet(num_classes).to(device=device, memory_format=memory_format)
    images = torch.randn(batch, 3, image_size, image_size, device=device).to(memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    autocast_dtype = torch.bfloat16 if device == "cpu" else torch.float16

    def autocast():
        return torch.autocast(device, dtype=autocast_dtype, enabled=bf16)

    def train_step():
        model.train()
        with autocast():
            main, aux1, aux2 = model(images)
            F = torch.nn.functional
            loss = F.cross_entropy(main, labels) + AUX_WEIGHT * (F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()

    @torch.no_grad()
    def eval_step():
        model.eval()
        with autocast():
            return float(model(images).float().mean())

    return train_step, eval_step


def torch_cl(name, batch, image_size, num_classes):
    return torch_steps(name, batch, image_size, num_classes, channels_last=True)


def torch_bf16_cl(name, batch, image_size, num_classes):
    return torch_steps(name, batch, image_size, num_classes, channels_last=True, bf16=True)


PATHS = {
    "ours": (ours, "paddle-googlenet, dygraph"),
    "vision": (vision, "paddle.vision.models, dygraph (the reference)"),
    "ours-nhwc": (ours_nhwc, "paddle-googlenet, dygraph, channels-last (NHWC) layers (googlenet only)"),
    "ours-jit": (ours_jit, "paddle-googlenet, paddle.jit.to_static model, dygraph optimizer"),
    "ours-static": (ours_static, "paddle-googlenet, whole step as one static program (classic IR)"),
    "ours-static-onednn": (ours_static_onednn, "as ours-static, conv2d and conv2d_grad on oneDNN"),
    "ours-static-onednn-bf16": (ours_static_onednn_bf16, "ours-static-onednn with bfloat16 convolutions (static AMP rewrite; training only)"),
    "torch": (torch_steps, "PyTorch eager, our GoogLeNet architecture (googlenet only)"),
    "torch-cl": (torch_cl, "PyTorch eager, channels_last"),
    "torch-bf16-cl": (torch_bf16_cl, "PyTorch eager, channels_last + bfloat16 autocast (float16 on GPU)"),
}
REFERENCE = "vision"


def torch_googlenet(num_classes):
    """Our legacy GoogLeNet in PyTorch: ceil-mode pools, ReLU on every conv, 2048-wide aux fc, both aux heads."""
    import torch
    from torch import nn

    def conv(cin, cout, k, stride=1, padding=0):
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding), nn.ReLU(inplace=True))

    def pool(k, s, padding=0):
        return nn.MaxPool2d(k, s, padding, ceil_mode=True)

    class Inception(nn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, proj):
            super().__init__()
            self.b1 = conv(cin, c1, 1)
            self.b3 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3, padding=1))
            self.b5 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5, padding=2))
            self.bp = nn.Sequential(pool(3, 1, 1), conv(cin, proj, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)

    class Aux(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.features = nn.Sequential(nn.AvgPool2d(5, 3, ceil_mode=True), conv(cin, 128, 1), nn.Flatten())
            self.fc1 = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(inplace=True), nn.Dropout(0.7))
            self.fc2 = nn.Linear(1024, num_classes)

        def forward(self, x):
            if x.shape[-1] != 14:
                x = nn.functional.adaptive_avg_pool2d(x, 4)
                return self.fc2(self.fc1(self.features[1:](x)))
            return self.fc2(self.fc1(self.features(x)))

    import_paddle()
    from paddle_googlenet.models.googlenet import INCEPTION_CONFIGS

    class GoogLeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(3, 64, 7, 2, 3), pool(3, 2), conv(64, 64, 1), conv(64, 192, 3, padding=1), pool(3, 2))
            c = INCEPTION_CONFIGS
            self.stage3 = nn.Sequential(Inception(*c["ince3a"]), Inception(*c["ince3b"]), pool(3, 2), Inception(*c["ince4a"]))
            self.stage4 = nn.Sequential(Inception(*c["ince4b"]), Inception(*c["ince4c"]), Inception(*c["ince4d"]))
            self.stage5 = nn.Sequential(Inception(*c["ince4e"]), pool(3, 2), Inception(*c["ince5a"]), Inception(*c["ince5b"]))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(1024, num_classes))
            self.aux1, self.aux2 = Aux(512), Aux(528)

        def forward(self, x):
            x = self.stage3(self.stem(x))
            aux1 = self.aux1(x) if self.training else None
            x = self.stage4(x)
            aux2 = self.aux2(x) if self.training else None
            logits = self.head(self.stage5(x))
            return (logits, aux1, aux2) if self.training else logits

    return GoogLeNet()


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def time_block(step, steps):
    """Wall and process-CPU seconds of ``steps`` calls (each ends with a host read, so it has finished)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def round_robin(steps_by_path, args):
    """Warm every path up, then time one block per path per trial, in turn; return {path: [(wall, cpu), ...]}.

    The short pause before each block lets the previous path's spinning OpenMP threads go to sleep
    (Intel OpenMP spins 200 ms by default), so paths do not slow each other down.
    """
    for step in steps_by_path.values():
        for _ in range(args.warmup):
            step()
    times = {path: [] for path in steps_by_path}
    for _ in range(args.trials):
        for path, step in steps_by_path.items():
            time.sleep(args.pause)
            times[path].append(time_block(step, args.steps))
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


def profile_step(model, path, step, steps):
    """Print the time per Paddle operator (forward ops and their grad nodes) over ``steps`` training steps."""
    from paddle import profiler

    print(f"\n== paddle.profiler: {model} {path}, {steps} train step(s) ==", flush=True)
    session = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    session.start()
    for _ in range(steps):
        step()
    session.stop()
    session.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, views=profiler.SummaryView.OperatorView)


def peak_memory_bytes():
    """Allocator peak on a GPU; otherwise the process's peak resident set size."""
    paddle = sys.modules.get("paddle")
    if paddle is not None and paddle.device.get_device().startswith("gpu"):
        return int(paddle.device.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------

def select_device(choice):
    paddle = import_paddle()
    gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if choice == "gpu" and not gpu:
        raise SystemExit("bench_speed.py: --device gpu, but this Paddle sees no GPU")
    device = "gpu" if gpu and choice != "cpu" else "cpu"
    paddle.set_device(device)
    os.environ["BENCH_DEVICE"] = device  # the torch paths follow Paddle's choice
    return device


def build_paths(model, paths, args, batch=None, wrap=None):
    """{path: (train_step, eval_step)} for the paths that support ``model``."""
    built = {}
    for path in paths:
        factory = PATHS[path][0]
        steps = factory(model, batch or args.batch, args.image_size, args.num_classes, **({"wrap": wrap} if wrap else {}))
        if steps is not None:
            built[path] = steps
    return built


def measure_model(model, args, batch=None, wrap=None, images_per_step=None):
    """Records (one per path and kind) for one model, with ratios to the reference path when it ran."""
    built = build_paths(model, args.paths, args, batch, wrap)
    images = (images_per_step or args.batch) * args.steps
    records = []
    for kind, index in (("train", 0), ("eval", 1)):
        if kind == "eval" and args.no_eval:
            continue
        times = round_robin({path: steps[index] for path, steps in built.items() if steps[index] is not None}, args)
        summaries = {path: summarise(blocks, images) for path, blocks in times.items()}
        for path, summary in summaries.items():
            reference = summaries.get(REFERENCE)
            ratio = paired_ratio(summary["img_s_trials"], reference["img_s_trials"]) if reference else None
            records.append({"model": model, "path": path, "kind": kind, "ratio_to_" + REFERENCE: ratio, **summary})
    if getattr(args, "profile", False):
        for path, (train_step, _) in built.items():
            if not path.startswith("torch"):
                profile_step(model, path, train_step, args.steps)
    del built
    import gc

    gc.collect()
    return records


def compare(args):
    apply_allocator_policy(args)
    device = select_device(args.device)
    if args.nproc > 1:
        return data_parallel_compare(args, device)
    records = []
    for model in args.models:
        records += measure_model(model, args)
    return {"mode": "compare", "device": device, "records": records}


def _data_parallel_worker(args):
    apply_allocator_policy(args)
    paddle = import_paddle()
    paddle.distributed.init_parallel_env()
    records = []
    for model in args.models:
        records += measure_model(model, args, batch=args.batch // args.nproc, wrap=paddle.DataParallel, images_per_step=args.batch)
    return records


def data_parallel_compare(args, device):
    """``--nproc N``: N DataParallel processes (threads split between them on CPU), each with batch / N."""
    if args.batch % args.nproc:
        raise SystemExit(f"bench_speed.py: --batch {args.batch} is not divisible by --nproc {args.nproc}")
    unsupported = [p for p in args.paths if p not in ("ours", "vision")]
    if unsupported:
        raise SystemExit(f"bench_speed.py: --nproc supports the dygraph paths ours and vision, not {', '.join(unsupported)}")
    paddle = import_paddle()
    if device == "cpu":
        threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        if not os.environ.get("BENCH_KEEP_THREADS"):
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, threads // args.nproc))
    args.no_eval = True  # evaluation is not data-parallel here
    context = paddle.distributed.spawn(_data_parallel_worker, args=(args,), nprocs=args.nproc, join=True)
    records = context.return_queues[0].get()
    for record in records:
        record["nproc"] = args.nproc
    return {"mode": "compare", "device": device, "nproc": args.nproc, "records": records}


def point(args):
    """One path, one model, one batch and image size, in a fresh process: img/s and peak memory (for ``curve``)."""
    apply_allocator_policy(args)
    device = select_device(args.device)
    args.no_eval = True
    start_peak = peak_memory_bytes()
    records = measure_model(args.models[0], args)
    for record in records:
        record.update(batch=args.batch, image_size=args.image_size, peak_memory_mib=peak_memory_bytes() / 2**20,
                      startup_memory_mib=start_peak / 2**20, memory_kind="allocator peak" if device == "gpu" else "peak RSS")
    return {"mode": "point", "device": device, "records": records}


def child_command(args, mode, system_malloc=None, **overrides):
    """The command line of a child run of this script with the given settings."""
    settings = {"models": args.models, "paths": args.paths, "batch": args.batch, "image_size": args.image_size,
                "num_classes": args.num_classes, "warmup": args.warmup, "trials": args.trials, "steps": args.steps,
                "device": args.device, "pause": args.pause, "nproc": 1, **overrides}
    command = [sys.executable, str(Path(__file__).resolve()), mode]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        command += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    if args.no_eval or mode == "point":
        command.append("--no-eval")
    if args.system_malloc if system_malloc is None else system_malloc:
        command.append("--system-malloc")
    return command


def run_child(command, env=None):
    """Run a child of this script; return its JSON, or {"error": ...} if it failed (e.g. out of memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        done = subprocess.run(command + ["--json", str(out)], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"exit code {done.returncode}: {' | '.join(tail)}"}
        return json.loads(out.read_text())


def curve(args):
    """img/s and peak memory against batch size, then against image size; one child process per point and path."""
    points = [("batch", b, args.image_size) for b in args.curve_batches] + [("image_size", args.batch, s) for s in args.curve_sizes]
    records = []
    for axis, batch, size in points:
        for path in args.paths:  # paths alternate within a point, so load changes hit them alike
            result = run_child(child_command(args, "point", models=args.models[:1], paths=[path], batch=batch, image_size=size))
            if "error" in result:
                print(f"{path} batch {batch} size {size}: {result['error']}", file=sys.stderr)
                records.append({"model": args.models[0], "path": path, "kind": "train", "batch": batch, "image_size": size, "axis": axis, **result})
                continue
            for record in result["records"]:
                records.append({**record, "axis": axis})
                print(f"{path:<16} batch {batch:>3} size {size:>3}: {record['img_s_median']:7.2f} img/s (best {record['img_s_best']:.2f}), "
                      f"peak {record['peak_memory_mib']:.0f} MiB", file=sys.stderr, flush=True)
    result = {"mode": "curve", "records": records}
    if args.plot:
        plot_curve(records, args.plot, machine_summary(args))
    return result


def default_threads():
    """The usable cores, as paddle_googlenet uses them by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def variant_environment(name, threads):
    env_settings, nproc = VARIANTS[name]
    reset = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME", "FLAGS_use_mkldnn", *HEAP_MALLOC)
    env = {k: v for k, v in os.environ.items() if k not in reset}
    env.update({k: v.format(t=threads) for k, v in env_settings.items()})
    if nproc > 1:
        env["BENCH_KEEP_THREADS"] = "1"  # the variant sets the per-process threads itself
    return env, nproc


def variants(args):
    """Each variant in a child process, alternating for ``--rounds``; img/s ratios to the first variant, round by round."""
    threads = args.threads or default_threads()
    rows, vision_ratios = {}, {}
    for _ in range(args.rounds):
        for name in args.variants:
            env, nproc = variant_environment(name, threads)
            # the variant's environment alone decides the allocator (HEAP_MALLOC or glibc's defaults)
            result = run_child(child_command(args, "compare", system_malloc=True, nproc=nproc), env=env)
            if "error" in result:
                print(f"variant {name}: {result['error']}", file=sys.stderr)
                continue
            for record in result["records"]:
                key = (record["model"], record["path"], record["kind"])
                rows.setdefault(key, {}).setdefault(name, []).append(record["img_s_median"])
                vision_ratios.setdefault(key, {}).setdefault(name, []).append(record.get("ratio_to_" + REFERENCE))
    records = []
    reference = args.variants[0]
    for (model, path, kind), by_variant in rows.items():
        for name, rates in by_variant.items():
            ratios = [a / b for a, b in zip(rates, by_variant.get(reference, []))]
            records.append({"model": model, "path": path, "kind": kind, "variant": name, "env": VARIANTS[name][0], "nproc": VARIANTS[name][1],
                            "img_s_rounds": rates, "img_s_median": statistics.median(rates),
                            "ratio_to_" + reference: statistics.median(ratios) if ratios else None,
                            "ratio_to_" + REFERENCE: _median_or_none(vision_ratios[(model, path, kind)][name])})
    return {"mode": "variants", "reference_variant": reference, "threads": threads, "records": records}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine_summary(args):
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START, "load_average": os.getloadavg(), "batch": args.batch, "image_size": args.image_size,
            "threads": args.threads or os.environ.get("MKL_NUM_THREADS") or default_threads(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "malloc": "glibc defaults" if args.system_malloc or args.mode == "variants" else "freed memory kept (as train.py)"}
    for name in ("paddle", "torch"):
        if name in sys.modules:
            info[name] = sys.modules[name].__version__
    return info


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(result, stream=sys.stdout):
    """One line per record: img/s (best, median), the paired ratio to the reference, CPU seconds per image."""
    records = result["records"]
    if result["mode"] == "variants":
        ref = result["reference_variant"]
        print(f"{'model':<10} {'path':<29} {'kind':<6} {'variant':<12} {'img/s (median of rounds)':>25} {'x ' + ref:>12} "
              f"{'x ' + REFERENCE + ' (same variant)':>22}", file=stream)
        for r in records:
            print(f"{r['model']:<10} {r['path']:<29} {r['kind']:<6} {r['variant']:<12} {r['img_s_median']:>25.2f} "
                  f"{_format_ratio(r['ratio_to_' + ref]):>12} {_format_ratio(r['ratio_to_' + REFERENCE]):>22}", file=stream)
        return
    batch, size = result["machine"]["batch"], result["machine"]["image_size"]
    print(f"{'model':<10} {'path':<29} {'kind':<6} {'batch':>5} {'size':>4} {'img/s best':>10} {'median':>8} "
          f"{'x ' + REFERENCE:>9} {'cpu s/img':>9} {'peak MiB':>9}", file=stream)
    for r in records:
        head = f"{r['model']:<10} {r['path']:<29} {r['kind']:<6} {r.get('batch', batch):>5} {r.get('image_size', size):>4}"
        if "error" in r:
            print(f"{head} {r['error']}", file=stream)
            continue
        memory = f"{r['peak_memory_mib']:.0f}" if "peak_memory_mib" in r else ""
        print(f"{head} {r['img_s_best']:>10.2f} {r['img_s_median']:>8.2f} {_format_ratio(r.get('ratio_to_' + REFERENCE)):>9} "
              f"{r['cpu_s_per_img']:>9.3f} {memory:>9}", file=stream)


def _format_ratio(ratio):
    return "" if ratio is None else f"{ratio:.2f}"


def plot_curve(records, png, machine):
    """Training img/s and peak memory against batch size, one line per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for path in dict.fromkeys(r["path"] for r in records):
        points = sorted((r["batch"], r) for r in records if r["path"] == path and r["axis"] == "batch" and "error" not in r)
        if not points:
            continue
        batches = [b for b, _ in points]
        speed.plot(batches, [r["img_s_median"] for _, r in points], marker="o", label=path)
        memory.plot(batches, [r["peak_memory_mib"] for _, r in points], marker="o", label=path)
    batches = sorted({r["batch"] for r in records if r["axis"] == "batch"})
    for axis, label in ((speed, "training img/s (median)"), (memory, f"peak memory, MiB ({points[0][1]['memory_kind'] if points else ''})")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(batches, [str(b) for b in batches])
        axis.set_xlabel("batch size")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"GoogLeNet training, {machine['image_size']}x{machine['image_size']}, {machine['cpu']}, "
                 f"{machine['threads']} threads, 1-min load {machine['load_average_at_start'][0]:.1f} at start, {machine['load_average'][0]:.1f} at end", fontsize=9)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def resolve_defaults(args):
    torch_available = _importable("torch")
    if args.paths is None:
        args.paths = ["ours", "vision"] + (["torch"] if torch_available and args.mode in ("compare", "curve") else [])
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown:
        raise SystemExit(f"bench_speed.py: unknown path(s) {', '.join(unknown)}; valid: {', '.join(PATHS)}")
    if any(p.startswith("torch") for p in args.paths) and not torch_available:
        raise SystemExit("bench_speed.py: the torch paths need PyTorch (pip install torch); it is never a dependency of paddle-googlenet")
    if args.plot and not _importable("matplotlib"):
        raise SystemExit("bench_speed.py: --plot needs matplotlib (pip install matplotlib)")
    if args.mode == "curve" and args.models == list(MODELS):
        args.models = ["googlenet"]
    for name in ("batch", "image_size", "trials", "steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench_speed.py: --{name.replace('_', '-')} must be at least 1")
    return args


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.list_paths:
        for name, (_, description) in PATHS.items():
            print(f"{name:<20} {description}")
        return 0
    args = resolve_defaults(args)
    apply_thread_environment(args.threads)
    result = {"compare": compare, "curve": curve, "variants": variants, "point": point}[args.mode](args)
    result["machine"] = machine_summary(args)
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
