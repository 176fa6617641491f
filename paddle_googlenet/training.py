"""``train.py``: the legacy recipe (Momentum, discexp decay, L2, auxiliary losses) with checkpoints and VisualDL.

``train(args)`` reads top to bottom: ``setup`` returns what a run is made of (data, model,
optimizer and schedule, state, loggers), then the epoch loop trains, evaluates and records each
epoch (its checkpoint first, then its metrics and curves), then the run ends. Every step is a
function of the module that owns it; ``--eval-only`` is ``evaluation.evaluate_checkpoint``.

``main(argv, callbacks)`` is the command line. ``callbacks`` are objects with any of the methods
``on_start(run)``, ``on_step(run, state)``, ``on_epoch(run, record)`` and ``on_end(run, code)``: the
public way to observe a run from Python (tests use them; see ``Callbacks``).
"""

import contextlib
import os
import signal
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import distributed
from .checkpoint import (
    CheckpointError,
    ModelRecord,
    is_training_checkpoint,
    read_record,
    restore_training,
    save_checkpoint,
    training_checkpoint,
    write_epoch_checkpoints,
)
from .cli import notice, run_main
from .cpu_training import summarize, use_cpu_training_layers
from .data import build_datasets, build_loader, data_source, default_preprocess, denormalize
from .data.transforms import describe_preprocess, resized_preprocess
from .device import Precision, gpu_available, setup_training_process
from .ema import ModelEMA
from .engine import Loop, NonFiniteLoss, TrainState, evaluate, train_one_epoch
from .evaluation import evaluate_checkpoint
from .files import WriteError
from .options import get_args_parser, model_kwargs, resolve, resolve_paths
from .pretrained import load_pretrained, read_weights
from .run_folder import RunFolder, check_writable
from .runtime import default_thread_count, import_paddle
from .schedule import TrainingSchedule
from .vdl import BEST_TOP1, TRAIN_IMAGES_TAG, TrainingLogger, open_command

paddle = import_paddle()


def main(argv=None, callbacks=()):
    """``train.py``'s command line; returns the exit code (errors a user can fix: one line, code 2)."""
    return run_main("train.py", lambda argv: _command(argv, callbacks), argv)


def _command(argv, callbacks):
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    args = resolve_paths(get_args_parser().parse_args(argv))
    if args.eval_only:
        return evaluate_checkpoint(args)
    if args.nproc > 1 and distributed.world_size() == 1:
        return spawn_ranks(args, argv)
    return train(args, callbacks)


def train(args, callbacks=()):
    """Train the run ``args`` describes; return the exit code (128 + signal when stopped by one)."""
    run = setup(args, Callbacks(callbacks))
    with run.folder.lock() if run.writes else contextlib.nullcontext(), StopSignal() as stop, start_writing(run):
        run.loop.stop_requested = stop
        for epoch in range(run.state.epoch, args.epochs):
            train_metrics, stopped = train_epoch(run, epoch)
            if stopped:
                return save_and_stop(run, stop.signum or signal.SIGTERM)  # another rank may have received it
            record = evaluate_epoch(run, train_metrics)
            save_epoch(run, record)
        return finish(run)


@dataclass
class Run:
    """What a run is made of, built by ``setup``."""

    args: Any
    folder: RunFolder
    writes: bool  # this process writes the run's files (rank 0)
    device: str
    data: Any  # data.DataBundle
    train_loader: Any
    val_loader: Any
    record: ModelRecord
    model: Any
    loop: Loop
    ema: Optional[ModelEMA]
    state: TrainState
    callbacks: "Callbacks"
    resumed: Optional[dict] = None  # the checkpoint resumed from
    resumed_from: Optional[Path] = None
    messages: list = field(default_factory=list)  # lines for the header
    logger: Optional[TrainingLogger] = None


def setup(args, callbacks):
    """Check everything and build the run, writing nothing: a start that fails leaves no file behind."""
    world = distributed.init()
    device = setup_training_process(args.device, keep_memory=not args.system_malloc)
    folder = RunFolder(args.output, args.logdir)
    resumed_from, resumed = find_run_to_continue(folder, args)
    starting = read_weights(args.pretrained, args.model) if args.pretrained else None
    data = build_datasets(data_source(args), choose_preprocess(args, resumed, starting), args.strict_images)
    record = ModelRecord(args.model, model_kwargs(args, len(data.class_names)), list(data.class_names), data.preprocess)
    if resumed:
        check_resumable(resumed, resumed_from, args, record)
    model, messages = build_model(args, record, starting, device)
    train_loader = build_loader(data.train, args.batch_size // world, train=True, workers=args.workers, seed=args.seed)
    val_loader = build_loader(data.val, args.batch_size // world, train=False, workers=args.workers, seed=args.seed)
    loop, ema = build_loop(args, model, world, len(data.train), len(train_loader), device)
    state = TrainState(**restore_training(resumed, model, loop.optimizer, loop.scheduler, ema)) if resumed else TrainState()
    return Run(args, folder, distributed.is_main_process(), device, data, train_loader, val_loader, record, model, loop,
               ema, state, callbacks, resumed, resumed_from, messages)


def find_run_to_continue(folder, args):
    """``(path, checkpoint)`` that ``--resume`` continues, or ``(None, None)`` for a new run; resolves the flags.

    Fails early, writing nothing, if the folders cannot be written, another run is using them, the
    checkpoint cannot continue a run, or a new run would replace an earlier one.
    """
    check_writable(args.output, "--output")
    check_writable(args.logdir, "--logdir")
    if distributed.is_main_process():
        folder.check_not_in_use()
    resumed_from, resumed = folder.checkpoint_to_resume(args.resume) if args.resume else (None, None)
    if resumed is not None and not is_training_checkpoint(resumed):
        raise CheckpointError(f"{resumed_from} holds weights only (no optimizer state or position to continue): "
                              f"start a new run from it with --pretrained {resumed_from}")
    resolve(args, resumed.get("args", {}) if resumed else None, resumed_from)
    if distributed.is_main_process():
        folder.refuse_earlier_run(resumed is not None or args.overwrite, args.resume == "auto")
    return resumed_from, resumed


def build_model(args, record, starting, device):
    """The run's model: seeded, with its starting weights, CPU-training layers swapped in on the CPU; and the
    lines that say so."""
    seed_everything(args.seed)
    model = record.build()
    messages = []
    if starting is not None:
        messages.append(f"pretrained: {load_pretrained(model, args.model, record.class_names, starting, args.pretrained)}")
        if starting.preprocess is not None:
            messages.append(f"preprocessing: the pretrained weights' own: {describe_preprocess(record.preprocess)}")
    if device == "cpu" and not args.plain_layers:
        messages.append(f"CPU training layers: {summarize(use_cpu_training_layers(model))} "
                        "(--plain-layers to train with the plain ones)")
    return model, messages


def choose_preprocess(args, resumed, starting):
    """The run's input preprocessing: its checkpoint's when resumed; the pretrained weights' own (at this run's
    image size) when they say what they were trained on; otherwise the dataset's default."""
    if resumed is not None:
        return read_record(resumed).preprocess
    if starting is not None and starting.preprocess is not None:
        return resized_preprocess(starting.preprocess, args.image_size)
    return default_preprocess(args.dataset, args.image_size)


def check_resumable(ckpt, path, args, record):
    """Fail in one line if the checkpoint at ``path`` is not a state of the run ``args`` describes."""
    theirs = read_record(ckpt)
    saved = ckpt.get("args", {})
    problem = None
    if theirs.model_name != args.model:
        problem = f"it holds a {theirs.model_name} model, not {args.model}"
    elif saved.get("dataset", args.dataset) != args.dataset:
        problem = f"it was trained with --dataset {saved['dataset']}, this run has --dataset {args.dataset}"
    elif len(theirs.class_names) != len(record.class_names):
        problem = f"its model has {len(theirs.class_names)} classes, this run's data has {len(record.class_names)}"
    elif theirs.class_names != record.class_names:
        first = next(i for i, (a, b) in enumerate(zip(theirs.class_names, record.class_names)) if a != b)
        problem = f"its classes are not this run's (class {first} is {theirs.class_names[first]!r} there, {record.class_names[first]!r} here)"
    if problem:
        raise CheckpointError(f"cannot resume from {path}: {problem}. Repeat the run's settings, or start a new run "
                              f"from its weights with --pretrained {path}")


def seed_everything(seed, epoch=None, step=0):
    """Seed Paddle and NumPy for the weights (same on every rank), or for one rank's dropout from a point of an epoch.

    Every random draw of a run is a function of (seed, epoch, step where the process started it), so a
    checkpoint's train_state is all the random state it needs, and it loads in any Paddle version.
    """
    words = [seed] if epoch is None else [seed, epoch + 1, distributed.rank(), step]
    value = int(np.random.SeedSequence(words).generate_state(1)[0] % (2**31))
    paddle.seed(value)
    np.random.seed(value)


def build_loop(args, model, world, train_size, steps_per_epoch, device):
    """The ``engine.Loop`` of the run (optimizer, schedule, precision, settings, observers) and its EMA."""
    optimizer, scheduler = build_optimizer(model, args, train_size, steps_per_epoch)
    ema = ModelEMA(model, args.ema) if args.ema else None
    net = paddle.DataParallel(model) if world > 1 else model
    loop = Loop(net, optimizer, scheduler, Precision(device, args.amp), args.epochs, args.aux_weight, args.label_smoothing,
                args.log_interval, world, log=None, stop_requested=lambda: False, ema=ema, on_step=None)
    return loop, ema


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


@contextlib.contextmanager
def start_writing(run):
    """Under the folder's lock: clear what must go, write the run's arguments, open the logs (closed at the
    end of the block), say what runs."""
    if run.writes:
        prepare_folder(run)
    resume_step = run.state.global_step if run.resumed else None
    run.logger = TrainingLogger(run.args.logdir, enabled=run.writes, resume_step=resume_step)
    run.loop.log = lambda *values: log_progress(run, *values)
    run.loop.on_step = lambda state: run.callbacks.on_step(run, state)
    if run.writes:
        announce(run)
        if run.state.global_step == 0:
            run.logger.log_images(TRAIN_IMAGES_TAG, sample_images(run.data, run.args.seed), step=0)
    run.callbacks.on_start(run)
    with contextlib.closing(run.logger):
        yield


def prepare_folder(run):
    """The folder as the run needs it: an earlier run refused (or cleared by --overwrite), leftovers cleared, metrics as resumed."""
    folder, args = run.folder, run.args
    folder.refuse_earlier_run(run.resumed is not None or args.overwrite, args.resume == "auto")  # again, under the lock
    if args.overwrite:
        removed = folder.clear(folder.run_files())
        if removed:
            print(f"--overwrite: deleted the {len(removed)} files of the earlier run in {args.output}")
    elif run.resumed is None and folder.leftovers():
        removed = folder.clear(folder.leftovers())
        notice(f"{args.output} held the start of a run that ended before its first checkpoint (nothing to resume); "
               f"starting afresh there (removed {len(removed)} of its files)")
    elif folder.partial_writes():
        folder.clear(folder.partial_writes())  # temporary files of a save interrupted by a kill
    if run.resumed is not None:
        folder.restore_metrics(run.state.epoch, run.resumed.get("epoch_record"))
    folder.write_args(vars(args))


def announce(run):
    args = run.args
    epochs = f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
    print(f"{args.model} on {args.dataset}: {run.data.summary()}; {epochs} of batch {args.batch_size} at "
          f"{args.image_size}px on {run.device}")
    for warning in run.data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for message in run.messages:
        print(message)
    if run.resumed:
        state = run.state
        print(f"resumed from {run.resumed_from}: epoch {state.epoch}, step {state.step_in_epoch} of the next, "
              f"global step {state.global_step}")
    print(f"curves: {open_command(args.logdir)}", flush=True)


def log_progress(run, state, averages, lr, img_per_s, remaining):
    """The progress line every ``--log-interval`` steps, and its points on the training curves."""
    run.logger.log_train(state.global_step, {**averages, "lr": lr, "img_per_s": img_per_s})
    if run.writes:
        print(f"epoch {state.epoch + 1}/{run.args.epochs} step {state.step_in_epoch}/{len(run.train_loader)} "
              f"loss {averages['loss']:.4f} top1 {100 * averages['top1']:.1f}% lr {lr:.3g} {img_per_s:.1f} img/s "
              f"eta {_clock(remaining)}", flush=True)


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_epoch(run, epoch):
    """One epoch of training from where the run stands (mid-epoch after a resume)."""
    seed_everything(run.args.seed, epoch, run.state.step_in_epoch)
    run.train_loader.batch_sampler.set_epoch(epoch, start_batch=run.state.step_in_epoch)
    return train_one_epoch(run.loop, run.train_loader, run.state)


def evaluate_epoch(run, train_metrics):
    """Evaluate the weights (and their EMA); close the epoch in the state; return the epoch's record and probabilities."""
    metrics, probs, labels = evaluate(run.loop.model, run.val_loader, run.loop.precision)
    if not np.isfinite(probs).all():
        raise NonFiniteLoss(f"the model's outputs on the validation images became non-finite after epoch {run.state.epoch + 1} "
                            f"(the weights diverged). Try a lower --lr (for example half of it); the last checkpoint was left untouched.")
    if run.ema is not None:
        with run.ema.applied():
            ema_metrics, ema_probs, _ = evaluate(run.loop.model, run.val_loader, run.loop.precision)
        metrics.update({f"{name}_ema": value for name, value in ema_metrics.items()})
        probs = ema_probs if run.args.best_of == "ema" else probs
    state = run.state
    state.epoch, state.step_in_epoch, state.epoch_sums = state.epoch + 1, 0, {}
    judged = metrics["top1_ema" if run.args.best_of == "ema" else "top1"]
    record = {"epoch": state.epoch, "global_step": state.global_step, **train_metrics,
              **{f"val_{name}": value for name, value in metrics.items()}}
    return EpochRecord(record, metrics, probs, labels, is_best=judged > state.best_val_top1, judged=judged)


@dataclass
class EpochRecord:
    """One finished epoch: its ``metrics.jsonl`` record, the validation metrics and probabilities."""

    record: dict
    val: dict
    probs: Any
    labels: Any
    is_best: bool
    judged: float  # the validation top-1 that chooses best.pdckpt


def save_epoch(run, epoch):
    """Record a finished epoch: its checkpoint first, then its metrics record and curves, then the console line.

    The checkpoint also holds the record, so a kill between the writes loses nothing (``restore_metrics``).
    """
    run.state.best_val_top1 = max(run.state.best_val_top1, epoch.judged)
    if run.writes:
        with stop_on_write_failure():
            state = dict(checkpoint_state(run), epoch_record=epoch.record)
            write_epoch_checkpoints(state, run.folder.path, run.state.epoch, epoch.is_best, run.args.keep_checkpoints)
            run.folder.append_metrics(epoch.record)
            run.logger.log_val(run.state.global_step, epoch.val)
            run.logger.log_per_class(run.state.global_step, epoch.probs, epoch.labels, run.data.class_names)
        print(epoch_line(run, epoch.record), flush=True)
    run.callbacks.on_epoch(run, epoch.record)


@contextlib.contextmanager
def stop_on_write_failure():
    """A file of the run that cannot be written (a full disk) stops it, saying the folder can still be resumed."""
    try:
        yield
    except WriteError as exc:
        raise WriteError(f"{exc}. The run stopped; its checkpoints written before are untouched: free some space, then "
                         f"continue with --resume auto") from None


def checkpoint_state(run):
    loop = run.loop
    return training_checkpoint(run.record, run.model, loop.optimizer, loop.scheduler, run.ema, run.state, run.args.best_of,
                               vars(run.args), data_source(run.args))


def epoch_line(run, record):
    ema = f", EMA top1 {100 * record['val_top1_ema']:.2f}%" if run.ema is not None else ""
    top5 = f" top5 {100 * record['val_top5']:.2f}%" if len(run.data.class_names) > 5 else ""
    return (f"epoch {record['epoch']}/{run.args.epochs}: val loss {record['val_loss']:.4f} top1 {100 * record['val_top1']:.2f}%"
            f"{top5}{ema} (best {100 * run.state.best_val_top1:.2f}%), {record['img_per_s']:.1f} img/s")


def save_and_stop(run, signum):
    """A signal stopped the epoch: save ``latest`` where the run stands, say how to continue."""
    if run.writes:
        latest = run.folder.path / "latest.pdckpt"
        with stop_on_write_failure():
            save_checkpoint(checkpoint_state(run), latest)
        print(f"stopped by {signal.Signals(signum).name}: saved {latest} (resume with --resume auto)")
    return end(run, 128 + signum)


def finish(run):
    if run.writes:
        hparams = {**{key: getattr(run.args, key) for key in HPARAMS}, "lr_decay_samples": run.loop.scheduler.decay_samples}
        run.logger.log_hparams(hparams, {BEST_TOP1: run.state.best_val_top1})
        print(closing_line(run))
    return end(run, 0)


def end(run, code):
    run.callbacks.on_end(run, code)
    return code


HPARAMS = ("model", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_schedule", "lr_decay_rate",
           "warmup_epochs", "label_smoothing", "clip_grad_norm", "ema", "best_of", "aux_weight", "image_size", "seed", "pretrained")


def closing_line(run):
    """Where the best checkpoint is and what it scored."""
    metric = "val_top1_ema" if run.args.best_of == "ema" else "val_top1"
    records = [record for record in run.folder.read_metrics() if metric in record]
    if not records:
        return f"done: no epoch finished; the latest checkpoint is {run.folder.path / 'latest.pdckpt'}"
    best = max(records, key=lambda record: record[metric])  # the first of equal ones, as best.pdckpt
    which = "EMA " if run.args.best_of == "ema" else ""
    return (f"done: best {which}val top-1 {100 * best[metric]:.2f} % at epoch {best['epoch']} of {records[-1]['epoch']}: "
            f"{run.folder.path / 'best.pdckpt'}")


def sample_images(data, seed, count=8):
    """A few augmented training images of the first epoch, de-normalised: what the network sees."""
    items = (data.train[(i, seed, 0)] for i in range(min(count, len(data.train))))
    return [denormalize(item[0], data.preprocess) for item in items if isinstance(item, tuple)]


class Callbacks:
    """Calls each observer's ``on_start``, ``on_step``, ``on_epoch`` and ``on_end``, where it has them."""

    def __init__(self, observers=()):
        self.observers = list(observers)

    def _call(self, method, *values):
        for observer in self.observers:
            if hasattr(observer, method):
                getattr(observer, method)(*values)

    def on_start(self, run):
        self._call("on_start", run)

    def on_step(self, run, state):
        self._call("on_step", run, state)

    def on_epoch(self, run, record):
        self._call("on_epoch", run, record)

    def on_end(self, run, code):
        self._call("on_end", run, code)


class StopSignal:
    """Within its block, SIGINT/SIGTERM request a checkpoint and a stop; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            print("stopped at once by a second Ctrl-C: the latest checkpoint is the last one written", file=sys.stderr)
            raise SystemExit(128 + signum)
        self.signum = self.signum or signum

    def __call__(self):
        return self.signum is not None


QUIET_RANK_WARNINGS = "ignore:No ccache found:UserWarning"  # Paddle's, printed as each rank imports it


def _rank_main(argv):
    return main(argv)


def spawn_ranks(args, argv):
    """``--nproc N``: run this same command as N ranks through ``paddle.distributed.spawn``; return the worst exit code.

    On CPU the ranks split the cores (each gets cores // N threads); on GPU each takes one device.
    Ctrl-C reaches every rank from the terminal; SIGTERM sent to this process is passed on to them.
    """
    if args.device != "cpu" and gpu_available():
        if args.nproc > paddle.device.cuda.device_count():
            raise CheckpointError(f"--nproc {args.nproc} needs {args.nproc} GPUs, {paddle.device.cuda.device_count()} visible")
    else:
        paddle.set_device("cpu")  # spawn picks gloo for the CPU
        os.environ["MKL_NUM_THREADS"] = str(max(1, default_thread_count() // args.nproc))  # inherited by the ranks
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), QUIET_RANK_WARNINGS]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your model will be trained under CPUONLY mode")  # --device says so
        context = paddle.distributed.spawn(_rank_main, args=(argv,), nprocs=args.nproc, join=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: [os.kill(p.pid, signum) for p in context.processes if p.is_alive()])
    try:
        while not context.join():
            pass
    except Exception as exc:  # a rank crashed: Paddle's message carries its traceback
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    return max(queue.get() for queue in context.return_queues)
