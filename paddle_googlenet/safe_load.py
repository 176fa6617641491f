"""Reading ``paddle.save`` weights and checkpoints without letting the file run code.

``paddle.load`` unpickles, and unpickling calls whatever Python global the file names: a crafted
``.pdparams`` whose pickled object reduces to ``os.system("...")`` runs that command on load.
``load(path)`` reads the same files with a restricted ``pickle.Unpickler`` (``encoding="latin1"``,
as ``paddle.load`` does, for protocol-2 files of the Python 2 era) whose ``find_class`` resolves only
the exact ``(module, name)`` pairs of ``ALLOWED_GLOBALS`` and raises ``UnsafeFileError`` for any other
global *before* anything is called: a refused file runs nothing. What the pickle can build is then
limited to NumPy arrays, dtypes and scalars, dicts, ``OrderedDict``, lists, tuples and plain values.

The allow-list is what real files reference, listed from their pickles' GLOBAL / STACK_GLOBAL opcodes
for files written by ``paddle.save`` on Paddle 3.3.1 (NumPy 2.x) and Paddle 2.6.2 (NumPy 1.26), with
protocols 2, 3 and 4: ``model.state_dict()`` of a model with BatchNorm, of
``paddle.vision.models.resnet18`` (the layout of its ``pretrained=True`` downloads), of a tensor of
each dtype (an empty one too), an optimizer's state dict, and ``train.py`` checkpoints (the model,
EMA, optimizer and LR-schedule state, training position, arguments, class names, preprocessing):

* ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray._reconstruct`` (NumPy 1.x) or
  ``numpy._core.multiarray._reconstruct`` (NumPy 2.x): every array. Both spellings are accepted on
  either NumPy, so files move between NumPy 1 and 2 in both directions;
* ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``: NumPy scalars
  (``np.float64(0.5)``) in a checkpoint;
* ``builtins.tuple`` (``__builtin__.tuple`` in protocol 2): ``paddle.save`` reduces each tensor of a
  nested object such as a checkpoint to ``tuple(((name, ndarray),))``;
* ``collections.OrderedDict``: the state dicts inside a checkpoint;
* ``_codecs.encode`` and ``builtins.bytes`` / ``__builtin__.bytes``: how protocol 2 writes bytes
  under Python 3 (an array's raw data; an empty array's). These two resolve to stand-ins that only
  do that: encode a string as latin-1, and make an empty ``bytes``.

No file of these kinds references ``numpy.dtypes.*`` classes, nor protocol 5's
``numpy._core.numeric._frombuffer`` (``paddle.save`` writes protocols 2 to 4 only). ``paddle.save``
of a bare ``DenseTensor`` (never written by this project) reduces it to
``builtins.eval('data', {...})``; ``eval`` is refused like ``exec``, ``getattr``, ``__import__``,
``os.*`` / ``posix.*``, ``subprocess.*``, ``functools.partial`` and every NumPy function not listed.
Names are compared exactly as the file spells them, before the Python 2 to 3 renaming plain pickle
does for protocols 0 to 2 (a refusal names both: ``commands.Popen`` is ``subprocess.Popen``).

After unpickling, ``load`` does what ``paddle.load(path, return_numpy=True)`` does, in NumPy terms:
big arrays that protocols 2 and 3 split into ``NAME@@.0``, ``NAME@@.1``, ... slices
(``UnpackBigParamInfor@@``) are joined again; a state dict's ``StructuredToParameterName@@`` table is
dropped; every ``(name, ndarray)`` tuple a tensor was reduced to becomes that ndarray. Tensors come
back as NumPy arrays, which ``set_state_dict`` and ``paddle.to_tensor`` accept. Paddle is not imported.

Paddle Inference programs (``*.pdmodel`` or ``*.json`` with ``*.pdiparams``) are still read by
Paddle itself; this project only ever reads ones it wrote (``export.py``).

``load_safetensors`` / ``save_safetensors`` read and write ``.safetensors`` files (a JSON header and
raw buffers, which no loader executes); they need the optional ``safetensors`` package.
"""

import collections
import pickle

import numpy as np

from .errors import UserError

NAME_TABLE = "StructuredToParameterName@@"
SPLIT_ARRAYS = "UnpackBigParamInfor@@"  # sic: Paddle's key
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")

ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((module, name) for module in _NUMPY_CORE for name in ("_reconstruct", "scalar")),
    ("builtins", "tuple"), ("__builtin__", "tuple"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("builtins", "bytes"), ("__builtin__", "bytes"),
})

_REFUSED = ("which a weights or checkpoint file never needs (unpickling it could run code). Load it with "
            "paddle.load only if you trust where it came from, and save what that returns again with paddle.save "
            "(or as .safetensors) to get a file that loads safely")


class UnsafeFileError(UserError):
    """A file that asks the unpickler for something outside the allow-list; nothing of it was run."""


class UnreadableFileError(UserError):
    """A file that is not a readable weights file: missing, truncated, corrupt or not a pickle."""


class _Refused(Exception):
    """Raised inside the unpickler; ``args[0]`` says what the file asked for."""


def load(path):
    """What ``paddle.load(path)`` gives for a state dict or checkpoint, tensors as NumPy arrays.

    Raises ``UnsafeFileError`` for a file that names any global outside ``ALLOWED_GLOBALS`` (before
    calling anything) and ``UnreadableFileError`` for one that is not a readable pickle.
    """
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
        return _as_paddle_loads(obj)
    except _Refused as exc:
        raise UnsafeFileError(f"{path}: refused to load: the file asks for {exc.args[0]}, {_REFUSED}") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable Paddle weights file: {_one_line(exc.strerror or exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises almost any kind of error
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        raise UnreadableFileError(f"{path}: not a readable Paddle weights file: {reason}") from None


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals are exactly ``ALLOWED_GLOBALS``; it imports nothing."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"the Python global {_global_name(module, name)}")
        return _resolve(module, name)


def _global_name(module, name):
    """``module.name``, and the Python 3 global that plain pickle maps a Python 2 spelling to."""
    import _compat_pickle  # the table of pickle.Unpickler(fix_imports=True) for protocols 0 to 2

    python3 = _compat_pickle.NAME_MAPPING.get((module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
    written = _one_line(f"{module}.{name}")
    return written if python3 == (module, name) else f"{_one_line('.'.join(python3))} (written as {written})"


def _resolve(module, name):
    if module in _NUMPY_CORE:
        return getattr(_numpy_multiarray(), name)
    if module == "numpy":
        return {"ndarray": np.ndarray, "dtype": np.dtype}[name]
    if module == "collections":
        return collections.OrderedDict
    if module == "_codecs":
        return _STAND_INS["_codecs"]
    return tuple if name == "tuple" else _STAND_INS["bytes"]


def _numpy_multiarray():
    """``numpy._core.multiarray`` (NumPy 2, and 1.26's alias of it) or ``numpy.core.multiarray``."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 1.26
        from numpy.core import multiarray
    return multiarray


class _Latin1Encode:
    """``_codecs.encode`` as protocol 2 uses it for bytes, ``encode(str, "latin1")``, and nothing else.

    A ``__slots__`` instance, not a function, so that a file cannot set attributes on it (BUILD).
    """

    __slots__ = ()

    def __call__(self, text, encoding="utf-8", errors="strict"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise _Refused(f"_codecs.encode with encoding {_one_line(repr(encoding))}, not latin1")
        return text.encode("latin1")


class _EmptyBytes:
    """``bytes()``, as protocol 2 writes an empty ``bytes``; ``bytes(n)`` and the like are refused."""

    __slots__ = ()

    def __call__(self, *args):
        if args:
            raise _Refused("builtins.bytes with arguments")
        return b""


_STAND_INS = {"_codecs": _Latin1Encode(), "bytes": _EmptyBytes()}


def _as_paddle_loads(obj):
    """``paddle.load``'s treatment of the unpickled object, with NumPy arrays for tensors."""
    if isinstance(obj, dict):
        _join_split_arrays(obj)
        if NAME_TABLE in obj:  # a state dict: paddle.load turns the ndarrays it names into tensors
            del obj[NAME_TABLE]
            return obj
    return _tensors_to_arrays(obj)


def _join_split_arrays(state):
    """Undo protocol 2/3's split of arrays over 1 GiB into ``NAME@@.i`` slices, in place."""
    info = state.pop(SPLIT_ARRAYS, None)
    if info is None:
        return
    for key, split in info.items():
        state[key] = np.concatenate([state[part] for part in split["slices"]]).reshape(split["OriginShape"])
    for split in info.values():
        for part in split["slices"]:
            state.pop(part)


def _tensors_to_arrays(obj):
    """``obj`` with every ``(name, ndarray)`` tuple (a pickled tensor) replaced by its ndarray."""
    if type(obj) is tuple:
        if len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
            return obj[1]
        return tuple(_tensors_to_arrays(item) for item in obj)
    if type(obj) is list:
        obj[:] = [_tensors_to_arrays(item) for item in obj]
    elif type(obj) in (dict, collections.OrderedDict):
        for key, value in obj.items():
            obj[key] = _tensors_to_arrays(value)
    return obj


def _one_line(text, limit=200):
    """``text`` made printable on one line (a crafted file chooses its global names) and cut at ``limit``."""
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safetensors_numpy():
    try:
        from safetensors import numpy as safetensors_numpy
    except ImportError:
        raise UserError("reading or writing .safetensors files needs the safetensors package: pip install safetensors") from None
    return safetensors_numpy


def load_safetensors(path):
    """The ``{name: ndarray}`` dict stored in the ``.safetensors`` file ``path``."""
    safetensors_numpy = _safetensors_numpy()
    try:
        return safetensors_numpy.load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - OSError, safetensors' SafetensorError, ...
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        raise UnreadableFileError(f"{path}: not a readable safetensors file: {reason}") from None


def save_safetensors(arrays, path, metadata=None):
    """Write ``{name: array}`` to ``path`` as safetensors, with optional ``{str: str}`` ``metadata``."""
    safetensors_numpy = _safetensors_numpy()
    contiguous = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    safetensors_numpy.save_file(contiguous, str(path), metadata=metadata)
