"""Directories of the store that only their owner may enter (0700, as Docker keeps ``/var/lib/docker``).

Extracted layers hold an image's setuid binaries and device nodes, containers' upper directories hold
whatever their processes wrote: another user of the machine must not reach them. The mode is set with
``chmod`` after ``mkdir`` so that the umask cannot widen or narrow it, and a directory made by an older
layerkit (0755) is narrowed the next time the store is opened for writing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o700


def private_dir(path: str | os.PathLike, parents: bool = False) -> Path:
    """Make ``path`` a directory of mode 0700 (creating it, and with ``parents`` its missing ancestors,
    each 0700); an existing directory is narrowed to 0700. Returns the path.

    Raises :class:`NotADirectoryError` when something else sits at ``path``.
    """
    path = Path(path)
    if parents and not path.parent.exists():
        private_dir(path.parent, parents=True)
    try:
        os.mkdir(path, PRIVATE_MODE)
    except FileExistsError:
        pass
    st = os.stat(path)  # a symlink its owner put there (another disk) is followed
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    if stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
        os.chmod(path, PRIVATE_MODE)
    return path
