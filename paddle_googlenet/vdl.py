"""VisualDL logging: per-head curves, sample images, a per-class view and hyper-parameters.

Every record's x axis is the global step (optimizer updates since the start of training), so a
resumed run continues its curves instead of restarting at 0. Tags (docs and tests rely on them):

* scalars ``train/loss``, ``train/top1``, ``train/lr``, ``train/img_per_s``; ``val/loss``,
  ``val/top1``, ``val/top5``; GoogLeNet also ``train/loss_aux1``, ``train/loss_aux2``,
  ``train/top1_aux1``, ``train/top1_aux2`` (see :data:`SCALAR_TAGS`);
* image :data:`PER_CLASS_TOP1_TAG`, a bar chart of the validation top-1 of every class, worst first;
* PR curves: :data:`ALL_CLASSES_PR_TAG` (all classes pooled one-vs-rest, i.e. micro-averaged) and,
  in a group VisualDL shows collapsed, ``val_pr_class/<index>_<class name>`` per class;
* the run's hyper-parameters, with its final metrics as scalars ``whole_run/<name>``.

A run is a directory, and VisualDL shows one records file per directory. A process killed after
its last checkpoint has already logged steps the resumed run will redo, so appending to its file
would draw them twice. A resumed logger therefore appends to the run's file only when that holds
nothing beyond ``resume_step``; otherwise the file VisualDL shows is replaced by one with the
records up to ``resume_step`` (a running server must be restarted to drop the points it had read).

This module uses VisualDL's public ``LogWriter`` and ``LogReader`` only. Everything that depends
on VisualDL's internals (record format, file naming and order, PR-curve records) is in
:mod:`paddle_googlenet.vdl_records`.
"""

import contextlib
import io
import os
import re
import shlex

import numpy as np

from . import vdl_records
from .charts import chart_label, new_figure, rgb_pixels
from .files import WriteError, describe_write_failure
from .reports import confusion_matrix, per_class_top1
from .vdl_records import displayed_record_file  # public here too: vdl.displayed_record_file

# The scalar curves: a training metric ``name`` is drawn as ``train/<name>``, a validation one as ``val/<name>``.
TRAIN_METRICS = ("loss", "top1", "lr", "img_per_s")
AUX_HEAD_METRICS = ("loss_aux1", "loss_aux2", "top1_aux1", "top1_aux2")
VAL_METRICS = ("loss", "top1", "top5", "loss_ema", "top1_ema", "top5_ema")
TRAIN_TAGS = tuple(f"train/{name}" for name in TRAIN_METRICS)
AUX_HEAD_TAGS = tuple(f"train/{name}" for name in AUX_HEAD_METRICS)
VAL_TAGS = tuple(f"val/{name}" for name in VAL_METRICS[:3])
SCALAR_TAGS = TRAIN_TAGS + AUX_HEAD_TAGS + VAL_TAGS
TRAIN_IMAGES_TAG = "train/images"
BEST_TOP1 = "val/best_top1"  # the run's summary metric in the hyper-parameter table
PER_CLASS_TOP1_TAG = "val/per_class_top1"
ALL_CLASSES_PR_TAG = "val_pr/all_classes"
CLASS_PR_PREFIX = "val_pr_class/"
# VisualDL groups tags by their first component, sorts the groups by name and opens only the first:
# "train" must come first, so the run summary's group is named to sort after "train" and "val".
HPARAM_METRIC_PREFIX = "whole_run/"
PR_CURVE_THRESHOLDS = 33

_MIN_IMAGE_SIDE = 96  # smaller images (e.g. 8x8 digits) are enlarged to stay visible in the UI
_CLASSES_PER_CHART_COLUMN = 35


def open_command(logdir, port=8040):
    """The shell command that serves the curves of ``logdir`` at http://localhost:PORT."""
    return f"visualdl --logdir {shlex.quote(str(logdir))} --port {int(port)}"


def read_scalars(logdir):
    """The scalar curves VisualDL shows for ``logdir``: ``{tag: [(step, value), ...]}`` in file order.

    Values come back as float32, the precision VisualDL stores.
    """
    path = displayed_record_file(logdir)
    if path is None:
        return {}
    reader = _import_visualdl().LogReader(file_path=path)
    return {
        tag: [(record.id, record.value) for record in reader.get_data("scalar", tag)]
        for tag in reader.get_tags().get("scalar", [])
    }


def pr_curve_tag(index, class_name, num_classes):
    """Tag of one class's PR curve, e.g. ``val_pr_class/009_globe_thistle`` (sorted in class order)."""
    width = max(3, len(str(num_classes - 1)))
    slug = re.sub(r"[^0-9A-Za-z]+", "_", class_name).strip("_")
    return f"{CLASS_PR_PREFIX}{index:0{width}d}_{slug}"


def pr_curves(scores, positive, num_thresholds=PR_CURVE_THRESHOLDS):
    """Precision-recall data of each column of ``scores`` (N, K) against the bool ``positive`` (N, K).

    Threshold k counts a sample as predicted positive when ``floor(score * (num_thresholds - 1)) >= k``,
    as ``LogWriter.add_pr_curve`` does. Returns (K, num_thresholds) arrays under the names VisualDL's
    PR-curve records use: tp, fp, tn, fn, precision, recall.
    """
    num_columns = scores.shape[1]
    buckets = np.clip(np.floor(scores * (num_thresholds - 1)), 0, num_thresholds - 1).astype(np.int64)
    flat_bucket = (np.arange(num_columns) * num_thresholds + buckets).ravel()
    size = num_columns * num_thresholds

    def counts_at_or_above_each_threshold(weights):
        per_bucket = np.bincount(flat_bucket, weights=weights.ravel(), minlength=size)
        per_bucket = per_bucket.reshape(num_columns, num_thresholds)
        return np.cumsum(per_bucket[:, ::-1], axis=1)[:, ::-1].round().astype(np.int64)

    tp = counts_at_or_above_each_threshold(positive)
    fp = counts_at_or_above_each_threshold(~positive)
    fn = tp[:, :1] - tp
    tn = fp[:, :1] - fp
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": tp / np.maximum(tp + fp, 1e-7),
        "recall": tp / np.maximum(tp + fn, 1e-7),
    }


class TrainingLogger:
    """Writes one training run to a VisualDL logdir; a no-op on ranks other than 0.

    Args:
        logdir: directory of this run's records (one run per directory).
        enabled: False on ranks != 0: every method then does nothing and no file is touched.
        resume_step: global step of the checkpoint the run resumed from, or None for a fresh run.
            Records beyond it (written by a process killed after that checkpoint) and the
            hyper-parameter records of the earlier process are dropped; the curves continue.

    Each ``log_*`` call returns once its records are written, so a kill loses nothing logged.
    """

    def __init__(self, logdir, enabled=True, resume_step=None):
        self.logdir = str(logdir)
        self.enabled = enabled
        self._writer = None
        self.file_path = None  # the records file this logger appends to (None when disabled)
        self._last_step = 0 if resume_step is None else int(resume_step)
        if not enabled:
            return
        if resume_step is not None and int(resume_step) < 0:
            raise ValueError(f"resume_step must be a global step >= 0 or None, got {resume_step!r}")
        visualdl = _import_visualdl()
        os.makedirs(self.logdir, exist_ok=True)
        if resume_step is None:
            file_name = vdl_records.new_file_name(self.logdir)
        else:
            file_name = _file_continuing_run(self.logdir, int(resume_step))
        with contextlib.redirect_stdout(io.StringIO()):  # VisualDL prints a notice when appending
            self._writer = visualdl.LogWriter(logdir=self.logdir, file_name=file_name)
        self.file_path = self._writer.file_name

    def log_scalars(self, step, scalars):
        """Add one point at ``step`` to each curve in ``scalars`` ({tag: value})."""
        if not self._writer:
            return
        for tag, value in scalars.items():
            self._writer.add_scalar(tag=tag, value=float(value), step=int(step))
        self._wrote(step)

    def log_train(self, step, metrics):
        """The training curves of ``metrics`` ({name: value} of ``TRAIN_METRICS`` and ``AUX_HEAD_METRICS``)."""
        names = TRAIN_METRICS + AUX_HEAD_METRICS
        self.log_scalars(step, {f"train/{name}": metrics[name] for name in names if name in metrics})

    def log_val(self, step, metrics):
        """The validation curves of ``metrics`` ({name: value} of ``VAL_METRICS``)."""
        self.log_scalars(step, {f"val/{name}": metrics[name] for name in VAL_METRICS if name in metrics})

    def log_images(self, tag, images_hwc_uint8, step):
        """Show ``images_hwc_uint8`` (equal-size HxWxC uint8 arrays, C = 1 or 3) as one grid image."""
        if not self._writer:
            return
        grid_input = _stack_for_grid(tag, images_hwc_uint8)
        self._writer.add_image(tag=tag, img=grid_input, step=int(step), dataformats="NHWC")
        self._wrote(step)

    def log_per_class(self, step, probs, labels, class_names):
        """Per-class view of one evaluation: a top-1 bar chart, a pooled PR curve and one per class.

        Args:
            probs: (N, num_classes) softmax probabilities of the validation samples.
            labels: (N,) integer labels in 0..num_classes-1.
            class_names: the num_classes names, in label order.
        """
        if not self._writer:
            return
        probs, labels = _checked_eval_arrays(probs, labels, class_names)
        accuracy = per_class_top1(confusion_matrix(labels, np.argmax(probs, axis=1), len(class_names)))
        chart = _per_class_chart(accuracy, class_names, step)
        self._writer.add_image(tag=PER_CLASS_TOP1_TAG, img=chart, step=int(step))
        self._write_pr_curves(step, probs, labels, class_names)
        self._wrote(step)

    def log_hparams(self, hparams, metrics):
        """Record the run's hyper-parameters and final ``metrics`` for VisualDL's comparison table.

        Call once, when the run ends: VisualDL shows the first hyper-parameter record of a run.
        Each metric is also a scalar ``whole_run/<name>`` at the last logged step, where the table
        reads its value.
        """
        if not self._writer:
            return
        metric_tags = [HPARAM_METRIC_PREFIX + name for name in metrics]
        for tag, value in zip(metric_tags, metrics.values()):
            self._writer.add_scalar(tag=tag, value=float(value), step=self._last_step)
        self._writer.add_hparams(_hparam_values(hparams), metric_tags)
        self._writer.flush()

    def close(self):
        """Write what is pending and close the file; later calls do nothing."""
        if self._writer:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _wrote(self, step):
        self._last_step = max(self._last_step, int(step))
        try:
            self._writer.flush()
        except OSError as exc:
            raise WriteError(describe_write_failure(self.file_path, exc)) from None

    def _write_pr_curves(self, step, probs, labels, class_names):
        # LogWriter.add_pr_curve calls np.float, removed in NumPy 1.24, so the curves are computed
        # here (all classes at once) and written by vdl_records.add_pr_curve.
        num_classes = len(class_names)
        is_label = labels[:, None] == np.arange(num_classes)[None, :]
        pooled = pr_curves(probs.reshape(-1, 1), is_label.reshape(-1, 1))
        per_class = pr_curves(probs, is_label)
        tags = [ALL_CLASSES_PR_TAG] + [pr_curve_tag(i, name, num_classes) for i, name in enumerate(class_names)]
        rows = [(pooled, 0)] + [(per_class, i) for i in range(num_classes)]
        for tag, (curves, row) in zip(tags, rows):
            curve = {key: array[row] for key, array in curves.items()}
            vdl_records.add_pr_curve(self._writer, tag, step, curve)


def _import_visualdl():
    try:
        import visualdl
    except ImportError as exc:  # pragma: no cover - exercised only without VisualDL
        raise ImportError(
            "VisualDL logging needs the visualdl package: `pip install visualdl` "
            "(or `pip install -e .` from this repository)."
        ) from exc
    return visualdl


def _file_continuing_run(logdir, resume_step):
    """Name of the records file a run resumed at ``resume_step`` appends to.

    Keeps the displayed file when everything in it belongs to steps <= resume_step; otherwise
    replaces it by a file holding only those records.
    """
    old_path = displayed_record_file(logdir)
    if old_path is None:
        return vdl_records.new_file_name(logdir)
    records, complete = vdl_records.read_records(old_path)
    kept = [record for record in records if _belongs_to_resumed_run(record, resume_step)]
    if complete and len(kept) == len(records):
        return os.path.basename(old_path)
    return vdl_records.replace_displayed_file(logdir, kept)


def _belongs_to_resumed_run(record, resume_step):
    """True for records at steps <= resume_step, except the earlier process's hyper-parameters."""
    if record.kind == "hyper_parameters" or record.tag.startswith(HPARAM_METRIC_PREFIX):
        return False
    return record.step <= resume_step


def _stack_for_grid(tag, images):
    """Check the images and stack them (N, H, W, C), enlarging small ones by pixel repetition."""
    if not len(images):
        raise ValueError(f"log_images({tag!r}): got no images")
    shapes = {np.shape(image) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"log_images({tag!r}): images must share one HxWxC shape, got {sorted(shapes)}")
    stacked = np.stack([np.asarray(image) for image in images])
    if stacked.ndim != 4 or stacked.shape[-1] not in (1, 3) or stacked.dtype != np.uint8:
        raise ValueError(
            f"log_images({tag!r}): expected HxWxC uint8 images with C = 1 or 3, got shape "
            f"{stacked.shape[1:]} and dtype {stacked.dtype}"
        )
    factor = -(-_MIN_IMAGE_SIDE // max(stacked.shape[1:3]))
    if factor > 1:
        stacked = stacked.repeat(factor, axis=1).repeat(factor, axis=2)
    return stacked


def _checked_eval_arrays(probs, labels, class_names):
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if probs.ndim != 2 or probs.shape != (len(labels), len(class_names)):
        raise ValueError(
            f"log_per_class: probs must have shape (len(labels), len(class_names)) = "
            f"({len(labels)}, {len(class_names)}), got {probs.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"log_per_class: labels must lie in 0..{len(class_names) - 1}")
    return probs, labels


def _per_class_chart(accuracy, class_names, step):
    """RGB image of horizontal bars: the top-1 of every class, worst first, in columns of <= 35.

    Classes without validation samples (NaN) come last, marked "(no samples)".
    """
    order = np.argsort(np.nan_to_num(accuracy, nan=np.inf), kind="stable")
    labels = [chart_label(name, 40) + (" (no samples)" if np.isnan(top1) else "") for name, top1 in zip(class_names, accuracy)]
    num_columns = -(-len(order) // _CLASSES_PER_CHART_COLUMN)
    rows = -(-len(order) // num_columns)
    figure = new_figure(max(6.0, 4.0 * num_columns), 0.17 * rows + 1.0)
    for column, classes in enumerate(np.array_split(order, num_columns)):
        axes = figure.add_subplot(1, num_columns, column + 1)
        positions = np.arange(len(classes))
        axes.barh(positions, np.nan_to_num(accuracy[classes]) * 100, color="#2f7fc1")
        axes.set_yticks(positions, [labels[i] for i in classes], fontsize=7)
        axes.set_ylim(rows - 0.5, -0.5)  # worst at the top
        axes.set_xlim(0, 100)
        axes.tick_params(axis="x", labelsize=7)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(
        f"Validation top-1 (%) per class, worst first; step {step}, mean over classes "
        f"{np.nanmean(accuracy) * 100:.1f} %",
        fontsize=9,
    )
    figure.tight_layout()
    return rgb_pixels(figure)


def _hparam_values(hparams):
    """Hyper-parameters as VisualDL accepts them: int, float or str (others, bools included, become str)."""
    values = {}
    for name, value in hparams.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None:
            keep = isinstance(value, (int, float, str)) and not isinstance(value, bool)
            values[name] = value if keep else str(value)
    return values
