"""Images named on a command line: files, folders (searched recursively) and list files, for
``infer.py`` and for the calibration images of ``python -m paddle_googlenet.export --int8``."""

import os
from pathlib import Path

from .errors import DataError
from .folder import IMAGE_EXTENSIONS, image_files, is_image_file
from .lists import SHOWN_ERRORS, read_list_entries


def collect_images(inputs):
    """``(image paths, problems)`` for files, folders (searched recursively) and list files, in the given order.

    A file with an image extension is an image; any other file is a list file (``read_image_list``).
    ``problems`` holds a message for each input that does not exist or yields no image, and for
    each list line that names no existing file.
    """
    images, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = image_files(item)
            if not found:
                problems.append(f"{item}: no image files ({' '.join(IMAGE_EXTENSIONS)}) in this folder")
        elif path.is_file() and is_image_file(path):
            found = [item]
        elif path.is_file():
            found, list_problems = read_image_list(item)
            problems.extend(list_problems)
        else:
            problems.append(f"{item}: no such file or folder")
            continue
        images.extend(found)
    return images, problems


def read_image_list(list_file):
    """``(image paths, problems)`` of a list file, read by ``data.lists`` as for training, labels ignored.

    Lines naming no existing file are problems (the first ``SHOWN_ERRORS``, and how many more); if
    no line names an existing file, the file is not a list of images: one problem says so.
    """
    try:
        entries = read_list_entries(list_file)
    except DataError as exc:
        return [], [str(exc)]
    if not entries:
        return [], [f"{list_file}: an empty list file (expected one image path per line)"]
    found, missing = [], []
    for entry in entries:
        (found if os.path.isfile(entry.file) else missing).append(entry)
    if not found:
        first = entries[0]
        text = first.line if len(first.line) <= 40 else first.line[:40] + "…"
        return [], [f"{list_file}: not a list of images: line {first.number} ({text!r}) names no existing file "
                    "(a list file holds one image path per line, optionally a tab and a label)"]
    problems = [f"{list_file}:{entry.number}: no such image file {entry.path}" for entry in missing[:SHOWN_ERRORS]]
    if len(missing) > SHOWN_ERRORS:
        problems.append(f"{list_file}: ... and {len(missing) - SHOWN_ERRORS} more lines naming no existing file")
    return [entry.file for entry in found], problems
