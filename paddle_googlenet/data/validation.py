"""Checks run on every split before training starts; each failure is a ``DataError`` saying what to fix."""

import os

from .errors import DataError

SHOWN_PATHS = 5  # how many offending paths an error message lists


def require_samples(samples, split, source):
    """An empty split is an error: nothing could be trained or evaluated."""
    if len(samples) == 0:
        raise DataError(f"the {split} split is empty: {source} yields no images")


def require_existing_files(paths, split, source, hint=""):
    """Every image file must exist; report how many are missing and the first few."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if not missing:
        return
    shown = "\n".join(f"  {path}" for path in missing[:SHOWN_PATHS])
    more = f"\n  ... and {len(missing) - SHOWN_PATHS} more" if len(missing) > SHOWN_PATHS else ""
    raise DataError(
        f"{len(missing)} of {len(paths)} image files of the {split} split ({source}) do not exist:\n"
        f"{shown}{more}" + (f"\n{hint}" if hint else "")
    )


def require_val_classes_in_train(train_labels, val_labels, class_names, source):
    """A validation class that never occurs in training cannot be learnt: an error, not a silent 0%."""
    unseen = sorted(set(int(label) for label in val_labels) - set(int(label) for label in train_labels))
    if not unseen:
        return
    listed = ", ".join(f"{label} ({class_names[label]!r})" for label in unseen[:10])
    more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
    raise DataError(
        f"{len(unseen)} class(es) occur in the validation split but not in the training split ({source}): "
        f"{listed}{more}. Add training images for them or remove them from the validation split."
    )
