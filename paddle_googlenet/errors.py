"""The one base class of the errors a user can fix.

Every problem a user can do something about (a bad flag, a missing file, data that does not fit,
a full disk, a file that is not what it claims to be) is raised as a ``UserError`` subclass whose
``str()`` is one complete line saying what is wrong and what to do. The command-line entry points
(``cli.run_main``) print it as ``PROG: error: MESSAGE`` and exit with its ``exit_code``: 2, like
argparse's own usage errors, unless the subclass says otherwise.
"""


class UserError(Exception):
    """A problem the user can fix; ``str()`` is the whole message, shown without a traceback."""

    exit_code = 2
