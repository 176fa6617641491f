"""``train.py MODEL --eval-only CHECKPOINT``: evaluate a checkpoint on the validation split and write reports.

The checkpoint is evaluated as it is used: with its own preprocessing and its chosen weights, on the
data the flags name, which must have its classes. The reports (``reports.py``) go into
``--output`` (default: ``eval-<checkpoint name>`` beside the checkpoint), which must be empty or
named with ``--overwrite``; that is checked before anything is computed.
"""

from pathlib import Path

from .checkpoint import CheckpointError, build_model, load_checkpoint, read_record
from .data import build_datasets, build_loader, data_source
from .device import Precision, select_device
from .engine import evaluate
from .options import default_for
from .reports import write_reports
from .run_folder import OutputError, check_writable


def evaluate_checkpoint(args):
    """``train.py MODEL --eval-only CHECKPOINT``: loss, top-1 and top-5 on the validation split, and the report files.

    The report folder is checked before anything is computed; the checkpoint is evaluated with its own
    preprocessing, on the data the flags name, which must have its classes.
    """
    folder = Path(args.output)
    if folder.is_dir() and any(folder.iterdir()) and not args.overwrite:
        raise OutputError(f"{args.output} already holds files; choose another --output, or replace them with --overwrite")
    check_writable(args.output, "--output")
    state = load_checkpoint(args.eval_only)
    record = read_record(state)
    if record.model_name != args.model:
        raise CheckpointError(f"{args.eval_only} holds a {record.model_name} model, not {args.model}")
    device = select_device(args.device)
    data = build_datasets(data_source(args), record.preprocess, args.strict_images)
    check_same_classes(record, data, args.eval_only)
    batch_size = args.batch_size or default_for("batch_size", args.dataset, args.model)
    workers = default_for("workers", args.dataset, args.model) if args.workers is None else args.workers
    loader = build_loader(data.val, batch_size, train=False, workers=workers, seed=0)
    metrics, probs, labels = evaluate(build_model(state), loader, Precision(device, args.amp))
    print(f"{args.eval_only} on the validation split of {args.dataset} ({len(labels)} images): loss {metrics['loss']:.4f}, "
          f"top-1 {100 * metrics['top1']:.2f} %, top-5 {100 * metrics['top5']:.2f} %")
    files = write_reports(folder, metrics, probs, labels, data.class_names, args.eval_only)
    print(f"wrote {', '.join(str(p) for p in files)}")
    return 0


def check_same_classes(record, data, path):
    """The data must have the checkpoint's classes: the same count, and the same names unless it has only numbers."""
    theirs, ours = list(record.class_names), list(data.class_names)
    unnamed = theirs == [str(index) for index in range(len(theirs))]  # e.g. converted without --labels
    if len(theirs) != len(ours) or (theirs != ours and not unnamed):
        raise CheckpointError(
            f"{path} was trained on other classes than this data's ({len(theirs)} classes there, {data.summary()} "
            f"here); evaluate it with the data flags it was trained with")
