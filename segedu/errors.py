"""The one exception type segedu raises for problems a user can fix.

Every message says what is wrong and what to do; the CLI and the book runner print it
without a traceback, so a wrong profile name never ends in a stack dump from deep inside.
"""


class SegeduError(Exception):
    """A problem with the user's input or environment, explained in the message."""
