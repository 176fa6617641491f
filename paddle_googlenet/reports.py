"""Reports of an evaluation: per-class top-1 and the confusion matrix, as JSON and as a PNG a person can read.

The per-class view of VisualDL (``vdl.py``) and the report files of ``train.py MODEL --eval-only
CHECKPOINT`` (``evaluation.py``) come from here. The report folder holds:

* ``metrics.json``: loss, top-1, top-5 and error of the split, the checkpoint and the image count;
* ``per_class.json``: for every class, its name, image count and top-1;
* ``confusion.json``: ``matrix[i][j]`` = images of class i predicted as class j, with the class names;
* ``confusion.png``: the matrix normalised per true class, with counts in the cells when there are
  few classes and the per-class top-1 beside each row.
"""

from pathlib import Path

import numpy as np

from .charts import chart_label, new_figure
from .files import json_text, write_atomically, write_text_atomically

REPORT_FILES = ("metrics.json", "per_class.json", "confusion.json", "confusion.png")
ANNOTATED_CLASSES = 20  # up to this many classes, every cell shows its count


def confusion_matrix(labels, predictions, num_classes):
    """``matrix[i, j]``: how many samples of class i were predicted as class j."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def per_class_top1(matrix):
    """Top-1 of each class from a confusion matrix: the diagonal over the row sums (NaN for a class without samples)."""
    images = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diagonal(matrix) / images


def per_class_rows(matrix, class_names):
    """``[{"class_id", "name", "images", "top1"}, ...]``; ``top1`` is None for a class without images."""
    top1 = per_class_top1(matrix)
    return [{"class_id": index, "name": name, "images": int(matrix[index].sum()),
             "top1": None if np.isnan(top1[index]) else float(top1[index])} for index, name in enumerate(class_names)]


def write_reports(folder, metrics, probs, labels, class_names, source):
    """Write the four report files into ``folder`` (created if needed); return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    matrix = confusion_matrix(labels, np.argmax(probs, axis=1), len(class_names))
    rows = per_class_rows(matrix, class_names)
    documents = {
        "metrics.json": {**{key: float(value) for key, value in metrics.items()}, "images": int(len(labels)), "checkpoint": str(source)},
        "per_class.json": rows,
        "confusion.json": {"class_names": list(class_names), "matrix": matrix.tolist(),
                           "rows": "true class", "columns": "predicted class"},
    }
    for name, document in documents.items():
        write_text_atomically(folder / name, json_text(document, indent=1) + "\n")
    figure = plot_confusion(matrix, class_names, rows, title=f"{chart_label(source, 80)}: top-1 {100 * metrics['top1']:.2f} %")
    write_atomically(folder / "confusion.png", lambda tmp: figure.savefig(tmp, format="png"))
    return [folder / name for name in REPORT_FILES]


def plot_confusion(matrix, class_names, rows, title):
    """The confusion matrix normalised per true class (row), as a heat map with labelled axes; returns the figure."""
    count = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = min(40.0, max(5.0, 0.28 * count + 2.5))
    figure = new_figure(side + 1.5, side)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.04, label="share of the true class")
    font = 8 if count <= 40 else 5
    labels = [chart_label(name) for name in class_names]
    axes.set_xticks(range(count), labels, rotation=90, fontsize=font)
    top1 = ["—" if row["top1"] is None else f"{100 * row['top1']:.0f} %" for row in rows]
    axes.set_yticks(range(count), [f"{label}  {value}" for label, value in zip(labels, top1)], fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class (and its top-1)")
    if count <= ANNOTATED_CLASSES:
        for i in range(count):
            for j in range(count):
                if matrix[i, j]:
                    axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                              color="white" if share[i, j] > 0.5 else "black")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure

