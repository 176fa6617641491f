"""Reading the parameter archives of the legacy ``paddle.v2`` trainer (``params_pass_N.tar.gz``).

The legacy trainer saved its weights with ``Parameters.to_tar`` (``paddle/v2/parameters.py``), into
``gzip.open("params_pass_N.tar.gz", "w")`` in the image-classification ``train.py`` or a plain
``open("params_pass_N.tar", "w")`` elsewhere. The archive holds, for every parameter ``NAME``:

* a member ``NAME`` (e.g. ``___conv_0__.w0``, ``_ince3a_1.wbias``): a 16-byte header, the
  C++ ``Parameter::Header`` of ``paddle/parameter/Parameter.h`` written as ``struct.pack("IIQ",
  0, 4, N)`` (format version 0, 4 bytes per value, N values), then the N float32 values in the
  C++ layer's row-major layout: exactly 16 + 4·N bytes;
* a member ``NAME.protobuf``: the serialized proto2 ``paddle.ParameterConfig``
  (``proto/ParameterConfig.proto``), of which this reader decodes the fields it cross-checks:
  1 ``name``, 2 ``size`` (N), 9 ``dims`` (the legacy shape, often empty) and 18 ``is_static``
  (set on the moving statistics of batch norm).

What a reader must not assume, and this one does not:

* **compression**: gzip or a plain tar, told apart by the gzip magic bytes, not by the file name;
* **end of archive**: ``to_tar`` never closed its ``TarFile``, so the archive has no end-of-archive
  blocks; it simply ends after the last member;
* **member order**: early trainers kept their parameters in a plain ``dict`` (arbitrary order), and
  the official converters wrote ``NAME.protobuf`` before ``NAME``;
* **a ParameterConfig for every tensor**: the legacy ``Parameters.from_tar`` loaded only the
  tensors that had one and silently skipped the others. Here such a tensor is loaded too (its
  header and length are checked like any other), with ``config`` None: nothing about its name,
  shape or role can be cross-checked, which the conversion report says.

Every problem is a ``LegacyArchiveError``: one line naming the member and what is wrong with it.
"""

import gzip
import hashlib
import math
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

HEADER = struct.Struct("<iIQ")  # format version, bytes per value, number of values (Parameter.h: Header)
FORMAT_VERSION = 0  # kFormatVersion; 1 (PARAM_FORMAT_MKLDNN_OI) came only from the C++ save of MKL-DNN builds
VALUE_SIZE = 4  # sizeof(real) = float32; the Python writer always stored float32
CONFIG_SUFFIX = ".protobuf"
GZIP_MAGIC = b"\x1f\x8b"

# ParameterConfig field numbers (proto/ParameterConfig.proto) and protobuf wire types.
NAME_FIELD, SIZE_FIELD, DIMS_FIELD, STATIC_FIELD = 1, 2, 9, 18
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class LegacyArchiveError(UserError):
    """A file that is not a readable legacy parameter archive; ``str()`` names the member and the problem."""


@dataclass(frozen=True)
class ParameterConfig:
    """The fields of a ``paddle.ParameterConfig`` that a conversion cross-checks."""

    name: str
    size: int
    dims: tuple
    is_static: bool


@dataclass(frozen=True)
class LegacyTensor:
    """One parameter of an archive: its flat float32 values and, where the archive has one, its config."""

    name: str
    values: np.ndarray
    config: ParameterConfig = None

    @property
    def size(self):
        return int(self.values.size)


@dataclass(frozen=True)
class LegacyArchive:
    """The tensors of an archive by name, in member order, and how the archive was stored."""

    path: Path
    compression: str  # "gzip" or "tar"
    tensors: dict

    @property
    def without_config(self):
        """Names of the tensors that had no ``NAME.protobuf`` member."""
        return [name for name, tensor in self.tensors.items() if tensor.config is None]


def read_archive(path):
    """Read and check every member of a legacy archive; return a ``LegacyArchive``.

    Checks: the file is a tar, gzip-compressed or not; every tensor's header is (0, 4, N) and its
    member is exactly 16 + 4·N bytes; every ``ParameterConfig`` decodes, names its own tensor and
    agrees with it on N (and ``dims`` multiply to N); no name occurs twice; no config lacks its tensor.
    """
    path = Path(path)
    blobs, configs, compression = {}, {}, _compression(path)
    for name, data in _members(path, compression):
        if name.endswith(CONFIG_SUFFIX):
            _put_once(configs, name[: -len(CONFIG_SUFFIX)], decode_parameter_config(data, name), name)
        else:
            _put_once(blobs, name, tensor_values(name, data), name)
    orphans = sorted(set(configs) - set(blobs))
    if orphans:
        raise LegacyArchiveError(f"{path}: {orphans[0]}{CONFIG_SUFFIX} describes a tensor that the archive does not hold")
    if not blobs:
        raise LegacyArchiveError(f"{path}: the archive holds no parameter tensors")
    tensors = {name: LegacyTensor(name, values, configs.get(name)) for name, values in blobs.items()}
    for tensor in tensors.values():
        _check_config(tensor)
    return LegacyArchive(path, compression, tensors)


def _put_once(found, key, value, member):
    if key in found:
        raise LegacyArchiveError(f"the archive holds {member} twice")
    found[key] = value


def _compression(path):
    try:
        with open(path, "rb") as stream:
            return "gzip" if stream.read(2) == GZIP_MAGIC else "tar"
    except OSError as exc:
        raise LegacyArchiveError(f"cannot read {path}: {exc.strerror or exc}") from None


def _members(path, compression):
    """Yield ``(name, bytes)`` of each regular member, reading the archive once, front to back."""
    member = None
    try:
        with open(path, "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if compression == "gzip" else raw
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()
    except tarfile.ReadError as exc:
        raise LegacyArchiveError(_unreadable(path, compression, member, exc)) from None
    except (EOFError, zlib.error, OSError) as exc:  # a truncated or corrupt gzip stream, or a failing disk
        where = f" (in member {member.name})" if member is not None else ""
        what = "the gzip stream is truncated or corrupt" if compression == "gzip" else "cannot read it"
        raise LegacyArchiveError(f"{path}: {what}{where}: {exc}") from None


def _unreadable(path, compression, member, exc):
    if member is not None:
        return f"{path}: the archive ends inside or after member {member.name} ({exc}); the file is truncated"
    what = "a gzip file that does not hold a tar archive" if compression == "gzip" else "neither a tar nor a gzip archive"
    return f"{path}: {what} ({exc}); expected a params_pass_N.tar.gz or .tar written by the paddle.v2 trainer"


def tensor_values(name, data):
    """The float32 values of a tensor member, after checking its header and length."""
    if len(data) < HEADER.size:
        raise LegacyArchiveError(f"{name}: {len(data)} bytes, shorter than the 16-byte parameter header")
    version, value_size, count = HEADER.unpack_from(data)
    if (version, value_size) != (FORMAT_VERSION, VALUE_SIZE):
        raise LegacyArchiveError(f"{name}: header ({version}, {value_size}, {count}) is not a paddle.v2 float32 "
                                 f"parameter: expected format {FORMAT_VERSION} and {VALUE_SIZE}-byte values")
    expected = HEADER.size + VALUE_SIZE * count
    if len(data) != expected:
        kind = "short" if len(data) < expected else "long"
        raise LegacyArchiveError(f"{name}: {kind} tensor: its header says {count} values ({expected} bytes with the "
                                 f"header), the member holds {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4", offset=HEADER.size).astype(np.float32, copy=False)


def _check_config(tensor):
    config = tensor.config
    if config is None:
        return
    member = tensor.name + CONFIG_SUFFIX
    if config.name != tensor.name:
        raise LegacyArchiveError(f"{member} names the parameter {config.name!r}, not {tensor.name!r}")
    if config.size != tensor.size:
        raise LegacyArchiveError(f"{member} says {config.size} values, the tensor {tensor.name} holds {tensor.size}")
    if config.dims and math.prod(config.dims) != tensor.size:
        raise LegacyArchiveError(f"{member}: dims {list(config.dims)} do not multiply to the tensor's {tensor.size} values")


def decode_parameter_config(data, member="ParameterConfig"):
    """Decode the ``name``, ``size``, ``dims`` and ``is_static`` fields of a serialized ParameterConfig.

    A small proto2 wire-format decoder: every other field is skipped by its wire type; ``dims`` is
    accepted unpacked (proto2's default, one varint per value) or packed.
    """
    fields = {NAME_FIELD: b"", SIZE_FIELD: 0, STATIC_FIELD: 0}
    dims, position = [], 0
    try:
        while position < len(data):
            key, position = read_varint(data, position)
            number, wire_type = key >> 3, key & 7
            value, position = _read_field(data, position, wire_type)
            if number == DIMS_FIELD:
                dims.extend(_packed_varints(value) if wire_type == LENGTH_DELIMITED else [value])
            elif number in fields:
                fields[number] = value
        return ParameterConfig(fields[NAME_FIELD].decode("utf-8"), int(fields[SIZE_FIELD]), tuple(dims),
                               bool(fields[STATIC_FIELD]))
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise LegacyArchiveError(f"{member}: not a serialized paddle.ParameterConfig ({exc})") from None


def read_varint(data, position):
    """``(value, next position)`` of the base-128 varint at ``position``."""
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def _read_field(data, position, wire_type):
    """``(value, next position)`` of one field's payload: an int, or bytes for fixed and length-delimited ones."""
    if wire_type == VARINT:
        return read_varint(data, position)
    widths = {FIXED64: 8, FIXED32: 4}
    if wire_type == LENGTH_DELIMITED:
        width, position = read_varint(data, position)
    elif wire_type in widths:
        width = widths[wire_type]
    else:
        raise ValueError(f"unsupported wire type {wire_type}")
    if position + width > len(data):
        raise ValueError("a field runs past the end of the message")
    return data[position : position + width], position + width


def _packed_varints(payload):
    values, position = [], 0
    while position < len(payload):
        value, position = read_varint(payload, position)
        values.append(value)
    return values


def file_sha256(path, chunk=1 << 20):
    """The SHA-256 of a file, hex, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
