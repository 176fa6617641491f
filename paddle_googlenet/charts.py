"""Charts drawn with Matplotlib without a display, and class names as any chart can show them.

``new_figure`` gives a figure on an Agg canvas (no window, no global state), ``rgb_pixels`` its
pixels for VisualDL. ``chart_label`` turns a class name into text the chart's font can draw: a name
holding bytes that are not UTF-8 (a folder named in Latin-1, read as ``caf\\udce9``) or characters
the font lacks (e.g. Chinese in DejaVu Sans) is shown with those characters escaped (``caf\\xe9``,
``\\u73ab\\u7470``), so a chart never crashes a run and Matplotlib never warns about missing glyphs.
The reports and curves keep the real names; only the pictures use these labels.
"""

import functools

import numpy as np

MAX_LABEL = 18  # characters of a class name shown before it is cut with "…"


def new_figure(width, height, dpi=100):
    """A Matplotlib ``Figure`` of ``width`` × ``height`` inches, drawn on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def rgb_pixels(figure):
    """The figure rendered as an H × W × 3 uint8 array."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def chart_label(name, max_length=MAX_LABEL):
    """``name`` as the chart font can draw it (see the module docstring), cut to ``max_length`` characters."""
    drawable = _font_characters()
    text = "".join(char if ord(char) in drawable else _escape(char) for char in str(name))
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def _escape(char):
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


@functools.lru_cache(maxsize=1)
def _font_characters():
    """The code points Matplotlib's default font has glyphs for (printable ones only)."""
    from matplotlib import font_manager

    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    return {code for code in font.get_charmap() if chr(code).isprintable()}
