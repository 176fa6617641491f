"""``train.py``: the legacy recipe (Momentum, discexp decay, L2, auxiliary losses) with checkpoints and VisualDL.

``main(argv)`` reads top to bottom: flags, devices and seeds, the output folder, data, model,
optimizer and schedule, resume or pretrained weights, then the epoch loop (train, evaluate, log,
checkpoint). ``--eval-only CHECKPOINT`` evaluates a checkpoint instead of training.
"""

import argparse
import filecmp
import os
import signal
import sys
from pathlib import Path

import numpy as np

from . import distributed
from .checkpoint import (
    SUFFIX,
    CheckpointError,
    build_model,
    load_checkpoint,
    optimizer_state_for,
    portable_optimizer_state,
    resolve_resume,
    save_checkpoint,
    write_epoch_checkpoints,
)
from .cpu_training import summarize, use_cpu_training_layers
from .data import DATASET_DEFAULTS, DataError, add_data_arguments, apply_dataset_defaults, build_datasets, build_loader, denormalize
from .device import DeviceError, Precision, gpu_available, keep_freed_memory, select_device
from .ema import ModelEMA
from .engine import AUX_WEIGHT, EpochContext, NonFiniteLoss, TrainState, evaluate, train_one_epoch
from .evaluation import write_reports
from .models import get_model, list_models
from .pretrained import PretrainedError, load_pretrained
from .run_folder import (
    OutputError,
    append_metrics,
    check_writable,
    clear_run,
    describe_earlier_run,
    read_metrics,
    truncate_metrics,
    write_args,
)
from .runtime import default_thread_count, import_paddle
from .schedule import SCHEDULES, TrainingSchedule
from .vdl import TrainingLogger, open_command

paddle = import_paddle()

LEGACY_DECAY_SAMPLES = 128_000 * 35  # learning_rate_decay_b in the legacy train.py


class UsageError(Exception):
    """Flags that do not fit together or are out of range; reported as ``train.py: error: ...``, exit code 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is None or False (those flags say in their help what unset means)."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


# The recipe beyond the legacy one: unset on the command line, a new run takes these values and a
# resumed run the values of its checkpoint (repeating them is fine, changing them is an error).
RECIPE_DEFAULTS = {"lr_schedule": "discexp", "warmup_epochs": 0.0, "label_smoothing": 0.0, "clip_grad_norm": None,
                   "ema": None, "best_of": "weights"}


def default_lr(model_name):
    """The legacy train.py's rate: 0.1 for ResNet, 0.01 for the others."""
    return 0.1 if model_name.startswith("resnet") else 0.01


def get_args_parser():
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a classic CNN with the legacy paddle.v2 recipe; evaluate and checkpoint every epoch.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("model", choices=list_models(), metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    add_data_arguments(parser)

    recipe = parser.add_argument_group("optimization (the legacy recipe; unset values come from the dataset's defaults)")
    recipe.add_argument("--epochs", type=int, help="training passes over the train split (legacy: 200)")
    recipe.add_argument("--batch-size", type=int, help="images per step, summed over all processes (legacy: 128)")
    recipe.add_argument("--lr", type=float, help="initial learning rate (legacy: 0.01; 0.1 for ResNet)")
    recipe.add_argument("--momentum", type=float, default=0.9, help="Momentum coefficient")
    recipe.add_argument("--weight-decay", type=float, default=5e-4, help="L2 decay on every parameter, as the legacy")
    recipe.add_argument("--lr-schedule", choices=SCHEDULES,
                        help="discexp (default): the legacy ×rate every --lr-decay-samples samples (or --lr-decay-epochs); "
                             "step: ×rate every --lr-decay-epochs epochs; cosine: from --lr to 0 over the run")
    recipe.add_argument("--lr-decay-rate", type=float, default=0.1, help="discexp and step: factor applied at each decay")
    decay = recipe.add_mutually_exclusive_group()
    decay.add_argument(
        "--lr-decay-samples", type=int,
        help=f"discexp: decay every this many training samples, lr = lr0 * rate^floor(samples/this) (legacy: {LEGACY_DECAY_SAMPLES})",
    )
    decay.add_argument("--lr-decay-epochs", type=float, help="discexp or step: decay every N epochs of the train split "
                       f"(digits default: {DATASET_DEFAULTS['digits']['lr_decay_epochs']:g})")
    recipe.add_argument("--warmup-epochs", type=float, help="linear learning-rate warmup over the first N epochs, any schedule (default: 0)")
    recipe.add_argument("--label-smoothing", type=float, metavar="EPS", help="label smoothing of the main and both auxiliary losses (default: 0)")
    recipe.add_argument("--clip-grad-norm", type=float, metavar="MAX", help="clip the gradients' global norm (all parameters) to MAX")
    recipe.add_argument("--ema", type=float, metavar="DECAY",
                        help="also keep a float32 moving average of the weights (e.g. 0.999) and evaluate it every epoch")
    recipe.add_argument("--best-of", choices=("weights", "ema"),
                        help="which weights' validation top-1 chooses best.pdckpt (and infer.py's default): the trained "
                             "ones (default) or the EMA")
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
        "--plain-layers", action="store_true",
        help="train on the CPU with the models' plain Paddle layers (otherwise faster equivalents of the same "
             "arithmetic are swapped in for training: paddle_googlenet/cpu_training.py)",
    )
    run.add_argument(
        "--system-malloc", action="store_true",
        help="leave glibc's malloc at its defaults (otherwise freed tensors are kept for reuse, which is faster on CPU)",
    )
    run.add_argument("--log-interval", type=int, default=20, help="print and log training metrics every N steps")

    output = parser.add_argument_group("output, resume and starting weights")
    output.add_argument("--output", help="folder for checkpoints and metrics.jsonl (default: output/MODEL)")
    output.add_argument("--logdir", help="VisualDL log folder (default: OUTPUT/vdl)")
    output.add_argument("--resume", metavar="PATH|auto", help="continue the run of a checkpoint, or of OUTPUT/latest.pdckpt")
    output.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUTPUT that holds an earlier run: first delete its checkpoints, "
                             "metrics.jsonl, args.json and VisualDL records")
    output.add_argument("--pretrained", metavar="PATH",
                        help="start a new run from these weights (a checkpoint of the same model, or a .pdparams state dict); "
                             "classifier layers of another class count are re-initialised")
    output.add_argument("--eval-only", metavar="CHECKPOINT",
                        help="evaluate CHECKPOINT on the validation split and write per-class and confusion reports; no training")
    output.add_argument("--keep-checkpoints", type=int, default=3, help="epoch_N checkpoints to keep (latest and best are always kept)")
    return parser


def resolve_defaults(args):
    """Fill the flags left unset from the dataset's defaults and the legacy values; raise UsageError on bad ones."""
    if args.lr is None and "lr" not in DATASET_DEFAULTS[args.dataset]:
        args.lr = default_lr(args.model)
    samples_given = args.lr_decay_samples is not None
    apply_dataset_defaults(args)
    if samples_given:  # an explicit interval in samples replaces the dataset's interval in epochs
        args.lr_decay_epochs = None
    if args.lr_decay_samples is None:
        args.lr_decay_samples = LEGACY_DECAY_SAMPLES
    if args.eval_only and args.output is None:  # the reports go beside the checkpoint
        args.output = str(Path(args.eval_only).parent / f"eval-{Path(args.eval_only).stem}")
    args.output = args.output or os.path.join("output", args.model)
    args.logdir = args.logdir or os.path.join(args.output, "vdl")
    minimums = (("epochs", 1), ("batch_size", 1), ("image_size", 64), ("log_interval", 1), ("keep_checkpoints", 0),
                ("nproc", 1), ("train_per_class", 1))
    for name, minimum in minimums:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")
    if args.lr_decay_samples <= 0 or (args.lr_decay_epochs is not None and args.lr_decay_epochs <= 0):
        raise UsageError("--lr-decay-samples and --lr-decay-epochs must be positive")
    exclusive = [flag for flag, value in (("--resume", args.resume), ("--pretrained", args.pretrained),
                                          ("--eval-only", args.eval_only)) if value]
    if args.overwrite and args.resume:
        exclusive.append("--overwrite")
    if len(exclusive) > 1:
        raise UsageError(f"{' and '.join(exclusive)} do not go together: --resume continues a run, --overwrite and "
                         "--pretrained start a new one, --eval-only trains nothing")
    if not args.resume:  # a resumed run takes its recipe from its checkpoint (inherit_recipe)
        fill_recipe_defaults(args)
    check_recipe(args, complete=not args.resume)
    return args


def fill_recipe_defaults(args):
    """Give the recipe flags left unset their defaults (a new run; a resumed one inherits its checkpoint's)."""
    for name, value in RECIPE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_recipe(args, complete=True):
    """Raise UsageError for recipe values out of range or that do not fit together (unset ones are skipped).

    ``complete``: every recipe flag has its final value (before a resume, ``--ema`` may still come from the checkpoint).
    """
    if args.warmup_epochs is not None and args.warmup_epochs < 0:
        raise UsageError(f"--warmup-epochs must be at least 0, got {args.warmup_epochs}")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must lie in [0, 1), got {args.label_smoothing}")
    if args.clip_grad_norm is not None and args.clip_grad_norm <= 0:
        raise UsageError(f"--clip-grad-norm must be positive, got {args.clip_grad_norm}")
    if args.ema is not None and not 0 < args.ema < 1:
        raise UsageError(f"--ema must lie strictly between 0 and 1 (e.g. 0.999), got {args.ema}")
    if complete and args.best_of == "ema" and args.ema is None:
        raise UsageError("--best-of ema needs --ema DECAY")
    if args.lr_schedule == "step" and args.lr_decay_epochs is None:
        raise UsageError("--lr-schedule step needs --lr-decay-epochs N")


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


def build_optimizer(model, args, train_size, steps_per_epoch):
    """Momentum with L2 decay on every parameter (and global-norm clipping if asked), and its schedule."""
    epochs_to_steps = lambda epochs: max(1, round(epochs * steps_per_epoch))  # noqa: E731
    decay_samples = max(1, round(args.lr_decay_epochs * train_size)) if args.lr_decay_epochs else args.lr_decay_samples
    scheduler = TrainingSchedule(
        args.lr,
        kind=args.lr_schedule,
        decay_rate=args.lr_decay_rate,
        decay_samples=decay_samples,
        decay_steps=epochs_to_steps(args.lr_decay_epochs) if args.lr_decay_epochs else None,
        total_steps=epochs_to_steps(args.epochs),
        warmup_steps=epochs_to_steps(args.warmup_epochs) if args.warmup_epochs else 0,
    )
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler,
        momentum=args.momentum,
        parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(args.weight_decay),
        grad_clip=paddle.nn.ClipGradByGlobalNorm(args.clip_grad_norm) if args.clip_grad_norm else None,
    )
    return optimizer, scheduler


def _flag(name, value):
    return f"--{name.replace('_', '-')} {value}"


def check_resumable(ckpt, path, args, data):
    """Fail in one line if the checkpoint at ``path`` is not a state of the run ``args`` describes."""
    saved = ckpt.get("args", {})
    problem = None
    if ckpt["model_name"] != args.model:
        problem = f"it holds a {ckpt['model_name']} model, not {args.model}"
    elif saved.get("dataset", args.dataset) != args.dataset:
        problem = f"it was trained with --dataset {saved['dataset']}, this run has --dataset {args.dataset}"
    elif ckpt["preprocess"]["image_size"] != args.image_size:
        problem = f"it was trained with --image-size {ckpt['preprocess']['image_size']}, this run has --image-size {args.image_size}"
    elif len(ckpt["class_names"]) != len(data.class_names):
        problem = f"its model has {len(ckpt['class_names'])} classes, this run's data has {len(data.class_names)}"
    elif list(ckpt["class_names"]) != list(data.class_names):
        first = next(i for i, (a, b) in enumerate(zip(ckpt["class_names"], data.class_names)) if a != b)
        problem = f"its classes are not this run's (class {first} is {ckpt['class_names'][first]!r} there, {data.class_names[first]!r} here)"
    if problem:
        raise CheckpointError(
            f"cannot resume from {path}: {problem}. Repeat the run's settings, or start a new run from its "
            f"weights with --pretrained {path}"
        )


def inherit_recipe(ckpt, path, args):
    """Give the recipe flags left unset the checkpoint's values; a flag set to another value is an error."""
    saved = ckpt.get("args", {})
    for name, default in RECIPE_DEFAULTS.items():
        value, theirs = getattr(args, name), saved.get(name, default)
        if value is None:
            setattr(args, name, theirs)
        elif value != theirs:
            was = "without it" if theirs is None else f"with {_flag(name, theirs)}"
            raise CheckpointError(f"cannot resume from {path}: it was trained {was}, this run has {_flag(name, value)}. "
                                  f"Leave the flag out to continue with the run's own, or start a new run from its "
                                  f"weights with --pretrained {path}")
    check_recipe(args)


def restore(ckpt, model, optimizer, scheduler, ema):
    """Load a checkpoint into the run; return its TrainState."""
    model.set_state_dict(ckpt["model"])
    optimizer.set_state_dict(optimizer_state_for(ckpt["optimizer"], model))
    scheduler.set_state_dict(ckpt["lr_scheduler"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.set_state_dict(ckpt["ema"])
    return TrainState(**ckpt["train_state"])


def checkpoint_state(model, optimizer, scheduler, ema, state, args, data):
    return {
        "model_name": args.model,
        "model_kwargs": model_kwargs(args, len(data.class_names)),
        "class_names": list(data.class_names),
        "preprocess": data.preprocess,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "best_of": args.best_of,
        "optimizer": portable_optimizer_state(optimizer.state_dict(), model),
        "lr_scheduler": scheduler.state_dict(),
        "train_state": state.to_dict(),
        "seed": args.seed,
        "args": vars(args),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = resolve_defaults(get_args_parser().parse_args(argv))
        if args.eval_only:
            return evaluate_checkpoint(args)
        if args.nproc > 1 and paddle.distributed.get_world_size() == 1:
            return spawn_ranks(args, argv)
        return run(args)
    except UsageError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, CheckpointError, DeviceError, OutputError, PretrainedError, NonFiniteLoss) as exc:
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
    prepare_output(args)  # fail before starting the ranks
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


def prepare_output(args, check_earlier=True):
    """The checkpoint to resume (or None) once the output folders are known to be usable; touches nothing.

    A new run (no ``--resume``) into a folder that holds an earlier run stops here, unless ``--overwrite``
    (checked by the process that writes, ``check_earlier``: the other ranks would see its new files).
    """
    output = Path(args.output)
    check_writable(args.output, "--output")
    check_writable(args.logdir, "--logdir")
    resume_path = resolve_resume(args.resume, output) if args.resume else None
    continues_here = resume_path is not None and Path(resume_path).resolve().parent == output.resolve()
    latest = output / f"latest{SUFFIX}"
    # latest is a hard link to the newest checkpoint or, where there are none, a copy: compare contents
    if (continues_here and check_earlier and latest.is_file() and Path(resume_path).is_file()
            and not filecmp.cmp(resume_path, latest, shallow=False)):
        raise OutputError(
            f"{resume_path} is an earlier state of the run in {args.output}, whose latest checkpoint is {latest}; resuming it "
            f"there would replace the later epochs. Resume it into another folder with --output DIR, or continue the run with --resume auto"
        )
    earlier = None if args.overwrite or continues_here or not check_earlier else describe_earlier_run(output, args.logdir)
    if earlier and args.resume == "auto":
        raise OutputError(f"{args.output} holds {earlier}, but no latest{SUFFIX} to resume; "
                          f"start afresh there with --overwrite, or choose another --output")
    if earlier:
        raise OutputError(
            f"{args.output} already holds {earlier}. Continue it with --resume auto, write this run elsewhere "
            f"with --output DIR, or replace it with --overwrite (deletes its checkpoints, metrics and VisualDL records)"
        )
    return resume_path


def run(args):
    if not args.system_malloc:
        keep_freed_memory()
    world_size = distributed.init()
    main_process = distributed.is_main_process()
    output = Path(args.output)
    resume_path = prepare_output(args, check_earlier=main_process)
    device = select_device(args.device)
    seed_everything(args.seed)

    data = build_datasets(args)
    if args.batch_size % world_size:
        raise DataError(f"--batch-size {args.batch_size} is not divisible by the {world_size} processes")
    per_rank_batch = args.batch_size // world_size
    train_loader = build_loader(data.train, per_rank_batch, train=True, workers=args.workers, seed=args.seed)
    val_loader = build_loader(data.val, per_rank_batch, train=False, workers=args.workers, seed=args.seed)
    resumed = load_checkpoint(resume_path) if resume_path else None
    if resumed:
        check_resumable(resumed, resume_path, args, data)
        inherit_recipe(resumed, resume_path, args)
    elif args.resume:  # --resume auto in a folder without a checkpoint: a new run
        fill_recipe_defaults(args)
        check_recipe(args)

    try:
        model = get_model(args.model, **model_kwargs(args, len(data.class_names)))
    except TypeError as exc:
        raise UsageError(f"{args.model} does not take these options ({exc})") from exc
    pretrained = load_pretrained(model, args.model, data.class_names, args.pretrained) if args.pretrained else None
    swapped = use_cpu_training_layers(model) if device == "cpu" and not args.plain_layers else None
    optimizer, scheduler = build_optimizer(model, args, len(data.train), len(train_loader))
    ema = ModelEMA(model, args.ema) if args.ema else None
    state = restore(resumed, model, optimizer, scheduler, ema) if resumed else TrainState()
    if main_process:
        if args.overwrite:
            removed = clear_run(output, args.logdir)
            if removed:
                print(f"--overwrite: deleted the {len(removed)} files of the earlier run in {args.output}")
        output.mkdir(parents=True, exist_ok=True)
        truncate_metrics(output, state.epoch)
        write_args(output, args)
        epochs = f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
        print(f"{args.model} on {args.dataset}: {data.summary()}; {epochs} of batch {args.batch_size} at {args.image_size}px on {device}")
        for warning in data.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if pretrained:
            print(f"pretrained: {pretrained}")
        if resumed:
            print(f"resumed from {resume_path}: epoch {state.epoch}, step {state.step_in_epoch} of the next, global step {state.global_step}")
        if swapped is not None:
            print(f"CPU training layers: {summarize(swapped)} (--plain-layers to train with the plain ones)")
        print(f"curves: {open_command(args.logdir)}", flush=True)
    logger = TrainingLogger(args.logdir, enabled=main_process, resume_step=state.global_step if resumed else None)
    net = paddle.DataParallel(model) if world_size > 1 else model
    precision = Precision(device, args.amp)
    stop = StopSignal()
    ctx = EpochContext(args.epochs, args.aux_weight, args.label_smoothing, args.log_interval, world_size, logger, stop, ema)
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
                    save_checkpoint(checkpoint_state(model, optimizer, scheduler, ema, state, args, data), output / f"latest{SUFFIX}")
                    print(f"stopped by {signal.Signals(signum).name}: saved {output / f'latest{SUFFIX}'} (resume with --resume auto)")
                return 128 + signum
            val_metrics, probs, labels = evaluate(net, val_loader, precision)
            if ema is not None:
                with ema.applied():
                    ema_metrics, ema_probs, _ = evaluate(net, val_loader, precision)
                val_metrics.update({f"{name}_ema": value for name, value in ema_metrics.items()})
                if args.best_of == "ema":
                    probs = ema_probs
            state.epoch, state.step_in_epoch, state.epoch_sums = epoch + 1, 0, {}
            judged = val_metrics["top1_ema" if args.best_of == "ema" else "top1"]
            is_best = judged > state.best_val_top1
            state.best_val_top1 = max(state.best_val_top1, judged)
            record = {"epoch": state.epoch, "global_step": state.global_step, **train_metrics}
            record.update({f"val_{name}": value for name, value in val_metrics.items()})
            if main_process:
                append_metrics(output, record)
                logger.log_scalars(state.global_step, {f"val/{name}": value for name, value in val_metrics.items()
                                                       if not name.startswith("error")})
                logger.log_per_class(state.global_step, probs, labels, data.class_names)
                write_epoch_checkpoints(
                    checkpoint_state(model, optimizer, scheduler, ema, state, args, data), output, state.epoch, is_best, args.keep_checkpoints
                )
                ema_part = f", EMA top1 {100 * val_metrics['top1_ema']:.2f}%" if ema is not None else ""
                print(
                    f"epoch {state.epoch}/{args.epochs}: val loss {val_metrics['loss']:.4f} top1 {100 * val_metrics['top1']:.2f}% "
                    f"top5 {100 * val_metrics['top5']:.2f}%{ema_part} (best {100 * state.best_val_top1:.2f}%), "
                    f"{train_metrics['img_per_s']:.1f} img/s",
                    flush=True,
                )
        if main_process:
            logger.log_hparams(hparams(args, scheduler), {"val/best_top1": state.best_val_top1})
            print(closing_line(output, args))
    finally:
        logger.close()
    return 0


def closing_line(output, args):
    """Where the best checkpoint is and what it scored."""
    metric = "val_top1_ema" if args.best_of == "ema" else "val_top1"
    records = [record for record in read_metrics(output) if metric in record]
    if not records:
        return f"done: no epoch finished; the latest checkpoint is {output / f'latest{SUFFIX}'}"
    best = max(records, key=lambda record: record[metric])  # the first of equal ones, as best.pdckpt
    which = "EMA " if args.best_of == "ema" else ""
    return (f"done: best {which}val top-1 {100 * best[metric]:.2f} % at epoch {best['epoch']} of {records[-1]['epoch']}: "
            f"{output / f'best{SUFFIX}'}")


def hparams(args, scheduler):
    keys = ("model", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_schedule", "lr_decay_rate",
            "warmup_epochs", "label_smoothing", "clip_grad_norm", "ema", "best_of", "aux_weight", "image_size", "seed", "pretrained")
    return {**{key: getattr(args, key) for key in keys}, "lr_decay_samples": scheduler.decay_samples}


def sample_images(data, args, count=8):
    """A few augmented training images of the first epoch, de-normalised: what the network sees."""
    items = (data.train[(i, args.seed, 0)] for i in range(min(count, len(data.train))))
    return [denormalize(item[0], data.preprocess) for item in items if isinstance(item, tuple)]


def evaluate_checkpoint(args):
    """``--eval-only CHECKPOINT``: loss, top-1 and top-5 on the validation split, and the report files."""
    ckpt = load_checkpoint(args.eval_only)
    if ckpt["model_name"] != args.model:
        raise CheckpointError(f"{args.eval_only} holds a {ckpt['model_name']} model, not {args.model}")
    folder = Path(args.output)
    if folder.is_dir() and any(folder.iterdir()) and not args.overwrite:
        raise OutputError(f"{args.output} already holds files; choose another --output, or replace them with --overwrite")
    check_writable(args.output, "--output")
    device = select_device(args.device)
    args.image_size = ckpt["preprocess"]["image_size"]  # evaluated as it was trained
    data = build_datasets(args)
    if list(data.class_names) != list(ckpt["class_names"]) or data.preprocess != ckpt["preprocess"]:
        raise CheckpointError(
            f"{args.eval_only} was trained on other data than this ({len(ckpt['class_names'])} classes there, "
            f"{data.summary()} here, or another normalisation); evaluate it with the data flags it was trained with"
        )
    model = build_model(ckpt)
    loader = build_loader(data.val, args.batch_size, train=False, workers=args.workers, seed=args.seed)
    metrics, probs, labels = evaluate(model, loader, Precision(device, args.amp))
    print(f"{args.eval_only} on the validation split of {args.dataset} ({len(labels)} images): loss {metrics['loss']:.4f}, "
          f"top-1 {100 * metrics['top1']:.2f} %, top-5 {100 * metrics['top5']:.2f} %")
    files = write_reports(folder, metrics, probs, labels, data.class_names, args.eval_only)
    print(f"wrote {', '.join(str(p) for p in files)}")
    return 0
