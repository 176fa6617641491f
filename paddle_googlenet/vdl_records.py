"""The VisualDL internals that :mod:`paddle_googlenet.vdl` needs, and nothing else.

VisualDL's public ``LogWriter`` cannot drop records and its ``add_pr_curve`` calls ``np.float``
(removed in NumPy 1.24), so resuming a run and writing PR curves need what VisualDL keeps private.
All of it is here, behind these functions:

* :func:`displayed_record_file` and :func:`new_file_name`: which records file VisualDL shows;
* :func:`read_records`: the records of a file, as :class:`StoredRecord`;
* :func:`replace_displayed_file`: show chosen records instead of the current file's;
* :func:`add_pr_curve`: write a PR curve computed elsewhere, through a ``LogWriter``.

Verified with VisualDL 2.5.3 (setup.py pins ``visualdl>=2.5.3,<2.6``). It relies on:

* framing: a records file is a sequence of records, each a uint64 little-endian length followed by
  that many bytes of a serialized ``visualdl.proto.record_pb2.Record`` (no CRC), written by
  ``visualdl.writer.record_writer.RecordWriter.write`` and read by ``visualdl.reader.record_reader``;
* each ``Record`` holds one ``Record.Value`` (``values[0]``) with the step in ``id``, the ``tag`` and
  the payload in the oneof ``one_value`` ("value" for a scalar, "image", "hparam", "pr_curve", ...);
* file choice: in each directory VisualDL reads only files whose name contains ``vdlrecords``, and
  shows one of them, the name that sorts last (``LogReader.logs``); ``LogWriter`` names the files it
  creates ``vdlrecords.<10-digit unix time>.log`` (so does :func:`new_file_name`, numbering after
  every existing file) and appends to an existing file passed as ``file_name``;
* a running ``visualdl`` server re-opens the files it has read by name and fails for good once one
  of them disappears: a replaced file is emptied, never deleted;
* ``LogWriter._get_file_writer().add_record(record)`` (private) writes a ``Record``, and
  ``visualdl.component.base_component.pr_curve_raw`` builds a PR-curve ``Record`` from its counts.

``tests/test_vdl.py::test_visualdl_record_format_is_the_one_vdl_records_relies_on`` checks these
points against the installed VisualDL (``test_server_http_api_across_resume`` the server's) and says
so when an upgrade breaks them: re-check this module then. VisualDL is imported only inside the
functions that need it, so importing this module (and :mod:`paddle_googlenet.vdl`) does not.
"""

import os
import re
import struct
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

_RECORDS_MARK = "vdlrecords"  # VisualDL reads only files whose name contains this
_RECORDS_NAME = re.compile(r"vdlrecords\.(\d+)\.log")
_LENGTH_HEADER = struct.Struct("<Q")
# LogReader.get_tags() groups records by component; its name is the oneof field's, except these.
_COMPONENT_OF_FIELD = {"value": "scalar", "hparam": "hyper_parameters", "tag_value": "scalars"}


class StoredRecord(NamedTuple):
    """One record of a records file.

    kind: the ``LogReader.get_tags()`` key of the record ("scalar", "image", "pr_curve",
        "hyper_parameters", "meta_data", ...).
    tag: its tag (e.g. "train/loss"; "hparam" for hyper-parameters).
    step: its step (VisualDL's hyper-parameter and meta-data records have a fixed one).
    value: the ``Record.Value`` it holds, the object ``LogReader.get_data`` returns
        (``value.value`` of a scalar, ``value.image.encoded_image_string``, ``value.pr_curve.TP``, ...).
    raw: the record's bytes as stored, which :func:`replace_displayed_file` copies unchanged.
    """

    kind: str
    tag: str
    step: int
    value: Any
    raw: bytes


def record_files(logdir):
    """Paths of every records file directly in ``logdir``, in VisualDL's sort order (it shows the last)."""
    return [os.path.join(logdir, name) for name in _record_file_names(logdir)]


def displayed_record_file(logdir):
    """Path of the records file VisualDL shows for ``logdir`` (the name sorting last), or None."""
    names = _record_file_names(logdir)
    return os.path.join(logdir, names[-1]) if names else None


def new_file_name(logdir):
    """A records file name that sorts after every existing one, so VisualDL shows the new file.

    Raises RuntimeError when a file in ``logdir`` would still sort after it.
    """
    names = _record_file_names(logdir)
    numbers = [int(match.group(1)) for match in map(_RECORDS_NAME.fullmatch, names) if match]
    name = "vdlrecords.%010d.log" % max([int(time.time())] + [number + 1 for number in numbers])
    if names and name <= names[-1]:
        raise RuntimeError(
            f"{os.path.join(logdir, names[-1])} sorts after {name}, so VisualDL would keep showing it "
            f"instead of this run; move it out of {logdir}."
        )
    return name


def read_records(path):
    """The records of a records file, in file order, and whether the file ended cleanly.

    A last record cut short (by a kill during a write) is dropped with a warning; the second
    value is then False.
    """
    from visualdl.proto.record_pb2 import Record

    with open(path, "rb") as stream:
        data = stream.read()
    records, offset = [], 0
    while offset + _LENGTH_HEADER.size <= len(data):
        (length,) = _LENGTH_HEADER.unpack_from(data, offset)
        end = offset + _LENGTH_HEADER.size + length
        if end > len(data):
            break
        raw = data[offset + _LENGTH_HEADER.size:end]
        value = Record.FromString(raw).values[0]
        field = value.WhichOneof("one_value")
        records.append(StoredRecord(_COMPONENT_OF_FIELD.get(field, field), value.tag, value.id, value, raw))
        offset = end
    if offset != len(data):
        warnings.warn(
            f"{path}: the last record (from byte {offset} of {len(data)}) is incomplete, probably cut "
            "by a kill; it is dropped.",
            stacklevel=2,
        )
    return records, offset == len(data)


def replace_displayed_file(logdir, records):
    """Make VisualDL show ``records`` (from :func:`read_records`) for ``logdir`` instead of its file.

    Writes them to a new file whose name sorts last (complete or not at all) and empties the file
    shown until then, keeping it as a 0-byte file so a running server keeps working (it still holds
    the points it had read: restart it to drop them). Returns the new file's name.
    """
    old_path = displayed_record_file(logdir)
    name = new_file_name(logdir)
    partial_path = os.path.join(logdir, ".resume-rewrite.partial")  # no _RECORDS_MARK: ignored by VisualDL
    with open(partial_path, "wb") as out:
        for record in records:
            out.write(_LENGTH_HEADER.pack(len(record.raw)) + record.raw)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial_path, os.path.join(logdir, name))
    if old_path is not None:
        os.truncate(old_path, 0)
    return name


def add_pr_curve(writer, tag, step, curve, walltime=None):
    """Write one PR curve through the ``LogWriter`` ``writer``, from counts computed elsewhere.

    ``curve`` maps "tp", "fp", "tn", "fn" (int sequences) and "precision", "recall" (float
    sequences), one entry per threshold, as ``LogWriter.add_pr_curve`` would compute them.
    ``walltime`` is in milliseconds (default: now).
    """
    from visualdl.component.base_component import pr_curve_raw

    walltime = round(time.time() * 1000) if walltime is None else walltime
    lists = {key: np.asarray(values).tolist() for key, values in curve.items()}
    writer._get_file_writer().add_record(pr_curve_raw(tag=tag, step=int(step), walltime=walltime, **lists))


def _record_file_names(logdir):
    """Names of the records files directly in ``logdir``, sorted: VisualDL shows the last one."""
    if not os.path.isdir(logdir):
        return []
    return sorted(
        name for name in os.listdir(logdir)
        if _RECORDS_MARK in name and os.path.isfile(os.path.join(logdir, name))
    )
