"""The one exception type segedu raises for problems a user can fix.

Every message says what is wrong and what to do; the CLI and the book runner print it
without a traceback, so a wrong profile name never ends in a stack dump from deep inside.
"""


class SegeduError(Exception):
    """A problem with the user's input or environment, explained in the message."""


def download_failed(what: str, error: BaseException, put_it: str) -> SegeduError:
    """The error for weights that could not be downloaded (no network, a proxy, a hub that is down).

    ``what`` names the file or URL, ``put_it`` says where a file fetched on another machine goes
    so that the same call finds it without the network.
    """
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return SegeduError(f"could not download {what} ({reason}); without network, fetch it on a machine "
                       f"that has one and {put_it}.")
