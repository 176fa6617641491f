"""``train.py``'s flags, their defaults in one table, and the checks that combine them, applied once.

Every recipe flag is parsed with ``default=None`` and a range-checking type (``cli``), so a bad
number stops argparse with exit code 2 before anything is built. ``resolve(args, resumed)`` then
fills, once, each flag the command line left unset:

* for a resumed run, from the run's own checkpoint (``INHERITED``): a resumed run is the same run,
  so a recipe flag given with another value is an error, except ``--epochs`` (to extend the run) and
  ``--lr`` (to continue with a lower rate after the loss diverged), which are announced;
* otherwise from ``DEFAULTS``, with the dataset's own value where ``DATASET_DEFAULTS`` has one;

and checks the combinations (``check``). The legacy recipe's values are the defaults; the
``digits`` dataset has the quick start's (docs/training.md).
"""

import argparse
import os

from . import distributed
from .cli import ArgumentParser, at_least, non_negative, notice, open_unit, positive, probability, unit_interval
from .data import add_data_arguments
from .data.loader import default_workers
from .engine import AUX_WEIGHT
from .errors import UserError
from .models import list_models
from .schedule import SCHEDULES

LEGACY_DECAY_SAMPLES = 128_000 * 35  # learning_rate_decay_b in the legacy train.py

# Every default of train.py, for every dataset: the legacy recipe. ``lr`` None: the model's legacy rate.
DEFAULTS = {
    "epochs": 200, "batch_size": 128, "lr": None, "momentum": 0.9, "weight_decay": 5e-4,
    "lr_schedule": "discexp", "lr_decay_rate": 0.1, "lr_decay_samples": LEGACY_DECAY_SAMPLES, "lr_decay_epochs": None,
    "warmup_epochs": 0.0, "label_smoothing": 0.0, "clip_grad_norm": None, "ema": None, "best_of": "weights",
    "aux_weight": AUX_WEIGHT, "image_size": 224, "dropout": None, "aux_dropout": None, "seed": 0,
    "workers": None,  # None: data.loader.default_workers()
}
# Where a dataset differs. Digits: tiny in-memory images (no loader processes), batch 16 and one ×0.1
# decay after epoch 5 of 7: the quick start, sized to take minutes on 2 cores.
DATASET_DEFAULTS = {
    "digits": {"epochs": 7, "batch_size": 16, "lr": 0.01, "lr_decay_epochs": 5, "lr_decay_samples": None,
               "image_size": 64, "workers": 0},
}
# Flags set together: giving one of them replaces the defaults of all (the interval of the decay).
TOGETHER = (("lr_decay_samples", "lr_decay_epochs"),)
# What a resumed run takes from its checkpoint when not given: everything that defines the run.
INHERITED = tuple(name for name in DEFAULTS if name != "workers")
CHANGEABLE = ("epochs", "lr")  # may differ when resuming: to extend a run, or to continue it more gently after a divergence


class UsageError(UserError):
    """Flags that do not fit together; ``train.py: error: ...``, exit code 2."""


def legacy_lr(model_name):
    """The legacy train.py's rate: 0.1 for ResNet, 0.01 for the others."""
    return 0.1 if model_name.startswith("resnet") else 0.01


def default_for(name, dataset, model_name):
    """The default of flag ``name`` for this dataset and model."""
    value = DATASET_DEFAULTS.get(dataset, {}).get(name, DEFAULTS[name])
    if name == "lr" and value is None:
        return legacy_lr(model_name)
    if name == "workers" and value is None:
        return default_workers()
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is None or False (those flags say in their help what unset means)."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def get_args_parser():
    parser = ArgumentParser(
        prog="train.py",
        description="Train a classic CNN with the legacy paddle.v2 recipe; evaluate and checkpoint every epoch.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("model", choices=list_models(), metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    add_data_arguments(parser)
    _add_recipe_arguments(parser)
    _add_run_arguments(parser)
    _add_output_arguments(parser)
    return parser


def _add_recipe_arguments(parser):
    recipe = parser.add_argument_group("optimization (the legacy recipe; digits: the quick start's, docs/training.md)")
    recipe.add_argument("--epochs", type=at_least(1), help="training passes over the train split (default: 200; digits 7)")
    recipe.add_argument("--batch-size", type=at_least(1), help="images per step, summed over all processes (default: 128; digits 16)")
    recipe.add_argument("--lr", type=positive, help="initial learning rate (default: 0.01; 0.1 for ResNet)")
    recipe.add_argument("--momentum", type=probability, help="Momentum coefficient, in [0, 1) (default: 0.9)")
    recipe.add_argument("--weight-decay", type=non_negative, help="L2 decay on every parameter, as the legacy (default: 5e-4)")
    recipe.add_argument("--lr-schedule", choices=SCHEDULES,
                        help="discexp (default): the legacy ×rate every --lr-decay-samples samples (or --lr-decay-epochs); "
                             "step: ×rate every --lr-decay-epochs epochs; cosine: from --lr to 0 over the run")
    recipe.add_argument("--lr-decay-rate", type=unit_interval, help="discexp and step: factor in (0, 1] applied at each decay (default: 0.1)")
    decay = recipe.add_mutually_exclusive_group()
    decay.add_argument("--lr-decay-samples", type=at_least(1),
                       help=f"discexp: decay every this many training samples, lr = lr0 * rate^floor(samples/this) (default: {LEGACY_DECAY_SAMPLES})")
    decay.add_argument("--lr-decay-epochs", type=positive, help="discexp or step: decay every N epochs of the train split (digits default: 5)")
    recipe.add_argument("--warmup-epochs", type=non_negative, help="linear learning-rate warmup over the first N epochs, any schedule (default: 0)")
    recipe.add_argument("--label-smoothing", type=probability, metavar="EPS", help="label smoothing of the main and both auxiliary losses, in [0, 1) (default: 0)")
    recipe.add_argument("--clip-grad-norm", type=positive, metavar="MAX", help="clip the gradients' global norm (all parameters) to MAX")
    recipe.add_argument("--ema", type=open_unit, metavar="DECAY",
                        help="also keep a float32 moving average of the weights (e.g. 0.999) and evaluate it every epoch")
    recipe.add_argument("--best-of", choices=("weights", "ema"),
                        help="which weights' validation top-1 chooses best.pdckpt (and infer.py's default): the trained "
                             "ones (default) or the EMA")
    recipe.add_argument("--aux-weight", type=non_negative, help=f"GoogLeNet: weight of each auxiliary loss (default: {AUX_WEIGHT})")
    recipe.add_argument("--image-size", type=at_least(64), help="input height and width in pixels, 64 or more (default: 224; digits 64)")
    recipe.add_argument("--dropout", type=probability, help="drop rate before the classifier, in [0, 1) (default: the model's legacy rate)")
    recipe.add_argument("--aux-dropout", type=probability, help="GoogLeNet: drop rate in the auxiliary heads (legacy: 0.7)")
    recipe.add_argument("--seed", type=at_least(0), help="seed for weights, shuffling, augmentation and dropout (default: 0)")


def _add_run_arguments(parser):
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU if Paddle sees one, else the CPU")
    run.add_argument("--amp", action="store_true", help="mixed precision: float16 (O1) on GPU; on CPU see docs/performance.md")
    run.add_argument("--nproc", type=at_least(1), default=1,
                     help="start N data-parallel processes (paddle.distributed.spawn): on CPU they share the cores, on GPU one per device")
    run.add_argument("--log-interval", type=at_least(1), default=20, help="print and log training metrics every N steps")
    run.add_argument("--plain-layers", action="store_true",
                     help="train on the CPU with the models' plain Paddle layers (otherwise faster equivalents of the same "
                          "arithmetic are swapped in for training: paddle_googlenet/cpu_training.py)")
    run.add_argument("--system-malloc", action="store_true",
                     help="leave glibc's malloc at its defaults (otherwise freed tensors are kept for reuse, which is faster on CPU)")


def _add_output_arguments(parser):
    output = parser.add_argument_group("output, resume and starting weights")
    output.add_argument("--output", help="folder for checkpoints and metrics.jsonl (default: output/MODEL)")
    output.add_argument("--logdir", help="VisualDL log folder (default: OUTPUT/vdl)")
    output.add_argument("--resume", metavar="PATH|auto", help="continue the run of a checkpoint, or of OUTPUT/latest.pdckpt")
    output.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUTPUT that holds an earlier run: first delete its checkpoints, "
                             "metrics.jsonl, args.json and VisualDL records")
    output.add_argument("--pretrained", metavar="PATH",
                        help="start a new run from these weights (a checkpoint of the same model, a .pdparams state dict or "
                             "a .safetensors file); classifier layers of another class count are re-initialised")
    output.add_argument("--eval-only", metavar="CHECKPOINT",
                        help="evaluate CHECKPOINT on the validation split and write per-class and confusion reports; no training")
    output.add_argument("--keep-checkpoints", type=at_least(0), default=3, help="epoch_N checkpoints to keep (latest and best are always kept)")


def resolve_paths(args):
    """Fill ``--output`` and ``--logdir`` (``--eval-only`` writes its reports beside the checkpoint)."""
    if args.eval_only and args.output is None:
        stem = os.path.splitext(os.path.basename(args.eval_only))[0]
        args.output = os.path.join(os.path.dirname(args.eval_only), f"eval-{stem}")
    args.output = args.output or os.path.join("output", args.model)
    args.logdir = args.logdir or os.path.join(args.output, "vdl")
    exclusive = [flag for flag, value in (("--resume", args.resume), ("--pretrained", args.pretrained),
                                          ("--eval-only", args.eval_only)) if value]
    if args.overwrite and args.resume:
        exclusive.append("--overwrite")
    if len(exclusive) > 1:
        raise UsageError(f"{' and '.join(exclusive)} do not go together: --resume continues a run, --overwrite and "
                         "--pretrained start a new one, --eval-only trains nothing")
    return args


def resolve(args, resumed=None, resumed_from=None):
    """Fill every flag left unset, once: from ``resumed`` (a resumed run's recorded flags), else the defaults.

    ``resumed_from`` names the checkpoint in messages. Raises UsageError for a resumed run given another
    value of a flag that defines it, and for flags that do not fit together (``check``).
    """
    given = {name for name in DEFAULTS if getattr(args, name) is not None}
    if resumed is not None:
        _inherit(args, resumed, resumed_from)
        given |= {name for name in INHERITED if name in resumed}  # the run's own values, None included
    for group in TOGETHER:
        if given & set(group):
            given |= set(group)
    for name in DEFAULTS:
        if name not in given and getattr(args, name) is None:
            setattr(args, name, default_for(name, args.dataset, args.model))
    return check(args)


def _inherit(args, recorded, path):
    changed = []
    for name in INHERITED:
        value, theirs = getattr(args, name), recorded.get(name, DEFAULTS[name])
        if value is None:
            setattr(args, name, theirs)
        elif value != theirs and name in CHANGEABLE:
            changed.append(f"{_flag(name, value)} (the run had {theirs})")
        elif value != theirs:
            was = "without it" if theirs is None else f"with {_flag(name, theirs)}"
            raise UsageError(f"cannot resume from {path}: it was trained {was}, this run has {_flag(name, value)}. "
                             f"Leave the flag out to continue with the run's own, or start a new run from its "
                             f"weights with --pretrained {path}")
    if changed:
        notice(f"resuming with {', '.join(changed)}")


def _flag(name, value):
    return f"--{name.replace('_', '-')} {value}"


def check(args):
    """Raise UsageError for flags that do not fit together; return ``args``."""
    if args.best_of == "ema" and args.ema is None:
        raise UsageError("--best-of ema needs --ema DECAY")
    if args.lr_schedule == "step" and args.lr_decay_epochs is None:
        raise UsageError("--lr-schedule step needs --lr-decay-epochs N")
    if args.warmup_epochs > args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs:g} is longer than the run (--epochs {args.epochs}); "
                         "the learning rate would never reach --lr")
    processes = max(args.nproc, distributed.world_size())
    if args.batch_size % processes:
        raise UsageError(f"--batch-size {args.batch_size} is not divisible by the {processes} processes (it is the global batch)")
    if args.dropout is not None and args.model.startswith("resnet"):
        raise UsageError("--dropout: ResNet has no dropout (the legacy ResNet had none)")
    if args.aux_dropout is not None and args.model != "googlenet":
        raise UsageError("--aux-dropout is for googlenet, whose auxiliary heads have dropout")
    return args


def model_kwargs(args, num_classes):
    """Constructor arguments of the model: the class count and any dropout rates given on the command line."""
    kwargs = {"num_classes": num_classes}
    for name in ("dropout", "aux_dropout"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    return kwargs
