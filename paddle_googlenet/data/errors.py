"""The one exception type for bad data input."""

from ..errors import UserError


class DataError(UserError):
    """Bad or missing input data. ``str()`` is the complete, actionable message: show it without a traceback."""
