"""Fetching a data set's missing files: one download attempt bounded by a timeout, and the error that
says which files to put where when the attempt brings nothing.

Every built-in loader follows the same pattern: look for the files, call :func:`attempt` with a
function that downloads them (torchvision's classes and utilities do the work), look again, and
raise :func:`files_not_found` if they are still missing. A failed attempt is not an error in
itself: offline, a read-only data root and a server that is down all end in the same clear
message about the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from zoo.errors import ZooError

#: Seconds a download waits on a silent connection: torchvision's urlopen has no timeout of its
#: own, so behind a firewall that drops packets it would hang instead of reaching the clear error.
DOWNLOAD_TIMEOUT = 30.0

#: What :func:`files_not_found` suggests when torchvision knows where the files are.
BY_TORCHVISION = "connect to the network so torchvision can download them"


def attempt(download: Callable[[], object]) -> bool:
    """Call ``download()`` with a socket timeout of :data:`DOWNLOAD_TIMEOUT`; whether it succeeded.

    Any exception counts as a failure (no network, a read-only root, a server that is down, a
    missing optional package); the caller looks for the files again and explains what is missing.
    """
    import socket

    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        download()
    except Exception:  # noqa: BLE001 - the caller reports the files that are still missing
        return False
    finally:
        socket.setdefaulttimeout(saved)
    return True


def files_not_found(what: str, names: Iterable[str], folder: Path, how: str | None = BY_TORCHVISION) -> ZooError:
    """The one-line error naming the missing files and the folder to put them in; ``how`` says how else
    they can be had (None: there is no other way)."""
    other = f", or {how}" if how else ""
    return ZooError(
        f"{what} files not found: put {', '.join(names)} in {folder} (or pass --data-dir / set ZOO_DATA "
        f"to a folder holding them{other})"
    )
