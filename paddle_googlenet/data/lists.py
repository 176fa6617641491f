"""List files in the legacy ``reader.py`` format: one ``<image path><TAB><integer label>`` per line.

A tab separates path and label, so paths may contain spaces; without a tab the line is split at its
last run of whitespace. Labels start at 0. Relative paths are resolved against a root folder (by
default the list file's own folder). Blank lines are ignored. An optional labels file holds one
class name per line (line N names label N-1) and fixes the number of classes.
"""

from pathlib import Path

from .errors import DataError

SHOWN_ERRORS = 10


def _read_lines(path, what):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist (or is not a file)")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
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
    """``(path, label_text)``, or None if the line has no separator."""
    if "\t" in line:
        path, _, label = line.rpartition("\t")
        return path.strip(), label.strip()
    parts = line.rsplit(None, 1)
    return tuple(parts) if len(parts) == 2 else None


def read_list_file(list_file, data_root=None, num_classes=None):
    """Parse a list file into ``[(absolute path, label), ...]``.

    Args:
        list_file: the list file.
        data_root: folder that relative paths are resolved against (default: the list file's folder).
        num_classes: if known (from a labels file), labels must be below it.

    Raises ``DataError`` naming ``file:line`` for every line that does not parse, whose label is not
    an integer or is out of range (the first ten are shown).
    """
    list_file = Path(list_file)
    root = Path(data_root) if data_root is not None else list_file.resolve().parent
    samples, errors = [], []
    for number, raw in enumerate(_read_lines(list_file, "list file"), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"{list_file}:{number}"
        fields = _split_line(line)
        if fields is None or not fields[0]:
            errors.append(f"{where}: expected '<image path><TAB><integer label>', got {line!r}")
            continue
        path, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            errors.append(f"{where}: label {label_text!r} is not an integer")
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            allowed = f"0..{num_classes - 1} (the labels file names {num_classes} classes)" if num_classes else ">= 0"
            errors.append(f"{where}: label {label} is out of range; expected {allowed}")
            continue
        samples.append((str(root / path), label))
    if errors:
        shown = "\n".join(f"  {error}" for error in errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise DataError(f"{len(errors)} bad line(s) in list file {list_file}:\n{shown}{more}")
    return samples
