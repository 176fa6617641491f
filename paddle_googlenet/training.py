"""``train.py``: the legacy recipe (Momentum, discexp decay, L2, auxiliary losses) with checkpoints and VisualDL.

``main(argv)`` reads top to bottom: flags, devices and seeds, data, model, optimizer and schedule,
resume, then the epoch loop (train, evaluate, log, checkpoint).
"""

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import distributed, import_paddle
from .checkpoint import (
    SUFFIX,
    CheckpointError,
    load_checkpoint,
    optimizer_state_for,
    portable_optimizer_state,
    resolve_resume,
    save_checkpoint,
    write_epoch_checkpoints,
)
from .data import DATASET_DEFAULTS, DataError, add_data_arguments, apply_dataset_defaults, build_datasets, build_loader, denormalize
from . import default_thread_count
from .device import DeviceError, Precision, gpu_available, keep_freed_memory, select_device
from .engine import AUX_WEIGHT, EpochContext, NonFiniteLoss, TrainState, evaluate, train_one_epoch
from .models import get_model, list_models
from .schedule import DiscreteExpDecay
from .vdl import TrainingLogger, open_command

paddle = import_paddle()

LEGACY_DECAY_SAMPLES = 128_000 * 35  # learning_rate_decay_b in the legacy train.py


class OutputError(Exception):
    """The output folder cannot be written."""


def default_lr(model_name):
    """The legacy train.py's rate: 0.1 for ResNet, 0.01 for the others."""
    return 0.1 if model_name.startswith("resnet") else 0.01


def get_args_parser():
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a classic CNN with the legacy paddle.v2 recipe; evaluate and checkpoint every epoch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", choices=list_models(), metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    add_data_arguments(parser)

    recipe = parser.add_argument_group("optimization (the legacy recipe; unset values come from the dataset's defaults)")
    recipe.add_argument("--epochs", type=int, help="training passes over the train split (legacy: 200)")
    recipe.add_argument("--batch-size", type=int, help="images per step, summed over all processes (legacy: 128)")
    recipe.add_argument("--lr", type=float, help="initial learning rate (legacy: 0.01; 0.1 for ResNet)")
    recipe.add_argument("--momentum", type=float, default=0.9, help="Momentum coefficient")
    recipe.add_argument("--weight-decay", type=float, default=5e-4, help="L2 decay on every parameter, as the legacy")
    recipe.add_argument("--lr-decay-rate", type=float, default=0.1, help="discexp: factor applied at each decay")
    decay = recipe.add_mutually_exclusive_group()
    decay.add_argument(
        "--lr-decay-samples", type=int,
        help=f"discexp: decay every this many training samples, lr = lr0 * rate^floor(samples/this) (legacy: {LEGACY_DECAY_SAMPLES})",
    )
    decay.add_argument("--lr-decay-epochs", type=float, help="or decay every N epochs of the train split (digits default: 8)")
    recipe.add_argument("--aux-weight", type=float, default=AUX_WEIGHT, help="GoogLeNet: weight of each auxiliary loss")
    recipe.add_argument("--image-size", type=int, help="input height and width in pixels, 64 or more (legacy: 224)")
    recipe.add_argument("--dropout", type=float, help="drop rate before the classifier (default: the model's legacy rate)")
    recipe.add_argument("--aux-dropout", type=float, help="GoogLeNet: drop rate in the auxiliary heads (legacy: 0.7)")

    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU if Paddle sees one, else the CPU")
    run.add_argument("--amp", action="store_true", help="mixed precision: float16 (O1) on GPU; on CPU see docs/performance.md")
    run.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling, augmentation and dropout")
    run.add_argument(
        "--nproc", type=int, default=1,
        help="start N data-parallel processes (paddle.distributed.spawn): on CPU they share the cores, on GPU one per device",
    )
    run.add_argument(
        "--system-malloc", action="store_true",
        help="leave glibc's malloc at its defaults (otherwise freed tensors are kept for reuse: ~6%% faster on CPU)",
    )
    run.add_argument("--log-interval", type=int, default=20, help="print and log training metrics every N steps")

    output = parser.add_argument_group("output and resume")
    output.add_argument("--output", help="folder for checkpoints and metrics.jsonl (default: output/MODEL)")
    output.add_argument("--logdir", help="VisualDL log folder (default: OUTPUT/vdl)")
    output.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint, or from OUTPUT/latest if it exists")
    output.add_argument("--keep-checkpoints", type=int, default=3, help="epoch_N checkpoints to keep (latest and best are always kept)")
    return parser


def resolve_defaults(args):
    """Fill the flags left unset from the dataset's defaults and the legacy values."""
    if args.lr is None and "lr" not in DATASET_DEFAULTS[args.dataset]:
        args.lr = default_lr(args.model)
    samples_given = args.lr_decay_samples is not None
    apply_dataset_defaults(args)
    if samples_given:  # an explicit interval in samples replaces the dataset's interval in epochs
        args.lr_decay_epochs = None
    if args.lr_decay_samples is None:
        args.lr_decay_samples = LEGACY_DECAY_SAMPLES
    args.output = args.output or os.path.join("output", args.model)
    args.logdir = args.logdir or os.path.join(args.output, "vdl")
    for name, minimum in (("epochs", 1), ("batch_size", 1), ("image_size", 64), ("log_interval", 1), ("keep_checkpoints", 0)):
        if getattr(args, name) < minimum:
            raise SystemExit(f"train.py: error: --{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    if args.lr_decay_samples <= 0 or (args.lr_decay_epochs is not None and args.lr_decay_epochs <= 0):
        raise SystemExit("train.py: error: --lr-decay-samples and --lr-decay-epochs must be positive")
    return args


def check_output_writable(folder):
    """Fail before any training if checkpoints could not be written to ``folder``."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {folder!r} ({exc.strerror or exc}); choose another with --output") from exc


def seed_everything(seed, epoch=None, step=0):
    """Seed Paddle and NumPy for the weights (same on every rank), or for one rank's dropout from a point of an epoch.

    Every random draw of a run is a function of (seed, epoch, step where the process started it), so a
    checkpoint's train_state is all the random state it needs, and it loads in any Paddle version.
    """
    words = [seed] if epoch is None else [seed, epoch + 1, distributed.rank(), step]
    value = int(np.random.SeedSequence(words).generate_state(1)[0] % (2**31))
    paddle.seed(value)
    np.random.seed(value)


def model_kwargs(args, num_classes):
    """Constructor arguments of the model: the class count and any dropout rates given on the command line."""
    kwargs = {"num_classes": num_classes}
    for name in ("dropout", "aux_dropout"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    return kwargs


class StopSignal:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signum = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            print("stopped at once by a second Ctrl-C: the latest checkpoint is the last one written", file=sys.stderr)
            raise SystemExit(128 + signum)
        self.signum = self.signum or signum

    def __call__(self):
        return self.signum is not None


def build_optimizer(model, args, train_size):
    decay_samples = round(args.lr_decay_epochs * train_size) if args.lr_decay_epochs else args.lr_decay_samples
    scheduler = DiscreteExpDecay(args.lr, args.lr_decay_rate, decay_samples)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler,
        momentum=args.momentum,
        parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(args.weight_decay),
    )
    return optimizer, scheduler


def restore(checkpoint_path, model, optimizer, scheduler, args):
    """Load a checkpoint into the run; return its TrainState."""
    ckpt = load_checkpoint(checkpoint_path)
    if ckpt["model_name"] != args.model:
        raise CheckpointError(f"{checkpoint_path} holds a {ckpt['model_name']} model, not {args.model}")
    model.set_state_dict(ckpt["model"])
    optimizer.set_state_dict(optimizer_state_for(ckpt["optimizer"], model))
    scheduler.set_state_dict(ckpt["lr_scheduler"])
    return TrainState(**ckpt["train_state"])


def checkpoint_state(model, optimizer, scheduler, state, args, data):
    return {
        "model_name": args.model,
        "model_kwargs": model_kwargs(args, len(data.class_names)),
        "class_names": list(data.class_names),
        "preprocess": data.preprocess,
        "model": model.state_dict(),
        "optimizer": portable_optimizer_state(optimizer.state_dict(), model),
        "lr_scheduler": scheduler.state_dict(),
        "train_state": state.to_dict(),
        "seed": args.seed,
        "args": vars(args),
    }


def truncate_metrics(path, epochs_done):
    """Drop lines of epochs after the resumed checkpoint (written by a run killed before its checkpoint)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs_done]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def append_metrics(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = resolve_defaults(get_args_parser().parse_args(argv))
    try:
        if args.nproc > 1 and paddle.distributed.get_world_size() == 1:
            return spawn_ranks(args, argv)
        return run(args)
    except (DataError, CheckpointError, DeviceError, OutputError, NonFiniteLoss) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, NonFiniteLoss) else 2


def _rank_main(argv):
    return main(argv)


def spawn_ranks(args, argv):
    """``--nproc N``: run this same command as N ranks through ``paddle.distributed.spawn``; return the worst exit code.

    On CPU the ranks split the cores (each gets cores // N threads); on GPU each takes one device.
    Ctrl-C reaches every rank from the terminal; SIGTERM sent to this process is passed on to them.
    """
    if args.device != "cpu" and gpu_available():
        if args.nproc > paddle.device.cuda.device_count():
            raise DeviceError(f"--nproc {args.nproc} needs {args.nproc} GPUs, {paddle.device.cuda.device_count()} visible")
    else:
        paddle.set_device("cpu")  # spawn picks gloo for the CPU
        threads = str(max(1, default_thread_count() // args.nproc))
        os.environ["MKL_NUM_THREADS"] = threads  # inherited by the ranks
    context = paddle.distributed.spawn(_rank_main, args=(argv,), nprocs=args.nproc, join=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: [os.kill(p.pid, signum) for p in context.processes if p.is_alive()])
    try:
        while not context.join():
            pass
    except Exception as exc:  # a rank crashed: Paddle's message carries its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return max(queue.get() for queue in context.return_queues)


def run(args):
    if not args.system_malloc:
        keep_freed_memory()
    world_size = distributed.init()
    main_process = distributed.is_main_process()
    device = select_device(args.device)
    output = Path(args.output)
    if main_process:
        check_output_writable(output)
        check_output_writable(args.logdir)
    seed_everything(args.seed)

    data = build_datasets(args)
    if args.batch_size % world_size:
        raise DataError(f"--batch-size {args.batch_size} is not divisible by the {world_size} processes")
    per_rank_batch = args.batch_size // world_size
    train_loader = build_loader(data.train, per_rank_batch, train=True, workers=args.workers, seed=args.seed)
    val_loader = build_loader(data.val, per_rank_batch, train=False, workers=args.workers, seed=args.seed)

    try:
        model = get_model(args.model, **model_kwargs(args, len(data.class_names)))
    except TypeError as exc:
        raise SystemExit(f"train.py: error: {args.model} does not take these options ({exc})") from exc
    optimizer, scheduler = build_optimizer(model, args, len(data.train))
    resume_path = resolve_resume(args.resume, output) if args.resume else None
    state = restore(resume_path, model, optimizer, scheduler, args) if resume_path else TrainState()
    if main_process:
        truncate_metrics(output / "metrics.jsonl", state.epoch)
        (output / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
        print(f"{args.model} on {args.dataset}: {data.summary()}; {args.epochs} epochs of batch {args.batch_size} at {args.image_size}px on {device}")
        if resume_path:
            print(f"resumed from {resume_path}: epoch {state.epoch}, step {state.step_in_epoch} of the next, global step {state.global_step}")
        print(f"curves: {open_command(args.logdir)}", flush=True)
    logger = TrainingLogger(args.logdir, enabled=main_process, resume_step=state.global_step if resume_path else None)
    net = paddle.DataParallel(model) if world_size > 1 else model
    precision = Precision(device, args.amp)
    stop = StopSignal()
    ctx = EpochContext(args.epochs, args.aux_weight, args.log_interval, world_size, logger, stop)
    if state.global_step == 0:
        logger.log_images("train/images", sample_images(data, args), step=0)

    try:
        for epoch in range(state.epoch, args.epochs):
            seed_everything(args.seed, epoch, state.step_in_epoch)
            train_loader.batch_sampler.set_epoch(epoch, start_batch=state.step_in_epoch)
            train_metrics, stopped = train_one_epoch(net, train_loader, optimizer, scheduler, precision, state, ctx)
            if stopped:
                signum = stop.signum or signal.SIGTERM  # another rank may have received it
                if main_process:
                    save_checkpoint(checkpoint_state(model, optimizer, scheduler, state, args, data), output / f"latest{SUFFIX}")
                    print(f"stopped by {signal.Signals(signum).name}: saved {output / f'latest{SUFFIX}'} (resume with --resume auto)")
                return 128 + signum
            val_metrics, probs, labels = evaluate(net, val_loader, precision)
            state.epoch, state.step_in_epoch, state.epoch_sums = epoch + 1, 0, {}
            is_best = val_metrics["top1"] > state.best_val_top1
            state.best_val_top1 = max(state.best_val_top1, val_metrics["top1"])
            record = {"epoch": state.epoch, "global_step": state.global_step, **train_metrics}
            record.update({f"val_{name}": value for name, value in val_metrics.items()})
            if main_process:
                append_metrics(output / "metrics.jsonl", record)
                logger.log_scalars(state.global_step, {f"val/{name}": val_metrics[name] for name in ("loss", "top1", "top5")})
                logger.log_per_class(state.global_step, probs, labels, data.class_names)
                write_epoch_checkpoints(
                    checkpoint_state(model, optimizer, scheduler, state, args, data), output, state.epoch, is_best, args.keep_checkpoints
                )
                print(
                    f"epoch {state.epoch}/{args.epochs}: val loss {val_metrics['loss']:.4f} top1 {100 * val_metrics['top1']:.2f}% "
                    f"top5 {100 * val_metrics['top5']:.2f}% (best {100 * state.best_val_top1:.2f}%), {train_metrics['img_per_s']:.1f} img/s",
                    flush=True,
                )
        if main_process:
            logger.log_hparams(hparams(args, scheduler), {"val/best_top1": state.best_val_top1})
    finally:
        logger.close()
    return 0


def hparams(args, scheduler):
    keys = ("model", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_decay_rate", "aux_weight", "image_size", "seed")
    return {**{key: getattr(args, key) for key in keys}, "lr_decay_samples": scheduler.decay_samples}


def sample_images(data, args, count=8):
    """A few augmented training images of the first epoch, de-normalised: what the network sees."""
    items = (data.train[(i, args.seed, 0)] for i in range(min(count, len(data.train))))
    return [denormalize(item[0], data.preprocess) for item in items if isinstance(item, tuple)]
