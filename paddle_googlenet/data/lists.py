"""List files in the legacy ``reader.py`` format, the one reader for ``train.py`` and ``infer.py``.

Every line is split the same way for training and for prediction:

1. Surrounding whitespace is removed; a line that is then empty, or starts with ``#``, is skipped
   (write a path that starts with ``#`` as ``./#...``).
2. A line with a tab: the **last** tab separates the path (before it) from the label (after it),
   so paths may contain spaces and tabs.
3. A line without a tab whose last whitespace-separated word is an integer (``7``, ``-1``): that
   word is the label and the path is the rest (the legacy ``path label``).
4. Any other line is a path without a label. (So a path that ends in a space and a number, like
   ``scan 7``, needs a tab and a label column.)

Training needs a label on every line (``read_list_file``: an integer from 0); prediction takes the
paths and ignores labels (``read_list_entries``). Relative paths are resolved against a root
folder, by default the list file's own folder. Files are UTF-8, with or without a byte-order mark.
An optional labels file holds one class name per line (line N names label N-1) and fixes the
number of classes. Messages name files as they were given.
"""

import re
from collections import namedtuple
from pathlib import Path

from .errors import DataError

SHOWN_ERRORS = 10
_INTEGER = re.compile(r"[+-]?[0-9]+")

ListEntry = namedtuple("ListEntry", ["number", "line", "path", "label", "file"])
ListEntry.__doc__ = ("One list-file line: its number (from 1), its stripped text, the path as written, the label text "
                     "(None without one) and the path resolved against the root folder.")


def _read_lines(path, what):
    """The lines of a UTF-8 text file (a byte-order mark is dropped); messages name ``path`` as given."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{what} {path} does not exist (or is not a file)")
    try:
        return file.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_class_names(labels_file):
    """Class names from a labels file, one per line; label = line number - 1."""
    lines = _read_lines(labels_file, "labels file")
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise DataError(f"labels file {labels_file} names no classes")
    for number, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{labels_file}:{number}: empty class name (expected one class name per line)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"labels file {labels_file} repeats class name(s): {', '.join(map(repr, duplicates))}")
    return names


def _split_line(line):
    """``(path, label text or None)`` of a stripped, non-blank list line, by the rules above."""
    if "\t" in line:
        path, _, label = line.rpartition("\t")
        return path.strip(), label.strip()
    parts = line.rsplit(None, 1)
    if len(parts) == 2 and _INTEGER.fullmatch(parts[1]):
        return parts[0], parts[1]
    return line, None


def read_list_entries(list_file, data_root=None):
    """A ``ListEntry`` for each line of ``list_file`` that is neither blank nor a comment.

    Relative paths are resolved against ``data_root`` (default: the list file's folder). Raises
    ``DataError`` if the file is missing or not UTF-8 text.
    """
    root = Path(data_root) if data_root is not None else Path(list_file).resolve().parent
    entries = []
    for number, raw in enumerate(_read_lines(list_file, "list file"), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            path, label = _split_line(line)
            entries.append(ListEntry(number, line, path, label, str(root / path)))
    return entries


def read_list_file(list_file, data_root=None, num_classes=None):
    """Parse a training list file into ``[(absolute path, label), ...]``.

    Args:
        list_file: the list file.
        data_root: folder that relative paths are resolved against (default: the list file's folder).
        num_classes: if known (from a labels file), labels must be below it.

    Raises ``DataError`` naming ``file:line`` for every line without a label, whose label is not an
    integer or is out of range (the first ten are shown).
    """
    samples, errors = [], []
    for entry in read_list_entries(list_file, data_root):
        where = f"{list_file}:{entry.number}"
        if entry.label is None:
            errors.append(f"{where}: expected '<image path><TAB><integer label>', got {entry.line!r}")
            continue
        try:
            label = int(entry.label)
        except ValueError:
            errors.append(f"{where}: label {entry.label!r} is not an integer")
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            allowed = f"0..{num_classes - 1} (the labels file names {num_classes} classes)" if num_classes else ">= 0"
            errors.append(f"{where}: label {label} is out of range; expected {allowed}")
            continue
        samples.append((entry.file, label))
    if errors:
        shown = "\n".join(f"  {error}" for error in errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise DataError(f"{len(errors)} bad line(s) in list file {list_file}:\n{shown}{more}")
    return samples
