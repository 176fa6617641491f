"""The one exception type for bad data input."""


class DataError(Exception):
    """Bad or missing input data. ``str()`` is the complete, actionable message: show it without a traceback."""
