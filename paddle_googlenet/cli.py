"""What the command-line tools share: number checks for argparse, and one way to end on an error.

``train.py``, ``infer.py``, ``python -m paddle_googlenet.export`` and ``python -m
paddle_googlenet.convert_v2`` build their parsers with ``ArgumentParser`` and declare their numeric
flags with the types below, so a bad number is one line, ``PROG: error: argument --lr: must be
positive, got -1``, with exit code 2, before anything is built or written. ``run_main`` runs a tool's ``main`` and turns a ``UserError`` raised
anywhere inside into one line ``PROG: error: MESSAGE`` and its exit code.
"""

import argparse
import math
import sys

from .errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE (see PROG --help)``, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(minimum, kind=int):
    """An argparse type: a number (``kind``) of at least ``minimum``."""

    def parse(text):
        value = _number(text, kind)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} >= {minimum}"
    return parse


def positive(text):
    """An argparse type: a number greater than 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative(text):
    """An argparse type: a number of at least 0."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def probability(text):
    """An argparse type: a rate or coefficient in [0, 1) (dropout, label smoothing, momentum)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def open_unit(text):
    """An argparse type: a factor strictly between 0 and 1 (a decay)."""
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def unit_interval(text):
    """An argparse type: a factor in (0, 1] (a learning-rate decay rate: 1 means no decay)."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def notice(message):
    """A line for the user that is neither a result nor an error: ``notice: MESSAGE`` on stderr."""
    print(f"notice: {message}", file=sys.stderr, flush=True)


def run_main(prog, main, argv=None):
    """Run ``main(argv)`` and return its exit code: a ``UserError`` becomes ``PROG: error: MESSAGE`` and its
    code, and argparse's exits (usage errors, ``--help``) their codes, so calling ``main`` never exits Python."""
    try:
        return main(argv)
    except UserError as exc:
        sys.stdout.flush()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
