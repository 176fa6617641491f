"""Convert a model trained by the legacy ``paddle.v2`` code into a checkpoint of this project.

    python -m paddle_googlenet.convert_v2 params_pass_199.tar.gz googlenet --output googlenet_v2.pdckpt

``PARAMS`` is an archive the legacy trainer saved (``params_pass_N.tar.gz``, or a plain ``.tar``);
``MODEL`` a registered model name. The result is an ordinary ``.pdckpt`` (``checkpoint.weights_checkpoint``):
``infer.py``, ``python -m paddle_googlenet.export`` and ``train.py --pretrained`` take it like any other.

The steps, each in its module:

1. ``legacy_params.read_archive``: every tensor's header and length, and its ParameterConfig where the
   archive has one;
2. ``legacy_names.match_model``: which tensor is which parameter (by name, early spelling or creation
   order), the class count from the classifier's shape, ResNet-18's legacy [2, 2, 2, 1] shape; when
   the archive fits another model instead, ``identify`` names it;
3. here: class names (``--labels``), the legacy inference preprocessing
   (``data.transforms.legacy_preprocess``), fresh auxiliary heads for GoogLeNet archives without
   them (seeded), a check that the model takes every value unchanged, the exclusive write, and the
   report.

Every problem with the input is a ``UserError``: ``PROG: error: ...`` on one line, exit code 2, and
nothing written. The output is checked before the archive is read, and written exclusively, so an
existing file is never replaced.
"""

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from .runtime import configure_threads, import_paddle

if __name__ == "__main__":  # the command line: let Paddle use every core (before Paddle is imported)
    configure_threads()

paddle = import_paddle()  # first: it quiets Paddle's import-time warnings, which the modules below would trigger

import numpy as np  # noqa: E402

from .checkpoint import SUFFIX, ModelRecord, save_checkpoint, weights_checkpoint  # noqa: E402
from .cli import ArgumentParser, run_main  # noqa: E402
from .data.lists import read_class_names  # noqa: E402
from .data.transforms import LEGACY_FLOWERS_MEAN, legacy_preprocess  # noqa: E402
from .errors import UserError  # noqa: E402
from .legacy_names import MatchError, check_configs, identify, match_model, placed_weights  # noqa: E402
from .legacy_params import file_sha256, read_archive  # noqa: E402

PROG = "python -m paddle_googlenet.convert_v2"
FRESH_SEED = 0  # the seed of the freshly initialised parameters (GoogLeNet's auxiliary heads)
FLOWERS_CLASSES = 102
SHOWN = 6  # names listed in the report before "and N more"


class ConvertError(UserError):
    """An output, label file or option that the conversion cannot use."""


@dataclass(frozen=True)
class Conversion:
    """What ``convert`` did: the archive read, the match made, the checkpoint's record, the file written."""

    archive: object  # legacy_params.LegacyArchive
    match: object  # legacy_names.Match
    record: ModelRecord
    labels: Path
    output: Path


def convert(params, model_name, output, labels=None, mean=None, corrected_resize=False):
    """Convert the archive ``params`` for ``model_name`` into the checkpoint ``output``; return a ``Conversion``.

    ``labels``: a file of class names, one per line (line 1 names output unit 0). ``mean`` (B, G, R)
    and ``corrected_resize`` go into the recorded preprocessing (``legacy_preprocess``).
    """
    output = check_output(output)
    class_names = read_class_names(labels) if labels else None
    archive = read_archive(params)
    match = match_to(model_name, archive.tensors)
    check_configs(match, archive.tensors)
    count = match.table.model_kwargs["num_classes"]
    if class_names is not None and len(class_names) != count:
        raise ConvertError(f"{labels} names {len(class_names)} classes but the archive's classifier has {count} outputs; "
                           f"give one name per output unit, line 1 for unit 0")
    record = ModelRecord(model_name, dict(match.table.model_kwargs), class_names or [str(i) for i in range(count)],
                         legacy_preprocess(mean, corrected_resize))
    weights = complete_weights(record, match, archive.tensors)
    save_checkpoint(weights_checkpoint(record, weights, origin(archive, match)), output, exclusive=True)
    return Conversion(archive, match, record, Path(labels) if labels else None, output)


def check_output(output):
    """The output path, refused before any work if it exists, lacks the suffix or its folder is missing."""
    output = Path(output)
    if output.exists():
        raise ConvertError(f"--output {output} exists already; choose another file name (it is never replaced)")
    if output.suffix != SUFFIX:
        raise ConvertError(f"--output {output}: a checkpoint file name ends in {SUFFIX}, e.g. {output.with_suffix(SUFFIX)}")
    if not output.parent.is_dir():
        raise ConvertError(f"--output {output}: the folder {output.parent} does not exist; create it first")
    return output


def match_to(model_name, tensors):
    """``legacy_names.match_model``; when the archive does not fit, say which model it holds if it fits one."""
    try:
        return match_model(model_name, tensors)
    except MatchError as error:
        others = identify(tensors, exclude=model_name)
        if not others:
            raise
        found = others[0]
        raise MatchError(f"this archive holds a {found.table.title} ({found.description}), not {model_name}; convert "
                         f"it with MODEL {found.table.model_name}") from error


def complete_weights(record, match, tensors):
    """Every parameter of the record's model: the archive's, plus fresh ones (seeded) for what it lacks.

    The model is built, takes the weights, and every value is compared with what it was given.
    """
    model = fresh_model(record)
    weights = placed_weights(match, tensors)
    state = model.state_dict()
    weights.update({key: state[key].numpy() for key in match.fresh})
    if set(weights) != set(state):
        raise RuntimeError(f"the {record.model_name} table misses {sorted(set(state) - set(weights))[:3]}")
    model.set_state_dict(weights)
    for key, value in model.state_dict().items():
        if not np.array_equal(value.numpy(), weights[key]):
            raise RuntimeError(f"{key} did not load unchanged into {record.model_name}")
    return weights


def fresh_model(record):
    """The record's model, initialised from ``FRESH_SEED``; Paddle's random state is left as it was."""
    saved = paddle.get_rng_state()
    paddle.seed(FRESH_SEED)
    try:
        return record.build()
    finally:
        paddle.set_rng_state(saved)


def origin(archive, match):
    """What the checkpoint was converted from, stored beside its weights."""
    return {
        "converter": "paddle_googlenet.convert_v2",
        "archive": str(archive.path.resolve()),
        "sha256": file_sha256(archive.path),
        "archive_format": archive.compression,
        "names": names_method(match),
        "renames": [f"{old} -> {new}" for old, new in match.renames],
        "fresh": list(match.fresh),
        "fresh_seed": FRESH_SEED if match.fresh else None,
        "unused": list(match.unused),
        "without_parameter_config": archive.without_config,
    }


def names_method(match):
    """``exact``, ``early spellings``, ``creation order`` or ``early spellings, creation order``."""
    ways = ["early spellings"] * match.early + ["creation order"] * bool(match.renames)
    return ", ".join(ways) or "exact"


# The report ---------------------------------------------------------------------------------------

def report(conversion):
    """The lines printed after a successful conversion: what was read, matched, loaded, left, recorded, written."""
    match, record = conversion.match, conversion.record
    lines = [_archive_line(conversion.archive), _model_line(match), _names_line(match), _loaded_line(match)]
    lines += _fresh_lines(match) + _unused_lines(match)
    lines += [_classes_line(conversion), _preprocess_line(record.preprocess)]
    if len(record.class_names) == FLOWERS_CLASSES:
        lines.append("note: 102 classes: if the model was trained with the flowers reader that fed labels 1..102, output "
                     "unit k is flower label k and unit 0 was never a training target; with the reader that fed labels "
                     "0..101, unit k is flower label k+1; the archive does not record which (docs/porting.md)")
    lines += [f"wrote {conversion.output}", f"predict with: python infer.py {conversion.output} IMAGE..."]
    return lines


def _listed(names):
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _archive_line(archive):
    values = sum(tensor.size for tensor in archive.tensors.values())
    kind = "gzip-compressed tar" if archive.compression == "gzip" else "tar"
    line = f"read {archive.path}: {kind}, {len(archive.tensors)} tensors ({values:,} values)"
    missing = archive.without_config
    if missing:
        line += (f"; {len(missing)} without a ParameterConfig member ({_listed(missing)}): their header and size "
                 f"were checked, their name, dims and role could not be")
    return line


def _model_line(match):
    table = match.table
    key, name = classifier_of(match)
    line = (f"model: {table.title} ({match.description}), {table.model_kwargs['num_classes']} classes, read from the "
            f"classifier {name} {list(_shape_of(table, key))}")
    if table.model_kwargs.get("blocks"):
        line += ("; the legacy ResNet-18 shape (this project's resnet18 has blocks [2, 2, 2, 2]): the checkpoint records "
                 "the blocks, so infer.py, export and train.py rebuild this shape")
    return line


def classifier_of(match):
    """``(key, archive tensor)`` of the classifier's weight: the last fc layer of the model's main path."""
    layer = [layer for layer in match.table.layers if layer.kind == "fc" and not layer.optional][-1]
    key = layer.params[0].key
    return key, match.placed[key]


def _shape_of(table, key):
    return next(param.shape for layer in table.layers for param in layer.params if param.key == key)


def _names_line(match):
    if not match.renames:
        if match.early:
            return "names: the early paddle.v2 spellings (___img_conv_layer_N__, ___batch_norm_layer_N__), number for number"
        return "names: exactly as the legacy model code names them"
    early = "early paddle.v2 spellings; " if match.early else ""
    return f"names: {early}{len(match.renames)} layers matched by creation order and size: {_renamed(match.renames)}"


def _renamed(renames):
    """``___fc_layer_3__…___fc_layer_5__ as ___fc_layer_0__…___fc_layer_2__`` for each prefix's run."""
    runs = {}
    for old, new in renames:
        runs.setdefault(new.rstrip("_").rstrip("0123456789"), []).append((old, new))
    parts = []
    for pairs in runs.values():
        (first_old, first_new), (last_old, last_new) = pairs[0], pairs[-1]
        parts.append(f"{first_old} as {first_new}" if len(pairs) == 1 else
                     f"{first_old}…{last_old} as {first_new}…{last_new} ({len(pairs)} layers)")
    return "; ".join(parts)


def _loaded_line(match):
    total = len(match.placed) + len(match.fresh)
    placed = len(match.placed)
    return f"loaded: {placed} archive tensors into {placed} of the {total} parameters of {match.table.title}"


def _fresh_lines(match):
    if not match.fresh:
        return []
    heads = sorted({key.split(".")[0] for key in match.fresh})
    return [f"fresh: the archive holds no auxiliary heads (early trainers did not save them): the {len(match.fresh)} "
            f"parameters of {' and '.join(heads)} are freshly initialised (seed {FRESH_SEED}); inference does not "
            f"use them, fine-tuning trains them"]


def _unused_lines(match):
    if not match.unused:
        return []
    return [f"unused: {len(match.unused)} archive tensors placed nowhere, layers the training script built besides the "
            f"model: {_by_layer(match.unused)}"]


def _by_layer(names):
    """``___conv_0__.w0, ___fc_layer_1__.{w0,wbias}``: tensor names, those of one layer together, sorted."""
    layers = {}
    for name in sorted(names):
        layer, dot, suffix = name.rpartition(".")
        layers.setdefault(layer if dot else name, []).append(suffix if dot else "")
    shown = [layer + (f".{suffixes[0]}" if len(suffixes) == 1 else ".{" + ",".join(suffixes) + "}") if suffixes != [""]
             else layer for layer, suffixes in layers.items()]
    return _listed(shown)


def _classes_line(conversion):
    count = len(conversion.record.class_names)
    if conversion.labels:
        return f"classes: {count} names from {conversion.labels} (line 1 names output unit 0)"
    return f"classes: {count}, named by their numbers 0..{count - 1} (--labels FILE gives them names)"


def _preprocess_line(preprocess):
    mean = preprocess["mean"]
    subtracted = f"mean B G R {' '.join(f'{m:g}' for m in mean)} subtracted" if any(mean) else "no mean subtracted"
    resize = ("keeping the aspect ratio (--corrected-resize)" if preprocess["resize"] == "short_side" else
              "with the legacy resize's width and height swapped on non-square images (--corrected-resize keeps the "
              "aspect ratio)")
    return (f"preprocessing recorded: {preprocess['channel_order']}, values 0..255, {subtracted}, short side to "
            f"{preprocess['resize_size']} {preprocess['interpolation']} {resize}, centre crop {preprocess['image_size']}")


# The command line ---------------------------------------------------------------------------------

def get_args_parser():
    from .models import list_models

    parser = ArgumentParser(
        prog=PROG,
        description="Convert a model trained by the legacy paddle.v2 code (its params_pass_N.tar.gz) into a checkpoint "
        "of this project, for infer.py, python -m paddle_googlenet.export and train.py --pretrained. See docs/porting.md.",
    )
    parser.add_argument("params", metavar="PARAMS", help="the legacy archive: params_pass_N.tar.gz, or a plain .tar")
    parser.add_argument("model", metavar="MODEL", choices=list_models(),
                        help=f"the model it holds: {', '.join(list_models())}")
    parser.add_argument("--output", required=True, metavar="CHECKPOINT",
                        help=f"the checkpoint to write (*{SUFFIX}); an existing file is never replaced")
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one per line, line 1 for output unit 0 (default: the unit numbers 0, 1, ...)")
    parser.add_argument("--mean", nargs="+", metavar="VALUE", action=MeanAction,
                        help="the per-channel mean B G R the model was trained with, subtracted at inference, or "
                             f"'flowers' for {' '.join(map(str, LEGACY_FLOWERS_MEAN))} (default: none, as infer.py had)")
    parser.add_argument("--corrected-resize", action="store_true",
                        help="resize keeping the aspect ratio, instead of the legacy resize that swapped width and "
                             "height of non-square images")
    return parser


class MeanAction(argparse.Action):
    """``--mean``: the flowers mean, or three finite numbers (B, G, R); a usage error otherwise."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values == ["flowers"]:
            setattr(namespace, self.dest, LEGACY_FLOWERS_MEAN)
            return
        try:
            mean = tuple(float(value) for value in values)
        except ValueError:
            mean = ()
        if len(mean) != 3 or not all(map(math.isfinite, mean)):
            parser.error(f"--mean takes three numbers B G R, or flowers; got {' '.join(values)}")
        setattr(namespace, self.dest, mean)


def main(argv=None):
    """The command line; returns the exit code (a problem with the input: one line, exit code 2, nothing written)."""
    return run_main(PROG, _command, argv)


def _command(argv):
    args = get_args_parser().parse_args(argv)
    conversion = convert(args.params, args.model, args.output, args.labels, args.mean, args.corrected_resize)
    print("\n".join(report(conversion)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
